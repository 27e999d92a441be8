"""Plain NumPy reference implementations of every op, written from SEMANTICS.md.

Slow and simple on purpose (one loop or one vectorised expression per rule); the tests
hold the kernels to them.
"""
from .box_coder import box_decode, clip_boxes  # noqa: F401
from .proposal import nms, proposal  # noqa: F401
from .roi_align import roi_align, roi_align_backward  # noqa: F401
from .multilevel_roi_align import (multilevel_roi_align, multilevel_roi_align_backward,  # noqa: F401
                                   roi_levels)
