// The ROIAlign CUDA kernels, shared by roi_align (one feature map) and multilevel_roi_align
// (one map per FPN level, each roi pooled from the map of its level): a launch reads its maps
// from a MapSet, and everything else (geometry, taps, bins) is roi_align_math.h.
//
// Forward and atomic backward: one block per (roi, chunk of channels). The block computes the
// roi's map and geometry once (thread 0) and then, cooperatively, a table of the bilinear taps
// of every sample row (pooled_h * grid_h entries) and sample column (pooled_w * grid_w) in
// shared memory; every (channel, bin) of the chunk then reads its taps from the tables. A
// roi whose tables do not fit (adaptive grids over ~36 samples per bin at 14x14) falls back
// to evaluating its taps in place, with the same math.
//
// Deterministic backward: one thread per element of one map's grad_data sums, in a fixed order
// (rois, then bins, ascending), the contributions of every roi of its image that pools from
// that map; the roi geometry is computed once per block into shared memory, and only the bins
// near the element are visited (narrow_bins). No atomics, bitwise identical run to run.
//
// Included by exactly the .cu files that launch these kernels (each its own instantiations,
// in an anonymous namespace).
#pragma once

#include <string>

#include "common/cuda_utils.cuh"
#include "multilevel_roi_align/multilevel_roi_align_math.h"
#include "roi_align/roi_align_math.h"

