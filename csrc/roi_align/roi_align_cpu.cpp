// ROIAlign on the CPU.
//
// Every roi is first turned into a plan: for each bin, the distinct feature-map pixels its
// samples read and their weights (bilinear weight / sample count, duplicates merged). The
// bilinear weights are separable (w = wy * wx, and a sample is dropped when y or x is out of
// the map), so a bin's plan is the product of a row list and a column list, built in
// O(grid) per axis. Plans are shared by every channel.
//
// Two ways to apply the plans:
// - blocked (the common case, not position sensitive, many rois): the feature map is copied
//   once into channel blocks of kBlock channels, channel fastest ((H*W) x kBlock per block),
//   so that one plan entry updates kBlock channels with one vectorised multiply-add. A thread
//   walks one channel block for many rois (the block, ~0.5 MB, stays in L2). The backward
//   accumulates the gradient of one (image, channel block) in such a block, rois in order,
//   and writes it back: threads own disjoint channel ranges, no atomics, and the sums run in
//   the same order for any thread count.
// - direct (position sensitive, or few rois): one (roi, channel) plane at a time, same plans.
//   The backward again gives every thread whole channels, rois in order.
#include <algorithm>
#include <atomic>
#include <new>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include <omp.h>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "common/checks.h"
#include "common/half_cpu.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "roi_align/roi_align.h"

