// box_nms on the GPU, all on one stream with no host synchronisation:
//   keys (score > valid_thresh, id != background) -> segmented stable radix sort per batch ->
//   gather the first topk -> bitmask IoU (per class unless force_suppress) -> greedy pass on
//   the device -> kept rows copied in order, -1 elsewhere.
#include "nms/nms_cuda.cuh"
#include "nms/nms.h"

namespace frcnn {
namespace {

using nms_dev::Carver;
using nms_dev::DevBoxes;

using nms_dev::KeyOf;

using nms_dev::kMaxMaskBytes;

template <typename T>
__global__ void nms_keys_kernel(const T* data, int64_t total, int64_t n, int64_t width,
                                NmsParams p, KeyOf<T>* keys, uint32_t* idx, int* counts) {
  using A = typename Acc<T>::type;
  CUDA_1D_KERNEL_LOOP(g, total) {
    const T* row = data + g * width;
    const A s = load(row + p.score_index);
    bool cand = s > static_cast<A>(p.valid_thresh);
    if (p.id_index >= 0) cand = cand && load(row + p.id_index) != static_cast<A>(p.background_id);
    keys[g] = cand ? desc_key(s) : ~KeyOf<T>(0);
    idx[g] = static_cast<uint32_t>(g % n);
    if (cand) atomicAdd(counts + g / n, 1);
  }
}

template <typename T>
__global__ void nms_gather_kernel(const T* data, const uint32_t* order, const int* counts,
                                  int64_t batches, int64_t n, int64_t width, NmsParams p,
                                  DevBoxes<typename Acc<T>::type> cand) {
  using A = typename Acc<T>::type;
  const bool by_class = p.id_index >= 0 && !p.force_suppress;
  CUDA_1D_KERNEL_LOOP(g, batches * static_cast<int64_t>(cand.cap)) {
    const int64_t b = g / cand.cap;
    const int r = static_cast<int>(g - b * cand.cap);
    const int count = min(counts[b], cand.cap);
    if (r == 0) cand.count[b] = count;
    if (r >= count) continue;
    const uint32_t i = order[b * n + r];
    const T* row = data + (b * n + i) * width;
    const T* c = row + p.coord_start;
    const A c0 = load(c), c1 = load(c + 1), c2 = load(c + 2), c3 = load(c + 3);
    cand.c0[g] = c0; cand.c1[g] = c1; cand.c2[g] = c2; cand.c3[g] = c3;
    cand.area[g] = nms_box_area<A>(c0, c1, c2, c3, p.in_center);
    cand.cls[g] = by_class ? nms_class_id<A>(load(row + p.id_index)) : 0;
    cand.src[g] = i;
  }
}

// One thread per output element: kept rows in order (coordinates converted between formats
// when asked), -1 elsewhere.
template <typename T>
__global__ void nms_output_kernel(const T* data, const int* keep, const int* keep_count,
                                  DevBoxes<typename Acc<T>::type> cand, int64_t batches,
                                  int64_t n, int64_t width, NmsParams p, T* out) {
  using A = typename Acc<T>::type;
  CUDA_1D_KERNEL_LOOP(g, batches * n) {
    const int64_t b = g / n;
    const int k = static_cast<int>(g - b * n);
    T* o = out + g * width;
    if (k >= keep_count[b]) {
      for (int64_t c = 0; c < width; ++c) store(o + c, A(-1));
      continue;
    }
    const uint32_t i = cand.src[b * cand.cap + keep[b * cand.cap + k]];
    const T* row = data + (b * n + i) * width;
    for (int64_t c = 0; c < width; ++c) o[c] = row[c];
    if (p.in_center != p.out_center) {
      A x[4];
      for (int c = 0; c < 4; ++c) x[c] = load(row + p.coord_start + c);
      if (p.out_center) corner_to_center<A>(x); else center_to_corner<A>(x);
      for (int c = 0; c < 4; ++c) store(o + p.coord_start + c, x[c]);
    }
  }
}

// box_nms's gradient, one thread per element of the output gradient: row k < keep_count of
// batch b goes to the input row the k-th kept row came from; grad_data was zeroed before.
template <typename T>
__global__ void nms_grad_scatter_kernel(const T* grad_out, const int* keep, const int* keep_count,
                                        DevBoxes<typename Acc<T>::type> cand, int64_t batches,
                                        int64_t n, int64_t width, T* grad_data) {
  CUDA_1D_KERNEL_LOOP(e, batches * n * width) {
    const int64_t g = e / width, c = e - g * width;
    const int64_t b = g / n;
    const int k = static_cast<int>(g - b * n);
    if (k >= keep_count[b]) continue;
    const uint32_t i = cand.src[b * cand.cap + keep[b * cand.cap + k]];
    grad_data[(b * n + i) * width + c] = grad_out[e];
  }
}

template <typename T>
struct NmsPlan {
  using A = typename Acc<T>::type;
  using K = KeyOf<T>;
  K *keys, *keys_sorted;
  uint32_t *idx, *order;
  int *offsets, *counts, *keep, *keep_count;
  DevBoxes<A> cand;
  uint64_t* mask;
  void* sort_temp;
  nms_dev::SegmentedSort<K> sort;
  int cap, col_blocks;

