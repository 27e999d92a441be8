#include <algorithm>
#include <cstring>

#include "common/checks.h"
#include "common/half_cpu.h"
#include "common/parallel.h"
#include "nms/nms_cpu.h"
#include "nms/nms.h"

namespace frcnn {

namespace {

// The rows box_nms keeps from one batch, in output order: fills kept->src[0..count), returns
// count. Deterministic: forward and backward select the same rows.
template <typename T>
int nms_select(const T* data, int64_t n, int64_t width, const NmsParams& p, BoxList<T>* kept) {
  thread_local std::vector<uint32_t> order;
  thread_local BoxList<T> cand;
  const T valid = static_cast<T>(p.valid_thresh);
  const T background = static_cast<T>(p.background_id);
  const bool use_id = p.id_index >= 0;
  const T* score_col = data + p.score_index;
  // candidates: score > valid_thresh (strict), id != background_id when ids are given
  const size_t count = sorted_candidates(
      score_col, width, n,
      [&](int64_t i, T s) {
        return s > valid && (!use_id || data[i * width + p.id_index] != background);
      },
      &order);
  const int topk = static_cast<int>(p.topk < 0 ? count : std::min<size_t>(count, p.topk));
  const bool by_class = use_id && !p.force_suppress;
  cand.reserve(topk);
  kept->reserve(topk);
  for (int r = 0; r < topk; ++r) {
    const T* row = data + static_cast<int64_t>(order[r]) * width;
    const T* c = row + p.coord_start;
    const int cls = by_class ? nms_class_id<T>(row[p.id_index]) : 0;
    cand.set(r, c[0], c[1], c[2], c[3], nms_box_area<T>(c[0], c[1], c[2], c[3], p.in_center),
             cls, order[r]);
  }
  return greedy_nms(cand, topk, static_cast<T>(p.overlap_thresh), p.in_center, by_class, topk,
                    kept);
}

template <typename T>
void nms_one(const T* data, T* out, int64_t n, int64_t width, const NmsParams& p) {
  thread_local BoxList<T> kept;
  const int nkeep = nms_select<T>(data, n, width, p, &kept);
  for (int k = 0; k < nkeep; ++k) {
    T* o = out + static_cast<int64_t>(k) * width;
    std::memcpy(o, data + static_cast<int64_t>(kept.src[k]) * width, width * sizeof(T));
    if (p.in_center != p.out_center) {
      if (p.out_center)
        corner_to_center<T>(o + p.coord_start);
      else
        center_to_corner<T>(o + p.coord_start);
    }
  }
  std::fill(out + static_cast<int64_t>(nkeep) * width, out + n * width, T(-1));
}

// box_nms's gradient: output row k's gradient goes, all columns and unchanged (also when
// out_format != in_format), to the input row the k-th kept row came from; every other input
// row gets 0.
template <typename T>
void nms_backward_one(const T* grad_out, const T* data, T* grad_data, int64_t n, int64_t width,
                      const NmsParams& p) {
  thread_local BoxList<T> kept;
  const int nkeep = nms_select<T>(data, n, width, p, &kept);
  std::fill(grad_data, grad_data + n * width, T(0));
  for (int k = 0; k < nkeep; ++k)
    std::memcpy(grad_data + static_cast<int64_t>(kept.src[k]) * width,
                grad_out + static_cast<int64_t>(k) * width, width * sizeof(T));
}

// Threads across batches only for enough rows (~1 ms): a shorter parallel region gains
// little and stalls for a scheduler slice when another process holds a core.
inline int nms_threads(int64_t batches, int64_t n) {
  return std::min(threads_for(batches, 1), threads_for(batches * n, 32768));
}

template <typename T>
void nms_impl(const T* data, T* out, int64_t batches, int64_t n, int64_t width,
              const NmsParams& p) {
  if (p.topk == 0) {  // box_nms returns its input unchanged when topk < 1
    std::memcpy(out, data, static_cast<size_t>(batches * n * width) * sizeof(T));
    return;
  }
  const int nt = nms_threads(batches, n);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
  for (int64_t b = 0; b < batches; ++b)
    nms_one<T>(data + b * n * width, out + b * n * width, n, width, p);
}

template <typename T>
void nms_backward_impl(const T* grad_out, const T* data, T* grad_data, int64_t batches,
                       int64_t n, int64_t width, const NmsParams& p) {
  if (p.topk == 0) {  // the identity's gradient (box_nms records every row as its own source)
    std::memcpy(grad_data, grad_out, static_cast<size_t>(batches * n * width) * sizeof(T));
    return;
  }
  const int nt = nms_threads(batches, n);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
  for (int64_t b = 0; b < batches; ++b)
    nms_backward_one<T>(grad_out + b * n * width, data + b * n * width,
                        grad_data + b * n * width, n, width, p);
}

}  // namespace

void nms_cpu(DType dt, const void* data, void* out, int64_t batches, int64_t n, int64_t width,
             const NmsParams& p) {
  if (dt == DType::kFloat16) {
    HalfAsFloat h;
    nms_cpu(DType::kFloat32, h.in(data, batches * n * width), h.out(out, batches * n * width),
            batches, n, width, p);
    return h.finish();
  }
  FRCNN_DISPATCH_CPU(dt, "frcnn_nms",
                     nms_impl(static_cast<const scalar_t*>(data), static_cast<scalar_t*>(out),
                              batches, n, width, p));
}

void nms_backward_cpu(DType dt, const void* grad_out, const void* data, void* grad_data,
                      int64_t batches, int64_t n, int64_t width, const NmsParams& p) {
  if (dt == DType::kFloat16) {
    HalfAsFloat h;
    const int64_t total = batches * n * width;
    nms_backward_cpu(DType::kFloat32, h.in(grad_out, total), h.in(data, total),
                     h.out(grad_data, total), batches, n, width, p);
    return h.finish();
  }
  FRCNN_DISPATCH_CPU(dt, "frcnn_nms",
                     nms_backward_impl(static_cast<const scalar_t*>(grad_out),
                                       static_cast<const scalar_t*>(data),
                                       static_cast<scalar_t*>(grad_data), batches, n, width, p));
}

}  // namespace frcnn