namespace frcnn {

namespace {

// Channels per block in the blocked layout (64 floats / 32 doubles: 256 bytes a pixel).
template <typename T> struct Block { static constexpr int value = 256 / sizeof(T); };

template <typename T>
struct Plan {
  int64_t batch = -1;             // -1: empty roi
  std::vector<int64_t> start;     // bins + 1 offsets into off / w (64-bit: a roi over a
                                  // large map can have more than 2^31 entries)
  std::vector<int32_t> off;       // pixel index y * W + x
  std::vector<T> w;               // merged bilinear weight / count
};

// Accumulated (index, weight) pairs along one axis for one bin.
using AxisList = std::vector<std::pair<int, double>>;

inline void axis_add(AxisList* l, int idx, double w) {
  for (auto it = l->rbegin(); it != l->rend(); ++it) {
    if (it->first == idx) {
      it->second += w;
      return;
    }
  }
  l->emplace_back(idx, w);
}

template <typename T>
void axis_list(T start, int bin, T bin_size, int grid, int n, AxisList* l) {
  l->clear();
  for (int i = 0; i < grid; ++i) {
    const T y = sample_coord<T>(start, bin, bin_size, i, grid);
    int lo, hi;
    T wl, wh;
    if (!axis_weights<T>(y, n, &lo, &hi, &wl, &wh)) continue;
    axis_add(l, lo, wl);
    axis_add(l, hi, wh);
  }
}

template <typename T>
void build_plan(const T* roi, int64_t N, int64_t H, int64_t W, const RoiAlignParams& p,
                Plan<T>* plan) {
  const RoiGeom<T> g = roi_geometry<T>(roi, N, p);
  const int PH = p.pooled_h, PW = p.pooled_w;
  plan->batch = g.batch;
  plan->start.assign(static_cast<size_t>(PH) * PW + 1, 0);
  plan->off.clear();
  plan->w.clear();
  if (g.batch < 0) return;
  std::vector<AxisList> cols(PW);
  for (int j = 0; j < PW; ++j)
    axis_list<T>(g.start_w, j, g.bin_w, g.grid_w, static_cast<int>(W), &cols[j]);
  AxisList rows;
  const double count = static_cast<double>(g.count);
  for (int i = 0; i < PH; ++i) {
    axis_list<T>(g.start_h, i, g.bin_h, g.grid_h, static_cast<int>(H), &rows);
    for (int j = 0; j < PW; ++j) {
      for (const auto& r : rows) {
        if (r.second == 0.0) continue;
        for (const auto& c : cols[j]) {
          if (c.second == 0.0) continue;
          plan->off.push_back(static_cast<int32_t>(r.first * W + c.first));
          plan->w.push_back(static_cast<T>(r.second * c.second / count));
        }
      }
      plan->start[static_cast<size_t>(i) * PW + j + 1] = static_cast<int64_t>(plan->off.size());
    }
  }
}

// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols.
template <typename T>
void transpose_scalar(const T* src, int64_t rows, int64_t cols, int64_t lds, T* dst,
                      int64_t ldd) {
  constexpr int64_t B = 8;
  for (int64_t r0 = 0; r0 < rows; r0 += B) {
    const int64_t r1 = std::min(rows, r0 + B);
    for (int64_t c0 = 0; c0 < cols; c0 += B) {
      const int64_t c1 = std::min(cols, c0 + B);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) dst[c * ldd + r] = src[r * lds + c];
    }
  }
}

#if defined(__SSE2__)
// 4 x 4 blocks of floats with SSE (baseline x86-64), scalar edges; plain stores.
inline void transpose_f32(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst,
                          int64_t ldd) {
  // 16 x 16 tiles (whole cache lines on both sides), 4 x 4 SSE blocks inside
  constexpr int64_t T = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += T) {
    const int64_t r1 = std::min(rows, r0 + T), r4 = r0 + ((r1 - r0) & ~int64_t(3));
    for (int64_t c0 = 0; c0 < cols; c0 += T) {
      const int64_t c1 = std::min(cols, c0 + T), c4 = c0 + ((c1 - c0) & ~int64_t(3));
      for (int64_t c = c0; c < c4; c += 4) {
        for (int64_t r = r0; r < r4; r += 4) {
          __m128 a = _mm_loadu_ps(src + r * lds + c);
          __m128 b = _mm_loadu_ps(src + (r + 1) * lds + c);
          __m128 e = _mm_loadu_ps(src + (r + 2) * lds + c);
          __m128 d = _mm_loadu_ps(src + (r + 3) * lds + c);
          _MM_TRANSPOSE4_PS(a, b, e, d);
          _mm_storeu_ps(dst + c * ldd + r, a);
          _mm_storeu_ps(dst + (c + 1) * ldd + r, b);
          _mm_storeu_ps(dst + (c + 2) * ldd + r, e);
          _mm_storeu_ps(dst + (c + 3) * ldd + r, d);
        }
        for (int64_t r = r4; r < r1; ++r)
          for (int64_t k = 0; k < 4; ++k) dst[(c + k) * ldd + r] = src[r * lds + c + k];
      }
      for (int64_t c = c4; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) dst[c * ldd + r] = src[r * lds + c];
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
// 8 x 8 blocks with AVX (runtime-checked), the 4 x 4 SSE code for the edges: the channel-block
// copy of a large map (FPN's P2, 62 MB) is bound by this loop.
__attribute__((target("avx"))) void transpose_f32_avx(const float* src, int64_t rows,
                                                        int64_t cols, int64_t lds, float* dst,
                                                        int64_t ldd) {
  const int64_t r8 = rows & ~int64_t(7), c8 = cols & ~int64_t(7);
  // Few source rows (a channel block into pixel rows of 64 channels): all rows per 8 columns,
  // so each destination row is written whole at once. Many rows (an accumulator back into
  // channel planes): 16 x 16 tiles, whole cache lines on both sides. (P2's channel-block copy:
  // 28 -> ~18 ms on one core with the first order, ~32 ms with the second.)
  const int64_t tr = rows <= 64 ? r8 : 16, tc = rows <= 64 ? 8 : 16;
  for (int64_t r0 = 0; r0 < r8; r0 += tr)
  for (int64_t c0 = 0; c0 < c8; c0 += tc)
  for (int64_t c = c0; c < std::min(c0 + tc, c8); c += 8) {
    for (int64_t r = r0; r < std::min(r0 + tr, r8); r += 8) {
      const float* s = src + r * lds + c;
      __m256 t0 = _mm256_loadu_ps(s), t1 = _mm256_loadu_ps(s + lds),
             t2 = _mm256_loadu_ps(s + 2 * lds), t3 = _mm256_loadu_ps(s + 3 * lds),
             t4 = _mm256_loadu_ps(s + 4 * lds), t5 = _mm256_loadu_ps(s + 5 * lds),
             t6 = _mm256_loadu_ps(s + 6 * lds), t7 = _mm256_loadu_ps(s + 7 * lds);
      __m256 u0 = _mm256_unpacklo_ps(t0, t1), u1 = _mm256_unpackhi_ps(t0, t1),
             u2 = _mm256_unpacklo_ps(t2, t3), u3 = _mm256_unpackhi_ps(t2, t3),
             u4 = _mm256_unpacklo_ps(t4, t5), u5 = _mm256_unpackhi_ps(t4, t5),
             u6 = _mm256_unpacklo_ps(t6, t7), u7 = _mm256_unpackhi_ps(t6, t7);
      __m256 v0 = _mm256_shuffle_ps(u0, u2, 0x44), v1 = _mm256_shuffle_ps(u0, u2, 0xEE),
             v2 = _mm256_shuffle_ps(u1, u3, 0x44), v3 = _mm256_shuffle_ps(u1, u3, 0xEE),
             v4 = _mm256_shuffle_ps(u4, u6, 0x44), v5 = _mm256_shuffle_ps(u4, u6, 0xEE),
             v6 = _mm256_shuffle_ps(u5, u7, 0x44), v7 = _mm256_shuffle_ps(u5, u7, 0xEE);
      float* d = dst + c * ldd + r;
      _mm256_storeu_ps(d, _mm256_permute2f128_ps(v0, v4, 0x20));
      _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(v1, v5, 0x20));
      _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(v2, v6, 0x20));
      _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(v3, v7, 0x20));
      _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(v0, v4, 0x31));
      _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(v1, v5, 0x31));
      _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(v2, v6, 0x31));
      _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(v3, v7, 0x31));
    }
  }
  // edges: the rows past r8 of the first c8 columns, then the columns past c8
  if (r8 < rows) transpose_f32(src + r8 * lds, rows - r8, c8, lds, dst + r8, ldd);
  if (c8 < cols) transpose_f32(src + c8, rows, cols - c8, lds, dst + c8 * ldd, ldd);
}