  size_t carve(void* ws, int64_t batches, int64_t n, const NmsParams& p) {
    // CUB sizes and offsets are int: refuse before any size query can overflow
    if (batches * n > INT32_MAX)
      throw Error("frcnn_nms: " + std::to_string(batches) + " batches x " + std::to_string(n) +
                  " rows = " + std::to_string(batches * n) +
                  " rows; the GPU kernels take fewer than 2^31");
    cap = static_cast<int>(p.topk < 0 ? n : std::min<int64_t>(n, p.topk));
    if (cap < 1) cap = 1;
    col_blocks = nms_dev::col_blocks_for(cap);
    const size_t mask_bytes = static_cast<size_t>(batches) * cap * col_blocks * 8;
    if (mask_bytes > kMaxMaskBytes)
      throw Error("frcnn_nms: " + std::to_string(cap) + " boxes per batch x " +
                  std::to_string(batches) + " batches need " + std::to_string(mask_bytes >> 20) +
                  " MiB of IoU bits on the GPU (limit 1024 MiB): set topk");
    sort.size(batches, n);
    Carver c(ws);
    const size_t total = static_cast<size_t>(batches * n);
    keys = c.take<K>(total); keys_sorted = c.take<K>(total);
    idx = c.take<uint32_t>(total); order = c.take<uint32_t>(total);
    offsets = c.take<int>(batches + 1);
    counts = c.take<int>(batches);
    cand.carve(c, batches, cap);
    mask = c.take<uint64_t>(static_cast<size_t>(batches) * cap * col_blocks);
    keep = c.take<int>(static_cast<size_t>(batches) * cap);
    keep_count = c.take<int>(batches);
    sort_temp = c.take<char>(sort.temp_bytes);
    return c.used + 256;
  }
};

// Copies n elements of T on the stream (device to device).
template <typename T>
void copy_async(T* dst, const T* src, int64_t n, cudaStream_t stream) {
  cudaError_t e = cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDeviceToDevice, stream);
  if (e != cudaSuccess) throw Error(std::string("frcnn_nms: ") + cudaGetErrorString(e));
}

// The selection, shared by the forward and the backward (deterministic: both select the same
// rows): keys, sort, gather, IoU bits, greedy pass. Leaves keep / keep_count / cand in plan.
template <typename T>
void nms_select(const T* data, int64_t batches, int64_t n, int64_t width, const NmsParams& p,
                void* ws, size_t ws_bytes, cudaStream_t stream, NmsPlan<T>* plan) {
  using A = typename Acc<T>::type;
  const int64_t total = batches * n;
  const size_t need = plan->carve(nullptr, batches, n, p);
  if (ws == nullptr || ws_bytes < need)
    throw Error("frcnn_nms: workspace of " + std::to_string(ws_bytes) + " bytes, needs " +
                std::to_string(need));
  plan->carve(reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(ws) + 255) & ~uintptr_t(255)),
              batches, n, p);
  cudaError_t e = cudaMemsetAsync(plan->counts, 0, batches * sizeof(int), stream);
  if (e != cudaSuccess) throw Error(std::string("frcnn_nms: ") + cudaGetErrorString(e));
  launch("frcnn_nms: nms_keys_kernel", nms_keys_kernel<T>, blocks_for(total), kThreads, 0, stream,
         data, total, n, width, p, plan->keys, plan->idx, plan->counts);
  launch("frcnn_nms: segment_offsets_kernel", nms_dev::segment_offsets_kernel,
         blocks_for(batches + 1), kThreads, 0, stream, plan->offsets, batches, n);
  plan->sort.run(plan->sort_temp, plan->keys, plan->keys_sorted, plan->idx, plan->order,
                 plan->offsets, batches, n, stream);
  launch("frcnn_nms: nms_gather_kernel", nms_gather_kernel<T>, blocks_for(batches * plan->cap),
         kThreads, 0, stream, data, plan->order, plan->counts, batches, n, width, p, plan->cand);
  nms_dev::launch_mask<A>(plan->cand, batches, static_cast<A>(p.overlap_thresh), p.in_center,
                          p.id_index >= 0 && !p.force_suppress, plan->col_blocks, plan->mask,
                          stream);
  nms_dev::launch_greedy(plan->mask, plan->cand.count, batches, plan->cap, plan->col_blocks,
                         plan->cap, plan->keep, plan->keep_count, stream);
}

