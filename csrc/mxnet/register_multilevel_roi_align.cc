// frcnn_multilevel_roi_align(rois, feature_0, ..., feature_{n-1}): GluonCV's FPN pyramid roi
// pooling (FasterRCNN._pyramid_roi_feats, align mode) as one op. The number of feature maps is
// the number of spatial_scales (lib_api takes the input count from the attributes); the
// frcnn_ops wrappers (_mxnet_api) check it against the inputs given.
#include <cmath>

#include "common/hugepages.h"
#include "mxnet/glue.h"
#include "roi_align/multilevel_roi_align.h"
#include "roi_align/roi_align.h"

namespace frcnn {
namespace mxglue {
namespace multilevel_roi_align_op {

constexpr const char* kOp = "frcnn_multilevel_roi_align";

struct Attributes {
  MultiLevelParams mp;
  bool deterministic = false;
};

Attributes parse(const Attrs& attrs) {
  AttrReader r(kOp, attrs);
  Attributes a;
  const std::vector<int> pooled = r.get_int_tuple("pooled_size", 2, nullptr);
  a.mp.p.pooled_h = pooled[0];
  a.mp.p.pooled_w = pooled[1];
  a.mp.spatial_scales = r.get_float_tuple("spatial_scales", nullptr);
  a.mp.p.sample_ratio = r.get_int("sample_ratio", 2);
  a.mp.rule.min_level = r.get_int("min_level", 2);
  a.mp.rule.max_level = r.get_int("max_level", 5);
  a.mp.rule.canonical_scale = r.get_double("canonical_scale", 224.0);
  a.mp.rule.canonical_level = r.get_int("canonical_level", 4);
  a.mp.rule.eps = r.get_double("eps", 1e-6);
  a.mp.p.aligned = r.get_bool("aligned", false);
  a.deterministic = r.get_bool("deterministic", false);
  r.finish();
  require_ok(multilevel_roi_align_check_params(a.mp));
  return a;
}

std::vector<std::string> input_names(size_t n) {
  std::vector<std::string> names = {"rois"};
  for (size_t i = 0; i + 1 < n; ++i) names.push_back("features[" + std::to_string(i) + "]");
  return names;
}

MXReturnValue parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  *num_out = 1;
  *num_in = 1;
  return guard(kOp, [&]() {
    *num_in = 1 + static_cast<int>(parse(attrs).mp.spatial_scales.size());
  });
}

MXReturnValue infer_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  const std::vector<std::string> names = input_names(in->size());
  std::vector<const char*> cnames;
  for (const auto& s : names) cnames.push_back(s.c_str());
  return infer_same_type(kOp, cnames, in, out);
}

MXReturnValue infer_shape(const Attrs& attrs, std::vector<std::vector<unsigned int>>* in,
                          std::vector<std::vector<unsigned int>>* out) {
  return guard(kOp, [&]() {
    const Attributes a = parse(attrs);
    const std::vector<std::string> names = input_names(in->size());
    std::vector<Shape> fs;
    for (size_t i = 1; i < in->size(); ++i) fs.push_back(known_shape((*in)[i], names[i].c_str()));
    Shape os;
    require_ok(multilevel_roi_align_check(known_shape((*in)[0], "rois"), fs, a.mp, &os));
    (*out)[0] = std::vector<unsigned int>(os.begin(), os.end());
  });
}

// in: [rois, features...]
void check_inputs(const Attributes& a, std::vector<MXTensor>& in, size_t first, size_t n,
                  std::vector<Shape>* fs, DType* dt) {
  MXTensor& rois = in[first];
  *dt = dtype_of(rois.dtype, "rois");
  for (size_t i = 0; i < n; ++i) {
    MXTensor& f = in[first + 1 + i];
    fs->push_back(shape_of(f));
    require(f.dtype == rois.dtype, "features[" + std::to_string(i) + "] must have the dtype of rois (" +
                                       mx_dtype_name(rois.dtype) + "), got " +
                                       mx_dtype_name(f.dtype));
  }
  require_ok(multilevel_roi_align_check(shape_of(rois), *fs, a.mp));
}

MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* in, std::vector<MXTensor>* out,
                      const OpResource& res) {
  return guard(kOp, [&]() {
    const Attributes a = parse(attrs);
    const size_t n = a.mp.spatial_scales.size();
    std::vector<Shape> fs;
    DType dt;
    check_inputs(a, *in, 0, n, &fs, &dt);
    MXTensor& rois = (*in)[0];
    MXTensor& o = (*out)[0];
    std::vector<const void*> ptrs;
    for (size_t i = 0; i < n; ++i) ptrs.push_back((*in)[1 + i].data_ptr);
    const int64_t R = shape_of(rois)[0];
    if (on_gpu(rois)) {
#ifdef FRCNN_WITH_CUDA
      multilevel_roi_align_cuda(dt, rois.data_ptr, ptrs, fs, o.data_ptr, R, a.mp,
                                res.get_cuda_stream());
#else
      no_cuda();
#endif
    } else {
      advise_huge_pages(o.data_ptr, static_cast<size_t>(o.size()) * elem_size(dt));
      multilevel_roi_align_cpu(dt, rois.data_ptr, ptrs, fs, o.data_ptr, R, a.mp);
    }
  });
}

// inputs: [grad_out, rois, features..., out]; outputs: [grad_rois, grad_features...]
MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* in,
                       std::vector<MXTensor>* out, const OpResource& res) {
  return guard(kOp, [&]() {
    const Attributes a = parse(attrs);
    const size_t n = a.mp.spatial_scales.size();
    std::vector<Shape> fs;
    DType dt;
    check_inputs(a, *in, 1, n, &fs, &dt);
    MXTensor &g = (*in)[0], &rois = (*in)[1];
    std::vector<void*> ptrs;
    for (size_t i = 0; i < n; ++i) ptrs.push_back((*out)[1 + i].data_ptr);
    const int64_t R = shape_of(rois)[0];
    if (on_gpu(rois)) {
#ifdef FRCNN_WITH_CUDA
      multilevel_roi_align_backward_cuda(dt, g.data_ptr, rois.data_ptr, ptrs, fs, R, a.mp,
                                         a.deterministic || roi_align_deterministic_env(),
                                         res.get_cuda_stream());
#else
      no_cuda();
#endif
    } else {
      for (size_t i = 0; i < n; ++i) {
        MXTensor& gf = (*out)[1 + i];
        advise_huge_pages(gf.data_ptr, static_cast<size_t>(gf.size()) * elem_size(dt));
      }
      multilevel_roi_align_backward_cpu(dt, g.data_ptr, rois.data_ptr, ptrs, fs, R, a.mp);
    }
    zero_fill((*out)[0], res);
  });
}

}  // namespace multilevel_roi_align_op
}  // namespace mxglue
}  // namespace frcnn

FRCNN_REGISTER_OP(frcnn_multilevel_roi_align, frcnn::mxglue::multilevel_roi_align_op);
