// Fused RPN proposal on the GPU, all on one stream with no host synchronisation:
//   keys (score > 0) -> segmented stable radix sort per image -> decode, clip and min-size
//   test in score order -> compaction of the first pre_nms valid boxes (CUB scan) ->
//   bitmask IoU -> greedy pass on the device with an early exit at post_nms -> output.
// per_level_nms (proposal_levels_cuda): that pipeline per FPN level on a gathered copy of the
// level's rows, then the levels' kept boxes ordered by nms_cuda (GluonCV's merge step).
#include <algorithm>
#include <type_traits>

#include "box_coder/box_coder_math.h"
#include "nms/nms_cuda.cuh"
#include "nms/nms.h"
#include "proposal/proposal.h"

namespace frcnn {
namespace {

using nms_dev::Carver;
using nms_dev::DevBoxes;

using nms_dev::KeyOf;
using nms_dev::kMaxMaskBytes;

template <typename T>
__global__ void score_keys_kernel(const T* scores, int64_t total, KeyOf<T>* keys,
                                  uint32_t* idx, int64_t N) {
  using A = typename Acc<T>::type;
  CUDA_1D_KERNEL_LOOP(i, total) {
    const A s = load(scores + i);
    keys[i] = s > A(0) ? desc_key(s) : ~KeyOf<T>(0);  // non-candidates sort last
    idx[i] = static_cast<uint32_t>(i % N);
  }
}

// Decodes the box at sorted position r of image b; flag = candidate and valid.
template <typename T>
__global__ void decode_sorted_kernel(const KeyOf<T>* keys, const uint32_t* order,
                                     const T* deltas, const T* anchors, const T* im_info,
                                     int64_t B, int64_t N, int64_t anchor_batch,
                                     int64_t info_cols, ProposalParams p,
                                     typename Acc<T>::type* boxes, int* flags) {
  using A = typename Acc<T>::type;
  CUDA_1D_KERNEL_LOOP(g, B * N) {
    const int64_t b = g / N;
    int flag = 0;
    A box[4] = {A(0), A(0), A(0), A(0)};
    if (keys[g] != ~KeyOf<T>(0)) {
      const int64_t i = order[g];
      const T* d = deltas + (b * N + i) * 4;
      const T* a = anchors + ((anchor_batch == 1 ? 0 : b) * N + i) * 4;
      A dd[4], aa[4];
      for (int k = 0; k < 4; ++k) { dd[k] = load(d + k); aa[k] = load(a + k); }
      decode_box<A>(dd, aa, p.decode, box);
      const A h = load(im_info + b * info_cols), w = load(im_info + b * info_cols + 1);
      box[0] = clip_coord(box[0], w);
      box[1] = clip_coord(box[1], h);
      box[2] = clip_coord(box[2], w);
      box[3] = clip_coord(box[3], h);
      const A bw = box[2] - box[0] + A(1), bh = box[3] - box[1] + A(1);
      const A ms = static_cast<A>(p.min_size);
      flag = (bw >= ms && bh >= ms) ? 1 : 0;  // NaN boxes fail too
    }
    for (int k = 0; k < 4; ++k) boxes[g * 4 + k] = box[k];
    flags[g] = flag;
  }
}

// Moves the first pre_nms valid boxes of each image (in score order) to the candidates.
template <typename T>
__global__ void compact_kernel(const typename Acc<T>::type* boxes, const int* flags,
                               const int* pos, const uint32_t* order, int64_t B, int64_t N,
                               int pre, DevBoxes<typename Acc<T>::type> cand) {
  using A = typename Acc<T>::type;
  CUDA_1D_KERNEL_LOOP(g, B * N) {
    const int64_t b = g / N;
    const int local = pos[g] - pos[b * N];
    if (g - b * N == N - 1) cand.count[b] = min(local + flags[g], pre);
    if (!flags[g] || local >= pre) continue;
    const int64_t slot = b * cand.cap + local;
    const A* x = boxes + g * 4;
    cand.c0[slot] = x[0]; cand.c1[slot] = x[1]; cand.c2[slot] = x[2]; cand.c3[slot] = x[3];
    cand.area[slot] = nms_box_area<A>(x[0], x[1], x[2], x[3], false);
    cand.cls[slot] = 0;
    cand.src[slot] = order[g];
  }
}

template <typename T>
__global__ void proposal_output_kernel(const T* scores, const int* keep, const int* keep_count,
                                       DevBoxes<typename Acc<T>::type> cand, int64_t B,
                                       int64_t N, int post, T* out) {
  using A = typename Acc<T>::type;
  CUDA_1D_KERNEL_LOOP(g, B * post) {
    const int64_t b = g / post;
    const int k = static_cast<int>(g - b * post);
    T* o = out + g * 5;
    if (k < keep_count[b]) {
      const int64_t slot = b * cand.cap + keep[b * post + k];
      o[0] = scores[b * N + cand.src[slot]];
      store(o + 1, cand.c0[slot]);
      store(o + 2, cand.c1[slot]);
      store(o + 3, cand.c2[slot]);
      store(o + 4, cand.c3[slot]);
    } else {
      for (int c = 0; c < 5; ++c) store(o + c, A(-1));
    }
  }
}

template <typename T>
struct Plan {
  using A = typename Acc<T>::type;
  using K = KeyOf<T>;
  K *keys, *keys_sorted;
  uint32_t *idx, *order;
  int *offsets, *flags, *pos, *keep, *keep_count;
  A* boxes;
  DevBoxes<A> cand;
  uint64_t* mask;
  void *sort_temp, *scan_temp;
  nms_dev::SegmentedSort<K> sort;
  size_t scan_bytes = 0;
  int cap, col_blocks;

