// Per-box math of box_decode and clip_boxes, written once for the CPU and the CUDA kernels.
// Follows MXNet's contrib.box_decode (bounding_box-inl.h) operation for operation so that
// float32 results agree to the rounding of the final store.
#pragma once

#include <cmath>

#include "common/host_device.h"

namespace frcnn {

// Attributes of box_decode, already parsed and checked.
// The attribute names of BoxDecodeParams::std (box_decode and proposal).
constexpr const char* kStdNames[4] = {"std0", "std1", "std2", "std3"};

struct BoxDecodeParams {
  float std[4] = {1.f, 1.f, 1.f, 1.f};
  float clip = -1.f;     // <= 0: no clipping of the exponent input
  bool corner = false;   // anchors are (x1, y1, x2, y2) instead of (cx, cy, w, h)
};

// exp evaluated in double and rounded once: MXNet's CPU box_decode calls the double exp
// for float data, and this keeps float32 results bitwise equal to it.
template <typename A>
HOST_DEVICE_INLINE A exp_rounded(const A x) {
  using std::exp;
  return static_cast<A>(exp(static_cast<double>(x)));
}

// Anchor in center form: (cx, cy, w, h). No +1 in the width.
template <typename A>
HOST_DEVICE_INLINE void anchor_center(const A a0, const A a1, const A a2, const A a3, bool corner,
                                      A* xa, A* ya, A* wa, A* ha) {
  if (corner) {
    *wa = a2 - a0;
    *ha = a3 - a1;
    *xa = a0 + *wa * A(0.5);
    *ya = a1 + *ha * A(0.5);
  } else {
    *xa = a0;
    *ya = a1;
    *wa = a2;
    *ha = a3;
  }
}

// The exponent inputs of a box: dw = d2 * std2, dh = d3 * std3, each min'ed with clip > 0.
template <typename A>
HOST_DEVICE_INLINE void decode_exp_inputs(const A d[4], const BoxDecodeParams& p, A* dw, A* dh) {
  *dw = d[2] * A(p.std[2]);
  *dh = d[3] * A(p.std[3]);
  if (p.clip > 0.f) {
    *dw = *dw < A(p.clip) ? *dw : A(p.clip);
    *dh = *dh < A(p.clip) ? *dh : A(p.clip);
  }
}

// The rest of the decode, given ew = exp(dw) and eh = exp(dh).
template <typename A>
HOST_DEVICE_INLINE void decode_finish(const A d[4], const A anc[4], const BoxDecodeParams& p,
                                      A ew, A eh, A out[4]) {
  A xa, ya, wa, ha;
  anchor_center(anc[0], anc[1], anc[2], anc[3], p.corner, &xa, &ya, &wa, &ha);
  const A ox = d[0] * A(p.std[0]) * wa + xa;
  const A oy = d[1] * A(p.std[1]) * ha + ya;
  const A ow = ew * wa * A(0.5);
  const A oh = eh * ha * A(0.5);
  out[0] = ox - ow;
  out[1] = oy - oh;
  out[2] = ox + ow;
  out[3] = oy + oh;
}

// Decode one box. A is the arithmetic type (float for half storage).
template <typename A>
HOST_DEVICE_INLINE void decode_box(const A d[4], const A anc[4], const BoxDecodeParams& p,
                                   A out[4]) {
  A dw, dh;
  decode_exp_inputs(d, p, &dw, &dh);
  decode_finish(d, anc, p, exp_rounded(dw), exp_rounded(dh), out);
}

// Gradient of decode_box w.r.t. the deltas, given the gradient g of the 4 outputs.
// Where the exponent input was clipped its gradient is 0 (as for min(x, clip)).
template <typename A>
HOST_DEVICE_INLINE void decode_box_grad(const A d[4], const A anc[4], const BoxDecodeParams& p,
                                        const A g[4], A gd[4]) {
  A xa, ya, wa, ha;
  anchor_center(anc[0], anc[1], anc[2], anc[3], p.corner, &xa, &ya, &wa, &ha);
  A dw = d[2] * A(p.std[2]);
  A dh = d[3] * A(p.std[3]);
  const bool pass_w = !(p.clip > 0.f) || dw < A(p.clip);
  const bool pass_h = !(p.clip > 0.f) || dh < A(p.clip);
  const A ow = exp_rounded(pass_w ? dw : A(p.clip)) * wa * A(0.5);
  const A oh = exp_rounded(pass_h ? dh : A(p.clip)) * ha * A(0.5);
  gd[0] = (g[0] + g[2]) * A(p.std[0]) * wa;
  gd[1] = (g[1] + g[3]) * A(p.std[1]) * ha;
  gd[2] = pass_w ? (g[2] - g[0]) * ow * A(p.std[2]) : A(0);
  gd[3] = pass_h ? (g[3] - g[1]) * oh * A(p.std[3]) : A(0);
}

// Clip one coordinate to [0, hi] as max(x, 0) then min(., hi) (GluonCV BBoxClipToImage).
// NaN stays NaN: a NaN box is not silently moved into the image.
template <typename A>
HOST_DEVICE_INLINE A clip_coord(const A x, const A hi) {
  A y = x < A(0) ? A(0) : x;
  return y > hi ? hi : y;
}

// The gradient passes where the coordinate was not clipped: 0 <= x <= hi.
template <typename A>
HOST_DEVICE_INLINE bool clip_coord_passes(const A x, const A hi) {
  return x >= A(0) && x <= hi;
}

}  // namespace frcnn
