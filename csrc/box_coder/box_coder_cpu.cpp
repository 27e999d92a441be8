#include <algorithm>
#include <cmath>
#include <cstring>

#include "box_coder/box_coder.h"
#include "common/checks.h"
#include "common/half_cpu.h"
#include "common/parallel.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace frcnn {

namespace {

// Boxes per thread below which a second thread is not worth it: about 0.3 ms of decoding.
// A parallel region that short gains ~0.1 ms on an idle machine but can stall for a whole
// scheduler time slice (milliseconds) when another process holds a core, so small calls
// (one image of 28500 anchors) stay on the calling thread.
constexpr int64_t kBoxesPerThread = 32768;

// exp of a float argument, evaluated in double as a polynomial that the compiler vectorises:
// Cody-Waite reduction by ln 2 (2^k from the rounding constant's bits), a degree-13 Taylor
// polynomial on |r| <= ln(2)/2. Within 1 ulp of the double exp (2.2e-16 relative); rounded
// to float it gave the float of static_cast<float>(std::exp(double(x))) (exp_rounded, what
// MXNet computes) for all of 2e8 sampled arguments. The clamp keeps 2^k a normal double
// (exp(100) and exp(-110) round to inf and 0 in float anyway); NaN stays NaN.
inline __attribute__((always_inline)) double exp_poly(double x) {
  x = x > 100.0 ? 100.0 : x;
  x = x < -110.0 ? -110.0 : x;
  const double shifter = 0x1.8p52;
  const double t = x * 1.4426950408889634074 + shifter;  // k + 1.5 * 2^52, k = round(x / ln2)
  const double kd = t - shifter;
  const double r = (x - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
  double q = 1.0 / 6227020800.0;
  q = q * r + 1.0 / 479001600.0;
  q = q * r + 1.0 / 39916800.0;
  q = q * r + 1.0 / 3628800.0;
  q = q * r + 1.0 / 362880.0;
  q = q * r + 1.0 / 40320.0;
  q = q * r + 1.0 / 5040.0;
  q = q * r + 1.0 / 720.0;
  q = q * r + 1.0 / 120.0;
  q = q * r + 1.0 / 24.0;
  q = q * r + 1.0 / 6.0;
  q = q * r + 0.5;
  q = q * r + 1.0;
  q = q * r + 1.0;
  uint64_t u;
  std::memcpy(&u, &t, 8);
  const uint64_t bits = (u - 0x4338000000000000ull + 1023ull) << 52;  // 2^k
  double scale;
  std::memcpy(&scale, &bits, 8);
  return q * scale;
}

// float boxes [begin, end): exponent inputs, then their exps in one vector loop, then the rest
// of the decode (decode_exp_inputs / decode_finish: the same math as decode_box).
FRCNN_CLONES
void decode_float_range(const float* data, const float* anchors, float* out, int64_t begin,
                        int64_t end, int64_t N, int64_t anchor_batch, const BoxDecodeParams& p) {
  constexpr int kChunk = 256;
  float dw[kChunk], dh[kChunk], ew[kChunk], eh[kChunk];
  for (int64_t i0 = begin; i0 < end; i0 += kChunk) {
    const int n = static_cast<int>(std::min<int64_t>(kChunk, end - i0));
    for (int k = 0; k < n; ++k) decode_exp_inputs(data + (i0 + k) * 4, p, &dw[k], &dh[k]);
#pragma omp simd
    for (int k = 0; k < n; ++k) {
      ew[k] = static_cast<float>(exp_poly(dw[k]));
      eh[k] = static_cast<float>(exp_poly(dh[k]));
    }
    for (int k = 0; k < n; ++k) {
      const int64_t i = i0 + k, b = i / N, j = i - b * N;
      const float* a = anchors + ((anchor_batch == 1 ? 0 : b) * N + j) * 4;
      decode_finish(data + i * 4, a, p, ew[k], eh[k], out + i * 4);
    }
  }
}

void decode_impl(const float* data, const float* anchors, float* out, int64_t B, int64_t N,
                 int64_t anchor_batch, const BoxDecodeParams& p) {
  const int64_t total = B * N;
  const int nt = threads_for(total, kBoxesPerThread);
  if (nt <= 1) return decode_float_range(data, anchors, out, 0, total, N, anchor_batch, p);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    const int64_t per = (total + nt - 1) / nt;
    decode_float_range(data, anchors, out, std::min(total, t * per),
                       std::min(total, (t + 1) * per), N, anchor_batch, p);
  }
}

template <typename T>
void decode_impl(const T* data, const T* anchors, T* out, int64_t B, int64_t N,
                 int64_t anchor_batch, const BoxDecodeParams& p) {
  const int64_t total = B * N;
  const int nt = threads_for(total, kBoxesPerThread);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t i = 0; i < total; ++i) {
    const int64_t b = i / N, n = i - b * N;
    const T* a = anchors + ((anchor_batch == 1 ? 0 : b) * N + n) * 4;
    decode_box<T>(data + i * 4, a, p, out + i * 4);
  }
}