inline bool have_avx() {
  static const bool yes = __builtin_cpu_supports("avx");
  return yes;
}
#endif

inline void transpose(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst,
                      int64_t ldd) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (rows >= 8 && cols >= 8 && have_avx()) return transpose_f32_avx(src, rows, cols, lds, dst, ldd);
#endif
  transpose_f32(src, rows, cols, lds, dst, ldd);
}

// Transpose into the forward output (written once, far larger than the caches) with
// non-temporal stores, one group of 4 destination rows at a time so that the write-combining
// buffers fill whole lines. Needs every 4-float row segment 16-byte aligned, else plain.
inline void transpose_out(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst,
                          int64_t ldd) {
  if (ldd % 4 != 0 || reinterpret_cast<uintptr_t>(dst) % 16 != 0)
    return transpose_f32(src, rows, cols, lds, dst, ldd);
  const int64_t r4 = rows & ~int64_t(3), c4 = cols & ~int64_t(3);
  for (int64_t c = 0; c < c4; c += 4) {
    for (int64_t r = 0; r < r4; r += 4) {
      __m128 a = _mm_loadu_ps(src + r * lds + c);
      __m128 b = _mm_loadu_ps(src + (r + 1) * lds + c);
      __m128 e = _mm_loadu_ps(src + (r + 2) * lds + c);
      __m128 d = _mm_loadu_ps(src + (r + 3) * lds + c);
      _MM_TRANSPOSE4_PS(a, b, e, d);
      _mm_stream_ps(dst + c * ldd + r, a);
      _mm_stream_ps(dst + (c + 1) * ldd + r, b);
      _mm_stream_ps(dst + (c + 2) * ldd + r, e);
      _mm_stream_ps(dst + (c + 3) * ldd + r, d);
    }
    for (int64_t r = r4; r < rows; ++r)
      for (int64_t k = 0; k < 4; ++k) dst[(c + k) * ldd + r] = src[r * lds + c + k];
  }
  for (int64_t c = c4; c < cols; ++c)
    for (int64_t r = 0; r < rows; ++r) dst[c * ldd + r] = src[r * lds + c];
}
inline void stream_fence() { _mm_sfence(); }

