"""What this machine has: the optional libraries a case needs, probed once each on demand.

A case names its needs (``Comparison.needs``); frcnn-bench leaves out a case whose needs are
missing and prints why (``Env.notes``), the pytest-benchmark suites skip it with the same reason.
"""
import warnings

# need -> the note printed when it is missing (the probe's error follows in parentheses)
MISSING = {
    "mxnet": "MXNet not available: the mx.nd.contrib, GluonCV and model rows are skipped",
    "gluoncv": "GluonCV not importable: its rows (box_decode, clip_boxes, proposal, model) are "
               "skipped",
    "torchvision": "torchvision not importable: its rows are skipped",
    "frcnn_model": "frcnn_model not importable: the model row is skipped",
    "bf16": "this CPU has no AVX512-BF16 (avx512_bf16): the bf16 model row is skipped",
    "cupy_gpu": "no GPU for the CuPy path",
    "torch_cuda": "torch has no CUDA: the torchvision GPU rows are skipped",
}


def _mxnet():
    import frcnn_ops
    if not frcnn_ops.mxnet_available:
        raise ImportError("mxnet is not importable")
    import mxnet
    return mxnet


def _gluoncv():
    import gluoncv
    return gluoncv


def _torchvision():
    import torch
    import torchvision
    return torch, torchvision


def _frcnn_model():
    from .model import frcnn_model_package
    return frcnn_model_package()


def _bf16():
    from ... import bf16
    if not bf16.bf16_supported():
        raise RuntimeError("")
    return True


def _cupy_gpu():
    why = gpu_available()
    if why:
        raise RuntimeError(why)
    import cupy
    return cupy


# a need that depends on another is probed only when that one is here (no note of its own)
REQUIRES = {"gluoncv": "mxnet", "frcnn_model": "mxnet", "torch_cuda": "torchvision"}


class Env:
    """Optional libraries, imported on demand; a missing one becomes a note, not an error."""

    def __init__(self):
        self.notes = []
        self._mods = {}
        self._why = {}

    def get(self, name):
        """The module (or True) behind a need, or None when it is missing."""
        if name in self._mods:
            return self._mods[name]
        if name in REQUIRES and self.get(REQUIRES[name]) is None:
            self._why[name] = self._why[REQUIRES[name]]
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._mods[name] = PROBES[name]()
        except Exception as e:  # noqa: BLE001 - ImportError, or a broken install
            self._mods[name] = None
            detail = str(e).splitlines()[0] if str(e) else ""
            self._why[name] = ("%s (%s: %s)" % (MISSING[name], type(e).__name__, detail)
                               if detail or isinstance(e, ImportError) else MISSING[name])
            self.notes.append(self._why[name])
        return self._mods[name]

    def loaded(self, name):
        """The module behind a need if it was probed and is here; None otherwise (no probe)."""
        return self._mods.get(name)

    def missing(self, needs):
        """'' when every need is here, else why not (the first missing one, probed in order)."""
        for name in needs:
            if self.get(name) is None:
                return self._why[name]
        return ""

    mx = property(lambda self: self.get("mxnet"))
    gluoncv = property(lambda self: self.get("gluoncv"))
    torchvision = property(lambda self: self.get("torchvision"))   # (torch, torchvision)
    frcnn_model = property(lambda self: self.get("frcnn_model"))


def _torch_cuda():
    import torch
    if not torch.cuda.is_available():
        raise RuntimeError("")
    return True


PROBES = dict(mxnet=_mxnet, gluoncv=_gluoncv, torchvision=_torchvision, frcnn_model=_frcnn_model,
              bf16=_bf16, cupy_gpu=_cupy_gpu, torch_cuda=_torch_cuda)


def gpu_available():
    """'' when CuPy sees a CUDA device and frcnn_ops has CUDA kernels, else why not."""
    try:
        import cupy as cp
    except Exception as e:  # noqa: BLE001
        return "CuPy is not importable (%s)" % e
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            return "CuPy sees no CUDA device"
    except Exception as e:  # noqa: BLE001 - no driver
        return "CuPy sees no CUDA device (%s)" % str(e).splitlines()[0]
    import frcnn_ops
    if not frcnn_ops.build_info()["cuda"]:
        return "this frcnn_ops build has no CUDA kernels (rebuild with nvcc, FRCNN_CUDA=1)"
    return ""