template <typename T>
void decode_backward_impl(const T* grad_out, const T* data, const T* anchors, T* grad_data,
                          int64_t B, int64_t N, int64_t anchor_batch, const BoxDecodeParams& p) {
  const int64_t total = B * N;
  const int nt = threads_for(total, kBoxesPerThread);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t i = 0; i < total; ++i) {
    const int64_t b = i / N, n = i - b * N;
    const T* a = anchors + ((anchor_batch == 1 ? 0 : b) * N + n) * 4;
    decode_box_grad<T>(data + i * 4, a, p, grad_out + i * 4, grad_data + i * 4);
  }
}

template <typename T>
void clip_impl(const T* boxes, const T* im_info, T* out, int64_t B, int64_t N,
               int64_t info_cols) {
  const int64_t total = B * N;
  const int nt = threads_for(total, kBoxesPerThread);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t i = 0; i < total; ++i) {
    const int64_t b = i / N;
    const T h = im_info[b * info_cols], w = im_info[b * info_cols + 1];
    out[i * 4 + 0] = clip_coord(boxes[i * 4 + 0], w);
    out[i * 4 + 1] = clip_coord(boxes[i * 4 + 1], h);
    out[i * 4 + 2] = clip_coord(boxes[i * 4 + 2], w);
    out[i * 4 + 3] = clip_coord(boxes[i * 4 + 3], h);
  }
}

template <typename T>
void clip_backward_impl(const T* grad_out, const T* boxes, const T* im_info, T* grad_boxes,
                        int64_t B, int64_t N, int64_t info_cols) {
  const int64_t total = B * N;
  const int nt = threads_for(total, kBoxesPerThread);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t i = 0; i < total; ++i) {
    const int64_t b = i / N;
    const T h = im_info[b * info_cols], w = im_info[b * info_cols + 1];
    for (int k = 0; k < 4; ++k) {
      const T hi = (k % 2 == 0) ? w : h;
      grad_boxes[i * 4 + k] = clip_coord_passes(boxes[i * 4 + k], hi) ? grad_out[i * 4 + k] : T(0);
    }
  }
}

}  // namespace

void box_decode_cpu(DType dt, const void* data, const void* anchors, void* out, int64_t B,
                    int64_t N, int64_t anchor_batch, const BoxDecodeParams& p) {
  if (dt == DType::kFloat16) {
    HalfAsFloat h;
    box_decode_cpu(DType::kFloat32, h.in(data, B * N * 4), h.in(anchors, anchor_batch * N * 4),
                   h.out(out, B * N * 4), B, N, anchor_batch, p);
    return h.finish();
  }
  FRCNN_DISPATCH_CPU(dt, "frcnn_box_decode",
                     decode_impl(static_cast<const scalar_t*>(data),
                                 static_cast<const scalar_t*>(anchors),
                                 static_cast<scalar_t*>(out), B, N, anchor_batch, p));
}

void box_decode_backward_cpu(DType dt, const void* grad_out, const void* data,
                             const void* anchors, void* grad_data, int64_t B, int64_t N,
                             int64_t anchor_batch, const BoxDecodeParams& p) {
  if (dt == DType::kFloat16) {
    HalfAsFloat h;
    box_decode_backward_cpu(DType::kFloat32, h.in(grad_out, B * N * 4), h.in(data, B * N * 4),
                            h.in(anchors, anchor_batch * N * 4), h.out(grad_data, B * N * 4), B,
                            N, anchor_batch, p);
    return h.finish();
  }
  FRCNN_DISPATCH_CPU(dt, "frcnn_box_decode",
                     decode_backward_impl(static_cast<const scalar_t*>(grad_out),
                                          static_cast<const scalar_t*>(data),
                                          static_cast<const scalar_t*>(anchors),
                                          static_cast<scalar_t*>(grad_data), B, N,
                                          anchor_batch, p));
}

void clip_boxes_cpu(DType dt, const void* boxes, const void* im_info, void* out, int64_t B,
                    int64_t N, int64_t info_cols) {
  if (dt == DType::kFloat16) {
    HalfAsFloat h;
    clip_boxes_cpu(DType::kFloat32, h.in(boxes, B * N * 4), h.in(im_info, B * info_cols),
                   h.out(out, B * N * 4), B, N, info_cols);
    return h.finish();
  }
  FRCNN_DISPATCH_CPU(dt, "frcnn_clip_boxes",
                     clip_impl(static_cast<const scalar_t*>(boxes),
                               static_cast<const scalar_t*>(im_info),
                               static_cast<scalar_t*>(out), B, N, info_cols));
}

void clip_boxes_backward_cpu(DType dt, const void* grad_out, const void* boxes,
                             const void* im_info, void* grad_boxes, int64_t B, int64_t N,
                             int64_t info_cols) {
  if (dt == DType::kFloat16) {
    HalfAsFloat h;
    clip_boxes_backward_cpu(DType::kFloat32, h.in(grad_out, B * N * 4), h.in(boxes, B * N * 4),
                            h.in(im_info, B * info_cols), h.out(grad_boxes, B * N * 4), B, N,
                            info_cols);
    return h.finish();
  }
  FRCNN_DISPATCH_CPU(dt, "frcnn_clip_boxes",
                     clip_backward_impl(static_cast<const scalar_t*>(grad_out),
                                        static_cast<const scalar_t*>(boxes),
                                        static_cast<const scalar_t*>(im_info),
                                        static_cast<scalar_t*>(grad_boxes), B, N, info_cols));
}

}  // namespace frcnn
