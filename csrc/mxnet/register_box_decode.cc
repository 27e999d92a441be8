// frcnn_box_decode: drop-in for mx.nd.contrib.box_decode, with a gradient w.r.t. data.
#include "box_coder/box_coder.h"
#include "mxnet/glue.h"

namespace frcnn {
namespace mxglue {
namespace box_decode_op {

constexpr const char* kOp = "frcnn_box_decode";

BoxDecodeParams parse(const Attrs& attrs) {
  AttrReader r(kOp, attrs);
  BoxDecodeParams p;
  p.std[0] = r.get_float("std0", 1.f);
  p.std[1] = r.get_float("std1", 1.f);
  p.std[2] = r.get_float("std2", 1.f);
  p.std[3] = r.get_float("std3", 1.f);
  p.clip = r.get_float("clip", -1.f);
  p.corner = r.get_choice("format", "center", {"center", "corner"}) == "corner";
  r.finish();
  return p;
}

MXReturnValue parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  *num_in = 2;
  *num_out = 1;
  return guard(kOp, [&]() { parse(attrs); });
}

MXReturnValue infer_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  return infer_same_type(kOp, {"data", "anchors"}, in, out);
}

MXReturnValue infer_shape(const Attrs&, std::vector<std::vector<unsigned int>>* in,
                          std::vector<std::vector<unsigned int>>* out) {
  return guard(kOp, [&]() {
    require_ok(box_decode_check(known_shape((*in)[0], "data"), known_shape((*in)[1], "anchors")));
    (*out)[0] = (*in)[0];
  });
}

MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* in, std::vector<MXTensor>* out,
                      const OpResource& res) {
  return guard(kOp, [&]() {
    const BoxDecodeParams p = parse(attrs);
    MXTensor &data = (*in)[0], &anchors = (*in)[1];
    const Shape ds = shape_of(data);
    require_ok(box_decode_check(ds, shape_of(anchors)));
    const DType dt = dtype_of(data.dtype, "data");
    if (on_gpu(data)) {
#ifdef FRCNN_WITH_CUDA
      box_decode_cuda(dt, data.data_ptr, anchors.data_ptr, (*out)[0].data_ptr, ds[0], ds[1],
                      anchors.shape[0], p, res.get_cuda_stream());
#else
      no_cuda();
#endif
    } else {
      box_decode_cpu(dt, data.data_ptr, anchors.data_ptr, (*out)[0].data_ptr, ds[0], ds[1],
                     anchors.shape[0], p);
    }
  });
}

// inputs: [grad_out, data, anchors, out]; outputs: [grad_data, grad_anchors]
MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* in,
                       std::vector<MXTensor>* out, const OpResource& res) {
  return guard(kOp, [&]() {
    const BoxDecodeParams p = parse(attrs);
    MXTensor &g = (*in)[0], &data = (*in)[1], &anchors = (*in)[2];
    MXTensor &gd = (*out)[0], &ga = (*out)[1];
    const Shape ds = shape_of(data);
    const DType dt = dtype_of(data.dtype, "data");
    if (on_gpu(data)) {
#ifdef FRCNN_WITH_CUDA
      box_decode_backward_cuda(dt, g.data_ptr, data.data_ptr, anchors.data_ptr, gd.data_ptr,
                               ds[0], ds[1], anchors.shape[0], p, res.get_cuda_stream());
#else
      no_cuda();
#endif
    } else {
      box_decode_backward_cpu(dt, g.data_ptr, data.data_ptr, anchors.data_ptr, gd.data_ptr,
                              ds[0], ds[1], anchors.shape[0], p);
    }
    zero_fill(ga, res);
  });
}

}  // namespace box_decode_op
}  // namespace mxglue
}  // namespace frcnn

FRCNN_REGISTER_OP(frcnn_box_decode, frcnn::mxglue::box_decode_op);