// 2 x 2 blocks of doubles.
inline void transpose(const double* src, int64_t rows, int64_t cols, int64_t lds, double* dst,
                      int64_t ldd) {
  const int64_t r2 = rows & ~int64_t(1), c2 = cols & ~int64_t(1);
  for (int64_t c = 0; c < c2; c += 2) {
    for (int64_t r = 0; r < r2; r += 2) {
      const __m128d a = _mm_loadu_pd(src + r * lds + c);
      const __m128d b = _mm_loadu_pd(src + (r + 1) * lds + c);
      _mm_storeu_pd(dst + c * ldd + r, _mm_unpacklo_pd(a, b));
      _mm_storeu_pd(dst + (c + 1) * ldd + r, _mm_unpackhi_pd(a, b));
    }
    if (r2 < rows) {
      dst[c * ldd + r2] = src[r2 * lds + c];
      dst[(c + 1) * ldd + r2] = src[r2 * lds + c + 1];
    }
  }
  if (c2 < cols) transpose_scalar(src + c2, rows, cols - c2, lds, dst + c2 * ldd, ldd);
}
#else
template <typename T>
void transpose(const T* src, int64_t rows, int64_t cols, int64_t lds, T* dst, int64_t ldd) {
  transpose_scalar(src, rows, cols, lds, dst, ldd);
}
inline void stream_fence() {}
#endif
template <typename T>
void transpose_out(const T* src, int64_t rows, int64_t cols, int64_t lds, T* dst, int64_t ldd) {
  transpose(src, rows, cols, lds, dst, ldd);
}

// ---- Hot loops, compiled for AVX-512, AVX2 and baseline x86-64 ---------------------------
// 256 bytes of channels as four 64-byte GCC vectors: one zmm each with AVX-512, split into
// ymm / xmm pairs by the other clones (explicit vectors: GCC's unroll-and-jam of the plain
// loops produced scalar code).
template <typename T> struct Vec {
  typedef T type __attribute__((vector_size(64), aligned(sizeof(T))));  // unaligned access
};

// tile[b][0:K] = sum_k w[k] * blk[off[k]][0:K] for every bin b.
template <typename T, int K>
inline __attribute__((always_inline)) void gather_bins(const T* blk, const int64_t* start,
                                                       const int32_t* off, const T* w,
                                                       int64_t bins, T* tile) {
  using V = typename Vec<T>::type;
  constexpr int L = 64 / sizeof(T), NV = K / L;
  static_assert(K % L == 0, "block must be whole vectors");
  for (int64_t b = 0; b < bins; ++b) {
    V acc[NV];
    for (int v = 0; v < NV; ++v) acc[v] = V{} ;
    for (int64_t k = start[b]; k < start[b + 1]; ++k) {
      const V* src = reinterpret_cast<const V*>(blk + static_cast<int64_t>(off[k]) * K);
      const T wk = w[k];
      for (int v = 0; v < NV; ++v) acc[v] += wk * src[v];
    }
    V* dst = reinterpret_cast<V*>(tile + b * K);
    for (int v = 0; v < NV; ++v) dst[v] = acc[v];
  }
}

// blk[off[k]][0:K] += w[k] * tile[b][0:K], bins and entries in order.
template <typename T, int K>
inline __attribute__((always_inline)) void scatter_bins(T* blk, const int64_t* start,
                                                        const int32_t* off, const T* w,
                                                        int64_t bins, const T* tile) {
  using V = typename Vec<T>::type;
  constexpr int L = 64 / sizeof(T), NV = K / L;
  for (int64_t b = 0; b < bins; ++b) {
    const V* g = reinterpret_cast<const V*>(tile + b * K);
    V gv[NV];
    for (int v = 0; v < NV; ++v) gv[v] = g[v];
    for (int64_t k = start[b]; k < start[b + 1]; ++k) {
      V* dst = reinterpret_cast<V*>(blk + static_cast<int64_t>(off[k]) * K);
      const T wk = w[k];
      for (int v = 0; v < NV; ++v) dst[v] += wk * gv[v];
    }
  }
}

FRCNN_CLONES void gather_bins_f32(const float* blk, const int64_t* start, const int32_t* off,
                                  const float* w, int64_t bins, float* tile) {
  gather_bins<float, Block<float>::value>(blk, start, off, w, bins, tile);
}
FRCNN_CLONES void gather_bins_f64(const double* blk, const int64_t* start, const int32_t* off,
                                  const double* w, int64_t bins, double* tile) {
  gather_bins<double, Block<double>::value>(blk, start, off, w, bins, tile);
}
FRCNN_CLONES void scatter_bins_f32(float* blk, const int64_t* start, const int32_t* off,
                                   const float* w, int64_t bins, const float* tile) {
  scatter_bins<float, Block<float>::value>(blk, start, off, w, bins, tile);
}
FRCNN_CLONES void scatter_bins_f64(double* blk, const int64_t* start, const int32_t* off,
                                   const double* w, int64_t bins, const double* tile) {
  scatter_bins<double, Block<double>::value>(blk, start, off, w, bins, tile);
}