  size_t carve(void* ws, int64_t B, int64_t N, const ProposalParams& p) {
    // CUB sizes and offsets are int: refuse before any size query can overflow
    if (B * N > INT32_MAX)
      throw Error("frcnn_proposal: " + std::to_string(B) + " images x " + std::to_string(N) +
                  " anchors = " + std::to_string(B * N) +
                  " boxes; the GPU kernels take fewer than 2^31");
    cap = static_cast<int>(std::min<int64_t>(N, p.pre_nms));
    if (cap < 1) cap = 1;
    col_blocks = nms_dev::col_blocks_for(cap);
    const size_t mask_bytes = static_cast<size_t>(B) * cap * col_blocks * 8;
    if (mask_bytes > kMaxMaskBytes)
      throw Error("frcnn_proposal: rpn_pre_nms_top_n = " + std::to_string(p.pre_nms) + " (" +
                  std::to_string(cap) + " boxes per image) x " + std::to_string(B) +
                  " images need " + std::to_string(mask_bytes >> 20) +
                  " MiB of IoU bits on the GPU (limit 1024 MiB): lower rpn_pre_nms_top_n");
    sort.size(B, N);
    cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, (const int*)nullptr, (int*)nullptr,
                                  static_cast<int>(B * N));
    Carver c(ws);
    const size_t total = static_cast<size_t>(B * N);
    keys = c.take<K>(total); keys_sorted = c.take<K>(total);
    idx = c.take<uint32_t>(total); order = c.take<uint32_t>(total);
    offsets = c.take<int>(B + 1);
    boxes = c.take<A>(total * 4);
    flags = c.take<int>(total); pos = c.take<int>(total);
    cand.carve(c, B, cap);
    mask = c.take<uint64_t>(static_cast<size_t>(B) * cap * col_blocks);
    keep = c.take<int>(static_cast<size_t>(B) * p.post_nms);
    keep_count = c.take<int>(B);
    sort_temp = c.take<char>(sort.temp_bytes);
    scan_temp = c.take<char>(scan_bytes);
    return c.used + 256;
  }
};

template <typename T>
void proposal_impl(const T* scores, const T* deltas, const T* anchors, const T* im_info, T* out,
                   int64_t B, int64_t N, int64_t anchor_batch, int64_t info_cols,
                   const ProposalParams& p, void* ws, size_t ws_bytes, cudaStream_t stream) {
  using A = typename Acc<T>::type;
  if (B == 0) return;
  if (N == 0) {  // nothing to propose: every row is -1
    launch("frcnn_proposal: fill_kernel", nms_dev::fill_kernel<T>, blocks_for(B * p.post_nms * 5),
           kThreads, 0, stream, out, B * p.post_nms * 5, A(-1));
    return;
  }
  Plan<T> plan;
  const size_t need = plan.carve(nullptr, B, N, p);
  if (ws == nullptr || ws_bytes < need)
    throw Error("frcnn_proposal: workspace of " + std::to_string(ws_bytes) + " bytes, needs " +
                std::to_string(need));
  plan.carve(reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(ws) + 255) & ~uintptr_t(255)),
             B, N, p);
  const int64_t total = B * N;
  launch("frcnn_proposal: score_keys_kernel", score_keys_kernel<T>, blocks_for(total), kThreads, 0,
         stream, scores, total, plan.keys, plan.idx, N);
  launch("frcnn_proposal: segment_offsets_kernel", nms_dev::segment_offsets_kernel,
         blocks_for(B + 1), kThreads, 0, stream, plan.offsets, B, N);
  plan.sort.run(plan.sort_temp, plan.keys, plan.keys_sorted, plan.idx, plan.order, plan.offsets,
                B, N, stream);
  launch("frcnn_proposal: decode_sorted_kernel", decode_sorted_kernel<T>, blocks_for(total),
         kThreads, 0, stream, plan.keys_sorted, plan.order, deltas, anchors, im_info, B, N,
         anchor_batch, info_cols, p, plan.boxes, plan.flags);
  size_t scan_bytes = plan.scan_bytes;
  cudaError_t e = cub::DeviceScan::ExclusiveSum(plan.scan_temp, scan_bytes, plan.flags, plan.pos,
                                                static_cast<int>(total), stream);
  if (e != cudaSuccess) throw Error(std::string("frcnn_proposal: scan: ") + cudaGetErrorString(e));
  launch("frcnn_proposal: compact_kernel", compact_kernel<T>, blocks_for(total), kThreads, 0,
         stream, plan.boxes, plan.flags, plan.pos, plan.order, B, N, plan.cap, plan.cand);
  nms_dev::launch_mask<A>(plan.cand, B, static_cast<A>(p.threshold), false, false,
                          plan.col_blocks, plan.mask, stream);
  nms_dev::launch_greedy(plan.mask, plan.cand.count, B, plan.cap, plan.col_blocks, p.post_nms,
                         plan.keep, plan.keep_count, stream);
  launch("frcnn_proposal: proposal_output_kernel", proposal_output_kernel<T>,
         blocks_for(B * p.post_nms), kThreads, 0, stream, scores, plan.keep, plan.keep_count,
         plan.cand, B, N, p.post_nms, out);
}

