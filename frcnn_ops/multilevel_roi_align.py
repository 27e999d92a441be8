"""multilevel_roi_align: GluonCV's FPN pyramid roi pooling (FasterRCNN._pyramid_roi_feats,
align mode) as one op."""
from . import _dispatch
from ._lib import _C
from .roi_align import _pooled

__all__ = ["multilevel_roi_align", "multilevel_roi_align_backward", "multilevel_roi_levels"]

OP = "frcnn_multilevel_roi_align"


def _scales(spatial_scales, n, min_level):
    if spatial_scales is None:
        return [2.0 ** -(min_level + i) for i in range(n)]
    try:
        return [float(s) for s in spatial_scales]
    except TypeError:
        return [float(spatial_scales)]


def _args(pooled_size, scales, sample_ratio, min_level, max_level, canonical_scale,
          canonical_level, eps, aligned):
    return (_pooled(pooled_size), scales, int(sample_ratio), int(min_level), int(max_level),
            float(canonical_scale), int(canonical_level), float(eps), bool(aligned))


def _features(features):
    if not isinstance(features, (list, tuple)):
        raise TypeError("%s: features must be a list or tuple of feature maps (one per level), "
                        "got %s" % (OP, type(features).__name__))
    return list(features)


def multilevel_roi_align(rois, features, pooled_size, spatial_scales=None, sample_ratio=2,
                         min_level=2, max_level=5, canonical_scale=224.0, canonical_level=4,
                         eps=1e-6, aligned=False, deterministic=False):
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
    features = _features(features)
    named = {"features[%d]" % i: f for i, f in enumerate(features)}
    kind = _dispatch.array_kind(OP, rois=rois, **named)
    scales = _scales(spatial_scales, len(features), int(min_level))
    if kind in ("ndarray", "symbol"):
        F = _dispatch.mx_namespace(kind)
        kw = dict(pooled_size=tuple(_pooled(pooled_size)), spatial_scales=tuple(scales),
                  sample_ratio=sample_ratio, min_level=min_level, max_level=max_level,
                  canonical_scale=canonical_scale, canonical_level=canonical_level, eps=eps,
                  aligned=aligned)
        if deterministic:
            kw["deterministic"] = True
        return F.frcnn_multilevel_roi_align(rois, *features, **kw)
    args = _args(pooled_size, scales, sample_ratio, min_level, max_level, canonical_scale,
                 canonical_level, eps, aligned)
    shapes = [list(f.shape) for f in features]
    if kind == "numpy":
        _C.multilevel_roi_align_output_shape(list(rois.shape), shapes, *args)
        arrays = _dispatch.numpy_inputs(rois, *features)
        return _C.multilevel_roi_align(arrays[0], arrays[1:], *args)
    dev = _dispatch.device(kind)
    arrays, code = dev.inputs(OP, rois=rois, **named)
    rois, features = arrays[0], arrays[1:]
    out_shape = _C.multilevel_roi_align_output_shape(list(rois.shape), shapes, *args)
    out = dev.empty(out_shape, rois.dtype)
    dev.lib.multilevel_roi_align_gpu(code, dev.ptr(rois), [dev.ptr(f) for f in features],
                                     dev.ptr(out), list(rois.shape), shapes, *args,
                                     dev.stream())
    return out


def multilevel_roi_align_backward(grad, rois, feature_shapes, pooled_size, spatial_scales=None,
                                  sample_ratio=2, min_level=2, max_level=5,
                                  canonical_scale=224.0, canonical_level=4, eps=1e-6,
                                  aligned=False, deterministic=False):
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
    kind = _dispatch.backward_kind(OP, "multilevel_roi_align_backward", grad=grad, rois=rois)
    shapes = [[int(d) for d in s] for s in feature_shapes]
    scales = _scales(spatial_scales, len(shapes), int(min_level))
    args = _args(pooled_size, scales, sample_ratio, min_level, max_level, canonical_scale,
                 canonical_level, eps, aligned)
    out_shape = _C.multilevel_roi_align_output_shape(list(rois.shape), shapes, *args)
    if tuple(grad.shape) != tuple(out_shape):
        raise ValueError("%s: grad must have the output's shape %s, got %s" % (
            OP, tuple(out_shape), tuple(grad.shape)))
    if kind == "numpy":
        grad, rois = _dispatch.numpy_inputs(grad, rois)
        return _C.multilevel_roi_align_backward(grad, rois, shapes, *args)
    dev = _dispatch.device(kind)
    (grad, rois), code = dev.inputs(OP, grad=grad, rois=rois)
    outs = [dev.empty(s, grad.dtype) for s in shapes]
    dev.lib.multilevel_roi_align_backward_gpu(code, dev.ptr(grad), dev.ptr(rois),
                                              [dev.ptr(o) for o in outs], list(rois.shape),
                                              shapes, *args, bool(deterministic), dev.stream())
    return outs


def multilevel_roi_levels(rois, min_level=2, max_level=5, canonical_scale=224.0,
                          canonical_level=4, eps=1e-6):
    """The FPN level of every roi (NumPy; int32, -1 where the level is NaN), by the rule of
    :func:`multilevel_roi_align`."""
    import numpy as np
    rois = np.ascontiguousarray(rois)
    return _C.multilevel_roi_levels(rois, int(min_level), int(max_level), float(canonical_scale),
                                    int(canonical_level), float(eps))
