"""bfloat16 inference: convolutions and dense layers in bfloat16 through MXNet's AMP (oneDNN).

:func:`convert_symbol` rewrites a float32 inference graph with
``mx.contrib.amp.convert_symbol(target_dtype='bfloat16')``: Convolution and FullyConnected run in
bfloat16 (oneDNN), BatchNorm / ReLU / pooling / residual adds follow their input's type, and the
frcnn_* ops (proposals, ROIAlign, decoding, NMS) are excluded, so AMP casts their inputs to
float32: they always run in float32, as do softmax and the other float32-only ops. The
parameters stay float32 (cast inside the graph), so checkpoints, ``save_parameters`` and
``load_parameters`` are the same for both precisions.

:func:`check_bf16_cpu` refuses a CPU without AVX512-BF16 (``avx512_bf16`` in /proc/cpuinfo):
oneDNN would emulate bfloat16 there, slower than float32.
``FRCNN_FAKE_NO_BF16=1`` (test-only) makes it behave as on such a CPU.

AMX (the policy lives here, :func:`amx_for_mxnet_load`): on a CPU with AMX-BF16 the bfloat16
convolutions are ~3x faster than float32 when oneDNN uses AMX, and 0.6-0.8x (slower) when it
uses AVX512-BF16. MXNet 1.9.1's oneDNN (2.4) treats AMX as a preview ISA: it uses it only when
``DNNL_MAX_CPU_ISA=AVX512_CORE_AMX`` is set when its first operator runs (oneDNN reads it once,
then), and it does not ask Linux (>= 5.16) for the permission to use AMX state
(``arch_prctl(ARCH_REQ_XCOMP_PERM)``), so the first AMX instruction dies with SIGILL.
``import frcnn_ops`` therefore, on a CPU with AMX-BF16 and unless ``FRCNN_NO_AMX=1``: requests
the permission, and with ``DNNL_MAX_CPU_ISA`` unset, sets it, runs one tiny convolution (so that
oneDNN reads it now) and removes it again: a child process inherits neither the permission
(exec clears it) nor the variable, which without the permission would kill its first bfloat16
convolution. If MXNet ran an operator before ``import frcnn_ops``, oneDNN has already fixed its
ISA and AMX stays off. float32 runs on the same kernels either way (AMX has no float32).
:data:`amx` says what happened.
"""
import json
import os
import sys
from contextlib import contextmanager

__all__ = ["PRECISIONS", "amx", "amx_for_mxnet_load", "check_precision", "check_bf16_cpu",
           "bf16_supported", "install", "convert_symbol", "matched_share"]

PRECISIONS = ("fp32", "bf16")

# The /proc/cpuinfo flag of the instruction set MXNet 1.9.1's oneDNN (v2.4) runs bfloat16
# convolutions and GEMMs on (avx512_core_bf16 kernels) without AMX; every CPU with amx_bf16
# also has avx512_bf16.
BF16_FLAG = "avx512_bf16"
AMX_FLAGS = ("amx_bf16", "amx_tile")
AMX_ISA = "AVX512_CORE_AMX"          # oneDNN's DNNL_MAX_CPU_ISA value that enables AMX
_SYS_ARCH_PRCTL = 158                # x86-64
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18

# What amx_for_mxnet_load did: "on" (oneDNN may use AMX in this process), or "off: <why>".
amx = "off: frcnn_ops has not imported MXNet"


# int8 needs weights and calibration images, so it is not a build-time precision
INT8_HINT = (" (int8 is made from a float32 net with its weights and a few calibration batches: "
             "frcnn_ops.int8.quantize(net, calib_data), or load_model(path, precision='int8', "
             "calib_data=...))")


def check_precision(precision: str, where: str = "precision") -> str:
    """``precision`` if it is 'fp32' or 'bf16', else a ValueError naming ``where``."""
    if precision not in PRECISIONS:
        raise ValueError("%s must be one of %s, got %r%s"
                         % (where, ", ".join(repr(p) for p in PRECISIONS), precision,
                            INT8_HINT if precision == "int8" else ""))
    return precision


def _set(env_var: str) -> bool:
    return os.environ.get(env_var, "") not in ("", "0")


def _fake_no_bf16():
    return _set("FRCNN_FAKE_NO_BF16")


def has_cpu_flag(flag: str, fake_absent: str) -> bool:
    """True when /proc/cpuinfo has ``flag`` and the test switch ``fake_absent`` is not set."""
    return not _set(fake_absent) and flag in cpu_flags()


