// ROIAlign on the CPU.
//
// Every roi is first turned into a plan: for each bin, the distinct feature-map pixels its
// samples read and their weights (bilinear weight / sample count, duplicates merged). The
// bilinear weights are separable (w = wy * wx, and a sample is dropped when y or x is out of
// the map), so a bin's plan is the product of a row list and a column list, built in
// O(grid) per axis. Plans are shared by every channel.
//
// Two ways to apply the plans:
// - blocked (the common case, not position sensitive, many rois): a thread takes one (image,
//   channel block) and walks that image's rois in order. The block is the map's channels
//   [c0, c0 + K) with channel fastest (a pixel is K contiguous values), so one plan entry
//   updates K channels with vector multiply-adds; K is 256 bytes when the block of the whole
//   map fits in L2, else 64 (block_bytes). The block lives in a ring of map rows: a row is
//   transposed in from the NCHW map when a roi first needs it and dropped once no later roi
//   of the walk reads it (Window), so when the rois come in row order (multilevel_roi_align
//   sorts each level's) the ring is a band of a few dozen rows that stays in L2, and the map
//   is read from memory once per block; rois in any other order get a ring of the whole map.
//   The backward accumulates into the same ring, zeroes a row when it opens and writes it to
//   the gradient when it closes: threads own disjoint (image, channel) ranges, no atomics,
//   and every sum runs in the roi order for any thread count. Outputs and gradient rows of
//   whole cache lines are written with non-temporal stores (stream_copy).
//   (FPN P2-P5 of an 800x1216 image, 1000 rois, 2 threads: forward 20 -> 10 ms, backward
//   20 -> 12.5 ms against copying each map into whole blocks first.)
// - direct (position sensitive, or few rois): one (roi, channel) plane at a time, same plans.
//   The backward again gives every thread whole channels, rois in order.
#include <algorithm>
#include <atomic>
#include <new>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>

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

// Bytes of channels per pixel of a block in the blocked layout: 256 (64 floats, 32 doubles)
// when a whole block of the map fits in L2, so that one plan entry updates four vectors; else
// 64 (one AVX-512 vector), the width whose row ring stays in L2 for an FPN's P2.
constexpr int kWideBytes = 256, kNarrowBytes = 64;
constexpr int64_t kWideMapBytes = int64_t(1) << 20;
inline int block_bytes(int64_t H, int64_t W) {
  return H * W * kWideBytes <= kWideMapBytes ? kWideBytes : kNarrowBytes;
}

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

// The map rows a roi's samples read, [y0, y1] (y0 = -1: none), and its image (-1: an empty
// roi), without building its plan: what the row windows need first.
struct RowSpan {
  int64_t batch = -1;
  int32_t y0 = -1, y1 = -1;
};

template <typename T>
RowSpan row_span(const T* roi, int64_t N, int64_t H, const RoiAlignParams& p) {
  const RoiGeom<T> g = roi_geometry<T>(roi, N, p);
  RowSpan s;
  s.batch = g.batch;
  if (g.batch < 0) return s;
  AxisList rows;
  for (int i = 0; i < p.pooled_h; ++i) {
    axis_list<T>(g.start_h, i, g.bin_h, g.grid_h, static_cast<int>(H), &rows);
    for (const auto& r : rows) {
      if (r.second == 0.0) continue;
      if (s.y0 < 0 || r.first < s.y0) s.y0 = r.first;
      s.y1 = std::max(s.y1, static_cast<int32_t>(r.first));
    }
  }
  return s;
}

