// frcnn_nms: drop-in for mx.nd.contrib.box_nms.
#include "mxnet/glue.h"
#include "proposal/proposal.h"

namespace frcnn {
namespace mxglue {
namespace nms_op {

constexpr const char* kOp = "frcnn_nms";

NmsParams parse(const Attrs& attrs) {
  AttrReader r(kOp, attrs);
  NmsParams p;
  p.overlap_thresh = r.get_float("overlap_thresh", 0.5f);
  p.valid_thresh = r.get_float("valid_thresh", 0.f);
  p.topk = r.get_int("topk", -1);
  p.coord_start = r.get_int("coord_start", 2);
  p.score_index = r.get_int("score_index", 1);
  p.id_index = r.get_int("id_index", -1);
  p.background_id = r.get_int("background_id", -1);
  p.force_suppress = r.get_bool("force_suppress", false);
  p.in_center = r.get_choice("in_format", "corner", {"corner", "center"}) == "center";
  p.out_center = r.get_choice("out_format", "corner", {"corner", "center"}) == "center";
  r.finish();
  return p;
}

MXReturnValue parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  *num_in = 1;
  *num_out = 1;
  return guard(kOp, [&]() { parse(attrs); });
}

MXReturnValue infer_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  return infer_same_type(kOp, {"data"}, in, out);
}

MXReturnValue infer_shape(const Attrs& attrs, std::vector<std::vector<unsigned int>>* in,
                          std::vector<std::vector<unsigned int>>* out) {
  return guard(kOp, [&]() {
    require_ok(nms_check(known_shape((*in)[0], "data"), parse(attrs)));
    (*out)[0] = (*in)[0];
  });
}

MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* in, std::vector<MXTensor>* out,
                      const OpResource& res) {
  return guard(kOp, [&]() {
    const NmsParams p = parse(attrs);
    MXTensor& data = (*in)[0];
    const Shape s = shape_of(data);
    require_ok(nms_check(s, p));
    int64_t batches, n, width;
    nms_flatten(s, &batches, &n, &width);
    const DType dt = dtype_of(data.dtype, "data");
    if (on_gpu(data)) {
#ifdef FRCNN_WITH_CUDA
      const size_t ws = nms_cuda_workspace(dt, batches, n, width, p);
      void* buf = gpu_workspace(res, ws);
      nms_cuda(dt, data.data_ptr, (*out)[0].data_ptr, batches, n, width, p, buf, ws,
               res.get_cuda_stream());
#else
      no_cuda();
#endif
    } else {
      nms_cpu(dt, data.data_ptr, (*out)[0].data_ptr, batches, n, width, p);
    }
  });
}

// box_nms's gradient: output row k's gradient goes to the input row the k-th kept row came
// from (all columns), every other row gets 0. lib_api keeps no hidden outputs, so the kept
// rows are selected again from data (deterministic, the forward's selection).
// inputs: [grad_out, data, out]; outputs: [grad_data]
MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* in,
                       std::vector<MXTensor>* out, const OpResource& res) {
  return guard(kOp, [&]() {
    const NmsParams p = parse(attrs);
    MXTensor &g = (*in)[0], &data = (*in)[1], &gd = (*out)[0];
    const Shape s = shape_of(data);
    require_ok(nms_check(s, p));
    int64_t batches, n, width;
    nms_flatten(s, &batches, &n, &width);
    const DType dt = dtype_of(data.dtype, "data");
    if (on_gpu(data)) {
#ifdef FRCNN_WITH_CUDA
      const size_t ws = nms_cuda_workspace(dt, batches, n, width, p);
      void* buf = gpu_workspace(res, ws);
      nms_backward_cuda(dt, g.data_ptr, data.data_ptr, gd.data_ptr, batches, n, width, p, buf,
                        ws, res.get_cuda_stream());
#else
      no_cuda();
#endif
    } else {
      nms_backward_cpu(dt, g.data_ptr, data.data_ptr, gd.data_ptr, batches, n, width, p);
    }
  });
}

}  // namespace nms_op
}  // namespace mxglue
}  // namespace frcnn

FRCNN_REGISTER_OP(frcnn_nms, frcnn::mxglue::nms_op);
