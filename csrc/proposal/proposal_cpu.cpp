#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/checks.h"
#include "common/half_cpu.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "nms/nms_cpu.h"
#include "proposal/proposal.h"

namespace frcnn {

namespace {

template <typename T>
void proposal_one(const T* scores, const T* deltas, const T* anchors, T im_h, T im_w,
                  int64_t N, const ProposalParams& p, T* out) {
  thread_local std::vector<uint32_t> order;
  thread_local BoxList<T> cand, kept;
  // 1. candidates: score > 0 (strict; NaN is never one), stable descending order; at first
  //    only a prefix a little longer than pre_nms (the walk below stops after pre_nms valid
  //    boxes), the whole order if that prefix runs out first (many invalid boxes at the top)
  const auto candidate = [](int64_t, T s) { return s > T(0); };
  bool complete = true;
  const size_t count = sorted_candidates(scores, 1, N, candidate, &order,
                                   static_cast<size_t>(p.pre_nms) + p.pre_nms / 8, &complete);
  // 2. walk the order: decode, clip, min size (+1); keep the first pre_nms valid boxes.
  //    Boxes under the min size get score -1 in GluonCV and so are never candidates of its
  //    box_nms; so are boxes with a NaN coordinate here (GluonCV would keep NaN boxes).
  cand.reserve(static_cast<int>(std::min<int64_t>(N, p.pre_nms)));  // pre_nms may be huge
  kept.reserve(p.post_nms);
  const T min_size = static_cast<T>(p.min_size);
  const auto walk = [&](size_t count) {
    int nvalid = 0;
    for (size_t r = 0; r < count && nvalid < p.pre_nms; ++r) {
      const uint32_t i = order[r];
      T box[4];
      decode_box<T>(deltas + 4 * static_cast<int64_t>(i),
                    anchors + 4 * static_cast<int64_t>(i), p.decode, box);
      box[0] = clip_coord(box[0], im_w);
      box[1] = clip_coord(box[1], im_h);
      box[2] = clip_coord(box[2], im_w);
      box[3] = clip_coord(box[3], im_h);
      const T w = box[2] - box[0] + T(1);
      const T h = box[3] - box[1] + T(1);
      if (!(w >= min_size) || !(h >= min_size)) continue;  // also drops NaN
      cand.set(nvalid, box[0], box[1], box[2], box[3],
               nms_box_area<T>(box[0], box[1], box[2], box[3], false), 0, i);
      ++nvalid;
    }
    return nvalid;
  };
  int nvalid = walk(count);
  if (nvalid < p.pre_nms && !complete)
    nvalid = walk(sorted_candidates(scores, 1, N, candidate, &order));
  // 3. greedy NMS, stopping once post_nms boxes are kept (same result as the full pass)
  const int nkeep = greedy_nms(cand, nvalid, static_cast<T>(p.threshold), false, false,
                               p.post_nms, &kept);
  // 4. [score, x1, y1, x2, y2], then -1 rows
  for (int k = 0; k < nkeep; ++k) {
    T* o = out + 5 * k;
    o[0] = scores[kept.src[k]];
    o[1] = kept.c0[k]; o[2] = kept.c1[k]; o[3] = kept.c2[k]; o[4] = kept.c3[k];
  }
  for (int64_t k = 5 * static_cast<int64_t>(nkeep); k < 5 * static_cast<int64_t>(p.post_nms); ++k)
    out[k] = T(-1);
}

template <typename T>
void proposal_impl(const T* scores, const T* deltas, const T* anchors, const T* im_info, T* out,
                   int64_t B, int64_t N, int64_t anchor_batch, int64_t info_cols,
                   const ProposalParams& p) {
  // One image takes ~0.4 ms (6000 -> 300): threads from two images a thread, so that a
  // parallel region is long enough to be worth a possible scheduler stall on a busy machine.
  const int nt = threads_for(B, 2);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
  for (int64_t b = 0; b < B; ++b) {
    proposal_one<T>(scores + b * N, deltas + b * N * 4,
                    anchors + (anchor_batch == 1 ? 0 : b) * N * 4, im_info[b * info_cols],
                    im_info[b * info_cols + 1], N, p, out + b * p.post_nms * 5);
  }
}

// GluonCV's RPN with per_level_nms: each level (levels[l] anchors, in order along N) gets its
// own proposal step with top-k = pre_nms / levels and as many kept; then every level's kept
// boxes in descending score order (ties: level order, then rank in the level; GluonCV's
// box_nms with overlap 2 over the concatenation), the first post_nms.
template <typename T>
void proposal_levels_impl(const T* scores, const T* deltas, const T* anchors, const T* im_info,
                          T* out, int64_t B, int64_t N, int64_t anchor_batch, int64_t info_cols,
                          const std::vector<int64_t>& levels, const ProposalParams& p) {
  const int64_t L = static_cast<int64_t>(levels.size());
  ProposalParams lp = p;
  lp.pre_nms = lp.post_nms = static_cast<int>(p.pre_nms / L);
  const int64_t k = lp.post_nms;
  const int nt = threads_for(B, 2);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
  for (int64_t b = 0; b < B; ++b) {
    thread_local std::vector<T> merged;
    thread_local std::vector<uint32_t> order;
    merged.resize(static_cast<size_t>(L * k * 5));
    int64_t off = 0;
    for (int64_t l = 0; l < L; ++l) {
      proposal_one<T>(scores + b * N + off, deltas + (b * N + off) * 4,
                      anchors + ((anchor_batch == 1 ? 0 : b) * N + off) * 4,
                      im_info[b * info_cols], im_info[b * info_cols + 1], levels[l], lp,
                      merged.data() + l * k * 5);
      off += levels[l];
    }
    order.clear();
    for (int64_t r = 0; r < L * k; ++r)
      if (merged[r * 5] > T(0)) order.push_back(static_cast<uint32_t>(r));
    std::stable_sort(order.begin(), order.end(),
                     [&](uint32_t x, uint32_t y) { return merged[x * 5] > merged[y * 5]; });
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(order.size()), p.post_nms);
    T* o = out + b * p.post_nms * 5;
    for (int64_t r = 0; r < n; ++r)
      for (int c = 0; c < 5; ++c) o[r * 5 + c] = merged[order[r] * 5 + c];
    std::fill(o + n * 5, o + static_cast<int64_t>(p.post_nms) * 5, T(-1));
  }
}

}  // namespace