template <typename T>
void nms_impl(const T* data, T* out, int64_t batches, int64_t n, int64_t width,
              const NmsParams& p, void* ws, size_t ws_bytes, cudaStream_t stream) {
  const int64_t total = batches * n;
  if (total == 0) return;
  if (p.topk == 0) {  // box_nms returns its input unchanged when topk < 1
    copy_async(out, data, total * width, stream);
    return;
  }
  NmsPlan<T> plan;
  nms_select<T>(data, batches, n, width, p, ws, ws_bytes, stream, &plan);
  launch("frcnn_nms: nms_output_kernel", nms_output_kernel<T>, blocks_for(total), kThreads, 0,
         stream, data, plan.keep, plan.keep_count, plan.cand, batches, n, width, p, out);
}

template <typename T>
void nms_backward_impl(const T* grad_out, const T* data, T* grad_data, int64_t batches,
                       int64_t n, int64_t width, const NmsParams& p, void* ws, size_t ws_bytes,
                       cudaStream_t stream) {
  const int64_t total = batches * n;
  if (total == 0 || width == 0) return;
  if (p.topk == 0) {  // the identity's gradient
    copy_async(grad_data, grad_out, total * width, stream);
    return;
  }
  NmsPlan<T> plan;
  nms_select<T>(data, batches, n, width, p, ws, ws_bytes, stream, &plan);
  cudaError_t e = cudaMemsetAsync(grad_data, 0, total * width * sizeof(T), stream);
  if (e != cudaSuccess) throw Error(std::string("frcnn_nms: ") + cudaGetErrorString(e));
  launch("frcnn_nms: nms_grad_scatter_kernel", nms_grad_scatter_kernel<T>,
         blocks_for(total * width), kThreads, 0, stream, grad_out, plan.keep, plan.keep_count,
         plan.cand, batches, n, width, grad_data);
}

}  // namespace

size_t nms_cuda_workspace(DType dt, int64_t batches, int64_t n, int64_t width,
                          const NmsParams& p) {
  if (batches * n == 0 || p.topk == 0) return 0;
  FRCNN_DISPATCH_CUDA(dt, "frcnn_nms", { NmsPlan<scalar_t> plan; return plan.carve(nullptr, batches, n, p); });
  return 0;
}

void nms_cuda(DType dt, const void* data, void* out, int64_t batches, int64_t n, int64_t width,
              const NmsParams& p, void* workspace, size_t workspace_bytes, void* stream) {
  FRCNN_DISPATCH_CUDA(dt, "frcnn_nms",
    nms_impl<scalar_t>(static_cast<const scalar_t*>(data), static_cast<scalar_t*>(out), batches,
                       n, width, p, workspace, workspace_bytes, as_stream(stream)));
}

void nms_backward_cuda(DType dt, const void* grad_out, const void* data, void* grad_data,
                       int64_t batches, int64_t n, int64_t width, const NmsParams& p,
                       void* workspace, size_t workspace_bytes, void* stream) {
  FRCNN_DISPATCH_CUDA(dt, "frcnn_nms",
    nms_backward_impl<scalar_t>(static_cast<const scalar_t*>(grad_out),
                                static_cast<const scalar_t*>(data),
                                static_cast<scalar_t*>(grad_data), batches, n, width, p,
                                workspace, workspace_bytes, as_stream(stream)));
}

}  // namespace frcnn
