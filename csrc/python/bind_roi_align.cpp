#include "python/bind.h"
#include "roi_align/roi_align.h"

namespace frcnn {
namespace pyglue {
namespace {

constexpr const char* kOp = "frcnn_roi_align";

RoiAlignParams params(std::vector<int> pooled_size, float spatial_scale, int sample_ratio,
                      bool position_sensitive, bool aligned) {
  if (pooled_size.size() == 1) pooled_size.push_back(pooled_size[0]);
  if (pooled_size.size() != 2)
    raise_if(kOp, "pooled_size must be an int or a pair (h, w), got " +
                      std::to_string(pooled_size.size()) + " values");
  RoiAlignParams p;
  p.pooled_h = pooled_size[0];
  p.pooled_w = pooled_size[1];
  p.spatial_scale = spatial_scale;
  p.sample_ratio = sample_ratio;
  p.position_sensitive = position_sensitive;
  p.aligned = aligned;
  raise_if(kOp, roi_align_check_params(p));
  return p;
}

py::array roi_align_np(py::array data, py::array rois, std::vector<int> pooled_size,
                       float spatial_scale, int sample_ratio, bool position_sensitive,
                       bool aligned) {
  const RoiAlignParams p =
      params(pooled_size, spatial_scale, sample_ratio, position_sensitive, aligned);
  same_dtype(kOp, {{"data", data}, {"rois", rois}});
  const Shape ds = np_shape(data), rs = np_shape(rois);
  Shape os;
  raise_if(kOp, roi_align_check(ds, rs, p, &os));
  const DType dt = np_dtype(kOp, "data", data);
  py::array out = new_array(dt, os);
  {
    py::gil_scoped_release nogil;
    roi_align_cpu(dt, cptr(data), cptr(rois), mptr(out), ds[0], ds[1], ds[2], ds[3], rs[0], p);
  }
  return out;
}

// Gradient w.r.t. data of sum(roi_align(data, rois) * grad); data_shape = (N, C, H, W).
py::array roi_align_backward_np(py::array grad, py::array rois, std::vector<int64_t> data_shape,
                                std::vector<int> pooled_size, float spatial_scale,
                                int sample_ratio, bool position_sensitive, bool aligned) {
  const RoiAlignParams p =
      params(pooled_size, spatial_scale, sample_ratio, position_sensitive, aligned);
  same_dtype(kOp, {{"grad", grad}, {"rois", rois}});
  const Shape ds(data_shape.begin(), data_shape.end()), rs = np_shape(rois);
  Shape os;
  raise_if(kOp, roi_align_check(ds, rs, p, &os));
  if (np_shape(grad) != os)
    raise_if(kOp, "grad must have the output's shape " + shape_str(os) + ", got " +
                      shape_str(np_shape(grad)));
  const DType dt = np_dtype(kOp, "grad", grad);
  py::array out = new_array(dt, ds);
  {
    py::gil_scoped_release nogil;
    roi_align_backward_cpu(dt, cptr(grad), cptr(rois), mptr(out), ds[0], ds[1], ds[2], ds[3],
                           rs[0], p);
  }
  return out;
}

// Checks shapes and attributes (ValueError naming the op) and returns the output shape.
Shape roi_align_output_shape(Shape ds, Shape rs, std::vector<int> pooled_size,
                             float spatial_scale, int sample_ratio, bool position_sensitive,
                             bool aligned) {
  const RoiAlignParams p =
      params(pooled_size, spatial_scale, sample_ratio, position_sensitive, aligned);
  Shape os;
  raise_if(kOp, roi_align_check(ds, rs, p, &os));
  return os;
}

#ifdef FRCNN_WITH_CUDA
void roi_align_gpu(int dtype, uintptr_t data, uintptr_t rois, uintptr_t out, Shape ds, Shape rs,
                   std::vector<int> pooled_size, float spatial_scale, int sample_ratio,
                   bool position_sensitive, bool aligned, uintptr_t stream) {
  const RoiAlignParams p =
      params(pooled_size, spatial_scale, sample_ratio, position_sensitive, aligned);
  raise_if(kOp, roi_align_check(ds, rs, p));
  roi_align_cuda(gpu_dtype(kOp, dtype), dptr(data), dptr(rois), dptr(out), ds[0], ds[1], ds[2],
                 ds[3], rs[0], p, dptr(stream));
}

void roi_align_backward_gpu(int dtype, uintptr_t grad, uintptr_t rois, uintptr_t grad_data,
                            Shape ds, Shape rs, std::vector<int> pooled_size,
                            float spatial_scale, int sample_ratio, bool position_sensitive,
                            bool aligned, bool deterministic, uintptr_t stream) {
  const RoiAlignParams p =
      params(pooled_size, spatial_scale, sample_ratio, position_sensitive, aligned);
  raise_if(kOp, roi_align_check(ds, rs, p));
  roi_align_backward_cuda(gpu_dtype(kOp, dtype), dptr(grad), dptr(rois), dptr(grad_data), ds[0],
                          ds[1], ds[2], ds[3], rs[0], p,
                          deterministic || roi_align_deterministic_env(), dptr(stream));
}
#endif

void bind(py::module_& m) {
  m.def("roi_align", &roi_align_np);
  m.def("roi_align_backward", &roi_align_backward_np);
  m.def("roi_align_output_shape", &roi_align_output_shape);
#ifdef FRCNN_WITH_CUDA
  m.def("roi_align_gpu", &roi_align_gpu);
  m.def("roi_align_backward_gpu", &roi_align_backward_gpu);
#endif
}

FRCNN_PY_BINDER(bind);

}  // namespace
}  // namespace pyglue
}  // namespace frcnn
