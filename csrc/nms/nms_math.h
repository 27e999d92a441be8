// IoU and box area as MXNet's box_nms computes them (bounding_box-common.h), written once for
// the CPU and the CUDA kernels. No +1 in widths; a negative width or height gives area 0;
// iou = inter / (area_a + area_b - inter), so two empty boxes give 0/0 = NaN, which never
// exceeds a threshold (never suppresses), exactly like box_nms.
#pragma once

#include "common/host_device.h"

namespace frcnn {

// Overlap of [a1, a2] and [b1, b2] (corner) or of centers a1, b1 with widths a2, b2 (center).
template <typename A>
HOST_DEVICE_INLINE A overlap_1d(A a1, A a2, A b1, A b2, bool center) {
  A w;
  if (!center) {
    const A left = a1 > b1 ? a1 : b1;
    const A right = a2 < b2 ? a2 : b2;
    w = right - left;
  } else {
    const A aw = a2 / A(2), bw = b2 / A(2);
    const A al = a1 - aw, ar = a1 + aw, bl = b1 - bw, br = b1 + bw;
    const A left = bl > al ? bl : al;
    const A right = br < ar ? br : ar;
    w = right - left;
  }
  return w > A(0) ? w : A(0);
}

template <typename A>
HOST_DEVICE_INLINE A nms_box_area(A c0, A c1, A c2, A c3, bool center) {
  const A w = center ? c2 : c2 - c0;
  const A h = center ? c3 : c3 - c1;
  return (w < A(0) || h < A(0)) ? A(0) : w * h;
}

// IoU of two boxes given their coordinates and precomputed areas.
template <typename A>
HOST_DEVICE_INLINE A nms_iou(A a0, A a1, A a2, A a3, A area_a, A b0, A b1, A b2, A b3, A area_b,
                             bool center) {
  A inter = overlap_1d(a0, a2, b0, b2, center);
  inter *= overlap_1d(a1, a3, b1, b3, center);
  return inter / (area_a + area_b - inter);
}

// Class of a row for per-class NMS, as box_nms takes it: the id truncated to int
// (static_cast<int>), so ids 1.2 and 1.7 are the same class. A NaN or out-of-range id gives
// INT_MIN, the value x86's conversion (MXNet's CPU kernel) produces; written out here because
// the cast itself is undefined behaviour in C++ and gives 0 on the GPU.
template <typename A>
HOST_DEVICE_INLINE int nms_class_id(A v) {
  return (v > A(-2147483649.0) && v < A(2147483648.0)) ? static_cast<int>(v)
                                                      : static_cast<int>(0x80000000u);
}

// Center (x, y, w, h) <-> corner (x1, y1, x2, y2) for nms' out_format.
template <typename A>
HOST_DEVICE_INLINE void center_to_corner(A* b) {
  const A x = b[0], y = b[1], w = b[2] / A(2), h = b[3] / A(2);
  b[0] = x - w; b[1] = y - h; b[2] = x + w; b[3] = y + h;
}
template <typename A>
HOST_DEVICE_INLINE void corner_to_center(A* b) {
  const A l = b[0], t = b[1], r = b[2], bo = b[3];
  b[0] = (l + r) / A(2); b[1] = (t + bo) / A(2); b[2] = r - l; b[3] = bo - t;
}

// Descending-score sort key: unsigned integers whose ascending order is the descending
// order of the float scores (NaN is never a candidate, so never keyed).
HOST_DEVICE_INLINE uint32_t desc_key(float s) {
  uint32_t u;
#if defined(__CUDA_ARCH__)
  u = __float_as_uint(s);
#else
  __builtin_memcpy(&u, &s, 4);
#endif
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // ascending order of s
  return ~u;                                        // descending
}
HOST_DEVICE_INLINE uint64_t desc_key(double s) {
  uint64_t u;
#if defined(__CUDA_ARCH__)
  u = static_cast<uint64_t>(__double_as_longlong(s));
#else
  __builtin_memcpy(&u, &s, 8);
#endif
  u = (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
  return ~u;
}

}  // namespace frcnn
