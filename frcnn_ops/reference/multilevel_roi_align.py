"""NumPy reference of multilevel_roi_align: GluonCV's FPN level rule in the rois' dtype, then
reference roi_align per level on that level's rois (other rows zero)."""
import numpy as np

from .roi_align import roi_align, roi_align_backward


def roi_levels(rois, min_level=2, max_level=5, canonical_scale=224.0, canonical_level=4,
               eps=1e-6):
    """Level of each roi (int; -1 where it is NaN), as GluonCV's _pyramid_roi_feats."""
    rois = np.asarray(rois)
    t = rois.dtype.type
    with np.errstate(invalid="ignore", divide="ignore"):
        w = rois[:, 3] - rois[:, 1] + t(1)
        h = rois[:, 4] - rois[:, 2] + t(1)
        s = np.sqrt(w * h) / t(canonical_scale) + t(eps)
        lv = np.floor(t(canonical_level) + np.log2(s))
    lv = np.where(lv > max_level, t(max_level), np.where(lv < min_level, t(min_level), lv))
    return np.where(np.isnan(lv), -1, np.nan_to_num(lv)).astype(np.int64)


def _levels(rois, n, min_level, max_level, **rule):
    lv = roi_levels(rois, min_level, max_level, **rule)
    return [np.nonzero(lv == min_level + k)[0] for k in range(n)]


def multilevel_roi_align(rois, features, pooled_size, spatial_scales, sample_ratio=2,
                         min_level=2, max_level=5, aligned=False, **rule):
    rois = np.asarray(rois)
    C = features[0].shape[1]
    ph, pw = (pooled_size, pooled_size) if np.ndim(pooled_size) == 0 else pooled_size
    out = np.zeros((rois.shape[0], C, ph, pw), features[0].dtype)
    for k, idx in enumerate(_levels(rois, len(features), min_level, max_level, **rule)):
        if len(idx):
            out[idx] = roi_align(features[k], rois[idx], (ph, pw), spatial_scales[k],
                                 sample_ratio, aligned=aligned)
    return out


def multilevel_roi_align_backward(grad, rois, feature_shapes, pooled_size, spatial_scales,
                                  sample_ratio=2, min_level=2, max_level=5, aligned=False,
                                  **rule):
    rois = np.asarray(rois)
    ph, pw = (pooled_size, pooled_size) if np.ndim(pooled_size) == 0 else pooled_size
    out = []
    for k, idx in enumerate(_levels(rois, len(feature_shapes), min_level, max_level, **rule)):
        out.append(roi_align_backward(grad[idx], rois[idx], feature_shapes[k], (ph, pw),
                                      spatial_scales[k], sample_ratio, aligned=aligned))
    return out
