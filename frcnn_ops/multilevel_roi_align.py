"""multilevel_roi_align: GluonCV's FPN pyramid roi pooling (FasterRCNN._pyramid_roi_feats,
align mode) as one op."""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from ._dispatch import ShapeOnly, Tensor, run, run_backward
from .roi_align import PooledSize

__all__ = ["multilevel_roi_align", "multilevel_roi_align_backward", "multilevel_roi_levels"]


def multilevel_roi_align(rois: Tensor, features: Sequence[Tensor], pooled_size: PooledSize,
                         spatial_scales: Optional[Sequence[float]] = None,
                         sample_ratio: int = 2, min_level: int = 2, max_level: int = 5,
                         canonical_scale: float = 224.0, canonical_level: int = 4,
                         eps: float = 1e-6, aligned: bool = False,
                         deterministic: bool = False) -> Tensor:
    """FPN roi pooling: each roi is pooled (ROIAlign) from the feature map of its pyramid
    level only, in one call; equal to GluonCV's ``FasterRCNN._pyramid_roi_feats`` in align
    mode (``contrib.ROIAlign`` on each level with the rois of other levels masked to -1, then
    summed) to float rounding.

    The level of a roi ``[b, x1, y1, x2, y2]`` is GluonCV's, evaluated in the rois' dtype
    (float16: in float32)::

        w = x2 - x1 + 1;  h = y2 - y1 + 1
        level = clip(floor(canonical_level + log2(sqrt(w * h) / canonical_scale + eps)),
                     min_level, max_level)

    and it reads ``features[level - min_level]`` at ``spatial_scales[level - min_level]``
    with ``contrib.ROIAlign``'s sampling (see :func:`frcnn_ops.roi_align`). A roi whose level
    is NaN (NaN coordinates, or ``w * h < 0``) pools to zeros, as in GluonCV (it matches no
    level there); so does a roi with an invalid batch index (e.g. -1, GluonCV's padding).
    Feature maps past ``max_level - min_level`` (GluonCV's P6, which its RCNN head does not
    use) may be passed: they are not read and get a zero gradient. GluonCV raises IndexError
    when fewer maps than levels are given; here that is a ValueError naming the op.

    GluonCV's ``max_stage`` above 5 is clipped to 5 (``max_stage - 1``) before use: pass the
    clipped value as ``max_level`` (2..5 for its FPN models). Only align mode is provided
    (GluonCV's ``roi_mode='pool'`` is ROIPooling).

    Gradient: w.r.t. every feature map (zero for ``rois``); the CPU backward is
    deterministic (bitwise the same for any thread count); on the GPU, as for
    :func:`frcnn_ops.roi_align`, atomics unless ``deterministic`` or FRCNN_DETERMINISTIC=1.
    The level's ``log2`` is the C library's (CPU) or CUDA's: a roi within a rounding error of a
    level boundary could in principle land on a different level than MXNet's composite.

    Args:
        rois (Tensor[R, 5]): ``[batch_index, x1, y1, x2, y2]`` in image coordinates.
        features (list of Tensor[N, C, H_i, W_i]): one map per level from ``min_level`` (at
            most 8), same N, C and dtype as rois.
        pooled_size (int or (int, int)): output (ph, pw).
        spatial_scales (list of float): one per feature map; default ``2 ** -(min_level + i)``
            (strides 4, 8, 16, 32, ... from level 2).
        sample_ratio (int): samples per bin and axis (GluonCV: 2); <= 0: adaptive.
        min_level, max_level (int): the levels rois are clipped to (GluonCV: 2 and 5).
        canonical_scale (float), canonical_level (int), eps (float): the level rule's
            constants (GluonCV: 224, 4, 1e-6).
        aligned (bool): Detectron2's half-pixel shift (GluonCV: False).
        deterministic (bool): GPU backward in a fixed order (see above).

    Returns:
        Tensor[R, C, ph, pw] of the kind and dtype of ``rois``: MXNet NDArray or Symbol (the
        registered op ``frcnn_multilevel_roi_align(rois, *features, spatial_scales=...)``),
        NumPy array or CuPy array (forward only; the gradient is
        :func:`multilevel_roi_align_backward`).
    """
    return run("frcnn_multilevel_roi_align", dict(rois=rois, features=features),
               _attrs(locals()))


def multilevel_roi_align_backward(grad: Tensor, rois: Tensor,
                                  feature_shapes: Sequence[Sequence[int]],
                                  pooled_size: PooledSize,
                                  spatial_scales: Optional[Sequence[float]] = None,
                                  sample_ratio: int = 2, min_level: int = 2, max_level: int = 5,
                                  canonical_scale: float = 224.0, canonical_level: int = 4,
                                  eps: float = 1e-6, aligned: bool = False,
                                  deterministic: bool = False) -> List[Tensor]:
    """Gradients of :func:`multilevel_roi_align` w.r.t. every feature map, for NumPy and CuPy
    arrays (MXNet computes them through autograd).

    Args:
        grad (Tensor[R, C, ph, pw]): gradient w.r.t. the pooled output.
        rois (Tensor[R, 5]): the forward call's rois.
        feature_shapes (list of (N, C, H_i, W_i)): shapes of the forward call's features.
        the rest: the forward call's attributes.

    Returns:
        list of Tensor[N, C, H_i, W_i]: one gradient per feature map (overwritten, zero where
        no roi reads).
    """
    grads = run_backward("frcnn_multilevel_roi_align", "multilevel_roi_align_backward", grad,
                         dict(rois=rois, features=[ShapeOnly(s) for s in feature_shapes]),
                         _attrs(locals()))
    return grads if isinstance(grads, list) else [grads]


def multilevel_roi_levels(rois: np.ndarray, min_level: int = 2, max_level: int = 5,
                          canonical_scale: float = 224.0, canonical_level: int = 4,
                          eps: float = 1e-6) -> np.ndarray:
    """The FPN level of every roi (NumPy; int32, -1 where the level is NaN), by the rule of
    :func:`multilevel_roi_align`."""
    from ._lib import _C
    return _C.multilevel_roi_levels(np.ascontiguousarray(rois), int(min_level), int(max_level),
                                    float(canonical_scale), int(canonical_level), float(eps))


def _attrs(args: dict) -> dict:
    """The attributes of a call (spatial_scales: None -> the op's default, one per map)."""
    attrs = {k: v for k, v in args.items()
             if k not in ("rois", "features", "feature_shapes", "grad")}
    attrs["deterministic"] = attrs["deterministic"] or None
    return attrs