// ring: the rows of the map that the offsets index, row y at (y % ring) (H: the map itself).
template <typename T>
void build_plan(const T* roi, int64_t N, int64_t H, int64_t W, const RoiAlignParams& p,
                Plan<T>* plan, int64_t ring) {
  const RoiGeom<T> g = roi_geometry<T>(roi, N, p);
  const int PH = p.pooled_h, PW = p.pooled_w;
  plan->batch = g.batch;
  plan->start.assign(static_cast<size_t>(PH) * PW + 1, 0);
  plan->off.clear();
  plan->w.clear();
  if (g.batch < 0) return;
  // every bin's column and row lists (per-thread storage kept between rois), then the
  // entries, counted first so that off and w are allocated once
  thread_local std::vector<AxisList> cols, rows;
  if (cols.size() < static_cast<size_t>(PW)) cols.resize(PW);
  if (rows.size() < static_cast<size_t>(PH)) rows.resize(PH);
  auto nonzero = [](const AxisList& l) {
    int64_t n = 0;
    for (const auto& e : l) n += e.second != 0.0;
    return n;
  };
  int64_t nc = 0, nr = 0;
  for (int j = 0; j < PW; ++j) {
    axis_list<T>(g.start_w, j, g.bin_w, g.grid_w, static_cast<int>(W), &cols[j]);
    nc += nonzero(cols[j]);
  }
  for (int i = 0; i < PH; ++i) {
    axis_list<T>(g.start_h, i, g.bin_h, g.grid_h, static_cast<int>(H), &rows[i]);
    nr += nonzero(rows[i]);
  }
  plan->off.resize(static_cast<size_t>(nr * nc));
  plan->w.resize(static_cast<size_t>(nr * nc));
  int32_t* off = plan->off.data();
  T* w = plan->w.data();
  int64_t k = 0;
  const double count = static_cast<double>(g.count);
  for (int i = 0; i < PH; ++i) {
    for (int j = 0; j < PW; ++j) {
      for (const auto& r : rows[i]) {
        if (r.second == 0.0) continue;
        const int64_t y = r.first % ring;
        for (const auto& c : cols[j]) {
          if (c.second == 0.0) continue;
          off[k] = static_cast<int32_t>(y * W + c.first);
          w[k++] = static_cast<T>(r.second * c.second / count);
        }
      }
      plan->start[static_cast<size_t>(i) * PW + j + 1] = k;
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
  // Few source rows (map rows into a ring of channel blocks): all rows per 8 columns, so each
  // destination row is written whole at once. Many rows (ring rows back into channel planes):
  // 16 x 16 tiles, whole cache lines on both sides. (A whole-P2 channel-block copy took 18 ms
  // on one core with the first order, ~32 ms with the second.)
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

// dst[0:n] = src[0:n], with non-temporal stores from the first 16-byte aligned element on:
// for outputs written once and larger than the caches (the forward's pooled rows, the
// backward's gradient maps), whose lines then need no read for ownership.
inline void stream_copy(float* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % 16 != 0; ++i) dst[i] = src[i];
  for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}
inline void stream_copy(double* dst, const double* src, int64_t n) {
  int64_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % 16 != 0; ++i) dst[i] = src[i];
  for (; i + 2 <= n; i += 2) _mm_stream_pd(dst + i, _mm_loadu_pd(src + i));
  for (; i < n; ++i) dst[i] = src[i];
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
template <typename T>
void stream_copy(T* dst, const T* src, int64_t n) {
  std::copy(src, src + n, dst);
}
inline void stream_fence() {}
#endif

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

// The clones of one (dtype, block width), and BlockKernels<T, Bytes> calling them.
template <typename T, int Bytes> struct BlockKernels;
#define FRCNN_BLOCK_KERNELS(T, BYTES)                                                         \
  FRCNN_CLONES void gather_bins_##T##_##BYTES(const T* blk, const int64_t* start,            \
                                              const int32_t* off, const T* w, int64_t bins,  \
                                              T* tile) {                                     \
    gather_bins<T, BYTES / sizeof(T)>(blk, start, off, w, bins, tile);                       \
  }                                                                                           \
  FRCNN_CLONES void scatter_bins_##T##_##BYTES(T* blk, const int64_t* start,                 \
                                               const int32_t* off, const T* w, int64_t bins, \
                                               const T* tile) {                              \
    scatter_bins<T, BYTES / sizeof(T)>(blk, start, off, w, bins, tile);                      \
  }                                                                                           \
  template <> struct BlockKernels<T, BYTES> {                                                 \
    static void gather(const T* blk, const Plan<T>& pl, int64_t bins, T* tile) {              \
      gather_bins_##T##_##BYTES(blk, pl.start.data(), pl.off.data(), pl.w.data(), bins,      \
                                tile);                                                        \
    }                                                                                         \
    static void scatter(T* blk, const Plan<T>& pl, int64_t bins, const T* tile) {             \
      scatter_bins_##T##_##BYTES(blk, pl.start.data(), pl.off.data(), pl.w.data(), bins,     \
                                 tile);                                                       \
    }                                                                                         \
  };