template <typename T>
DType dtype_of() {
  return std::is_same<T, double>::value ? DType::kFloat64
         : std::is_same<T, float>::value ? DType::kFloat32 : DType::kFloat16;
}

// Per image b: dst[b * dst_stride + j] = src[b * src_stride + j] for j < n, or `value` where
// src is null (the per-level path's gathers, merges and -1 padding).
template <typename T>
__global__ void rows_kernel(const T* src, int64_t src_stride, T* dst, int64_t dst_stride,
                            int64_t B, int64_t n, typename Acc<T>::type value) {
  CUDA_1D_KERNEL_LOOP(i, B * n) {
    const int64_t b = i / n, j = i % n;
    if (src != nullptr)
      dst[b * dst_stride + j] = src[b * src_stride + j];
    else
      store(dst + b * dst_stride + j, value);
  }
}

template <typename T>
void rows(const char* what, const T* src, int64_t src_stride, T* dst, int64_t dst_stride,
          int64_t B, int64_t n, cudaStream_t stream, float value = 0.f) {
  if (B * n == 0) return;
  launch(what, rows_kernel<T>, blocks_for(B * n), kThreads, 0, stream, src, src_stride, dst,
         dst_stride, B, n, static_cast<typename Acc<T>::type>(value));
}

// The per-level path's scratch: one level's inputs and output, the merged levels, their
// ordering by nms, and the larger of one level's proposal workspace and the nms workspace
// (used one after the other on the stream).
template <typename T>
struct LevelPlan {
  T *scores = nullptr, *deltas = nullptr, *anchors = nullptr, *level_out = nullptr;
  T *merged = nullptr, *sorted = nullptr;
  void* ws = nullptr;
  size_t ws_bytes = 0;

