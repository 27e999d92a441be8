"""Routing an op call to MXNet (NDArray / Symbol), NumPy (pybind11) or a CUDA device.

CUDA devices are backends with one interface (`CudaDevice`): the real GPU takes CuPy arrays
and calls the `*_gpu` entry points of `frcnn_ops._C`; the CPU execution harness of the same
kernels (`frcnn_ops._C_emu`, built with FRCNN_CUDA_EMULATE=1) takes NumPy arrays inside
`emulate_cuda()`. The op wrappers see only `device(kind)`.
"""
import contextlib
import threading

import numpy as np

_GPU_CODES = {"float32": 0, "float64": 1, "float16": 2}


def array_kind(op, **arrays):
    """'ndarray', 'symbol', 'numpy', 'cupy' or 'emu' (NumPy arrays inside emulate_cuda());
    every array must be of the same kind."""
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
    kind = distinct.pop()
    if kind == "numpy" and getattr(_emulating, "on", False):
        return "emu"
    return kind


def backward_kind(op, fn, **arrays):
    """array_kind for a `*_backward` function: NumPy or a CUDA device; MXNet arrays are
    refused (MXNet computes the gradient through autograd)."""
    kind = array_kind(op, **arrays)
    if kind in ("ndarray", "symbol"):
        raise TypeError("%s: %s takes NumPy or CuPy arrays; MXNet computes the gradient "
                        "through autograd" % (op, fn))
    return kind


def mx_namespace(kind):
    """mx.nd or mx.sym with the frcnn ops loaded."""
    from ._lib import load_into_mxnet
    mx = load_into_mxnet()
    return mx.nd if kind == "ndarray" else mx.sym


def numpy_inputs(*arrays):
    return [np.ascontiguousarray(a) for a in arrays]


class CudaDevice:
    """The CUDA kernels on a GPU: CuPy arrays, CuPy's current stream, `_C.*_gpu`."""

    name = "cuda"

    @property
    def lib(self):
        from ._lib import _C
        return _C

    @property
    def xp(self):
        import cupy
        return cupy

    def available(self):
        return bool(self.lib.has_cuda)

    def unavailable_reason(self):
        return ("this build of frcnn_ops has no CUDA kernels (built without nvcc or with "
                "FRCNN_CUDA=0)")

    def ptr(self, a):
        return a.data.ptr

    def stream(self):
        return self.xp.cuda.get_current_stream().ptr

    def inputs(self, op, **arrays):
        """Contiguous arrays of one float dtype, plus that dtype's code for the launcher."""
        if not self.available():
            raise RuntimeError("%s: %s" % (op, self.unavailable_reason()))
        xp = self.xp
        out = [xp.ascontiguousarray(a) for a in arrays.values()]
        names = list(arrays)
        dt = out[0].dtype
        if dt.name not in _GPU_CODES:
            raise TypeError("%s: %s must be float32, float64 or float16, got %s" % (
                op, names[0], dt))
        for name, a in zip(names[1:], out[1:]):
            if a.dtype != dt:
                raise TypeError("%s: %s must have the dtype of %s (%s), got %s" % (
                    op, name, names[0], dt, a.dtype))
        return out, _GPU_CODES[dt.name]

    def empty(self, shape, dtype):
        return self.xp.empty(tuple(shape), dtype=dtype)

    def capturing(self):
        """Whether the current stream is being captured into a CUDA graph."""
        stream = self.xp.cuda.get_current_stream()
        if hasattr(stream, "is_capturing"):
            return bool(stream.is_capturing())
        return bool(self.xp.cuda.runtime.streamIsCapturing(stream.ptr))

    def workspace(self, nbytes):
        """Scratch memory for one call, from the current allocator (CuPy's pool).

        Outside a graph capture it goes back to the pool when the call returns (the stream
        orders its reuse). During a capture the graph keeps the address, so the workspace is
        kept alive (`_graph_workspaces`) until `frcnn_ops.release_graph_workspaces()`: a
        captured graph can be replayed after any other allocations (docs/GPU.md)."""
        ws = self.xp.empty(max(int(nbytes), 1), dtype=self.xp.uint8)
        if self.capturing():
            _graph_workspaces.append(ws)
        return ws


_graph_workspaces = []


def release_graph_workspaces():
    """Frees the workspaces kept alive for CUDA graphs captured around frcnn ops; replaying
    such a graph afterwards is undefined. Returns the number of bytes released."""
    n = sum(int(w.nbytes) for w in _graph_workspaces)
    del _graph_workspaces[:]
    return n


class EmulatedCudaDevice(CudaDevice):
    """The same CUDA kernel sources compiled for the CPU execution harness
    (`frcnn_ops._C_emu`): NumPy arrays, a stream of 0, kernels run on the host."""

    name = "cuda_emu"

    @property
    def lib(self):
        from . import _C_emu
        return _C_emu

    @property
    def xp(self):
        return np

    def available(self):
        try:
            self.lib
        except ImportError:
            return False
        return True

    def unavailable_reason(self):
        return ("this build of frcnn_ops has no CUDA execution harness (build with "
                "FRCNN_CUDA_EMULATE=1)")

    def ptr(self, a):
        return a.ctypes.data

    def stream(self):
        return 0

    def capturing(self):
        return False


_DEVICES = {"cupy": CudaDevice(), "emu": EmulatedCudaDevice()}
_emulating = threading.local()


def device(kind):
    """The CUDA backend of an array kind from array_kind ('cupy' or 'emu')."""
    return _DEVICES[kind]


@contextlib.contextmanager
def emulate_cuda():
    """Within this block (this thread), the ops run NumPy arrays through the CUDA kernels on
    the CPU execution harness (frcnn_ops._C_emu) instead of the CPU kernels."""
    if not _DEVICES["emu"].available():
        raise RuntimeError("emulate_cuda: " + _DEVICES["emu"].unavailable_reason())
    prev = getattr(_emulating, "on", False)
    _emulating.on = True
    try:
        yield
    finally:
        _emulating.on = prev
