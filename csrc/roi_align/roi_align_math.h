// Per-roi and per-sample math of ROIAlign, written once for the CPU and the CUDA kernels.
// Follows MXNet's contrib.ROIAlign (src/operator/contrib/roi_align.cc) expression for
// expression for the sample coordinates and the bilinear weights.
//
// Policies where MXNet has none (documented in frcnn_ops/roi_align.py):
// - a batch index outside [0, N) (or NaN) gives an all-zero roi and no gradient;
// - a roi with a non-finite coordinate (NaN or +-inf) is treated the same way;
// - a sample whose coordinate is NaN (overflowed geometry) contributes 0 like an
//   out-of-map sample, so no integer conversion of NaN ever happens;
// - the adaptive grid (sample_ratio <= 0) is ceil(roi size / pooled size) capped to
//   kMaxAdaptiveGrid per axis (MXNet: int overflow); in aligned mode a roi of size <= 0
//   has a grid of 0 and gives zeros (MXNet aborts; torchvision gives zeros too).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/host_device.h"

namespace frcnn {

// Attributes of roi_align, already parsed and checked.
struct RoiAlignParams {
  int pooled_h = 1;
  int pooled_w = 1;
  float spatial_scale = 1.f;
  int sample_ratio = -1;        // <= 0: adaptive, ceil(roi size / pooled size)
  bool position_sensitive = false;
  bool aligned = false;         // corners shifted by -0.5 (Detectron2), no size clamp
};

constexpr int kMaxAdaptiveGrid = 16384;
// Most bins per roi (pooled_h * pooled_w, e.g. 256 x 256): the CPU kernels keep a tile of
// bins x 256 bytes per thread, the CUDA kernels index bins with int.
constexpr int64_t kMaxBins = int64_t(1) << 16;

// Geometry of one roi in feature-map coordinates, shared by all its channels.
template <typename A>
struct RoiGeom {
  A start_h, start_w;   // top-left corner
  A bin_h, bin_w;       // bin size
  int grid_h, grid_w;   // samples per bin along each axis
  A count;              // samples per bin (the mean's divisor), >= 1
  int64_t batch;        // image index; -1: the roi is empty (all zero)
};

template <typename A>
HOST_DEVICE_INLINE bool finite_val(const A x) {
  // x - x is NaN for NaN and +-inf; works for float and double on host and device
  return (x - x) == (x - x);
}

// Adaptive grid along one axis: ceil(size / pooled), NaN-safe and capped.
template <typename A>
HOST_DEVICE_INLINE int adaptive_grid(const A size, const int pooled) {
  using std::ceil;
  const A g = ceil(size / static_cast<A>(pooled));
  if (!(g > A(0))) return 0;  // also NaN
  if (!(g < A(kMaxAdaptiveGrid))) return kMaxAdaptiveGrid;
  return static_cast<int>(g);
}

// roi: [batch_index, x1, y1, x2, y2] in image coordinates.
template <typename A>
HOST_DEVICE_INLINE RoiGeom<A> roi_geometry(const A roi[5], const int64_t num_images,
                                           const RoiAlignParams& p) {
  RoiGeom<A> g;
  const A b = roi[0];
  // MXNet truncates the batch index to int: valid iff -1 < b < N (false for NaN).
  const bool valid = b > A(-1) && b < static_cast<A>(num_images) && finite_val(roi[1]) &&
                     finite_val(roi[2]) && finite_val(roi[3]) && finite_val(roi[4]);
  g.batch = valid ? static_cast<int64_t>(b) : -1;
  const A scale = static_cast<A>(p.spatial_scale);
  const A offset = p.aligned ? A(0.5) : A(0);
  g.start_w = roi[1] * scale - offset;
  g.start_h = roi[2] * scale - offset;
  const A end_w = roi[3] * scale - offset;
  const A end_h = roi[4] * scale - offset;
  A roi_w = end_w - g.start_w;
  A roi_h = end_h - g.start_h;
  if (!p.aligned) {  // malformed rois are forced to 1x1 (std::max(x, 1) as in MXNet)
    roi_w = roi_w < A(1) ? A(1) : roi_w;
    roi_h = roi_h < A(1) ? A(1) : roi_h;
  }
  g.bin_h = roi_h / static_cast<A>(p.pooled_h);
  g.bin_w = roi_w / static_cast<A>(p.pooled_w);
  g.grid_h = p.sample_ratio > 0 ? p.sample_ratio : adaptive_grid(roi_h, p.pooled_h);
  g.grid_w = p.sample_ratio > 0 ? p.sample_ratio : adaptive_grid(roi_w, p.pooled_w);
  const A count = static_cast<A>(g.grid_h) * static_cast<A>(g.grid_w);
  g.count = count > A(0) ? count : A(1);
  if (g.grid_h == 0 || g.grid_w == 0) g.batch = -1;  // no samples: zeros
  return g;
}

// Coordinate of sample i of bin `bin` along one axis (MXNet's expression, same order).
template <typename A>
HOST_DEVICE_INLINE A sample_coord(const A start, const int bin, const A bin_size, const int i,
                                  const int grid) {
  return start + static_cast<A>(bin) * bin_size +
         static_cast<A>(static_cast<float>(i) + .5f) * bin_size / static_cast<A>(grid);
}

// Bilinear interpolation along one axis of length n: the sample at coordinate y reads
// index lo with weight w_lo and index hi with weight w_hi. Returns false (weights 0) when
// the sample lies outside [-1, n] (or is NaN): it still counts in the bin's mean.
template <typename A>
HOST_DEVICE_INLINE bool axis_weights(A y, const int n, int* lo, int* hi, A* w_lo, A* w_hi) {
  if (!(y >= A(-1) && y <= static_cast<A>(n))) {
    *lo = *hi = 0;
    *w_lo = *w_hi = A(0);
    return false;
  }
  if (y <= A(0)) y = A(0);
  int l = static_cast<int>(y);
  int h;
  if (l >= n - 1) {
    h = l = n - 1;
    y = static_cast<A>(l);
  } else {
    h = l + 1;
  }
  const A ly = y - static_cast<A>(l);
  *lo = l;
  *hi = h;
  *w_lo = A(1) - ly;
  *w_hi = ly;
  return true;
}

// Position-sensitive input channel of output channel c at bin (i, j).
HOST_DEVICE_INLINE int64_t ps_channel(const int64_t c, const int i, const int j,
                                      const int pooled_h, const int pooled_w) {
  return (c * pooled_h + i) * pooled_w + j;
}

}  // namespace frcnn
