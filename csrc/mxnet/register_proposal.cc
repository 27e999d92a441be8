// frcnn_proposal: GluonCV's RPN proposal path (RPNProposal + box_nms + slice) as one op.
#include "mxnet/glue.h"
#include "proposal/proposal.h"

namespace frcnn {
namespace mxglue {
namespace proposal_op {

constexpr const char* kOp = "frcnn_proposal";

ProposalParams parse(const Attrs& attrs) {
  AttrReader r(kOp, attrs);
  ProposalParams p;
  p.pre_nms = r.get_int("rpn_pre_nms_top_n", 6000);
  p.post_nms = r.get_int("rpn_post_nms_top_n", 300);
  p.threshold = r.get_float("threshold", 0.7f);
  p.min_size = r.get_float("rpn_min_size", 16.f);
  p.decode.std[0] = r.get_float("std0", 1.f);
  p.decode.std[1] = r.get_float("std1", 1.f);
  p.decode.std[2] = r.get_float("std2", 1.f);
  p.decode.std[3] = r.get_float("std3", 1.f);
  p.decode.clip = r.get_float("clip", -1.f);
  p.decode.corner = true;
  r.finish();
  require_ok(proposal_check_params(p));
  return p;
}

MXReturnValue parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  *num_in = 4;
  *num_out = 1;
  return guard(kOp, [&]() { parse(attrs); });
}

MXReturnValue infer_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  return infer_same_type(kOp, {"scores", "deltas", "anchors", "im_info"}, in, out);
}

MXReturnValue infer_shape(const Attrs& attrs, std::vector<std::vector<unsigned int>>* in,
                          std::vector<std::vector<unsigned int>>* out) {
  return guard(kOp, [&]() {
    const ProposalParams p = parse(attrs);
    require_ok(proposal_check(known_shape((*in)[0], "scores"), known_shape((*in)[1], "deltas"), known_shape((*in)[2], "anchors"),
                              known_shape((*in)[3], "im_info")));
    (*out)[0] = {(*in)[1][0], static_cast<unsigned int>(p.post_nms), 5u};
  });
}

MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* in, std::vector<MXTensor>* out,
                      const OpResource& res) {
  return guard(kOp, [&]() {
    const ProposalParams p = parse(attrs);
    MXTensor &scores = (*in)[0], &deltas = (*in)[1], &anchors = (*in)[2], &info = (*in)[3];
    const Shape ds = shape_of(deltas);
    require_ok(proposal_check(shape_of(scores), ds, shape_of(anchors), shape_of(info)));
    const DType dt = dtype_of(deltas.dtype, "deltas");
    if (on_gpu(deltas)) {
#ifdef FRCNN_WITH_CUDA
      const size_t ws = proposal_cuda_workspace(dt, ds[0], ds[1], p);
      void* buf = gpu_workspace(res, ws);
      proposal_cuda(dt, scores.data_ptr, deltas.data_ptr, anchors.data_ptr, info.data_ptr,
                    (*out)[0].data_ptr, ds[0], ds[1], anchors.shape[0], info.shape[1], p, buf, ws,
                    res.get_cuda_stream());
#else
      no_cuda();
#endif
    } else {
      proposal_cpu(dt, scores.data_ptr, deltas.data_ptr, anchors.data_ptr, info.data_ptr,
                   (*out)[0].data_ptr, ds[0], ds[1], anchors.shape[0], info.shape[1], p);
    }
  });
}

// Proposals carry no gradient (GluonCV computes them under autograd.pause()).
MXReturnValue backward(const Attrs&, std::vector<MXTensor>*, std::vector<MXTensor>* out,
                       const OpResource& res) {
  return guard(kOp, [&]() {
    for (auto& g : *out) zero_fill(g, res);
  });
}

}  // namespace proposal_op
}  // namespace mxglue
}  // namespace frcnn

FRCNN_REGISTER_OP(frcnn_proposal, frcnn::mxglue::proposal_op);