def require_cpu_flag(precision: str, flag: str, isa: str, what: str, fake_absent: str) -> None:
    """Raises RuntimeError naming the missing instruction set ``isa`` (/proc/cpuinfo ``flag``)
    that ``precision`` runs ``what`` on, unless the CPU has it; ``fake_absent`` (an environment
    variable, tests only) makes it refuse as on a CPU without it."""
    if has_cpu_flag(flag, fake_absent):
        return
    raise RuntimeError(
        "precision='%s' needs a CPU with the %s instruction set (/proc/cpuinfo flag %s), which "
        "MXNet's oneDNN runs %s on; this CPU does not have it%s. Use precision='fp32'."
        % (precision, isa, flag, what,
           " (simulated: %s=1 is set)" % fake_absent if _set(fake_absent) else ""))


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set:
    """The set of CPU flags of /proc/cpuinfo (empty if unreadable)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_supported() -> bool:
    """True when the CPU has AVX512-BF16 (and FRCNN_FAKE_NO_BF16 is not set)."""
    return has_cpu_flag(BF16_FLAG, "FRCNN_FAKE_NO_BF16")


def _request_amx_permission():
    """arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA): None on success, else why not."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0:
        return None
    err = ctypes.get_errno()
    return "the kernel refused the AMX permission (arch_prctl: %s)" % os.strerror(err)


def _amx_decision(flags, env, mxnet_loaded, machine, request):
    """(state, value to give DNNL_MAX_CPU_ISA for MXNet's load or None). ``request`` asks the
    kernel for the AMX permission (returns None or why not); it is called only when oneDNN may
    use AMX in this process."""
    if env.get("FRCNN_NO_AMX", "") not in ("", "0"):
        return "off: FRCNN_NO_AMX is set", None
    if machine not in ("x86_64", "AMD64") or not sys.platform.startswith("linux"):
        return "off: not x86-64 Linux", None
    if not all(f in flags for f in AMX_FLAGS):
        return "off: this CPU has no AMX-BF16 (/proc/cpuinfo: amx_bf16, amx_tile)", None
    isa = env.get("DNNL_MAX_CPU_ISA")
    if isa is not None and "AMX" not in isa.upper():
        return "off: DNNL_MAX_CPU_ISA=%s" % isa, None
    why = request()   # also when the user set DNNL_MAX_CPU_ISA: oneDNN 2.4 would SIGILL
    if why:
        return "off: " + why, None
    if isa is None and mxnet_loaded:
        return ("on, unless MXNet ran an operator before import frcnn_ops (oneDNN reads "
                "DNNL_MAX_CPU_ISA at its first operator)"), AMX_ISA
    return "on", (AMX_ISA if isa is None else None)


@contextmanager
def amx_for_mxnet_load():
    """Wraps frcnn_ops' ``import mxnet``: enables oneDNN's AMX kernels when the CPU has them
    (the module docstring says how and why); sets :data:`amx`."""
    global amx
    import platform
    state, isa = _amx_decision(cpu_flags(), os.environ, _mxnet_loaded(),
                               platform.machine(), _request_amx_permission)
    amx = state
    if isa is not None:
        os.environ["DNNL_MAX_CPU_ISA"] = isa
    try:
        yield
        if isa is not None and _mxnet_loaded():
            _first_onednn_operator()
    finally:
        if isa is not None:
            os.environ.pop("DNNL_MAX_CPU_ISA", None)


def _mxnet_loaded():
    return sys.modules.get("mxnet") is not None   # None: an import that failed or was hidden


def _first_onednn_operator():
    """A 1x1 convolution: oneDNN reads DNNL_MAX_CPU_ISA at its first operator."""
    import mxnet as mx
    one = mx.nd.ones((1, 1, 1, 1))
    mx.nd.Convolution(one, one, kernel=(1, 1), num_filter=1, no_bias=True).wait_to_read()


def _warn_without_amx():
    """bf16 on a CPU with AMX that oneDNN is not using here: say so once (slower than fp32)."""
    if amx.startswith("on") or not all(f in cpu_flags() for f in AMX_FLAGS) or _fake_no_bf16():
        return
    if getattr(_warn_without_amx, "done", False):
        return
    _warn_without_amx.done = True
    import warnings
    warnings.warn("precision='bf16' without AMX (%s): oneDNN runs bfloat16 on AVX512-BF16, "
                  "which is slower than float32 on this CPU" % amx[len("off: "):],
                  RuntimeWarning, stacklevel=3)


