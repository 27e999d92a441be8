#include <cmath>

#include "box_coder/box_coder.h"
#include "common/checks.h"
#include "common/parallel.h"

namespace frcnn {

std::string box_decode_check(const Shape& data, const Shape& anchors) {
  if (data.size() != 3 || data[2] != 4)
    return "data must have shape (B, N, 4), got " + shape_str(data);
  if (anchors.size() != 3 || anchors[2] != 4)
    return "anchors must have shape (1, N, 4) or (B, N, 4), got " + shape_str(anchors);
  if (anchors[1] != data[1])
    return "anchors must have N = " + std::to_string(data[1]) + " rows like data " +
           shape_str(data) + ", got " + shape_str(anchors);
  if (anchors[0] != 1 && anchors[0] != data[0])
    return "anchors batch must be 1 or B = " + std::to_string(data[0]) + ", got " +
           shape_str(anchors);
  return "";
}

std::string clip_boxes_check(const Shape& boxes, const Shape& im_info) {
  if (boxes.size() != 3 || boxes[2] != 4)
    return "boxes must have shape (B, N, 4), got " + shape_str(boxes);
  if (im_info.size() != 2 || im_info[1] < 2)
    return "im_info must have shape (B, >=2) = [height, width, ...], got " + shape_str(im_info);
  if (im_info[0] != boxes[0])
    return "im_info must have one row per image: B = " + std::to_string(boxes[0]) +
           ", got " + shape_str(im_info);
  return "";
}

namespace {

// Boxes per thread below which a second thread is not worth it: about 0.3 ms of decoding.
// A parallel region that short gains ~0.1 ms on an idle machine but can stall for a whole
// scheduler time slice (milliseconds) when another process holds a core, so small calls
// (one image of 28500 anchors) stay on the calling thread.
constexpr int64_t kBoxesPerThread = 32768;

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
  FRCNN_DISPATCH_CPU(dt, "frcnn_box_decode",
                     decode_impl(static_cast<const scalar_t*>(data),
                                 static_cast<const scalar_t*>(anchors),
                                 static_cast<scalar_t*>(out), B, N, anchor_batch, p));
}

void box_decode_backward_cpu(DType dt, const void* grad_out, const void* data,
                             const void* anchors, void* grad_data, int64_t B, int64_t N,
                             int64_t anchor_batch, const BoxDecodeParams& p) {
  FRCNN_DISPATCH_CPU(dt, "frcnn_box_decode",
                     decode_backward_impl(static_cast<const scalar_t*>(grad_out),
                                          static_cast<const scalar_t*>(data),
                                          static_cast<const scalar_t*>(anchors),
                                          static_cast<scalar_t*>(grad_data), B, N,
                                          anchor_batch, p));
}

void clip_boxes_cpu(DType dt, const void* boxes, const void* im_info, void* out, int64_t B,
                    int64_t N, int64_t info_cols) {
  FRCNN_DISPATCH_CPU(dt, "frcnn_clip_boxes",
                     clip_impl(static_cast<const scalar_t*>(boxes),
                               static_cast<const scalar_t*>(im_info),
                               static_cast<scalar_t*>(out), B, N, info_cols));
}

void clip_boxes_backward_cpu(DType dt, const void* grad_out, const void* boxes,
                             const void* im_info, void* grad_boxes, int64_t B, int64_t N,
                             int64_t info_cols) {
  FRCNN_DISPATCH_CPU(dt, "frcnn_clip_boxes",
                     clip_backward_impl(static_cast<const scalar_t*>(grad_out),
                                        static_cast<const scalar_t*>(boxes),
                                        static_cast<const scalar_t*>(im_info),
                                        static_cast<scalar_t*>(grad_boxes), B, N, info_cols));
}

}  // namespace frcnn
