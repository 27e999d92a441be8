// multilevel_roi_align on the CPU: one pass over the rois assigns each its level (in order,
// so the per-level lists keep the roi order), then each level's rois run through the
// roi_align CPU kernels (plans, channel blocks, row rings, threads: roi_align_cpu.cpp) on
// that level's map only, writing their own output rows. The backward overwrites every map; a level's
// gradient sums its rois in order, so it is bitwise the same for any thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "common/checks.h"
#include "common/half_cpu.h"
#include "common/parallel.h"
#include "multilevel_roi_align/multilevel_roi_align.h"
#include "roi_align/roi_align.h"

namespace frcnn {

namespace {
constexpr const char* kOp = "frcnn_multilevel_roi_align";

template <typename T>
void levels_impl(const T* rois, int64_t R, const LevelRule& rule, int32_t* idx) {
  const int nt = threads_for(R, 1 << 14);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t r = 0; r < R; ++r) idx[r] = roi_level_index<T>(rois + r * 5, rule);
}

// Rois of each map, in order; rois without a level in *none.
template <typename T>
std::vector<std::vector<int64_t>> rows_by_map(const T* rois, int64_t R, const MultiLevelParams& mp,
                                              std::vector<int64_t>* none) {
  std::vector<int32_t> idx(static_cast<size_t>(R));
  levels_impl(rois, R, mp.rule, idx.data());
  std::vector<std::vector<int64_t>> rows(mp.spatial_scales.size());
  for (int64_t r = 0; r < R; ++r) {
    if (idx[r] < 0)
      none->push_back(r);
    else
      rows[idx[r]].push_back(r);
  }
  // Each level's rois by (image, top edge), ties in roi order: the kernels' row ring then
  // holds a narrow band of the map that moves down it (roi_align_cpu.cpp), instead of the
  // whole map (P2 of an 800x1216 image: 3.9 MB a 16-channel block). The order is fixed by
  // the rois alone, so results stay thread-count independent.
  auto key = [&](int64_t r) {
    const double b = static_cast<double>(rois[r * 5]), y = static_cast<double>(rois[r * 5 + 2]);
    return std::make_pair(b == b ? b : HUGE_VAL, y == y ? y : HUGE_VAL);
  };
  for (auto& l : rows)
    std::stable_sort(l.begin(), l.end(), [&](int64_t a, int64_t b) { return key(a) < key(b); });
  return rows;
}

RoiAlignParams level_params(const MultiLevelParams& mp, size_t k) {
  RoiAlignParams p = mp.p;
  p.spatial_scale = mp.spatial_scales[k];
  return p;
}

template <typename T>
std::vector<roi_align_detail::Level<T>> levels_of(const std::vector<std::vector<int64_t>>& rows,
                                                  const std::vector<Shape>& shapes,
                                                  const MultiLevelParams& mp) {
  std::vector<roi_align_detail::Level<T>> levels(rows.size());
  for (size_t k = 0; k < rows.size(); ++k) {
    auto& L = levels[k];
    L.rows = rows[k].data();
    L.n = static_cast<int64_t>(rows[k].size());
    L.N = shapes[k][0];
    L.C = shapes[k][1];
    L.H = shapes[k][2];
    L.W = shapes[k][3];
    L.p = level_params(mp, k);
  }
  return levels;
}

template <typename T>
void forward_impl(const T* rois, const std::vector<const void*>& features,
                  const std::vector<Shape>& shapes, T* out, int64_t R,
                  const MultiLevelParams& mp) {
  const int64_t C = shapes[0][1];
  const int64_t row = C * mp.p.pooled_h * mp.p.pooled_w;
  if (R == 0 || row == 0) return;
  std::vector<int64_t> none;
  const auto rows = rows_by_map(rois, R, mp, &none);
  for (int64_t r : none) std::memset(out + r * row, 0, sizeof(T) * row);
  auto levels = levels_of<T>(rows, shapes, mp);
  for (size_t k = 0; k < levels.size(); ++k) levels[k].data = static_cast<const T*>(features[k]);
  roi_align_detail::forward_levels<T>(rois, levels, out);
}

template <typename T>
void backward_impl(const T* grad_out, const T* rois, const std::vector<void*>& grads,
                   const std::vector<Shape>& shapes, int64_t R, const MultiLevelParams& mp) {
  std::vector<int64_t> none;
  const auto rows = rows_by_map(rois, R, mp, &none);
  auto levels = levels_of<T>(rows, shapes, mp);
  for (size_t k = 0; k < levels.size(); ++k) levels[k].grad = static_cast<T*>(grads[k]);
  roi_align_detail::backward_levels<T>(grad_out, rois, levels);
}

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

}  // namespace

void multilevel_roi_levels_cpu(DType dt, const void* rois, int64_t R, const LevelRule& rule,
                               int32_t* level_out) {
  if (dt == DType::kFloat16) {
    HalfAsFloat h;
    return multilevel_roi_levels_cpu(DType::kFloat32, h.in(rois, R * 5), R, rule, level_out);
  }
  FRCNN_DISPATCH_CPU(dt, kOp, levels_impl(static_cast<const scalar_t*>(rois), R, rule, level_out));
  for (int64_t r = 0; r < R; ++r)
    if (level_out[r] >= 0) level_out[r] += rule.min_level;
}

void multilevel_roi_align_cpu(DType dt, const void* rois, const std::vector<const void*>& features,
                              const std::vector<Shape>& shapes, void* out, int64_t R,
                              const MultiLevelParams& p) {
  const int64_t row = shapes[0][1] * p.p.pooled_h * p.p.pooled_w;
  if (dt == DType::kFloat16) {
    HalfAsFloat h;
    std::vector<const void*> f(features.size());
    for (size_t k = 0; k < f.size(); ++k) f[k] = h.in(features[k], numel(shapes[k]));
    multilevel_roi_align_cpu(DType::kFloat32, h.in(rois, R * 5), f, shapes, h.out(out, R * row),
                             R, p);
    return h.finish();
  }
  FRCNN_DISPATCH_CPU(dt, kOp,
                     forward_impl(static_cast<const scalar_t*>(rois), features, shapes,
                                  static_cast<scalar_t*>(out), R, p));
}

void multilevel_roi_align_backward_cpu(DType dt, const void* grad_out, const void* rois,
                                       const std::vector<void*>& grad_features,
                                       const std::vector<Shape>& shapes, int64_t R,
                                       const MultiLevelParams& p) {
  if (dt == DType::kFloat16) {
    const int64_t row = shapes[0][1] * p.p.pooled_h * p.p.pooled_w;
    HalfAsFloat h;
    std::vector<void*> g(grad_features.size());
    for (size_t k = 0; k < g.size(); ++k) g[k] = h.out(grad_features[k], numel(shapes[k]));
    multilevel_roi_align_backward_cpu(DType::kFloat32, h.in(grad_out, R * row), h.in(rois, R * 5),
                                      g, shapes, R, p);
    return h.finish();
  }
  FRCNN_DISPATCH_CPU(dt, kOp,
                     backward_impl(static_cast<const scalar_t*>(grad_out),
                                   static_cast<const scalar_t*>(rois), grad_features, shapes, R,
                                   p));
}

}  // namespace frcnn