def check_bf16_cpu() -> None:
    """Raises RuntimeError naming the missing instruction set unless the CPU has AVX512-BF16.

    ``FRCNN_FAKE_NO_BF16=1`` (for tests only) makes it refuse as on a CPU without it."""
    require_cpu_flag("bf16", BF16_FLAG, "AVX512-BF16", "bfloat16 convolutions",
                     "FRCNN_FAKE_NO_BF16")


def _is_frcnn_op(op):
    return op.startswith("frcnn_") or op.startswith("_frcnn_")


def convert_symbol(sym: "mxnet.sym.Symbol", data_names: "list[str]") -> "mxnet.sym.Symbol":
    """The float32 inference graph ``sym`` with convolutions and dense layers in bfloat16.

    The frcnn_* nodes are passed to AMP as excluded (float32, inputs cast to float32); the
    parameters stay float32 variables (cast in the graph: ``cast_optional_params=False``).
    """
    from mxnet.contrib import amp
    check_bf16_cpu()
    nodes = json.loads(sym.tojson())["nodes"]
    excluded = sorted({n["name"] for n in nodes if _is_frcnn_op(n["op"])})
    return amp.convert_symbol(sym, target_dtype="bfloat16", excluded_sym_names=excluded,
                              data_names=list(data_names), cast_optional_params=False)


def install(block: "mxnet.gluon.HybridBlock", precision: str) -> "mxnet.gluon.HybridBlock":
    """Makes ``block`` (a HybridBlock) build its graph in ``precision``: for 'bf16' its cached
    graph is converted by :func:`convert_symbol`, it hybridizes itself on the first eager call
    (AMP works on graphs) and ``export`` keeps the casts (``remove_amp_cast=False``), so the
    exported model reloads with SymbolBlock.imports in bfloat16. Returns the block."""
    import types
    from mxnet.gluon import HybridBlock

    check_precision(precision)
    if precision == "bf16":
        check_bf16_cpu()
        _warn_without_amx()
    block._frcnn_precision = precision
    if getattr(block, "_frcnn_bf16_installed", False):
        block._clear_cached_op()
        return block
    cls = type(block)

    def _get_graph(self, *args):
        if not self._cached_graph and self._frcnn_precision == "bf16":
            inputs, sym = cls._get_graph(self, *args)
            self._cached_graph = inputs, convert_symbol(sym, [i.name for i in inputs])
        return cls._get_graph(self, *args)

    def forward(self, x, *args):
        if self._frcnn_precision == "bf16" and not self._active:
            import mxnet as mx
            if isinstance(x, mx.nd.NDArray):
                self.hybridize()
        return cls.forward(self, x, *args)

    def export(self, path, epoch=0, remove_amp_cast=None):
        if remove_amp_cast is None:
            remove_amp_cast = self._frcnn_precision != "bf16"
        return HybridBlock.export(self, path, epoch, remove_amp_cast=remove_amp_cast)

    block._get_graph = types.MethodType(_get_graph, block)
    block.forward = types.MethodType(forward, block)
    block.export = types.MethodType(export, block)
    block._frcnn_bf16_installed = True
    block._clear_cached_op()
    return block


def _iou(box, boxes):
    import numpy as np
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def matched_share(ref: tuple, other: tuple, iou: float = 0.9,
                  score_atol: float = 0.02) -> "tuple[float, int]":
    """The share of ``ref``'s detections (score > 0, image 0) that ``other`` has too: same
    class, IoU >= ``iou``, score within ``score_atol``; each of ``other``'s used once (greedy,
    highest reference score first). ``ref`` and ``other`` are (ids, scores, bboxes) as the
    model returns them (NDArrays or arrays). Returns (share, number of reference detections)."""
    import numpy as np

    def valid(out):
        ids, scores, boxes = (np.asarray(v.asnumpy() if hasattr(v, "asnumpy") else v)[0]
                              for v in out)
        keep = scores[:, 0] > 0
        return ids[keep, 0], scores[keep, 0], boxes[keep]

    (ia, sa, ba), (ib, sb, bb) = valid(ref), valid(other)
    if len(ia) == 0:
        return (1.0 if len(ib) == 0 else 0.0), 0
    used = np.zeros(len(ib), bool)
    hits = 0
    for k in np.argsort(-sa, kind="stable"):
        cand = np.flatnonzero((ib == ia[k]) & ~used & (np.abs(sb - sa[k]) <= score_atol))
        if len(cand) == 0:
            continue
        ious = _iou(ba[k], bb[cand])
        best = int(np.argmax(ious))
        if ious[best] >= iou:
            used[cand[best]] = True
            hits += 1
    return hits / len(ia), len(ia)