void proposal_levels_cpu(DType dt, const void* scores, const void* deltas, const void* anchors,
                         const void* im_info, void* out, int64_t B, int64_t N,
                         int64_t anchor_batch, int64_t info_cols,
                         const std::vector<int64_t>& levels, const ProposalParams& p) {
  if (dt == DType::kFloat16) {
    HalfAsFloat h;
    proposal_levels_cpu(DType::kFloat32, h.in(scores, B * N), h.in(deltas, B * N * 4),
                        h.in(anchors, anchor_batch * N * 4), h.in(im_info, B * info_cols),
                        h.out(out, B * int64_t(p.post_nms) * 5), B, N, anchor_batch, info_cols,
                        levels, p);
    return h.finish();
  }
  FRCNN_DISPATCH_CPU(dt, "frcnn_proposal",
                     proposal_levels_impl(static_cast<const scalar_t*>(scores),
                                          static_cast<const scalar_t*>(deltas),
                                          static_cast<const scalar_t*>(anchors),
                                          static_cast<const scalar_t*>(im_info),
                                          static_cast<scalar_t*>(out), B, N, anchor_batch,
                                          info_cols, levels, p));
}

void proposal_multilevel_cpu(DType dt, const std::vector<const void*>& scores,
                             const std::vector<const void*>& deltas, const void* anchors,
                             const void* im_info, void* out, int64_t B,
                             const std::vector<int64_t>& levels, int64_t anchor_batch,
                             int64_t info_cols, bool per_level_nms, const ProposalParams& p) {
  const size_t es = dtype_size(dt);
  int64_t N = 0;
  for (int64_t n : levels) N += n;
  // the levels concatenated along N, image by image: scores (B, N), then deltas (B, N, 4)
  Scratch buf(std::max<size_t>(1, static_cast<size_t>(B * N * 5) * es));
  char* cat_scores = buf.as<char>();
  char* cat_deltas = cat_scores + static_cast<size_t>(B * N) * es;
  for (int64_t b = 0; b < B; ++b) {
    int64_t off = 0;
    for (size_t l = 0; l < levels.size(); ++l) {
      const size_t n = static_cast<size_t>(levels[l]);
      std::memcpy(cat_scores + (b * N + off) * es,
                  static_cast<const char*>(scores[l]) + b * n * es, n * es);
      std::memcpy(cat_deltas + (b * N + off) * 4 * es,
                  static_cast<const char*>(deltas[l]) + b * n * 4 * es, n * 4 * es);
      off += levels[l];
    }
  }
  if (per_level_nms)
    proposal_levels_cpu(dt, cat_scores, cat_deltas, anchors, im_info, out, B, N, anchor_batch,
                        info_cols, levels, p);
  else
    proposal_cpu(dt, cat_scores, cat_deltas, anchors, im_info, out, B, N, anchor_batch,
                 info_cols, p);
}

void proposal_cpu(DType dt, const void* scores, const void* deltas, const void* anchors,
                  const void* im_info, void* out, int64_t B, int64_t N, int64_t anchor_batch,
                  int64_t info_cols, const ProposalParams& p) {
  if (dt == DType::kFloat16) {
    HalfAsFloat h;
    proposal_cpu(DType::kFloat32, h.in(scores, B * N), h.in(deltas, B * N * 4),
                 h.in(anchors, anchor_batch * N * 4), h.in(im_info, B * info_cols),
                 h.out(out, B * int64_t(p.post_nms) * 5), B, N, anchor_batch, info_cols, p);
    return h.finish();
  }
  FRCNN_DISPATCH_CPU(dt, "frcnn_proposal",
                     proposal_impl(static_cast<const scalar_t*>(scores),
                                   static_cast<const scalar_t*>(deltas),
                                   static_cast<const scalar_t*>(anchors),
                                   static_cast<const scalar_t*>(im_info),
                                   static_cast<scalar_t*>(out), B, N, anchor_batch, info_cols, p));
}

}  // namespace frcnn