inline void gather_block(const float* blk, const Plan<float>& pl, int64_t bins, float* tile) {
  gather_bins_f32(blk, pl.start.data(), pl.off.data(), pl.w.data(), bins, tile);
}
inline void gather_block(const double* blk, const Plan<double>& pl, int64_t bins,
                         double* tile) {
  gather_bins_f64(blk, pl.start.data(), pl.off.data(), pl.w.data(), bins, tile);
}
inline void scatter_block(float* blk, const Plan<float>& pl, int64_t bins, const float* tile) {
  scatter_bins_f32(blk, pl.start.data(), pl.off.data(), pl.w.data(), bins, tile);
}
inline void scatter_block(double* blk, const Plan<double>& pl, int64_t bins,
                          const double* tile) {
  scatter_bins_f64(blk, pl.start.data(), pl.off.data(), pl.w.data(), bins, tile);
}

// Asks for [p, p + bytes) in L2 ahead of its use.
inline void prefetch_block(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 2);
}

// Work below which one thread is enough (multiply-adds).
constexpr int64_t kWorkPerThread = 1 << 16;

// The blocked layout pays for its copy of the feature map when the rois read much more
// than the map holds.
bool use_blocked(int64_t N, int64_t H, int64_t W, int64_t R, const RoiAlignParams& p) {
  if (p.position_sensitive) return false;
  const int64_t bins = static_cast<int64_t>(p.pooled_h) * p.pooled_w;
  return R * bins * 4 >= N * H * W;
}

// ---- roi_align: one map ------------------------------------------------------------------

template <typename T>
void forward_impl(const T* data, const T* rois, T* out, int64_t N, int64_t C, int64_t H,
                  int64_t W, int64_t R, const RoiAlignParams& p) {
  roi_align_detail::Level<T> L;
  L.data = data;
  L.n = R;
  L.N = N;
  L.C = C;
  L.H = H;
  L.W = W;
  L.p = p;
  roi_align_detail::forward_levels<T>(rois, {L}, out);
}

template <typename T>
void backward_impl(const T* grad_out, const T* rois, T* grad_data, int64_t N, int64_t C,
                   int64_t H, int64_t W, int64_t R, const RoiAlignParams& p) {
  roi_align_detail::Level<T> L;
  L.grad = grad_data;
  L.n = R;
  L.N = N;
  L.C = C;
  L.H = H;
  L.W = W;
  L.p = p;
  roi_align_detail::backward_levels<T>(grad_out, rois, {L});
}

}  // namespace