  size_t carve(void* base, int64_t B, int64_t anchor_batch, const std::vector<int64_t>& levels,
               const ProposalParams& lp, const NmsParams& np) {
    const int64_t L = static_cast<int64_t>(levels.size()), k = lp.post_nms;
    int64_t n_max = 0;
    for (int64_t n : levels) n_max = std::max(n_max, n);
    ws_bytes = nms_cuda_workspace(dtype_of<T>(), B, L * k, 5, np);
    for (int64_t n : levels)
      ws_bytes = std::max(ws_bytes, proposal_cuda_workspace(dtype_of<T>(), B, n, lp));
    Carver c(base);
    scores = c.take<T>(B * n_max);
    deltas = c.take<T>(B * n_max * 4);
    anchors = c.take<T>(anchor_batch * n_max * 4);
    level_out = c.take<T>(B * k * 5);
    merged = c.take<T>(B * L * k * 5);
    sorted = c.take<T>(B * L * k * 5);
    ws = c.take<char>(ws_bytes);
    return c.used + 256;
  }
};

NmsParams merge_params(const ProposalParams& p) {
  NmsParams np;  // GluonCV: box_nms(overlap 2, topk pre_nms + 1, coord_start 1, score_index 0)
  np.overlap_thresh = 2.f;
  np.topk = p.pre_nms + 1;
  np.coord_start = 1;
  np.score_index = 0;
  np.force_suppress = true;
  return np;
}

ProposalParams level_params(const ProposalParams& p, size_t levels) {
  ProposalParams lp = p;
  lp.pre_nms = lp.post_nms = static_cast<int>(p.pre_nms / static_cast<int64_t>(levels));
  return lp;
}

