// FPN level assignment of multilevel_roi_align, written once for the CPU and the CUDA kernels.
// Follows GluonCV's FasterRCNN._pyramid_roi_feats (model_zoo/rcnn/faster_rcnn/faster_rcnn.py)
// expression for expression, in the rois' dtype (float32 rois: float32 arithmetic, as MXNet
// evaluates the composite on float32 NDArrays; float16 rois are computed in float32):
//
//   w = x2 - x1 + 1;  h = y2 - y1 + 1
//   level = floor(canonical_level + log2(sqrt(w * h) / canonical_scale + eps))
//   level = clip(level, min_level, max_level)
//
// A NaN level (NaN coordinates, or w * h < 0: sqrt of a negative number) matches no level in
// GluonCV (`roi_level == l` is false for every l), so the roi pools to zeros: here it gets
// level index -1 and zeros. Level l reads feature map l - min_level.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/host_device.h"
#include "roi_align/roi_align_math.h"

namespace frcnn {

// Most feature maps one call takes (the CUDA kernels pass their pointers by value).
constexpr int kMaxLevels = 8;

// The level rule's attributes, already checked (min_level <= max_level,
// max_level - min_level < number of feature maps <= kMaxLevels).
struct LevelRule {
  int min_level = 2;
  int max_level = 5;
  int canonical_level = 4;
  double canonical_scale = 224.0;  // used in the rois' dtype (as MXNet casts its scalars)
  double eps = 1e-6;
};

// Index (level - min_level) of the feature map roi = [batch, x1, y1, x2, y2] pools from, or
// -1 when its level is NaN.
template <typename A>
HOST_DEVICE_INLINE int roi_level_index(const A roi[5], const LevelRule& rule) {
  using std::floor;
  using std::log2;
  using std::sqrt;
  const A w = roi[3] - roi[1] + A(1);
  const A h = roi[4] - roi[2] + A(1);
  const A s = sqrt(w * h) / static_cast<A>(rule.canonical_scale) + static_cast<A>(rule.eps);
  A level = floor(static_cast<A>(rule.canonical_level) + log2(s));
  if (!(level == level)) return -1;  // NaN
  // MXNet's clip: x > max ? max : (x < min ? min : x)
  const A lo = static_cast<A>(rule.min_level), hi = static_cast<A>(rule.max_level);
  level = level > hi ? hi : (level < lo ? lo : level);
  return static_cast<int>(level) - rule.min_level;
}

}  // namespace frcnn
