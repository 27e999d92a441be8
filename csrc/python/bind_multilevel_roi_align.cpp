#include "python/bind.h"
#include "roi_align/roi_align.h"
#include "roi_align/multilevel_roi_align.h"

namespace frcnn {
namespace pyglue {
namespace {

constexpr const char* kOp = "frcnn_multilevel_roi_align";

// Attributes in the order of every entry point below: pooled_size, spatial_scales,
// sample_ratio, min_level, max_level, canonical_scale, canonical_level, eps, aligned.
MultiLevelParams params(std::vector<int> pooled_size, std::vector<float> spatial_scales,
                        int sample_ratio, int min_level, int max_level, double canonical_scale,
                        int canonical_level, double eps, bool aligned) {
  if (pooled_size.size() == 1) pooled_size.push_back(pooled_size[0]);
  if (pooled_size.size() != 2)
    raise_if(kOp, "pooled_size must be an int or a pair (h, w), got " +
                      std::to_string(pooled_size.size()) + " values");
  MultiLevelParams mp;
  mp.p.pooled_h = pooled_size[0];
  mp.p.pooled_w = pooled_size[1];
  mp.p.sample_ratio = sample_ratio;
  mp.p.aligned = aligned;
  mp.rule.min_level = min_level;
  mp.rule.max_level = max_level;
  mp.rule.canonical_scale = canonical_scale;
  mp.rule.canonical_level = canonical_level;
  mp.rule.eps = eps;
  mp.spatial_scales = spatial_scales;
  raise_if(kOp, multilevel_roi_align_check_params(mp));
  return mp;
}

#define ML_ARGS                                                                        \
  std::vector<int> pooled_size, std::vector<float> spatial_scales, int sample_ratio,   \
      int min_level, int max_level, double canonical_scale, int canonical_level,       \
      double eps, bool aligned
#define ML_PARAMS                                                                      \
  params(pooled_size, spatial_scales, sample_ratio, min_level, max_level,              \
         canonical_scale, canonical_level, eps, aligned)

std::vector<Shape> shapes_of(const std::vector<py::array>& fs) {
  std::vector<Shape> s;
  for (const auto& f : fs) s.push_back(np_shape(f));
  return s;
}

void same_dtype_all(const py::array& first, const char* first_name,
                    const std::vector<py::array>& fs) {
  std::vector<std::string> names;
  for (size_t i = 0; i < fs.size(); ++i) names.push_back("features[" + std::to_string(i) + "]");
  std::vector<std::pair<const char*, py::array>> all = {{first_name, first}};
  for (size_t i = 0; i < fs.size(); ++i) all.emplace_back(names[i].c_str(), fs[i]);
  same_dtype(kOp, all);
}

py::array multilevel_roi_align_np(py::array rois, std::vector<py::array> features, ML_ARGS) {
  const MultiLevelParams mp = ML_PARAMS;
  const std::vector<Shape> fs = shapes_of(features);
  const Shape rs = np_shape(rois);
  Shape os;
  raise_if(kOp, multilevel_roi_align_check(rs, fs, mp, &os));
  same_dtype_all(rois, "rois", features);
  const DType dt = np_dtype(kOp, "rois", rois);
  py::array out = new_array(dt, os);
  std::vector<const void*> ptrs;
  for (auto& f : features) ptrs.push_back(cptr(f));
  {
    py::gil_scoped_release nogil;
    multilevel_roi_align_cpu(dt, cptr(rois), ptrs, fs, mptr(out), rs[0], mp);
  }
  return out;
}

// Gradients w.r.t. every feature map of sum(multilevel_roi_align(rois, features) * grad).
std::vector<py::array> multilevel_roi_align_backward_np(py::array grad, py::array rois,
                                                        std::vector<Shape> feature_shapes,
                                                        ML_ARGS) {
  const MultiLevelParams mp = ML_PARAMS;
  const Shape rs = np_shape(rois);
  Shape os;
  raise_if(kOp, multilevel_roi_align_check(rs, feature_shapes, mp, &os));
  if (np_shape(grad) != os)
    raise_if(kOp, "grad must have the output's shape " + shape_str(os) + ", got " +
                      shape_str(np_shape(grad)));
  same_dtype(kOp, {{"grad", grad}, {"rois", rois}});
  const DType dt = np_dtype(kOp, "grad", grad);
  std::vector<py::array> outs;
  std::vector<void*> ptrs;
  for (const auto& s : feature_shapes) {
    outs.push_back(new_array(dt, s));
    ptrs.push_back(mptr(outs.back()));
  }
  {
    py::gil_scoped_release nogil;
    multilevel_roi_align_backward_cpu(dt, cptr(grad), cptr(rois), ptrs, feature_shapes, rs[0],
                                      mp);
  }
  return outs;
}

Shape multilevel_roi_align_output_shape(Shape rs, std::vector<Shape> fs, ML_ARGS) {
  const MultiLevelParams mp = ML_PARAMS;
  Shape os;
  raise_if(kOp, multilevel_roi_align_check(rs, fs, mp, &os));
  return os;
}

// FPN level of every roi (int32; -1: NaN level).
py::array multilevel_roi_levels_np(py::array rois, int min_level, int max_level,
                                   double canonical_scale, int canonical_level, double eps) {
  const MultiLevelParams mp = params({1}, {1.f}, -1, min_level, min_level, canonical_scale,
                                     canonical_level, eps, false);
  LevelRule rule = mp.rule;
  rule.max_level = max_level;
  if (min_level > max_level)
    raise_if(kOp, "min_level must be <= max_level, got min_level " + std::to_string(min_level) +
                      " and max_level " + std::to_string(max_level));
  const Shape rs = np_shape(rois);
  if (rs.size() != 2 || rs[1] != 5)
    raise_if(kOp, "rois must have shape (R, 5) = [batch_index, x1, y1, x2, y2], got " +
                      shape_str(rs));
  const DType dt = np_dtype(kOp, "rois", rois);
  py::array_t<int32_t> out(std::vector<py::ssize_t>{static_cast<py::ssize_t>(rs[0])});
  {
    py::gil_scoped_release nogil;
    multilevel_roi_levels_cpu(dt, cptr(rois), rs[0], rule, out.mutable_data());
  }
  return out;
}

#ifdef FRCNN_WITH_CUDA
void multilevel_roi_align_gpu(int dtype, uintptr_t rois, std::vector<uintptr_t> features,
                              uintptr_t out, Shape rs, std::vector<Shape> fs, ML_ARGS,
                              uintptr_t stream) {
  const MultiLevelParams mp = ML_PARAMS;
  raise_if(kOp, multilevel_roi_align_check(rs, fs, mp));
  if (features.size() != fs.size()) raise_if(kOp, "features and their shapes differ in number");
  std::vector<const void*> ptrs;
  for (uintptr_t f : features) ptrs.push_back(dptr(f));
  multilevel_roi_align_cuda(gpu_dtype(kOp, dtype), dptr(rois), ptrs, fs, dptr(out), rs[0], mp,
                            dptr(stream));
}

void multilevel_roi_align_backward_gpu(int dtype, uintptr_t grad, uintptr_t rois,
                                       std::vector<uintptr_t> grad_features, Shape rs,
                                       std::vector<Shape> fs, ML_ARGS, bool deterministic,
                                       uintptr_t stream) {
  const MultiLevelParams mp = ML_PARAMS;
  raise_if(kOp, multilevel_roi_align_check(rs, fs, mp));
  if (grad_features.size() != fs.size())
    raise_if(kOp, "grad_features and their shapes differ in number");
  std::vector<void*> ptrs;
  for (uintptr_t f : grad_features) ptrs.push_back(dptr(f));
  multilevel_roi_align_backward_cuda(gpu_dtype(kOp, dtype), dptr(grad), dptr(rois), ptrs, fs,
                                     rs[0], mp, deterministic || roi_align_deterministic_env(),
                                     dptr(stream));
}
#endif

void bind(py::module_& m) {
  m.def("multilevel_roi_align", &multilevel_roi_align_np);
  m.def("multilevel_roi_align_backward", &multilevel_roi_align_backward_np);
  m.def("multilevel_roi_align_output_shape", &multilevel_roi_align_output_shape);
  m.def("multilevel_roi_levels", &multilevel_roi_levels_np);
#ifdef FRCNN_WITH_CUDA
  m.def("multilevel_roi_align_gpu", &multilevel_roi_align_gpu);
  m.def("multilevel_roi_align_backward_gpu", &multilevel_roi_align_backward_gpu);
#endif
}

FRCNN_PY_BINDER(bind);

}  // namespace
}  // namespace pyglue
}  // namespace frcnn