namespace roi_align_detail {

namespace {
template <typename T>
inline int64_t row_of(const Level<T>& L, int64_t q) { return L.rows ? L.rows[q] : q; }
template <typename T>
inline int64_t c_out_of(const Level<T>& L) {
  return L.p.position_sensitive ? L.C / (static_cast<int64_t>(L.p.pooled_h) * L.p.pooled_w)
                                : L.C;
}

// The sampling plans of (level, roi) items; called inside a parallel region (an orphaned
// worksharing loop), so the threads split the items. A bad_alloc, which may not leave the
// region, sets *failed and the caller throws throw_plans_oom after the region.
template <typename T>
void build_plans(const T* rois, const std::vector<Level<T>>& levels,
                 const std::vector<std::pair<int, int64_t>>& items,
                 std::vector<std::vector<Plan<T>>>* plans, std::atomic<bool>* failed) {
#pragma omp for schedule(dynamic, 8)
  for (int64_t t = 0; t < static_cast<int64_t>(items.size()); ++t) {
    if (failed->load(std::memory_order_relaxed)) continue;
    const Level<T>& L = levels[items[t].first];
    const int64_t q = items[t].second;
    try {
      build_plan<T>(rois + row_of(L, q) * 5, L.N, L.H, L.W, L.p, &(*plans)[items[t].first][q]);
    } catch (const std::bad_alloc&) {
      failed->store(true);
    }
  }
}

[[noreturn]] inline void throw_plans_oom(size_t rois) {
  throw Error("out of memory building the sampling plans of " + std::to_string(rois) +
              " rois");
}
}  // namespace

// Several maps at once (multilevel_roi_align's levels), in one parallel region: the plans of
// every level, then the channel-block copies of the blocked levels, then every (level, unit)
// of pooling, so that threads move between levels without a region start and end per level
// (on a loaded machine each region end leaves OpenMP's workers spinning for milliseconds).
// Levels with few rois per pixel take the direct kernel's units, as roi_align does.
template <typename T>
void forward_levels(const T* rois, const std::vector<Level<T>>& levels, T* out) {
  const size_t nl = levels.size();
  // plans: (level, roi) flattened
  std::vector<std::vector<Plan<T>>> plans(nl);
  std::vector<std::pair<int, int64_t>> items;
  std::vector<char> blocked(nl, 0);
  std::vector<Scratch> blks(nl);  // the channel-block copies (pooled: common/scratch.h)
  constexpr int K = Block<T>::value;
  int64_t max_bins = 1, work = 0;
  std::vector<std::pair<int, int64_t>> copies, units;
  for (size_t l = 0; l < nl; ++l) {
    const Level<T>& L = levels[l];
    if (L.n == 0 || c_out_of(L) == 0) continue;
    plans[l].resize(L.n);
    for (int64_t q = 0; q < L.n; ++q) items.emplace_back(static_cast<int>(l), q);
    const int64_t bins = static_cast<int64_t>(L.p.pooled_h) * L.p.pooled_w;
    max_bins = std::max(max_bins, bins);
    const int64_t HW = L.H * L.W, ncb = ceil_div(L.C, K);
    blocked[l] = use_blocked(L.N, L.H, L.W, L.n, L.p) ? 1 : 0;
    if (blocked[l]) {
      const size_t elems = static_cast<size_t>(L.N * ncb * HW * K);
      blks[l].reset(sizeof(T) * elems);
      for (int64_t u = 0; u < L.N * ncb; ++u) copies.emplace_back(static_cast<int>(l), u);
      for (int64_t u = 0; u < ncb * L.n; ++u) units.emplace_back(static_cast<int>(l), u);
      work += L.N * L.C * HW / 4 + L.n * L.C * bins * 16;
    } else {
      for (int64_t u = 0; u < L.n * c_out_of(L); ++u) units.emplace_back(static_cast<int>(l), u);
      work += L.n * c_out_of(L) * bins * 16;
    }
  }
  if (items.empty()) return;
  const int nt = threads_for(work, kWorkPerThread);
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    build_plans<T>(rois, levels, items, &plans, &failed);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < static_cast<int64_t>(copies.size()); ++t) {
      const int l = copies[t].first;
      const Level<T>& L = levels[l];
      const int64_t HW = L.H * L.W, ncb = ceil_div(L.C, K), u = copies[t].second;
      const int64_t n = u / ncb, cb = u % ncb;
      const int64_t c0 = cb * K, cw = std::min<int64_t>(K, L.C - c0);
      T* dst = blks[l].as<T>() + u * HW * K;
      if (cw < K) std::fill(dst, dst + HW * K, T(0));
      transpose(L.data + (n * L.C + c0) * HW, cw, HW, HW, dst, K);
    }
    std::unique_ptr<T[]> tile(new T[static_cast<size_t>(max_bins * K)]);
    if (!failed.load()) {
#pragma omp for schedule(dynamic, 8)
      for (int64_t t = 0; t < static_cast<int64_t>(units.size()); ++t) {
        const int l = units[t].first;
        const Level<T>& L = levels[l];
        const int64_t bins = static_cast<int64_t>(L.p.pooled_h) * L.p.pooled_w;
        const int64_t HW = L.H * L.W, u = units[t].second;
        if (blocked[l]) {
          const int64_t ncb = ceil_div(L.C, K);
          const int64_t cb = u / L.n, q = u % L.n;
          const int64_t c0 = cb * K, cw = std::min<int64_t>(K, L.C - c0);
          const Plan<T>& pl = plans[l][q];
          T* o = out + (row_of(L, q) * L.C + c0) * bins;
          if (pl.batch < 0) {
            std::fill(o, o + cw * bins, T(0));
            continue;
          }
          gather_block(blks[l].as<T>() + (pl.batch * ncb + cb) * HW * K, pl, bins, tile.get());
          transpose_out(tile.get(), bins, cw, K, o, bins);
        } else {
          const int64_t C_out = c_out_of(L), q = u / C_out, c = u % C_out;
          const bool ps = L.p.position_sensitive;
          const Plan<T>& pl = plans[l][q];
          T* o = out + (row_of(L, q) * C_out + c) * bins;
          if (pl.batch < 0) {
            std::fill(o, o + bins, T(0));
            continue;
          }
          for (int64_t b = 0; b < bins; ++b) {
            const T* plane = L.data + (pl.batch * L.C + (ps ? c * bins + b : c)) * HW;
            T acc = T(0);
            for (int64_t k = pl.start[b]; k < pl.start[b + 1]; ++k)
              acc += pl.w[k] * plane[pl.off[k]];
            o[b] = acc;
          }
        }
      }
    }
    stream_fence();
  }
  if (failed.load()) throw_plans_oom(items.size());
}

