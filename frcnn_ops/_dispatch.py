"""Routing an op call to MXNet (NDArray / Symbol), NumPy (pybind11) or CuPy (CUDA launcher)."""
import numpy as np

_GPU_CODES = {"float32": 0, "float64": 1, "float16": 2}


def array_kind(op, **arrays):
    """'ndarray', 'symbol', 'numpy' or 'cupy'; every array must be of the same kind."""
    kinds = {}
    for name, x in arrays.items():
        mod = type(x).__module__ or ""
        if isinstance(x, np.ndarray):
            k = "numpy"
        elif mod.startswith("cupy"):
            k = "cupy"
        elif mod.startswith("mxnet"):
            import mxnet as mx
            if isinstance(x, mx.sym.Symbol):
                k = "symbol"
            elif isinstance(x, mx.nd.NDArray):
                k = "ndarray"
            else:
                k = None
        else:
            k = None
        if k is None:
            raise TypeError("%s: %s must be an MXNet NDArray or Symbol, a NumPy array or a CuPy "
                            "array, got %s" % (op, name, type(x).__name__))
        kinds[name] = k
    distinct = set(kinds.values())
    if len(distinct) != 1:
        raise TypeError("%s: all inputs must be of one kind, got %s" % (
            op, ", ".join("%s=%s" % kv for kv in kinds.items())))
    return distinct.pop()


def mx_namespace(kind):
    """mx.nd or mx.sym with the frcnn ops loaded."""
    from ._lib import load_into_mxnet
    mx = load_into_mxnet()
    return mx.nd if kind == "ndarray" else mx.sym


def numpy_inputs(*arrays):
    return [np.ascontiguousarray(a) for a in arrays]


def cupy_inputs(op, **arrays):
    """Contiguous CuPy arrays of one float dtype, plus that dtype's code for the launcher."""
    from ._lib import _C
    if not _C.has_cuda:
        raise RuntimeError("%s: this build of frcnn_ops has no CUDA kernels (built without "
                           "nvcc or with FRCNN_CUDA=0)" % op)
    import cupy as cp
    out = [cp.ascontiguousarray(a) for a in arrays.values()]
    names = list(arrays)
    dt = out[0].dtype
    if dt.name not in _GPU_CODES:
        raise TypeError("%s: %s must be float32, float64 or float16, got %s" % (op, names[0], dt))
    for name, a in zip(names[1:], out[1:]):
        if a.dtype != dt:
            raise TypeError("%s: %s must have the dtype of %s (%s), got %s" % (
                op, name, names[0], dt, a.dtype))
    return out, _GPU_CODES[dt.name]


def cupy_stream():
    import cupy as cp
    return cp.cuda.get_current_stream().ptr
