#include "box_coder/box_coder.h"
#include "common/cuda_utils.cuh"

namespace frcnn {
namespace {

template <typename T>
__global__ void decode_kernel(const T* data, const T* anchors, T* out, int64_t B, int64_t N,
                              int64_t anchor_batch, BoxDecodeParams p) {
  using A = typename Acc<T>::type;
  CUDA_1D_KERNEL_LOOP(i, B * N) {
    const int64_t b = i / N, n = i - b * N;
    const T* a = anchors + ((anchor_batch == 1 ? 0 : b) * N + n) * 4;
    A d[4], an[4], o[4];
    for (int k = 0; k < 4; ++k) { d[k] = load(data + i * 4 + k); an[k] = load(a + k); }
    decode_box<A>(d, an, p, o);
    for (int k = 0; k < 4; ++k) store(out + i * 4 + k, o[k]);
  }
}

template <typename T>
__global__ void decode_backward_kernel(const T* grad_out, const T* data, const T* anchors,
                                       T* grad_data, int64_t B, int64_t N, int64_t anchor_batch,
                                       BoxDecodeParams p) {
  using A = typename Acc<T>::type;
  CUDA_1D_KERNEL_LOOP(i, B * N) {
    const int64_t b = i / N, n = i - b * N;
    const T* a = anchors + ((anchor_batch == 1 ? 0 : b) * N + n) * 4;
    A d[4], an[4], g[4], gd[4];
    for (int k = 0; k < 4; ++k) {
      d[k] = load(data + i * 4 + k);
      an[k] = load(a + k);
      g[k] = load(grad_out + i * 4 + k);
    }
    decode_box_grad<A>(d, an, p, g, gd);
    for (int k = 0; k < 4; ++k) store(grad_data + i * 4 + k, gd[k]);
  }
}

template <typename T>
__global__ void clip_kernel(const T* boxes, const T* im_info, T* out, int64_t B, int64_t N,
                            int64_t info_cols) {
  using A = typename Acc<T>::type;
  CUDA_1D_KERNEL_LOOP(i, B * N * 4) {
    const int64_t b = i / (N * 4);
    const int k = static_cast<int>(i % 4);
    const A hi = load(im_info + b * info_cols + (k % 2 == 0 ? 1 : 0));
    store(out + i, clip_coord<A>(load(boxes + i), hi));
  }
}

template <typename T>
__global__ void clip_backward_kernel(const T* grad_out, const T* boxes, const T* im_info,
                                     T* grad_boxes, int64_t B, int64_t N, int64_t info_cols) {
  using A = typename Acc<T>::type;
  CUDA_1D_KERNEL_LOOP(i, B * N * 4) {
    const int64_t b = i / (N * 4);
    const int k = static_cast<int>(i % 4);
    const A hi = load(im_info + b * info_cols + (k % 2 == 0 ? 1 : 0));
    store(grad_boxes + i, clip_coord_passes<A>(load(boxes + i), hi) ? load(grad_out + i) : A(0));
  }
}

}  // namespace

void box_decode_cuda(DType dt, const void* data, const void* anchors, void* out, int64_t B,
                     int64_t N, int64_t anchor_batch, const BoxDecodeParams& p, void* stream) {
  if (B * N == 0) return;
  FRCNN_DISPATCH_CUDA(dt, "frcnn_box_decode",
    launch("frcnn_box_decode: decode_kernel", decode_kernel<scalar_t>, blocks_for(B * N),
           kThreads, 0, as_stream(stream), static_cast<const scalar_t*>(data),
           static_cast<const scalar_t*>(anchors), static_cast<scalar_t*>(out), B, N,
           anchor_batch, p));
}

void box_decode_backward_cuda(DType dt, const void* grad_out, const void* data,
                              const void* anchors, void* grad_data, int64_t B, int64_t N,
                              int64_t anchor_batch, const BoxDecodeParams& p, void* stream) {
  if (B * N == 0) return;
  FRCNN_DISPATCH_CUDA(dt, "frcnn_box_decode",
    launch("frcnn_box_decode: decode_backward_kernel", decode_backward_kernel<scalar_t>,
           blocks_for(B * N), kThreads, 0, as_stream(stream),
           static_cast<const scalar_t*>(grad_out), static_cast<const scalar_t*>(data),
           static_cast<const scalar_t*>(anchors), static_cast<scalar_t*>(grad_data), B, N,
           anchor_batch, p));
}

void clip_boxes_cuda(DType dt, const void* boxes, const void* im_info, void* out, int64_t B,
                     int64_t N, int64_t info_cols, void* stream) {
  if (B * N == 0) return;
  FRCNN_DISPATCH_CUDA(dt, "frcnn_clip_boxes",
    launch("frcnn_clip_boxes: clip_kernel", clip_kernel<scalar_t>, blocks_for(B * N * 4),
           kThreads, 0, as_stream(stream), static_cast<const scalar_t*>(boxes),
           static_cast<const scalar_t*>(im_info), static_cast<scalar_t*>(out), B, N,
           info_cols));
}

void clip_boxes_backward_cuda(DType dt, const void* grad_out, const void* boxes,
                              const void* im_info, void* grad_boxes, int64_t B, int64_t N,
                              int64_t info_cols, void* stream) {
  if (B * N == 0) return;
  FRCNN_DISPATCH_CUDA(dt, "frcnn_clip_boxes",
    launch("frcnn_clip_boxes: clip_backward_kernel", clip_backward_kernel<scalar_t>,
           blocks_for(B * N * 4), kThreads, 0, as_stream(stream),
           static_cast<const scalar_t*>(grad_out), static_cast<const scalar_t*>(boxes),
           static_cast<const scalar_t*>(im_info), static_cast<scalar_t*>(grad_boxes), B, N,
           info_cols));
}

}  // namespace frcnn
