"""NumPy reference of roi_align (= mx.nd.contrib.ROIAlign), written from SEMANTICS.md.

Plain loops over rois, bins and samples; vectorised over channels only. Computed in the
input dtype like the kernels. Policies beyond MXNet (see frcnn_ops.roi_align): a batch index
outside [0, N), a non-finite roi coordinate, or (aligned mode) an empty adaptive grid gives
an all-zero roi; a NaN sample coordinate counts as out of the map.
"""
import math

import numpy as np

MAX_ADAPTIVE_GRID = 16384


def _pair(v):
    if np.ndim(v) == 0:
        return int(v), int(v)
    h, w = v
    return int(h), int(w)


def _grid(size, pooled, sample_ratio):
    if sample_ratio > 0:
        return sample_ratio
    g = math.ceil(size / pooled) if np.isfinite(size) else MAX_ADAPTIVE_GRID
    return int(min(max(g, 0), MAX_ADAPTIVE_GRID))


def _geometry(roi, num_images, pooled, spatial_scale, sample_ratio, aligned, t):
    """(batch or -1, start_h, start_w, bin_h, bin_w, grid_h, grid_w) in dtype t."""
    ph, pw = pooled
    b = roi[0]
    valid = bool(-1 < b < num_images) and bool(np.isfinite(roi[1:]).all())
    scale = t(np.float32(spatial_scale))  # the attribute is a float32, as in MXNet
    off = t(0.5) if aligned else t(0)
    x1, y1, x2, y2 = (t(v) * scale - off for v in roi[1:])
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = max(roi_w, t(1)), max(roi_h, t(1))
    bin_h, bin_w = roi_h / t(ph), roi_w / t(pw)
    gh, gw = _grid(roi_h, ph, sample_ratio), _grid(roi_w, pw, sample_ratio)
    if gh == 0 or gw == 0:
        valid = False
    return (int(b) if valid else -1), y1, x1, bin_h, bin_w, gh, gw


def _axis(y, n, t):
    """Bilinear taps along one axis: [(index, weight), ...] (empty when outside [-1, n])."""
    if not (-1 <= y <= n):  # also NaN
        return []
    y = max(y, t(0))
    lo = int(y)
    if lo >= n - 1:
        lo = hi = n - 1
        y = t(lo)
    else:
        hi = lo + 1
    ly = y - t(lo)
    return [(lo, t(1) - ly), (hi, ly)]


def _samples(start, i, bin_size, grid, n, t):
    out = []
    for k in range(grid):
        y = start + t(i) * bin_size + t(np.float32(k + 0.5)) * bin_size / t(grid)
        out.append(_axis(y, n, t))
    return out


def _bins(data_shape, rois, pooled_size, spatial_scale, sample_ratio, position_sensitive,
          aligned, t):
    """Yields (roi index, batch, i, j, [(channel or None, y, x, weight), ...]) per bin."""
    N, C, H, W = data_shape
    ph, pw = pooled_size
    for r in range(rois.shape[0]):
        b, sh, sw, bh, bw, gh, gw = _geometry(rois[r], N, pooled_size, spatial_scale,
                                              sample_ratio, aligned, t)
        if b < 0:
            continue
        count = t(gh * gw)
        for i in range(ph):
            ys = _samples(sh, i, bh, gh, H, t)
            for j in range(pw):
                xs = _samples(sw, j, bw, gw, W, t)
                taps = []
                for ty in ys:
                    for tx in xs:
                        for (y, wy) in ty:
                            for (x, wx) in tx:
                                taps.append((y, x, wy * wx / count))
                yield r, b, i, j, taps


def roi_align(data, rois, pooled_size, spatial_scale, sample_ratio=-1,
              position_sensitive=False, aligned=False):
    data = np.asarray(data)
    rois = np.asarray(rois, dtype=data.dtype)
    t = data.dtype.type
    N, C, H, W = data.shape
    ph, pw = _pair(pooled_size)
    c_out = C // (ph * pw) if position_sensitive else C
    out = np.zeros((rois.shape[0], c_out, ph, pw), data.dtype)
    chans = np.arange(c_out)
    for r, b, i, j, taps in _bins(data.shape, rois, (ph, pw), spatial_scale, sample_ratio,
                                  position_sensitive, aligned, t):
        ci = chans * ph * pw + i * pw + j if position_sensitive else chans
        acc = np.zeros(c_out, data.dtype)
        for (y, x, w) in taps:
            acc += w * data[b, ci, y, x]
        out[r, :, i, j] = acc
    return out


def roi_align_backward(grad, rois, data_shape, pooled_size, spatial_scale, sample_ratio=-1,
                       position_sensitive=False, aligned=False):
    """Gradient w.r.t. data of (roi_align(data, rois, ...) * grad).sum()."""
    grad = np.asarray(grad)
    rois = np.asarray(rois, dtype=grad.dtype)
    t = grad.dtype.type
    ph, pw = _pair(pooled_size)
    gd = np.zeros(data_shape, grad.dtype)
    c_out = grad.shape[1]
    chans = np.arange(c_out)
    for r, b, i, j, taps in _bins(data_shape, rois, (ph, pw), spatial_scale, sample_ratio,
                                  position_sensitive, aligned, t):
        ci = chans * ph * pw + i * pw + j if position_sensitive else chans
        for (y, x, w) in taps:
            gd[b, ci, y, x] += w * grad[r, :, i, j]
    return gd