template <typename T>
void proposal_levels_impl(const T* scores, const T* deltas, const T* anchors, const T* im_info,
                          T* out, int64_t B, int64_t N, int64_t anchor_batch, int64_t info_cols,
                          const std::vector<int64_t>& levels, const ProposalParams& p, void* ws,
                          size_t ws_bytes, cudaStream_t stream) {
  if (B == 0) return;
  const ProposalParams lp = level_params(p, levels.size());
  const NmsParams np = merge_params(p);
  const int64_t L = static_cast<int64_t>(levels.size()), k = lp.post_nms;
  LevelPlan<T> plan;
  const size_t need = plan.carve(nullptr, B, anchor_batch, levels, lp, np);
  if (ws == nullptr || ws_bytes < need)
    throw Error("frcnn_proposal: workspace of " + std::to_string(ws_bytes) + " bytes, needs " +
                std::to_string(need));
  plan.carve(reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(ws) + 255) & ~uintptr_t(255)),
             B, anchor_batch, levels, lp, np);
  int64_t off = 0;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t n = levels[l];
    rows("frcnn_proposal: rows_kernel (scores)", scores + off, N, plan.scores, n, B, n, stream);
    rows("frcnn_proposal: rows_kernel (deltas)", deltas + off * 4, N * 4, plan.deltas, n * 4, B,
         n * 4, stream);
    rows("frcnn_proposal: rows_kernel (anchors)", anchors + off * 4, N * 4, plan.anchors, n * 4,
         anchor_batch, n * 4, stream);
    proposal_impl<T>(plan.scores, plan.deltas, plan.anchors, im_info, plan.level_out, B, n,
                     anchor_batch, info_cols, lp, plan.ws, plan.ws_bytes, stream);
    rows("frcnn_proposal: rows_kernel (merge)", plan.level_out, k * 5, plan.merged + l * k * 5,
         L * k * 5, B, k * 5, stream);
    off += n;
  }
  nms_cuda(dtype_of<T>(), plan.merged, plan.sorted, B, L * k, 5, np, plan.ws, plan.ws_bytes,
           stream);
  const int64_t n_out = std::min<int64_t>(p.post_nms, L * k);
  rows("frcnn_proposal: rows_kernel (out)", static_cast<const T*>(plan.sorted), L * k * 5, out,
       int64_t(p.post_nms) * 5, B, n_out * 5, stream);
  rows("frcnn_proposal: rows_kernel (pad)", static_cast<const T*>(nullptr), 0,
       out + n_out * 5, int64_t(p.post_nms) * 5, B, (p.post_nms - n_out) * 5, stream, -1.f);
}

// frcnn_multilevel_proposal's gather: level l's rows of every image to columns [off, off + n)
// of the concatenated scores (B, N) and deltas (B, N, 4).
template <typename T>
void gather_levels(const std::vector<const void*>& scores, const std::vector<const void*>& deltas,
                   const std::vector<int64_t>& levels, int64_t B, int64_t N, T* cat_scores,
                   T* cat_deltas, cudaStream_t stream) {
  int64_t off = 0;
  for (size_t l = 0; l < levels.size(); ++l) {
    const int64_t n = levels[l];
    rows("frcnn_multilevel_proposal: rows_kernel (scores)", static_cast<const T*>(scores[l]), n,
         cat_scores + off, N, B, n, stream);
    rows("frcnn_multilevel_proposal: rows_kernel (deltas)", static_cast<const T*>(deltas[l]),
         n * 4, cat_deltas + off * 4, N * 4, B, n * 4, stream);
    off += n;
  }
}

size_t align256(size_t n) { return (n + 255) & ~size_t(255); }

int64_t sum_of(const std::vector<int64_t>& levels) {
  int64_t N = 0;
  for (int64_t n : levels) N += n;
  return N;
}

}  // namespace

size_t proposal_multilevel_cuda_workspace(DType dt, int64_t B,
                                          const std::vector<int64_t>& levels,
                                          bool per_level_nms, const ProposalParams& p) {
  if (B == 0) return 0;
  const int64_t N = sum_of(levels);
  const size_t es = dtype_size(dt);
  const size_t inner = per_level_nms ? proposal_levels_cuda_workspace(dt, B, levels, p)
                                     : proposal_cuda_workspace(dt, B, N, p);
  return 256 + align256(static_cast<size_t>(B * N * 5) * es) + inner;
}

