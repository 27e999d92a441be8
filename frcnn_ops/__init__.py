"""frcnn_ops: fast, exact Faster R-CNN operators for MXNet/Gluon (CPU and CUDA).

Importing the package loads the op library into MXNet once (when MXNet is installed), so
that ``mx.nd.frcnn_*`` and ``mx.sym.frcnn_*`` exist, also inside hybridized blocks and
SymbolBlocks. Without MXNet the NumPy and CuPy API still works.
"""
from . import _lib
from ._dispatch import emulate_cuda, release_graph_workspaces
from . import bf16
from . import int8
from ._lib import _C
from .box_coder import box_decode, box_decode_backward, clip_boxes, clip_boxes_backward
from .gluoncv_patch import patch_gluoncv
from .proposal import multilevel_proposal, nms, nms_backward, proposal
from .multilevel_roi_align import (multilevel_roi_align, multilevel_roi_align_backward,
                                   multilevel_roi_levels)
from .roi_align import roi_align, roi_align_backward

__version__ = "0.1.0"
__all__ = ["box_decode", "clip_boxes", "proposal", "multilevel_proposal", "nms", "roi_align",
           "box_decode_backward", "clip_boxes_backward", "roi_align_backward", "nms_backward",
           "multilevel_roi_align", "multilevel_roi_align_backward", "multilevel_roi_levels",
           "patch_gluoncv",
           "build_info", "get_num_threads", "set_num_threads", "emulate_cuda",
           "release_graph_workspaces", "release_cpu_scratch", "mxnet_available", "bf16", "int8"]


def _try_load_mxnet():
    try:
        import mxnet  # noqa: F401
    except ImportError:
        return False
    _lib.load_into_mxnet()  # a version mismatch raises ImportError with its reason
    return True


with bf16.amx_for_mxnet_load():   # oneDNN's AMX kernels for bf16: see frcnn_ops/bf16.py
    mxnet_available = _try_load_mxnet()


def build_info() -> dict:
    """What this build contains.

    Returns:
        dict: ``version``, ``cuda`` (CUDA kernels compiled in), ``cuda_archs``, ``mxnet_lib``
        (the MXNet op library was built), ``mxnet_version`` (the running MXNet, or None),
        ``mxnet_built_version``, ``lib_api_version``, ``build_type``, ``native``,
        ``sanitize``, ``num_threads``.
    """
    cfg = _lib.config
    running = None
    if mxnet_available:
        import mxnet as mx
        running = mx.__version__
    return {
        "version": __version__,
        "cuda": bool(cfg.cuda),
        "cuda_archs": cfg.cuda_archs,
        "mxnet_lib": bool(cfg.mxnet_lib),
        "mxnet_version": running,
        "mxnet_built_version": cfg.mxnet_version,
        "lib_api_version": cfg.lib_api_version,
        "build_type": cfg.build_type,
        "native": bool(cfg.native),
        "sanitize": cfg.sanitize,
        "num_threads": get_num_threads(),
    }


def get_num_threads() -> int:
    """Threads the CPU kernels use (FRCNN_NUM_THREADS, else OMP_NUM_THREADS, else all cores)."""
    return _C.get_num_threads()


def release_cpu_scratch() -> int:
    """Frees the CPU kernels' cached scratch buffers (ROIAlign's per-thread rings of map rows
    in channel blocks, kept between calls up to 512 MiB: csrc/common/scratch.h) in the
    NumPy and the MXNet libraries; returns the bytes freed."""
    freed = _C.release_cpu_scratch()
    if mxnet_available and _lib.config.mxnet_lib:
        import ctypes
        fn = _lib.mx_lib_handle().frcnn_release_cpu_scratch
        fn.restype = ctypes.c_size_t
        freed += fn()
    return freed


def set_num_threads(n: int) -> None:
    """Sets the CPU kernels' thread count for this process; n <= 0 restores the default."""
    n = int(n)
    _C.set_num_threads(n)
    if mxnet_available and _lib.config.mxnet_lib:
        _lib.mx_lib_handle().frcnn_set_num_threads(n)
