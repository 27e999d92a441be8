"""Routing an op call to MXNet (NDArray / Symbol), NumPy (pybind11) or a CUDA device.

Every public op function is one call of `run` (forward) or `run_backward` with the op's
MXNet name, its inputs by name and its attributes. Attributes go to the compiled module as
text, as MXNet passes them, so that one parser (csrc/common/op.cpp) reads, checks and refuses
them on every path. CUDA devices are backends with one interface (`CudaDevice`): the real GPU
takes CuPy arrays and calls `frcnn_ops._C.run_gpu`; the CPU execution harness of the same
kernels (`frcnn_ops._C_emu`, built with FRCNN_CUDA_EMULATE=1) takes NumPy arrays inside
`emulate_cuda()`.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Mapping, Sequence

import numpy as np

# An op's array: mxnet.nd.NDArray, mxnet.sym.Symbol, numpy.ndarray or cupy.ndarray (every
# input of one call of the same kind; the output is of that kind).
Tensor = Any

_GPU_CODES = {"float32": 0, "float64": 1, "float16": 2}


def array_kind(op, **arrays):
    """'ndarray', 'symbol', 'numpy', 'cupy' or 'emu' (NumPy arrays inside emulate_cuda());
    every array must be of the same kind."""
    if all(type(x) is np.ndarray for x in arrays.values()):  # the common case, quickly
        return "emu" if getattr(_emulating, "on", False) else "numpy"
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


def release_graph_workspaces() -> int:
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
def emulate_cuda() -> "contextlib.AbstractContextManager[None]":
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


class ShapeOnly(tuple):
    """An input of a backward given by its shape alone (the backward does not read it)."""


def _flatten(op, inputs):
    """{name: array, variadic name: list of arrays} -> {name or name[i]: array} (a variadic
    "a,b": {a: list, b: list} -> a[i] then b[i], the lists after the other inputs)."""
    variadic = _variadic(op)
    groups = variadic.split(",") if variadic else ()
    if not any(g in inputs for g in groups):
        return inputs
    flat = {}
    for name, x in sorted(inputs.items(), key=lambda kv: kv[0] in groups):
        if name not in groups:
            flat[name] = x
        elif not isinstance(x, (list, tuple)) or not x:
            raise TypeError("%s: %s must be a list or tuple of arrays (at least one), got %s"
                            % (op, name, type(x).__name__ if not isinstance(x, (list, tuple))
                               else "an empty one"))
        else:
            flat.update(("%s[%d]" % (name, i), a) for i, a in enumerate(x))
    return flat


_VARIADIC = {}


def _variadic(op):
    """The name of op's variadic input (the schema's "*name"), or None."""
    if op not in _VARIADIC:
        _VARIADIC[op] = next((i["name"][1:] for i in schema()[op]["inputs"]
                              if i["name"].startswith("*")), None)
    return _VARIADIC[op]


def _text(value):
    """An attribute as MXNet passes it to an op: str() of the value (tuples as '(7, 7)')."""
    if isinstance(value, (list, tuple)):
        return "(%s)" % ", ".join(_text(v) for v in value)
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


_TEXT_CACHE = {}


def attrs_text(attrs: Mapping[str, Any]) -> dict:
    """The attributes that were given (None: not given), as text. Memoised: a model calls an
    op with the same attributes every time, and formatting them costs more than the call."""
    try:
        key = tuple(attrs.items())
        return _TEXT_CACHE[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable value (a list)
        key = None
    text = {k: _text(v) for k, v in attrs.items() if v is not None}
    if key is not None and len(_TEXT_CACHE) < 4096:
        _TEXT_CACHE[key] = text
    return text


def _shapes(arrays):
    return [[int(d) for d in a.shape] for a in arrays]


def run(op: str, inputs: Mapping[str, Any], attrs: Mapping[str, Any]):
    """Runs op forward on inputs of one kind; returns its output (a list if several).

    inputs: {name: array}, or {name: list of arrays} for a variadic input (named name[i]).
    attrs: None values are left out (the op's default applies).
    """
    flat = _flatten(op, inputs)
    kind = array_kind(op, **flat)
    if kind in ("ndarray", "symbol"):
        given = {k: v for k, v in attrs.items() if v is not None}
        return getattr(mx_namespace(kind), op)(*flat.values(), **given)
    from ._lib import _C
    text = attrs_text(attrs)
    if kind == "numpy":
        arrays = list(flat.values())
        if not all(a.flags.c_contiguous for a in arrays):
            _C.infer_shape(op, _shapes(arrays), text)  # refuses before copying anything
            arrays = numpy_inputs(*arrays)
        outs = _C.forward(op, arrays, text)
    else:
        dev = device(kind)
        arrays, code = dev.inputs(op, **flat)
        shapes = _shapes(arrays)
        outs = [dev.empty(s, arrays[0].dtype) for s in dev.lib.infer_shape(op, shapes, text)]
        ws_bytes = dev.lib.workspace_gpu(op, False, code, shapes, text)
        ws = dev.workspace(ws_bytes)
        dev.lib.run_gpu(op, False, code, 0, [dev.ptr(a) for a in arrays], shapes,
                        [dev.ptr(o) for o in outs], text, dev.ptr(ws), ws_bytes, dev.stream())
    return outs[0] if len(outs) == 1 else outs


def run_backward(op: str, fn: str, grad: Tensor, inputs: Mapping[str, Any],
                 attrs: Mapping[str, Any]):
    """The gradients of op w.r.t. the inputs it differentiates (a list if several), for NumPy
    and CUDA arrays. inputs: {name: array, or a shape tuple where the backward reads only the
    shape (e.g. roi_align's data)}."""
    flat = _flatten(op, inputs)
    given = {k: v for k, v in flat.items() if hasattr(v, "shape")}
    kind = backward_kind(op, fn, grad=grad, **given)
    shapes = [[int(d) for d in (v.shape if k in given else v)] for k, v in flat.items()]
    text = attrs_text(attrs)
    from ._lib import _C
    if kind == "numpy":
        _C.infer_shape(op, shapes, text)
        arrays = dict(zip(given, numpy_inputs(*given.values())))
        grads = _C.backward(op, np.ascontiguousarray(grad), [arrays.get(k) for k in flat],
                            shapes, text)
        return grads[0] if len(grads) == 1 else grads
    dev = device(kind)
    arrays, code = dev.inputs(op, **given, grad=grad)
    by_name = dict(zip(list(given) + ["grad"], arrays))
    out_shape = dev.lib.infer_shape(op, shapes, text)[0]
    if list(by_name["grad"].shape) != list(out_shape):
        raise ValueError("%s: grad must have the output's shape %s, got %s" % (
            op, tuple(out_shape), tuple(by_name["grad"].shape)))
    grads = [dev.empty(s, arrays[0].dtype) for k, s in zip(flat, shapes)
             if _has_grad(dev.lib, op, k)]
    ws_bytes = dev.lib.workspace_gpu(op, True, code, shapes, text)
    ws = dev.workspace(ws_bytes)
    dev.lib.run_gpu(op, True, code, dev.ptr(by_name["grad"]),
                    [dev.ptr(by_name[k]) if k in by_name else 0 for k in flat], shapes,
                    [dev.ptr(g) for g in grads], text, dev.ptr(ws), ws_bytes, dev.stream())
    return grads[0] if len(grads) == 1 else grads


def _has_grad(lib, op, input_name):
    """Whether op differentiates the input of that name (name[i]: its variadic input)."""
    base = input_name.split("[")[0]
    for spec in schema(lib)[op]["inputs"]:
        if spec["name"].lstrip("*") == base:
            return spec["grad"]
    raise KeyError(input_name)


_SCHEMAS = {}


def schema(lib=None) -> dict:
    """{op name: its schema (inputs, attrs with type, default text, doc)} from csrc."""
    if lib is None:
        from ._lib import _C as lib
    key = id(lib)
    if key not in _SCHEMAS:
        _SCHEMAS[key] = {s["name"]: s for s in lib.schema()}
    return _SCHEMAS[key]
