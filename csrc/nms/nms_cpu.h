// CPU greedy NMS over candidates already in score order, shared by proposal and nms.
// Candidates and kept boxes are held as structure-of-arrays so that the IoU test of one
// candidate against all kept boxes vectorises.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "nms/nms_math.h"
#include "nms/radix_sort.h"

namespace frcnn {

template <typename T>
struct BoxList {
  std::vector<T> c0, c1, c2, c3, area;
  std::vector<int> cls;
  std::vector<uint32_t> src;  // where the box came from (row index)
  int size = 0;

  void reserve(size_t n) {
    c0.resize(n); c1.resize(n); c2.resize(n); c3.resize(n); area.resize(n); cls.resize(n);
    src.resize(n);
  }
  void set(int i, T a, T b, T c, T d, T ar, int k, uint32_t s) {
    c0[i] = a; c1[i] = b; c2[i] = c; c3[i] = d; area[i] = ar; cls[i] = k; src[i] = s;
  }
};

// Does candidate (b0..b3, barea, bcls) overlap a kept box by more than thresh?
// Blocks of 64 kept boxes, with an early exit between blocks.
#define FRCNN_ALWAYS_INLINE inline __attribute__((always_inline))

template <typename T, bool kCenter, bool kByClass>
FRCNN_ALWAYS_INLINE bool suppressed_by(const BoxList<T>& kept, T b0, T b1, T b2, T b3, T barea, int bcls,
                          T thresh) {
  const T* k0 = kept.c0.data();
  const T* k1 = kept.c1.data();
  const T* k2 = kept.c2.data();
  const T* k3 = kept.c3.data();
  const T* ka = kept.area.data();
  const int* kc = kept.cls.data();
  for (int start = 0; start < kept.size; start += 64) {
    const int end = start + 64 < kept.size ? start + 64 : kept.size;
    int hit = 0;
#pragma omp simd reduction(| : hit)
    for (int j = start; j < end; ++j) {
      // the kept box is MXNet's "ref" (first operand), the candidate its "pos"
      const T iou = nms_iou<T>(k0[j], k1[j], k2[j], k3[j], ka[j], b0, b1, b2, b3, barea,
                               kCenter);
      int s = iou > thresh;
      if (kByClass) s &= (kc[j] == bcls);
      hit |= s;
    }
    if (hit) return true;
  }
  return false;
}

// Greedy NMS over cand[0..n) (score order): keeps a candidate unless a kept box overlaps it
// by more than thresh; stops after max_keep kept. Returns the kept count; kept holds them.
// Inlined into greedy_nms() (nms_greedy.cpp), which is compiled for several ISAs.
template <typename T>
FRCNN_ALWAYS_INLINE int greedy_nms_impl(const BoxList<T>& cand, int n, T thresh, bool center, bool by_class,
               int max_keep, BoxList<T>* kept) {
  kept->size = 0;
  for (int i = 0; i < n && kept->size < max_keep; ++i) {
    const T b0 = cand.c0[i], b1 = cand.c1[i], b2 = cand.c2[i], b3 = cand.c3[i];
    const T ba = cand.area[i];
    const int bc = cand.cls[i];
    bool sup;
    if (center) {
      sup = by_class ? suppressed_by<T, true, true>(*kept, b0, b1, b2, b3, ba, bc, thresh)
                     : suppressed_by<T, true, false>(*kept, b0, b1, b2, b3, ba, bc, thresh);
    } else {
      sup = by_class ? suppressed_by<T, false, true>(*kept, b0, b1, b2, b3, ba, bc, thresh)
                     : suppressed_by<T, false, false>(*kept, b0, b1, b2, b3, ba, bc, thresh);
    }
    if (!sup) {
      kept->set(kept->size, b0, b1, b2, b3, ba, bc, cand.src[i]);
      ++kept->size;
    }
  }
  return kept->size;
}

// The same, dispatched at run time to an AVX-512, AVX2 or baseline build of the loop (the
// results are identical: only IEEE adds, multiplies, divides and compares, no contraction).
int greedy_nms(const BoxList<float>& cand, int n, float thresh, bool center, bool by_class,
               int max_keep, BoxList<float>* kept);
int greedy_nms(const BoxList<double>& cand, int n, double thresh, bool center, bool by_class,
               int max_keep, BoxList<double>* kept);

// Candidates (score > thresh, given as a predicate) sorted by descending score, ties by
// ascending index: fills order[0..count) and returns count. With `want` below the number of
// candidates, only a prefix of that order is made (*complete = false): the candidates whose
// top 11 key bits are at most those of the want-th (one histogram pass), at least `want` of
// them, radix sorted. It is the exact prefix of the full order (ties too), for the callers
// that walk the order and stop early: a large FPN RPN sorts ~5% of 243k scores, not all.
template <typename T, typename Pred>
size_t sorted_candidates(const T* scores, int64_t stride, int64_t n, Pred is_candidate,
                         std::vector<uint32_t>* order, size_t want = SIZE_MAX,
                         bool* complete = nullptr) {
  using K = decltype(desc_key(T()));
  thread_local std::vector<K> keys, tmp_keys;
  thread_local std::vector<uint32_t> tmp_idx, hist;
  keys.resize(n);
  tmp_keys.resize(n);
  tmp_idx.resize(n);
  order->resize(n);
  size_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T s = scores[i * stride];
    if (is_candidate(i, s)) {
      keys[count] = desc_key(s);
      (*order)[count] = static_cast<uint32_t>(i);
      ++count;
    }
  }
  if (complete) *complete = true;
  if (want < count / 4 && count >= 4096) {
    constexpr int kBits = 11;
    constexpr int kShift = static_cast<int>(sizeof(K) * 8) - kBits;
    hist.assign(size_t(1) << kBits, 0);
    for (size_t i = 0; i < count; ++i) ++hist[keys[i] >> kShift];
    size_t cum = 0;
    K cut = 0;
    for (; cut < (K(1) << kBits); ++cut) {
      cum += hist[cut];
      if (cum >= want) break;
    }
    size_t m = 0;
    for (size_t i = 0; i < count; ++i) {
      if ((keys[i] >> kShift) <= cut) {
        keys[m] = keys[i];
        (*order)[m] = (*order)[i];
        ++m;
      }
    }
    if (complete) *complete = m == count;
    count = m;
  }
  radix_sort_pairs(keys.data(), order->data(), tmp_keys.data(), tmp_idx.data(), count);
  return count;
}

}  // namespace frcnn
