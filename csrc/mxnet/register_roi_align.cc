// frcnn_roi_align: drop-in for mx.nd.contrib.ROIAlign, with a gradient w.r.t. data and a
// `deterministic` attribute for the GPU backward (also FRCNN_DETERMINISTIC=1).
#include <cmath>

#include "common/hugepages.h"
#include "mxnet/glue.h"
#include "roi_align/roi_align.h"

namespace frcnn {
namespace mxglue {
namespace roi_align_op {

constexpr const char* kOp = "frcnn_roi_align";

struct Attributes {
  RoiAlignParams p;
  bool deterministic = false;
};

Attributes parse(const Attrs& attrs) {
  AttrReader r(kOp, attrs);
  Attributes a;
  const std::vector<int> pooled = r.get_int_tuple("pooled_size", 2, nullptr);
  a.p.pooled_h = pooled[0];
  a.p.pooled_w = pooled[1];
  a.p.spatial_scale = r.get_float("spatial_scale", std::nanf(""));
  if (std::isnan(a.p.spatial_scale)) throw InputError("attribute spatial_scale is required");
  a.p.sample_ratio = r.get_int("sample_ratio", -1);
  a.p.position_sensitive = r.get_bool("position_sensitive", false);
  a.p.aligned = r.get_bool("aligned", false);
  a.deterministic = r.get_bool("deterministic", false);
  r.finish();
  require_ok(roi_align_check_params(a.p));
  return a;
}

MXReturnValue parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  *num_in = 2;
  *num_out = 1;
  return guard(kOp, [&]() { parse(attrs); });
}

MXReturnValue infer_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  return infer_same_type(kOp, {"data", "rois"}, in, out);
}

MXReturnValue infer_shape(const Attrs& attrs, std::vector<std::vector<unsigned int>>* in,
                          std::vector<std::vector<unsigned int>>* out) {
  return guard(kOp, [&]() {
    const Attributes a = parse(attrs);
    Shape os;
    require_ok(roi_align_check(known_shape((*in)[0], "data"), known_shape((*in)[1], "rois"), a.p, &os));
    (*out)[0] = std::vector<unsigned int>(os.begin(), os.end());
  });
}

MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* in, std::vector<MXTensor>* out,
                      const OpResource& res) {
  return guard(kOp, [&]() {
    const Attributes a = parse(attrs);
    MXTensor &data = (*in)[0], &rois = (*in)[1];
    const Shape ds = shape_of(data), rs = shape_of(rois);
    require_ok(roi_align_check(ds, rs, a.p));
    const DType dt = dtype_of(data.dtype, "data");
    require(rois.dtype == data.dtype, "rois must have the dtype of data (" +
                                          mx_dtype_name(data.dtype) + "), got " +
                                          mx_dtype_name(rois.dtype));
    if (on_gpu(data)) {
#ifdef FRCNN_WITH_CUDA
      roi_align_cuda(dt, data.data_ptr, rois.data_ptr, (*out)[0].data_ptr, ds[0], ds[1], ds[2],
                     ds[3], rs[0], a.p, res.get_cuda_stream());
#else
      no_cuda();
#endif
    } else {
      MXTensor& o = (*out)[0];
      advise_huge_pages(o.data_ptr, static_cast<size_t>(o.size()) * elem_size(dt));
      roi_align_cpu(dt, data.data_ptr, rois.data_ptr, (*out)[0].data_ptr, ds[0], ds[1], ds[2],
                    ds[3], rs[0], a.p);
    }
  });
}

// inputs: [grad_out, data, rois, out]; outputs: [grad_data, grad_rois]
MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* in,
                       std::vector<MXTensor>* out, const OpResource& res) {
  return guard(kOp, [&]() {
    const Attributes a = parse(attrs);
    MXTensor &g = (*in)[0], &data = (*in)[1], &rois = (*in)[2];
    MXTensor &gd = (*out)[0], &gr = (*out)[1];
    const Shape ds = shape_of(data), rs = shape_of(rois);
    require_ok(roi_align_check(ds, rs, a.p));
    const DType dt = dtype_of(data.dtype, "data");
    if (on_gpu(data)) {
#ifdef FRCNN_WITH_CUDA
      roi_align_backward_cuda(dt, g.data_ptr, rois.data_ptr, gd.data_ptr, ds[0], ds[1], ds[2],
                              ds[3], rs[0], a.p,
                              a.deterministic || roi_align_deterministic_env(),
                              res.get_cuda_stream());
#else
      no_cuda();
#endif
    } else {
      advise_huge_pages(gd.data_ptr, static_cast<size_t>(gd.size()) * elem_size(dt));
      roi_align_backward_cpu(dt, g.data_ptr, rois.data_ptr, gd.data_ptr, ds[0], ds[1], ds[2],
                             ds[3], rs[0], a.p);
    }
    zero_fill(gr, res);
  });
}

}  // namespace roi_align_op
}  // namespace mxglue
}  // namespace frcnn

FRCNN_REGISTER_OP(frcnn_roi_align, frcnn::mxglue::roi_align_op);