// The gradient of every level (overwritten) in one parallel region: plans, then one unit per
// (level, image, channel block) of a blocked level or (level, channel) of a direct one; a
// unit sums its rois in the level's order, so the result does not depend on the threads.
template <typename T>
void backward_levels(const T* grad_out, const T* rois, const std::vector<Level<T>>& levels) {
  const size_t nl = levels.size();
  std::vector<std::vector<Plan<T>>> plans(nl);
  std::vector<std::pair<int, int64_t>> items, units;
  std::vector<char> blocked(nl, 0);
  constexpr int K = Block<T>::value;
  int64_t max_bins = 1, max_hw = 1, work = 0;
  for (size_t l = 0; l < nl; ++l) {
    const Level<T>& L = levels[l];
    plans[l].resize(L.n);
    for (int64_t q = 0; q < L.n; ++q) items.emplace_back(static_cast<int>(l), q);
    const int64_t bins = static_cast<int64_t>(L.p.pooled_h) * L.p.pooled_w;
    const int64_t HW = L.H * L.W, ncb = ceil_div(L.C, K);
    blocked[l] = L.n > 0 && use_blocked(L.N, L.H, L.W, L.n, L.p) ? 1 : 0;
    if (blocked[l]) {
      max_bins = std::max(max_bins, bins);
      max_hw = std::max(max_hw, HW);
      for (int64_t u = 0; u < L.N * ncb; ++u) units.emplace_back(static_cast<int>(l), u);
    } else {
      for (int64_t c = 0; c < c_out_of(L); ++c) units.emplace_back(static_cast<int>(l), c);
    }
    work += L.N * L.C * HW + L.n * L.C * bins * 16;
  }
  // rois of each (level, image), in the level's order
  std::vector<std::vector<std::vector<int64_t>>> by_image(nl);
  const int nt = threads_for(work, kWorkPerThread);
  std::atomic<bool> failed{false};
  bool any_blocked = false;
  for (char b : blocked) any_blocked = any_blocked || b;
  // a blocked level's accumulator per thread, taken before the region (a bad_alloc may not
  // leave it)
  std::vector<Scratch> accs(any_blocked ? nt : 0);
  for (auto& a : accs) a.reset(sizeof(T) * static_cast<size_t>(max_hw * K));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    build_plans<T>(rois, levels, items, &plans, &failed);
#pragma omp single
    {
      for (size_t l = 0; l < nl; ++l) {
        by_image[l].assign(static_cast<size_t>(levels[l].N), {});
        for (int64_t q = 0; q < levels[l].n; ++q)
          if (plans[l][q].batch >= 0) by_image[l][plans[l][q].batch].push_back(q);
      }
    }  // implicit barrier
    T* acc = any_blocked ? accs[omp_get_thread_num()].as<T>() : nullptr;
    std::unique_ptr<T[]> tile;
    if (any_blocked) tile.reset(new T[static_cast<size_t>(max_bins * K)]);
    if (!failed.load()) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t t = 0; t < static_cast<int64_t>(units.size()); ++t) {
        const int l = units[t].first;
        const Level<T>& L = levels[l];
        const int64_t bins = static_cast<int64_t>(L.p.pooled_h) * L.p.pooled_w;
        const int64_t HW = L.H * L.W;
        if (blocked[l]) {
          const int64_t ncb = ceil_div(L.C, K), u = units[t].second;
          const int64_t n = u / ncb, cb = u % ncb;
          const int64_t c0 = cb * K, cw = std::min<int64_t>(K, L.C - c0);
          std::fill(acc, acc + HW * K, T(0));
          if (cw < K) std::fill(tile.get(), tile.get() + bins * K, T(0));
          const std::vector<int64_t>& rl = by_image[l][n];
          for (size_t k = 0; k < rl.size(); ++k) {
            const int64_t q = rl[k];
            if (k + 1 < rl.size())
              prefetch_block(grad_out + (row_of(L, rl[k + 1]) * L.C + c0) * bins,
                             cw * bins * int64_t(sizeof(T)));
            transpose(grad_out + (row_of(L, q) * L.C + c0) * bins, cw, bins, bins, tile.get(),
                      K);
            scatter_block(acc, plans[l][q], bins, tile.get());
          }
          transpose(acc, HW, cw, K, L.grad + (n * L.C + c0) * HW, HW);
        } else {
          // output channel c owns input channel c (or c * bins .. c * bins + bins - 1 when
          // position sensitive) of every image: disjoint, rois in order
          const int64_t c = units[t].second, C_out = c_out_of(L);
          const bool ps = L.p.position_sensitive;
          const int64_t nin = ps ? bins : 1;
          for (int64_t n = 0; n < L.N; ++n) {
            T* g = L.grad + (n * L.C + c * nin) * HW;
            std::fill(g, g + nin * HW, T(0));
          }
          for (int64_t q = 0; q < L.n; ++q) {
            const Plan<T>& pl = plans[l][q];
            if (pl.batch < 0) continue;
            const T* go = grad_out + (row_of(L, q) * C_out + c) * bins;
            for (int64_t b = 0; b < bins; ++b) {
              T* plane = L.grad + (pl.batch * L.C + (ps ? c * bins + b : c)) * HW;
              const T gb = go[b];
              for (int64_t k = pl.start[b]; k < pl.start[b + 1]; ++k)
                plane[pl.off[k]] += pl.w[k] * gb;
            }
          }
        }
      }
    }
  }
  if (failed.load()) throw_plans_oom(items.size());
}

