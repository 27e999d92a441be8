// Device pieces shared by proposal_cuda.cu and nms_cuda.cu: a workspace carver, the
// segmented stable sort of score keys (CUB), the bitmask IoU kernel and the greedy pass,
// which runs on the device (no host synchronisation) and stops once enough boxes are kept.
#pragma once

#if defined(FRCNN_CUDA_EMULATE)
#include "common/cuda_emu/cub.h"
#else
#include <cub/cub.cuh>
#endif

#include <cstdint>

#include "common/cuda_utils.cuh"
#include "nms/nms_math.h"

namespace frcnn {
namespace nms_dev {
namespace {  // each .cu file gets its own copy of these kernels

constexpr int kBlock = 64;  // boxes per mask word
// The IoU bitmask of one call is limited to 1 GiB: larger problems (more boxes per batch than
// ~92k after topk / rpn_pre_nms_top_n) are refused with a message naming the op and argument.
constexpr size_t kMaxMaskBytes = size_t(1) << 30;

// Score sort key of a dtype: 32 bits for float and half (keyed as float), 64 for double.
template <typename T>
using KeyOf = typename std::conditional<std::is_same<T, double>::value, uint64_t, uint32_t>::type;

// Carves one scratch buffer into aligned pieces. With base == nullptr it only measures.
struct Carver {
  char* base;
  size_t used = 0;
  explicit Carver(void* b) : base(static_cast<char*>(b)) {}
  template <typename T>
  T* take(size_t count) {
    used = (used + 255) & ~size_t(255);
    T* p = base ? reinterpret_cast<T*>(base + used) : nullptr;
    used += count * sizeof(T);
    return p;
  }
};

// Candidate boxes of every batch, structure of arrays, `cap` slots per batch.
template <typename A>
struct DevBoxes {
  A *c0, *c1, *c2, *c3, *area;
  int* cls;
  uint32_t* src;
  int* count;  // per batch
  int cap;
  template <typename C>
  void carve(C& c, int64_t batches, int capacity) {
    cap = capacity;
    const size_t n = static_cast<size_t>(batches) * capacity;
    c0 = c.template take<A>(n); c1 = c.template take<A>(n); c2 = c.template take<A>(n);
    c3 = c.template take<A>(n); area = c.template take<A>(n);
    cls = c.template take<int>(n); src = c.template take<uint32_t>(n);
    count = c.template take<int>(batches);
  }
};

template <typename T>
__global__ void fill_kernel(T* out, int64_t count, typename Acc<T>::type value) {
  CUDA_1D_KERNEL_LOOP(i, count) store(out + i, value);
}

__global__ void segment_offsets_kernel(int* offsets, int64_t segments, int64_t n) {
  CUDA_1D_KERNEL_LOOP(i, segments + 1) offsets[i] = static_cast<int>(i * n);
}

// Stable ascending sort of (key, index) per segment of n items.
template <typename K>
struct SegmentedSort {
  size_t temp_bytes = 0;
  void size(int64_t segments, int64_t n) {
    cub::DeviceSegmentedRadixSort::SortPairs(nullptr, temp_bytes, (const K*)nullptr,
                                             (K*)nullptr, (const uint32_t*)nullptr,
                                             (uint32_t*)nullptr, static_cast<int>(segments * n),
                                             static_cast<int>(segments), (const int*)nullptr,
                                             (const int*)nullptr, 0, int(sizeof(K) * 8));
  }
  void run(void* temp, const K* keys_in, K* keys_out, const uint32_t* vals_in,
           uint32_t* vals_out, const int* offsets, int64_t segments, int64_t n,
           cudaStream_t stream) {
    size_t bytes = temp_bytes;
    cudaError_t e = cub::DeviceSegmentedRadixSort::SortPairs(
        temp, bytes, keys_in, keys_out, vals_in, vals_out, static_cast<int>(segments * n),
        static_cast<int>(segments), offsets, offsets + 1, 0, int(sizeof(K) * 8), stream);
    if (e != cudaSuccess) throw Error(std::string("segmented sort: ") + cudaGetErrorString(e));
  }
};

// mask[b][i][w] bit t: box i overlaps box w*64+t (> i) by more than thresh.
// grid (col_blocks, col_blocks, batches in this launch), 64 threads; batch = b0 + blockIdx.z.
// Only words w >= i/64 are written; the greedy pass reads no others.
template <typename A, bool kCenter, bool kByClass>
__global__ void nms_mask_kernel(DevBoxes<A> boxes, A thresh, int col_blocks, int64_t b0,
                                uint64_t* mask) {
  const int64_t b = b0 + blockIdx.z;
  const int row = blockIdx.y, col = blockIdx.x;
  if (row > col) return;
  const int n = boxes.count[b];
  const int row_size = min(n - row * kBlock, kBlock);
  const int col_size = min(n - col * kBlock, kBlock);
  if (row_size <= 0 || col_size <= 0) return;
  __shared__ A s0[kBlock], s1[kBlock], s2[kBlock], s3[kBlock], sa[kBlock];
  __shared__ int sc[kBlock];
  const int64_t base = static_cast<int64_t>(b) * boxes.cap;
  const int t = threadIdx.x;
  if (t < col_size) {
    const int64_t j = base + col * kBlock + t;
    s0[t] = boxes.c0[j]; s1[t] = boxes.c1[j]; s2[t] = boxes.c2[j]; s3[t] = boxes.c3[j];
    sa[t] = boxes.area[j]; sc[t] = boxes.cls[j];
  }
  __syncthreads();
  if (t >= row_size) return;
  const int i = row * kBlock + t;
  const int64_t ii = base + i;
  const A a0 = boxes.c0[ii], a1 = boxes.c1[ii], a2 = boxes.c2[ii], a3 = boxes.c3[ii];
  const A aa = boxes.area[ii];
  const int ac = boxes.cls[ii];
  uint64_t bits = 0;
  for (int k = (row == col ? t + 1 : 0); k < col_size; ++k) {
    if (kByClass && sc[k] != ac) continue;
    const A iou = nms_iou<A>(a0, a1, a2, a3, aa, s0[k], s1[k], s2[k], s3[k], sa[k], kCenter);
    if (iou > thresh) bits |= 1ull << k;
  }
  mask[(base + i) * col_blocks + col] = bits;
}

// grid.y and grid.z are limited to 65535: col_blocks is (mask size limit), batches are not,
// so the batches go in launches of at most kMaxGridZ.
constexpr int64_t kMaxGridZ = 65535;

template <typename A>
void launch_mask(const DevBoxes<A>& boxes, int64_t batches, A thresh, bool center,
                 bool by_class, int col_blocks, uint64_t* mask, cudaStream_t stream) {
  auto kernel = center ? (by_class ? nms_mask_kernel<A, true, true> : nms_mask_kernel<A, true, false>)
                       : (by_class ? nms_mask_kernel<A, false, true> : nms_mask_kernel<A, false, false>);
  for (int64_t b0 = 0; b0 < batches; b0 += kMaxGridZ) {
    const int64_t nb = batches - b0 < kMaxGridZ ? batches - b0 : kMaxGridZ;
    const dim3 grid(col_blocks, col_blocks, static_cast<unsigned>(nb));
    launch("nms_mask_kernel", kernel, grid, kBlock, 0, stream, boxes, thresh, col_blocks, b0,
           mask);
  }
}

// Greedy pass, one block per batch, 64 boxes at a time: thread 0 resolves the chunk from its
// diagonal mask words (in shared memory); then the block ORs the kept rows into the words of
// later chunks. Stops once max_keep boxes are kept. keep[b][k]: candidate slot of the k-th
// kept box; keep_count[b]: how many.
__global__ void nms_greedy_kernel(const uint64_t* mask, const int* counts, int cap,
                                  int col_blocks, int max_keep, int* keep, int* keep_count) {
  FRCNN_DYNAMIC_SHARED(uint64_t, removed);
  __shared__ uint64_t diag[kBlock];
  __shared__ int chunk_keep[kBlock];
  __shared__ int chunk_n, total;
  const int64_t b = blockIdx.x;
  const int n = counts[b];
  const int nblk = (n + kBlock - 1) / kBlock;
  const uint64_t* m = mask + b * cap * col_blocks;
  for (int w = threadIdx.x; w < nblk; w += blockDim.x) removed[w] = 0;
  if (threadIdx.x == 0) total = 0;
  __syncthreads();
  for (int c = 0; c < nblk; ++c) {
    if (total >= max_keep) break;  // uniform: read after a barrier
    const int csize = min(n - c * kBlock, kBlock);
    if (threadIdx.x < csize)
      diag[threadIdx.x] = m[static_cast<int64_t>(c * kBlock + threadIdx.x) * col_blocks + c];
    __syncthreads();
    if (threadIdx.x == 0) {
      uint64_t word = removed[c];
      int nk = 0;
      for (int t = 0; t < csize && total + nk < max_keep; ++t) {
        if (!((word >> t) & 1ull)) {
          chunk_keep[nk++] = c * kBlock + t;
          word |= diag[t];
        }
      }
      removed[c] = word;
      chunk_n = nk;
    }
    __syncthreads();
    const int nk = chunk_n;
    for (int w = c + 1 + threadIdx.x; w < nblk; w += blockDim.x) {
      uint64_t acc = removed[w];
      for (int k = 0; k < nk; ++k) acc |= m[static_cast<int64_t>(chunk_keep[k]) * col_blocks + w];
      removed[w] = acc;
    }
    if (threadIdx.x < nk) keep[b * max_keep + total + threadIdx.x] =
        chunk_keep[threadIdx.x];
    __syncthreads();
    if (threadIdx.x == 0) total += nk;
    __syncthreads();
  }
  if (threadIdx.x == 0) keep_count[b] = total;
}

inline void launch_greedy(const uint64_t* mask, const int* counts, int64_t batches, int cap,
                          int col_blocks, int max_keep, int* keep, int* keep_count,
                          cudaStream_t stream) {
  const size_t smem = static_cast<size_t>(col_blocks) * sizeof(uint64_t);
  if (smem > 48 * 1024) {  // opt in above the default 48 KB of dynamic shared memory
    cudaError_t e = cudaFuncSetAttribute(nms_greedy_kernel,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem));
    if (e != cudaSuccess)
      throw Error(std::string("nms_greedy_kernel: ") + std::to_string(smem >> 10) +
                  " KB of shared memory: " + cudaGetErrorString(e));
  }
  launch("nms_greedy_kernel", nms_greedy_kernel, static_cast<unsigned>(batches), 256, smem,
         stream, mask, counts, cap, col_blocks, max_keep, keep, keep_count);
}

inline int col_blocks_for(int cap) { return (cap + kBlock - 1) / kBlock; }

}  // namespace
}  // namespace nms_dev
}  // namespace frcnn