namespace frcnn {
namespace {

constexpr int kTable = 512;        // tap table entries per axis
constexpr int kOutputsPerUnit = 2048;
constexpr int kRoiChunk = kThreads;

// The feature maps of one launch, by value: map i is (N, C, H[i], W[i]) at ptr[i] (the data
// in the forward, grad_data in the backward), sampled at spatial scale scale[i].
template <typename T>
struct MapSet {
  int count = 1;
  T* ptr[kMaxLevels] = {};
  int H[kMaxLevels] = {};
  int W[kMaxLevels] = {};
  float scale[kMaxLevels] = {};
  bool multilevel = false;  // false: every roi pools from map 0 (roi_align)
  LevelRule rule;           // multilevel: a roi pools from map roi_level_index(roi, rule)
  int only = -1;            // >= 0: rois of other maps are empty (per-map gather backward)
};

// Map index of a roi (-1: none, the roi is empty) and its geometry there.
template <typename T, typename A>
DEVICE_INLINE int roi_map(const MapSet<T>& maps, const A roi[5], int64_t N, RoiAlignParams p,
                          RoiGeom<A>* g) {
  int k = maps.multilevel ? roi_level_index<A>(roi, maps.rule) : 0;
  if (maps.only >= 0 && k != maps.only) k = -1;
  p.spatial_scale = maps.scale[k < 0 ? 0 : k];
  *g = roi_geometry<A>(roi, N, p);
  if (k < 0) g->batch = -1;
  return k;
}

template <typename A>
struct AxisTap {
  int lo, hi;   // lo = -1: the sample is out of the map
  A wlo, whi;
};

template <typename A>
DEVICE_INLINE AxisTap<A> make_tap(A start, int bin, A bin_size, int i, int grid, int n) {
  AxisTap<A> t;
  const A y = sample_coord<A>(start, bin, bin_size, i, grid);
  if (!axis_weights<A>(y, n, &t.lo, &t.hi, &t.wlo, &t.whi)) t.lo = -1;
  return t;
}

template <typename T, typename A>
DEVICE_INLINE A sample_value(const T* plane, int W, const AxisTap<A>& ty, const AxisTap<A>& tx) {
  if (ty.lo < 0 || tx.lo < 0) return A(0);
  // 64-bit row offsets: one plane may hold more than 2^31 elements
  const T* lo = plane + static_cast<int64_t>(ty.lo) * W;
  const T* hi = plane + static_cast<int64_t>(ty.hi) * W;
  // MXNet's order: w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4
  return ty.wlo * tx.wlo * load(lo + tx.lo) + ty.wlo * tx.whi * load(lo + tx.hi) +
         ty.whi * tx.wlo * load(hi + tx.lo) + ty.whi * tx.whi * load(hi + tx.hi);
}

template <typename T, typename A>
DEVICE_INLINE void scatter_sample(T* plane, int W, const AxisTap<A>& ty, const AxisTap<A>& tx,
                                  A g) {
  if (ty.lo < 0 || tx.lo < 0) return;
  T* lo = plane + static_cast<int64_t>(ty.lo) * W;
  T* hi = plane + static_cast<int64_t>(ty.hi) * W;
  atomicAdd(lo + tx.lo, static_cast<T>(g * (ty.wlo * tx.wlo)));
  atomicAdd(lo + tx.hi, static_cast<T>(g * (ty.wlo * tx.whi)));
  atomicAdd(hi + tx.lo, static_cast<T>(g * (ty.whi * tx.wlo)));
  atomicAdd(hi + tx.hi, static_cast<T>(g * (ty.whi * tx.whi)));
}

// Shared state of a (roi, channel chunk) unit: map, geometry and tap tables.
template <typename A>
struct UnitShared {
  RoiGeom<A> g;
  int map;
  AxisTap<A> ytab[kTable];
  AxisTap<A> xtab[kTable];
};

// Fills sh for roi r; returns whether the tables were filled. Ends with __syncthreads().
template <typename T, typename A>
__device__ bool setup_unit(UnitShared<A>& sh, const MapSet<T>& maps, const T* rois, int64_t r,
                           int64_t N, const RoiAlignParams& p) {
  if (threadIdx.x == 0) {
    A roi[5];
    for (int k = 0; k < 5; ++k) roi[k] = load(rois + r * 5 + k);
    const int m = roi_map<T, A>(maps, roi, N, p, &sh.g);
    sh.map = m < 0 ? 0 : m;
  }
  __syncthreads();
  const RoiGeom<A> g = sh.g;
  const int H = maps.H[sh.map], W = maps.W[sh.map];
  const int64_t ny = static_cast<int64_t>(p.pooled_h) * g.grid_h;
  const int64_t nx = static_cast<int64_t>(p.pooled_w) * g.grid_w;
  const bool tab = g.batch >= 0 && ny <= kTable && nx <= kTable;
  if (tab) {
    for (int i = threadIdx.x; i < ny; i += blockDim.x)
      sh.ytab[i] = make_tap<A>(g.start_h, i / g.grid_h, g.bin_h, i % g.grid_h, g.grid_h, H);
    for (int i = threadIdx.x; i < nx; i += blockDim.x)
      sh.xtab[i] = make_tap<A>(g.start_w, i / g.grid_w, g.bin_w, i % g.grid_w, g.grid_w, W);
  }
  __syncthreads();
  return tab;
}

template <typename T>
__global__ void forward_kernel(MapSet<T> maps, const T* rois, T* out, int64_t N, int64_t C,
                               int64_t R, int64_t C_out, int64_t chunk, int64_t nchunks,
                               RoiAlignParams p) {
  using A = typename Acc<T>::type;
  __shared__ UnitShared<A> sh;
  const int PW = p.pooled_w;
  const int64_t bins = static_cast<int64_t>(p.pooled_h) * PW;
  for (int64_t u = blockIdx.x; u < R * nchunks; u += gridDim.x) {
    const int64_t r = u / nchunks, c0 = (u % nchunks) * chunk;
    const bool tab = setup_unit<T, A>(sh, maps, rois, r, N, p);
    const RoiGeom<A> g = sh.g;
    const int H = maps.H[sh.map], W = maps.W[sh.map];
    const int64_t HW = static_cast<int64_t>(H) * W;
    const T* data = maps.ptr[sh.map];
    const int64_t n_out = min(chunk, C_out - c0) * bins;
    T* o = out + (r * C_out + c0) * bins;
    for (int64_t i = threadIdx.x; i < n_out; i += blockDim.x) {
      A val = A(0);
      if (g.batch >= 0) {
        const int64_t c = c0 + i / bins;
        const int bin = static_cast<int>(i % bins), ph = bin / PW, pw = bin % PW;
        const int64_t ci = p.position_sensitive ? ps_channel(c, ph, pw, p.pooled_h, PW) : c;
        const T* plane = data + (g.batch * C + ci) * HW;
        for (int iy = 0; iy < g.grid_h; ++iy) {
          const AxisTap<A> ty = tab ? sh.ytab[ph * g.grid_h + iy]
                                    : make_tap<A>(g.start_h, ph, g.bin_h, iy, g.grid_h, H);
          for (int ix = 0; ix < g.grid_w; ++ix) {
            const AxisTap<A> tx = tab ? sh.xtab[pw * g.grid_w + ix]
                                      : make_tap<A>(g.start_w, pw, g.bin_w, ix, g.grid_w, W);
            val += sample_value<T, A>(plane, W, ty, tx);
          }
        }
        val /= g.count;
      }
      store(o + i, val);
    }
    __syncthreads();  // the tables are rewritten by the next unit
  }
}

template <typename T>
__global__ void backward_atomic_kernel(MapSet<T> maps, const T* grad_out, const T* rois,
                                       int64_t N, int64_t C, int64_t R, int64_t C_out,
                                       int64_t chunk, int64_t nchunks, RoiAlignParams p) {
  using A = typename Acc<T>::type;
  __shared__ UnitShared<A> sh;
  const int PW = p.pooled_w;
  const int64_t bins = static_cast<int64_t>(p.pooled_h) * PW;
  for (int64_t u = blockIdx.x; u < R * nchunks; u += gridDim.x) {
    const int64_t r = u / nchunks, c0 = (u % nchunks) * chunk;
    const bool tab = setup_unit<T, A>(sh, maps, rois, r, N, p);
    const RoiGeom<A> g = sh.g;
    if (g.batch >= 0) {
      const int H = maps.H[sh.map], W = maps.W[sh.map];
      const int64_t HW = static_cast<int64_t>(H) * W;
      T* grad_data = maps.ptr[sh.map];
      const int64_t n_out = min(chunk, C_out - c0) * bins;
      const T* go = grad_out + (r * C_out + c0) * bins;
      for (int64_t i = threadIdx.x; i < n_out; i += blockDim.x) {
        const A gv = load(go + i) / g.count;
        if (gv == A(0)) continue;
        const int64_t c = c0 + i / bins;
        const int bin = static_cast<int>(i % bins), ph = bin / PW, pw = bin % PW;
        const int64_t ci = p.position_sensitive ? ps_channel(c, ph, pw, p.pooled_h, PW) : c;
        T* plane = grad_data + (g.batch * C + ci) * HW;
        for (int iy = 0; iy < g.grid_h; ++iy) {
          const AxisTap<A> ty = tab ? sh.ytab[ph * g.grid_h + iy]
                                    : make_tap<A>(g.start_h, ph, g.bin_h, iy, g.grid_h, H);
          for (int ix = 0; ix < g.grid_w; ++ix) {
            const AxisTap<A> tx = tab ? sh.xtab[pw * g.grid_w + ix]
                                      : make_tap<A>(g.start_w, pw, g.bin_w, ix, g.grid_w, W);
            scatter_sample<T, A>(plane, W, ty, tx, gv);
          }
        }
      }
    }
    __syncthreads();
  }
}

// Weight of feature-map index `row` in bin `bin` along one axis (sum over the bin's samples).
template <typename A>
DEVICE_INLINE A axis_weight_at(A start, int bin, A bin_size, int grid, int n, int row) {
  A w = A(0);
  for (int i = 0; i < grid; ++i) {
    const AxisTap<A> t = make_tap<A>(start, bin, bin_size, i, grid, n);
    if (t.lo < 0) continue;
    if (t.lo == row) w += t.wlo;
    if (t.hi == row) w += t.whi;
  }
  return w;
}

// Narrows the bins [*lo, *hi) of one axis to those whose samples can weigh on feature index v:
// a sample reads the indices within 1 of its coordinate (clamped samples the first or last),
// so only bins overlapping [v - 1, v + 1] count. The margin (one bin and a little more than
// the coordinates' rounding) keeps every bin with a nonzero weight; the weights themselves
// are computed exactly as before, so narrowing changes no result, only the work: about 3
// bins per axis instead of all of them at 14x14.
template <typename A>
DEVICE_INLINE void narrow_bins(A start, A bin, int v, int* lo, int* hi) {
  if (!(bin > A(0)) || !finite_val(start)) return;
  const A extent = (start < A(0) ? -start : start) + bin * static_cast<A>(*hi);
  const A m = A(2) + extent * A(1e-5);
  const A f_lo = floor((static_cast<A>(v) - m - start) / bin) - A(1);
  const A f_hi = floor((static_cast<A>(v) + m - start) / bin) + A(2);
  if (f_lo > static_cast<A>(*lo)) *lo = f_lo < static_cast<A>(*hi) ? static_cast<int>(f_lo) : *hi;
  if (f_hi < static_cast<A>(*hi)) *hi = f_hi > static_cast<A>(*lo) ? static_cast<int>(f_hi) : *lo;
}

template <typename A>
struct RoiSpan {
  RoiGeom<A> g;
  A y0, y1, x0, x1;  // conservative range of the sample coordinates
};

// The gradient of map maps.only (its elements are the launch's threads).
template <typename T>
__global__ void backward_gather_kernel(MapSet<T> maps, const T* grad_out, const T* rois,
                                       int64_t N, int64_t C, int64_t R, int64_t C_out,
                                       RoiAlignParams p) {
  using A = typename Acc<T>::type;
  __shared__ RoiSpan<A> spans[kRoiChunk];
  const int PH = p.pooled_h, PW = p.pooled_w;
  const int H = maps.H[maps.only], W = maps.W[maps.only];
  T* grad_data = maps.ptr[maps.only];
  const int64_t bins = static_cast<int64_t>(PH) * PW;
  const int64_t HW = static_cast<int64_t>(H) * W;
  const int64_t total = N * C * HW;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * blockDim.x;
  for (int64_t blk = base; blk < total; blk += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t idx = blk + threadIdx.x;
    const bool active = idx < total;
    const int64_t e = active ? idx : 0;
    const int x = static_cast<int>(e % W), y = static_cast<int>((e / W) % H);
    const int64_t ci = (e / HW) % C, n = e / (C * HW);
    // position sensitive: input channel ci is read by one output channel and one bin only
    const int64_t c = p.position_sensitive ? ci / bins : ci;
    const int sb = p.position_sensitive ? static_cast<int>(ci % bins) : 0;
    const int ph0 = p.position_sensitive ? sb / PW : 0, ph1 = p.position_sensitive ? ph0 + 1 : PH;
    const int pw0 = p.position_sensitive ? sb % PW : 0, pw1 = p.position_sensitive ? pw0 + 1 : PW;
    A acc = A(0);
    for (int64_t r0 = 0; r0 < R; r0 += kRoiChunk) {
      __syncthreads();
      if (r0 + threadIdx.x < R) {
        const int64_t r = r0 + threadIdx.x;
        A roi[5];
        for (int k = 0; k < 5; ++k) roi[k] = load(rois + r * 5 + k);
        RoiSpan<A> s;
        roi_map<T, A>(maps, roi, N, p, &s.g);
        const A ye = s.g.start_h + static_cast<A>(PH) * s.g.bin_h;
        const A xe = s.g.start_w + static_cast<A>(PW) * s.g.bin_w;
        s.y0 = min(s.g.start_h, ye) - A(2);
        s.y1 = max(s.g.start_h, ye) + A(2);
        s.x0 = min(s.g.start_w, xe) - A(2);
        s.x1 = max(s.g.start_w, xe) + A(2);
        spans[threadIdx.x] = s;
      }
      __syncthreads();
      if (!active) continue;
      const int64_t rn = min(static_cast<int64_t>(kRoiChunk), R - r0);
      for (int64_t k = 0; k < rn; ++k) {
        const RoiSpan<A>& s = spans[k];
        if (s.g.batch != n) continue;
        // NaN-safe: a NaN span skips the roi (its samples would all be out of the map)
        if (!(A(y) >= s.y0 && A(y) <= s.y1 && A(x) >= s.x0 && A(x) <= s.x1)) continue;
        const T* go = grad_out + ((r0 + k) * C_out + c) * bins;
        int ph_lo = ph0, ph_hi = ph1, pw_lo = pw0, pw_hi = pw1;
        narrow_bins<A>(s.g.start_h, s.g.bin_h, y, &ph_lo, &ph_hi);
        narrow_bins<A>(s.g.start_w, s.g.bin_w, x, &pw_lo, &pw_hi);
        A sum = A(0);
        for (int ph = ph_lo; ph < ph_hi; ++ph) {
          const A wy = axis_weight_at<A>(s.g.start_h, ph, s.g.bin_h, s.g.grid_h, H, y);
          if (wy == A(0)) continue;
          for (int pw = pw_lo; pw < pw_hi; ++pw) {
            const A wx = axis_weight_at<A>(s.g.start_w, pw, s.g.bin_w, s.g.grid_w, W, x);
            if (wx == A(0)) continue;
            sum += load(go + ph * PW + pw) * (wy * wx);
          }
        }
        acc += sum / s.g.count;
      }
    }
    if (active) store(grad_data + idx, acc);
  }
}

inline int64_t channels_per_unit(int64_t bins) {
  const int64_t c = kOutputsPerUnit / bins;
  return c < 1 ? 1 : c;
}

inline int grid_for_units(int64_t units) {
  const int64_t cap = int64_t(1) << 20;
  return static_cast<int>(units < cap ? (units < 1 ? 1 : units) : cap);
}

// The launches over a MapSet (op: the op's name, for errors). Forward: out (R, C_out, ph, pw).
template <typename T>
void launch_forward(const char* op, const MapSet<T>& maps, const T* rois, T* out, int64_t N,
                    int64_t C, int64_t R, const RoiAlignParams& p, cudaStream_t s) {
  const int64_t bins = static_cast<int64_t>(p.pooled_h) * p.pooled_w;
  const int64_t C_out = p.position_sensitive ? C / bins : C;
  if (R == 0 || C_out == 0) return;
  const int64_t chunk = channels_per_unit(bins), nchunks = ceil_div(C_out, chunk);
  const std::string name = std::string(op) + ": forward_kernel";
  launch(name.c_str(), forward_kernel<T>, grid_for_units(R * nchunks), kThreads, 0, s, maps,
         rois, out, N, C, R, C_out, chunk, nchunks, p);
}

template <typename T>
void launch_backward_gather(const char* op, const MapSet<T>& maps, const T* grad_out,
                            const T* rois, int64_t N, int64_t C, int64_t R,
                            const RoiAlignParams& p, cudaStream_t s) {
  const int64_t bins = static_cast<int64_t>(p.pooled_h) * p.pooled_w;
  const int64_t C_out = p.position_sensitive ? C / bins : C;
  const std::string name = std::string(op) + ": backward_gather_kernel";
  for (int k = 0; k < maps.count; ++k) {  // one launch per map
    const int64_t total = N * C * static_cast<int64_t>(maps.H[k]) * maps.W[k];
    if (total == 0) continue;
    MapSet<T> one = maps;
    one.only = k;
    launch(name.c_str(), backward_gather_kernel<T>, blocks_for(total), kThreads, 0, s, one,
           grad_out, rois, N, C, R, C_out, p);
  }
}

// Backward into every map of maps (overwritten): the gather kernel when deterministic (and
// always for float16: float32 accumulation, one rounding), else zeros + atomicAdd.
template <typename T>
void launch_backward(const char* op, const MapSet<T>& maps, const T* grad_out, const T* rois,
                     int64_t N, int64_t C, int64_t R, const RoiAlignParams& p,
                     bool deterministic, cudaStream_t s) {
  if constexpr (sizeof(T) == 2) {
    launch_backward_gather(op, maps, grad_out, rois, N, C, R, p, s);
  } else {
    if (deterministic) return launch_backward_gather(op, maps, grad_out, rois, N, C, R, p, s);
    for (int k = 0; k < maps.count; ++k) {
      const int64_t total = N * C * static_cast<int64_t>(maps.H[k]) * maps.W[k];
      if (total == 0) continue;
      const cudaError_t e =
          cudaMemsetAsync(maps.ptr[k], 0, static_cast<size_t>(total) * sizeof(T), s);
      if (e != cudaSuccess)
        throw Error(std::string(op) + " backward: CUDA error " + cudaGetErrorString(e));
    }
    const int64_t bins = static_cast<int64_t>(p.pooled_h) * p.pooled_w;
    const int64_t C_out = p.position_sensitive ? C / bins : C;
    if (R == 0 || C_out == 0) return;
    const int64_t chunk = channels_per_unit(bins), nchunks = ceil_div(C_out, chunk);
    const std::string name = std::string(op) + ": backward_atomic_kernel";
    launch(name.c_str(), backward_atomic_kernel<T>, grid_for_units(R * nchunks), kThreads, 0, s,
           maps, grad_out, rois, N, C, R, C_out, chunk, nchunks, p);
  }
}

}  // namespace
}  // namespace frcnn