void proposal_multilevel_cuda(DType dt, const std::vector<const void*>& scores,
                              const std::vector<const void*>& deltas, const void* anchors,
                              const void* im_info, void* out, int64_t B,
                              const std::vector<int64_t>& levels, int64_t anchor_batch,
                              int64_t info_cols, bool per_level_nms, const ProposalParams& p,
                              void* workspace, size_t workspace_bytes, void* stream) {
  if (B == 0) return;
  const int64_t N = sum_of(levels);
  const size_t es = dtype_size(dt);
  const size_t need = proposal_multilevel_cuda_workspace(dt, B, levels, per_level_nms, p);
  if (workspace == nullptr || workspace_bytes < need)
    throw Error("frcnn_multilevel_proposal: workspace of " + std::to_string(workspace_bytes) +
                " bytes, needs " + std::to_string(need));
  char* base = reinterpret_cast<char*>(
      (reinterpret_cast<uintptr_t>(workspace) + 255) & ~uintptr_t(255));
  char* cat_scores = base;
  char* cat_deltas = base + static_cast<size_t>(B * N) * es;
  char* inner = base + align256(static_cast<size_t>(B * N * 5) * es);
  const size_t inner_bytes = workspace_bytes - static_cast<size_t>(inner - static_cast<char*>(workspace));
  FRCNN_DISPATCH_CUDA(dt, "frcnn_multilevel_proposal",
    gather_levels<scalar_t>(scores, deltas, levels, B, N,
                            reinterpret_cast<scalar_t*>(cat_scores),
                            reinterpret_cast<scalar_t*>(cat_deltas), as_stream(stream)));
  if (per_level_nms)
    proposal_levels_cuda(dt, cat_scores, cat_deltas, anchors, im_info, out, B, N, anchor_batch,
                         info_cols, levels, p, inner, inner_bytes, stream);
  else
    proposal_cuda(dt, cat_scores, cat_deltas, anchors, im_info, out, B, N, anchor_batch,
                  info_cols, p, inner, inner_bytes, stream);
}

size_t proposal_levels_cuda_workspace(DType dt, int64_t B, const std::vector<int64_t>& levels,
                                      const ProposalParams& p) {
  if (B == 0) return 0;
  FRCNN_DISPATCH_CUDA(dt, "frcnn_proposal", {
    LevelPlan<scalar_t> plan;
    return plan.carve(nullptr, B, B, levels, level_params(p, levels.size()), merge_params(p));
  });
  return 0;
}

void proposal_levels_cuda(DType dt, const void* scores, const void* deltas, const void* anchors,
                          const void* im_info, void* out, int64_t B, int64_t N,
                          int64_t anchor_batch, int64_t info_cols,
                          const std::vector<int64_t>& levels, const ProposalParams& p,
                          void* workspace, size_t workspace_bytes, void* stream) {
  FRCNN_DISPATCH_CUDA(dt, "frcnn_proposal",
    proposal_levels_impl<scalar_t>(static_cast<const scalar_t*>(scores),
                                   static_cast<const scalar_t*>(deltas),
                                   static_cast<const scalar_t*>(anchors),
                                   static_cast<const scalar_t*>(im_info),
                                   static_cast<scalar_t*>(out), B, N, anchor_batch, info_cols,
                                   levels, p, workspace, workspace_bytes, as_stream(stream)));
}

size_t proposal_cuda_workspace(DType dt, int64_t B, int64_t N, const ProposalParams& p) {
  if (B == 0 || N == 0) return 0;
  FRCNN_DISPATCH_CUDA(dt, "frcnn_proposal", { Plan<scalar_t> plan; return plan.carve(nullptr, B, N, p); });
  return 0;
}

void proposal_cuda(DType dt, const void* scores, const void* deltas, const void* anchors,
                   const void* im_info, void* out, int64_t B, int64_t N, int64_t anchor_batch,
                   int64_t info_cols, const ProposalParams& p, void* workspace,
                   size_t workspace_bytes, void* stream) {
  FRCNN_DISPATCH_CUDA(dt, "frcnn_proposal",
    proposal_impl<scalar_t>(static_cast<const scalar_t*>(scores),
                            static_cast<const scalar_t*>(deltas),
                            static_cast<const scalar_t*>(anchors),
                            static_cast<const scalar_t*>(im_info), static_cast<scalar_t*>(out), B,
                            N, anchor_batch, info_cols, p, workspace, workspace_bytes,
                            as_stream(stream)));
}

}  // namespace frcnn