FRCNN_BLOCK_KERNELS(float, 256)
FRCNN_BLOCK_KERNELS(float, 64)
FRCNN_BLOCK_KERNELS(double, 256)
FRCNN_BLOCK_KERNELS(double, 64)
#undef FRCNN_BLOCK_KERNELS

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

// The sampling plans of (level, roi) items, level l's offsets into a ring of ring[l] rows;
// called inside a parallel region (an orphaned worksharing loop), so the threads split the
// items. A bad_alloc, which may not leave the region, sets *failed and the caller throws
// throw_plans_oom after the region.
template <typename T>
void build_plans(const T* rois, const std::vector<Level<T>>& levels,
                 const std::vector<std::pair<int, int64_t>>& items,
                 const std::vector<int64_t>& ring, std::vector<std::vector<Plan<T>>>* plans,
                 std::atomic<bool>* failed) {
#pragma omp for schedule(dynamic, 8)
  for (int64_t t = 0; t < static_cast<int64_t>(items.size()); ++t) {
    if (failed->load(std::memory_order_relaxed)) continue;
    const Level<T>& L = levels[items[t].first];
    const int64_t q = items[t].second;
    try {
      build_plan<T>(rois + row_of(L, q) * 5, L.N, L.H, L.W, L.p, &(*plans)[items[t].first][q],
                    ring[items[t].first]);
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

// The row window of a blocked level (file comment): each image's valid rois in the level's
// order, and for each the lowest map row that it or any later roi of its image reads, so that
// a walk over them drops every row below it. `rows` ring rows hold every window of the walk
// (row y in slot y % rows); it is H, the whole map, when the rois are not ordered by row.
struct Window {
  int64_t rows = 1;
  std::vector<std::vector<int64_t>> by_image;
  std::vector<std::vector<int64_t>> lo;
  std::vector<int64_t> empty;  // rois of no image: zero output
};

template <typename T>
void plan_window(const Level<T>& L, const std::vector<RowSpan>& spans, Window* w) {
  w->by_image.assign(static_cast<size_t>(L.N), {});
  w->lo.assign(static_cast<size_t>(L.N), {});
  w->empty.clear();
  for (int64_t q = 0; q < L.n; ++q) {
    if (spans[q].batch >= 0)
      w->by_image[spans[q].batch].push_back(q);
    else
      w->empty.push_back(q);
  }
  int64_t rows = 1;
  for (int64_t n = 0; n < L.N; ++n) {
    const std::vector<int64_t>& list = w->by_image[n];
    std::vector<int64_t>& lo = w->lo[n];
    lo.resize(list.size());
    int64_t m = L.H;
    for (size_t k = list.size(); k-- > 0;) {
      if (spans[list[k]].y0 >= 0) m = std::min<int64_t>(m, spans[list[k]].y0);
      lo[k] = m;
    }
    int64_t hi = 0;
    for (size_t k = 0; k < list.size(); ++k) {
      hi = std::max<int64_t>({hi, lo[k], spans[list[k]].y1 + int64_t(1)});
      rows = std::max(rows, hi - lo[k]);
    }
  }
  w->rows = std::min(rows, L.H);
}

// f(y, slot, m) for each run of map rows [a, b) that is contiguous in a ring of `rows` rows.
template <typename F>
inline void ring_runs(int64_t a, int64_t b, int64_t rows, F f) {
  while (a < b) {
    const int64_t s = a % rows, m = std::min(b - a, rows - s);
    f(a, s, m);
    a += m;
  }
}

// What forward_levels and backward_levels set up alike: each level's kernel (bb: block
// bytes of a blocked level, 0: direct), its rois' plans, row spans and ring window (filled
// by prepare_levels inside the parallel region), the (level, roi) items the plans are built
// over and the (level, unit) work items of the pooling.
template <typename T>
struct LevelWork {
  explicit LevelWork(size_t nl) : plans(nl), spans(nl), windows(nl), bb(nl, 0) {}
  std::vector<std::vector<Plan<T>>> plans;
  std::vector<std::vector<RowSpan>> spans;
  std::vector<Window> windows;
  std::vector<int> bb;
  std::vector<std::pair<int, int64_t>> items, units;
  size_t ring_bytes = 0;  // the largest blocked level's ring (prepare_levels)

  // level l's rois get plans; blocked: the ring kernels, of the map's block width
  void add_level(int l, const Level<T>& L, bool blocked) {
    plans[l].resize(L.n);
    for (int64_t q = 0; q < L.n; ++q) items.emplace_back(l, q);
    if (!blocked) return;
    bb[l] = block_bytes(L.H, L.W);
    spans[l].resize(L.n);
  }
  // channel blocks of blocked level l (C channels)
  int64_t blocks(int l, int64_t C) const { return ceil_div(C, bb[l] / int64_t(sizeof(T))); }
  void add_units(int l, int64_t count) {
    for (int64_t u = 0; u < count; ++u) units.emplace_back(l, u);
  }
};

// f(std::integral_constant<int, bytes>): the ring kernels are compiled per block width.
template <typename F>
inline void with_block_bytes(int bytes, F&& f) {
  if (bytes == kWideBytes)
    f(std::integral_constant<int, kWideBytes>());
  else
    f(std::integral_constant<int, kNarrowBytes>());
}

// Everything before the pooling, shared by the forward and the backward: the blocked levels'
// row spans and windows (and their rois of no image), then the plans of every (level, roi),
// a blocked level's offsets into its ring, and each thread's ring (the largest of the
// levels', bb[l] bytes a pixel). Called inside the parallel region; a bad_alloc sets *failed.
template <typename T>
void prepare_levels(const T* rois, const std::vector<Level<T>>& levels, LevelWork<T>* lw,
                    Scratch* ring, std::atomic<bool>* failed) {
  const std::vector<int>& bb = lw->bb;
#pragma omp for schedule(dynamic, 64)
  for (int64_t t = 0; t < static_cast<int64_t>(lw->items.size()); ++t) {
    const int l = lw->items[t].first;
    const int64_t q = lw->items[t].second;
    const Level<T>& L = levels[l];
    if (bb[l]) lw->spans[l][q] = row_span<T>(rois + row_of(L, q) * 5, L.N, L.H, L.p);
  }  // implicit barrier
#pragma omp single
  {
    try {
      for (size_t l = 0; l < levels.size(); ++l) {
        if (!bb[l]) continue;
        plan_window(levels[l], lw->spans[l], &lw->windows[l]);
        lw->ring_bytes = std::max(lw->ring_bytes, static_cast<size_t>(
                                                      lw->windows[l].rows * levels[l].W * bb[l]));
      }
    } catch (const std::bad_alloc&) {
      failed->store(true);
    }
  }  // implicit barrier
  std::vector<int64_t> ring_rows(levels.size());  // a direct level's plans index its map
  for (size_t l = 0; l < levels.size(); ++l)
    ring_rows[l] = bb[l] ? lw->windows[l].rows : levels[l].H;
  build_plans<T>(rois, levels, lw->items, ring_rows, &lw->plans, failed);
  try {
    if (lw->ring_bytes && !failed->load()) ring->reset(lw->ring_bytes);
  } catch (const std::bad_alloc&) {
    failed->store(true);
  }
}

// One (image n, channel block cb) of a blocked level's forward: walks the image's rois,
// moving map rows into the ring as they are first needed; image 0's units also zero the
// rois of no image. tile and row: bins * K elements each.
template <typename T, int Bytes>
void forward_block(const Level<T>& L, const Window& w, const std::vector<RowSpan>& spans,
                   const std::vector<Plan<T>>& plans, int64_t n, int64_t cb, T* ring, T* tile,
                   T* row, T* out) {
  constexpr int64_t K = Bytes / sizeof(T);
  const int64_t bins = static_cast<int64_t>(L.p.pooled_h) * L.p.pooled_w, HW = L.H * L.W;
  const int64_t c0 = cb * K, cw = std::min<int64_t>(K, L.C - c0);
  if (n == 0)
    for (int64_t q : w.empty) {
      T* o = out + (row_of(L, q) * L.C + c0) * bins;
      std::fill(o, o + cw * bins, T(0));
    }
  if (n >= L.N || w.by_image[n].empty()) return;
  const std::vector<int64_t>& list = w.by_image[n];
  if (cw < K) std::fill(ring, ring + w.rows * L.W * K, T(0));
  const T* src = L.data + (n * L.C + c0) * HW;
  int64_t hi = 0;  // rows below hi are in the ring (those still needed)
  for (size_t k = 0; k < list.size(); ++k) {
    hi = std::max(hi, w.lo[n][k]);
    const int64_t need = spans[list[k]].y1 + int64_t(1);
    ring_runs(hi, need, w.rows, [&](int64_t y, int64_t s, int64_t m) {
      transpose(src + y * L.W, cw, m * L.W, HW, ring + s * L.W * K, K);
    });
    hi = std::max(hi, need);
    BlockKernels<T, Bytes>::gather(ring, plans[list[k]], bins, tile);
    transpose(tile, bins, cw, K, row, bins);
    stream_copy(out + (row_of(L, list[k]) * L.C + c0) * bins, row, cw * bins);
  }
}

// One (image n, channel block cb) of a blocked level's backward: accumulates into the ring,
// zeroing rows as they open and writing them to the gradient as they close (rows no roi
// reads get zeros). tile: bins * K elements, row: W * K.
template <typename T, int Bytes>
void backward_block(const Level<T>& L, const Window& w, const std::vector<RowSpan>& spans,
                    const std::vector<Plan<T>>& plans, int64_t n, int64_t cb, const T* grad_out,
                    T* ring, T* tile, T* row) {
  constexpr int64_t K = Bytes / sizeof(T);
  const int64_t bins = static_cast<int64_t>(L.p.pooled_h) * L.p.pooled_w;
  const int64_t W = L.W, HW = L.H * W;
  const int64_t c0 = cb * K, cw = std::min<int64_t>(K, L.C - c0);
  T* g = L.grad + (n * L.C + c0) * HW;
  // non-temporal stores only when a map row is whole cache lines (else two partial writes)
  const bool stream = (W * int64_t(sizeof(T))) % 64 == 0;
  auto zero_rows = [&](int64_t a, int64_t b) {
    if (a < b)
      for (int64_t c = 0; c < cw; ++c) std::fill(g + c * HW + a * W, g + c * HW + b * W, T(0));
  };
  auto close_rows = [&](int64_t a, int64_t b) {
    if (!stream)
      return ring_runs(a, b, w.rows, [&](int64_t y, int64_t s, int64_t m) {
        transpose(ring + s * W * K, m * W, cw, K, g + y * W, HW);
      });
    for (int64_t y = a; y < b; ++y) {
      transpose(ring + (y % w.rows) * W * K, W, cw, K, row, W);
      for (int64_t c = 0; c < cw; ++c) stream_copy(g + c * HW + y * W, row + c * W, W);
    }
  };
  if (cw < K) std::fill(tile, tile + bins * K, T(0));
  const std::vector<int64_t>& list = w.by_image[n];
  int64_t lo = 0, hi = 0;  // rows [lo, hi) are open in the ring
  for (size_t k = 0; k < list.size(); ++k) {
    const int64_t q = list[k], nlo = w.lo[n][k];
    if (nlo > lo) {
      close_rows(lo, std::min(nlo, hi));
      zero_rows(hi, nlo);
      hi = std::max(hi, nlo);
      lo = nlo;
    }
    const int64_t need = spans[q].y1 + int64_t(1);
    ring_runs(hi, need, w.rows, [&](int64_t, int64_t s, int64_t m) {
      std::fill(ring + s * W * K, ring + (s + m) * W * K, T(0));
    });
    hi = std::max(hi, need);
    if (k + 1 < list.size())
      prefetch_block(grad_out + (row_of(L, list[k + 1]) * L.C + c0) * bins,
                     cw * bins * int64_t(sizeof(T)));
    transpose(grad_out + (row_of(L, q) * L.C + c0) * bins, cw, bins, bins, tile, K);
    BlockKernels<T, Bytes>::scatter(ring, plans[q], bins, tile);
  }
  close_rows(lo, hi);
  zero_rows(hi, L.H);
}

// Several maps at once (multilevel_roi_align's levels), in one parallel region: the plans and
// windows of every level, then every (level, unit) of pooling, so that threads move between
// levels without a region start and end per level (on a loaded machine each region end
// leaves OpenMP's workers spinning for milliseconds). A blocked level's unit is one (image,
// channel block); levels with few rois per pixel take the direct kernel's units, one (roi,
// channel) each.
template <typename T>
void forward_levels(const T* rois, const std::vector<Level<T>>& levels, T* out) {
  LevelWork<T> lw(levels.size());
  int64_t max_bins = 1, work = 0;
  for (size_t l = 0; l < levels.size(); ++l) {
    const Level<T>& L = levels[l];
    if (L.n == 0 || c_out_of(L) == 0) continue;
    const int64_t bins = static_cast<int64_t>(L.p.pooled_h) * L.p.pooled_w;
    max_bins = std::max(max_bins, bins);
    const bool blocked = use_blocked(L.N, L.H, L.W, L.n, L.p);
    lw.add_level(static_cast<int>(l), L, blocked);
    if (blocked) {
      // one unit per block when N is 0, for the rois of no image
      lw.add_units(static_cast<int>(l), std::max<int64_t>(L.N, 1) * lw.blocks(l, L.C));
      work += L.N * L.C * L.H * L.W / 4 + L.n * L.C * bins * 16;
    } else {
      lw.add_units(static_cast<int>(l), L.n * c_out_of(L));
      work += L.n * c_out_of(L) * bins * 16;
    }
  }
  if (lw.items.empty()) return;
  const int nt = threads_for(work, kWorkPerThread);
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    Scratch ring_buf;
    prepare_levels<T>(rois, levels, &lw, &ring_buf, &failed);
    const size_t tile_size = static_cast<size_t>(max_bins * kWideBytes / sizeof(T));
    std::unique_ptr<T[]> tile(new T[tile_size]), row(new T[tile_size]);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < static_cast<int64_t>(lw.units.size()); ++t) {
      if (failed.load(std::memory_order_relaxed)) continue;
      const int l = lw.units[t].first;
      const Level<T>& L = levels[l];
      const int64_t bins = static_cast<int64_t>(L.p.pooled_h) * L.p.pooled_w;
      const int64_t HW = L.H * L.W, u = lw.units[t].second;
      if (lw.bb[l]) {
        const int64_t ncb = lw.blocks(l, L.C);
        with_block_bytes(lw.bb[l], [&](auto bytes) {
          forward_block<T, decltype(bytes)::value>(L, lw.windows[l], lw.spans[l], lw.plans[l],
                                                   u / ncb, u % ncb, ring_buf.as<T>(),
                                                   tile.get(), row.get(), out);
        });
      } else {
        const int64_t C_out = c_out_of(L), q = u / C_out, c = u % C_out;
        const bool ps = L.p.position_sensitive;
        const Plan<T>& pl = lw.plans[l][q];
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
    stream_fence();
  }
  if (failed.load()) throw_plans_oom(lw.items.size());
}

// The gradient of every level (overwritten) in one parallel region: plans and windows, then
// one unit per (level, image, channel block) of a blocked level or (level, channel) of a
// direct one; every unit sums its rois in the level's order, so the result does not depend
// on the threads.
template <typename T>
void backward_levels(const T* grad_out, const T* rois, const std::vector<Level<T>>& levels) {
  LevelWork<T> lw(levels.size());
  int64_t max_bins = 1, max_w = 1, work = 0;
  for (size_t l = 0; l < levels.size(); ++l) {
    const Level<T>& L = levels[l];
    const int64_t bins = static_cast<int64_t>(L.p.pooled_h) * L.p.pooled_w;
    const bool blocked = L.n > 0 && use_blocked(L.N, L.H, L.W, L.n, L.p);
    lw.add_level(static_cast<int>(l), L, blocked);
    if (blocked) {
      max_bins = std::max(max_bins, bins);
      max_w = std::max(max_w, L.W);
      lw.add_units(static_cast<int>(l), L.N * lw.blocks(l, L.C));
    } else {
      lw.add_units(static_cast<int>(l), c_out_of(L));  // zeroes the gradient without rois
    }
    work += L.N * L.C * L.H * L.W + L.n * L.C * bins * 16;
  }
  const int nt = threads_for(work, kWorkPerThread);
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    Scratch ring_buf;
    prepare_levels<T>(rois, levels, &lw, &ring_buf, &failed);
    std::unique_ptr<T[]> tile, row;
    if (lw.ring_bytes) {
      tile.reset(new T[static_cast<size_t>(max_bins * kWideBytes / sizeof(T))]);
      row.reset(new T[static_cast<size_t>(max_w * kWideBytes / sizeof(T))]);
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < static_cast<int64_t>(lw.units.size()); ++t) {
      if (failed.load(std::memory_order_relaxed)) continue;
      const int l = lw.units[t].first;
      const Level<T>& L = levels[l];
      const int64_t bins = static_cast<int64_t>(L.p.pooled_h) * L.p.pooled_w;
      const int64_t HW = L.H * L.W;
      if (lw.bb[l]) {
        const int64_t ncb = lw.blocks(l, L.C), u = lw.units[t].second;
        with_block_bytes(lw.bb[l], [&](auto bytes) {
          backward_block<T, decltype(bytes)::value>(L, lw.windows[l], lw.spans[l],
                                                    lw.plans[l], u / ncb, u % ncb, grad_out,
                                                    ring_buf.as<T>(), tile.get(), row.get());
        });
      } else {
        // output channel c owns input channel c (or c * bins .. c * bins + bins - 1 when
        // position sensitive) of every image: disjoint, rois in order
        const int64_t c = lw.units[t].second, C_out = c_out_of(L);
        const bool ps = L.p.position_sensitive;
        const int64_t nin = ps ? bins : 1;
        for (int64_t n = 0; n < L.N; ++n) {
          T* g = L.grad + (n * L.C + c * nin) * HW;
          std::fill(g, g + nin * HW, T(0));
        }
        for (int64_t q = 0; q < L.n; ++q) {
          const Plan<T>& pl = lw.plans[l][q];
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
    stream_fence();
  }
  if (failed.load()) throw_plans_oom(lw.items.size());
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