template void forward_levels<float>(const float*, const std::vector<Level<float>>&, float*);
template void forward_levels<double>(const double*, const std::vector<Level<double>>&, double*);
template void backward_levels<float>(const float*, const float*,
                                     const std::vector<Level<float>>&);
template void backward_levels<double>(const double*, const double*,
                                      const std::vector<Level<double>>&);

}  // namespace roi_align_detail

void roi_align_cpu(DType dt, const void* data, const void* rois, void* out, int64_t N,
                   int64_t C, int64_t H, int64_t W, int64_t R, const RoiAlignParams& p) {
  if (dt == DType::kFloat16) {
    const int64_t c_out = p.position_sensitive ? C / (int64_t(p.pooled_h) * p.pooled_w) : C;
    HalfAsFloat h;
    roi_align_cpu(DType::kFloat32, h.in(data, N * C * H * W), h.in(rois, R * 5),
                  h.out(out, R * c_out * p.pooled_h * p.pooled_w), N, C, H, W, R, p);
    return h.finish();
  }
  FRCNN_DISPATCH_CPU(dt, "frcnn_roi_align",
                     forward_impl(static_cast<const scalar_t*>(data),
                                  static_cast<const scalar_t*>(rois),
                                  static_cast<scalar_t*>(out), N, C, H, W, R, p));
}

void roi_align_backward_cpu(DType dt, const void* grad_out, const void* rois, void* grad_data,
                            int64_t N, int64_t C, int64_t H, int64_t W, int64_t R,
                            const RoiAlignParams& p) {
  if (dt == DType::kFloat16) {
    const int64_t c_out = p.position_sensitive ? C / (int64_t(p.pooled_h) * p.pooled_w) : C;
    HalfAsFloat h;
    roi_align_backward_cpu(DType::kFloat32, h.in(grad_out, R * c_out * p.pooled_h * p.pooled_w),
                           h.in(rois, R * 5), h.out(grad_data, N * C * H * W), N, C, H, W, R,
                           p);
    return h.finish();
  }
  FRCNN_DISPATCH_CPU(dt, "frcnn_roi_align",
                     backward_impl(static_cast<const scalar_t*>(grad_out),
                                   static_cast<const scalar_t*>(rois),
                                   static_cast<scalar_t*>(grad_data), N, C, H, W, R, p));
}

}  // namespace frcnn
