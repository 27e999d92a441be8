#include "proposal/proposal.h"
#include "python/bind.h"

namespace frcnn {
namespace pyglue {
namespace {

ProposalParams proposal_params(int pre, int post, float threshold, float min_size,
                               const std::vector<float>& stds, float clip) {
  ProposalParams p;
  p.pre_nms = pre;
  p.post_nms = post;
  p.threshold = threshold;
  p.min_size = min_size;
  if (stds.size() != 4)
    raise_if("frcnn_proposal", "stds must have 4 values, got " + std::to_string(stds.size()));
  for (int k = 0; k < 4; ++k) p.decode.std[k] = stds[k];
  p.decode.clip = clip;
  p.decode.corner = true;
  raise_if("frcnn_proposal", proposal_check_params(p));
  return p;
}

py::array proposal_np(py::array scores, py::array deltas, py::array anchors, py::array im_info,
                      int pre, int post, float threshold, float min_size,
                      std::vector<float> stds, float clip) {
  const char* op = "frcnn_proposal";
  const ProposalParams p = proposal_params(pre, post, threshold, min_size, stds, clip);
  same_dtype(op, {{"deltas", deltas}, {"scores", scores}, {"anchors", anchors},
                  {"im_info", im_info}});
  const Shape ds = np_shape(deltas), as = np_shape(anchors), is = np_shape(im_info);
  raise_if(op, proposal_check(np_shape(scores), ds, as, is));
  const DType dt = np_dtype(op, "deltas", deltas);
  py::array out = new_array(dt, {ds[0], p.post_nms, 5});
  {
    py::gil_scoped_release nogil;
    proposal_cpu(dt, cptr(scores), cptr(deltas), cptr(anchors), cptr(im_info), mptr(out), ds[0],
                 ds[1], as[0], is[1], p);
  }
  return out;
}

NmsParams nms_params(float overlap_thresh, float valid_thresh, int topk, int coord_start,
                     int score_index, int id_index, int background_id, bool force_suppress,
                     const std::string& in_format, const std::string& out_format) {
  const char* op = "frcnn_nms";
  raise_if(op, check_choice("in_format", in_format, {"corner", "center"}));
  raise_if(op, check_choice("out_format", out_format, {"corner", "center"}));
  NmsParams p;
  p.overlap_thresh = overlap_thresh;
  p.valid_thresh = valid_thresh;
  p.topk = topk;
  p.coord_start = coord_start;
  p.score_index = score_index;
  p.id_index = id_index;
  p.background_id = background_id;
  p.force_suppress = force_suppress;
  p.in_center = in_format == "center";
  p.out_center = out_format == "center";
  return p;
}

py::array nms_np(py::array data, float overlap_thresh, float valid_thresh, int topk,
                 int coord_start, int score_index, int id_index, int background_id,
                 bool force_suppress, std::string in_format, std::string out_format) {
  const char* op = "frcnn_nms";
  const NmsParams p = nms_params(overlap_thresh, valid_thresh, topk, coord_start, score_index,
                                 id_index, background_id, force_suppress, in_format, out_format);
  const DType dt = np_dtype(op, "data", data);
  const Shape s = np_shape(data);
  raise_if(op, nms_check(s, p));
  int64_t batches, n, width;
  nms_flatten(s, &batches, &n, &width);
  py::array out = new_array(dt, s);
  {
    py::gil_scoped_release nogil;
    nms_cpu(dt, cptr(data), mptr(out), batches, n, width, p);
  }
  return out;
}

// box_nms's gradient w.r.t. data (see nms_backward_cpu): grad has data's shape.
py::array nms_backward_np(py::array grad, py::array data, float overlap_thresh,
                          float valid_thresh, int topk, int coord_start, int score_index,
                          int id_index, int background_id, bool force_suppress,
                          std::string in_format, std::string out_format) {
  const char* op = "frcnn_nms";
  const NmsParams p = nms_params(overlap_thresh, valid_thresh, topk, coord_start, score_index,
                                 id_index, background_id, force_suppress, in_format, out_format);
  same_dtype(op, {{"data", data}, {"grad", grad}});
  const DType dt = np_dtype(op, "data", data);
  const Shape s = np_shape(data);
  raise_if(op, nms_check(s, p));
  raise_if(op, np_shape(grad) == s ? "" : "grad must have the shape of data " + shape_str(s) +
                   ", got " + shape_str(np_shape(grad)));
  int64_t batches, n, width;
  nms_flatten(s, &batches, &n, &width);
  py::array out = new_array(dt, s);
  {
    py::gil_scoped_release nogil;
    nms_backward_cpu(dt, cptr(grad), cptr(data), mptr(out), batches, n, width, p);
  }
  return out;
}

// Shape and attribute checks alone (ValueError naming the op), run by the Python wrappers
// before making inputs contiguous: an over-limit shape is refused without allocating.
void proposal_check_np(Shape ss, Shape ds, Shape as, Shape is, int pre, int post,
                       float threshold, float min_size, std::vector<float> stds, float clip) {
  proposal_params(pre, post, threshold, min_size, stds, clip);
  raise_if("frcnn_proposal", proposal_check(ss, ds, as, is));
}

void nms_check_np(Shape s, float overlap_thresh, float valid_thresh, int topk, int coord_start,
                  int score_index, int id_index, int background_id, bool force_suppress,
                  std::string in_format, std::string out_format) {
  const NmsParams p = nms_params(overlap_thresh, valid_thresh, topk, coord_start, score_index,
                                 id_index, background_id, force_suppress, in_format, out_format);
  raise_if("frcnn_nms", nms_check(s, p));
}

#ifdef FRCNN_WITH_CUDA
size_t proposal_ws_gpu(int dtype, Shape ds, int pre, int post, float threshold, float min_size,
                       std::vector<float> stds, float clip) {
  const ProposalParams p = proposal_params(pre, post, threshold, min_size, stds, clip);
  return proposal_cuda_workspace(gpu_dtype("frcnn_proposal", dtype), ds[0], ds[1], p);
}

void proposal_gpu(int dtype, uintptr_t scores, uintptr_t deltas, uintptr_t anchors,
                  uintptr_t im_info, uintptr_t out, Shape ss, Shape ds, Shape as, Shape is,
                  int pre, int post, float threshold, float min_size, std::vector<float> stds,
                  float clip, uintptr_t workspace, size_t workspace_bytes, uintptr_t stream) {
  const char* op = "frcnn_proposal";
  const ProposalParams p = proposal_params(pre, post, threshold, min_size, stds, clip);
  raise_if(op, proposal_check(ss, ds, as, is));
  proposal_cuda(gpu_dtype(op, dtype), dptr(scores), dptr(deltas), dptr(anchors), dptr(im_info),
                dptr(out), ds[0], ds[1], as[0], is[1], p, dptr(workspace), workspace_bytes,
                dptr(stream));
}

size_t nms_ws_gpu(int dtype, Shape s, float overlap_thresh, float valid_thresh, int topk,
                  int coord_start, int score_index, int id_index, int background_id,
                  bool force_suppress, std::string in_format, std::string out_format) {
  const NmsParams p = nms_params(overlap_thresh, valid_thresh, topk, coord_start, score_index,
                                 id_index, background_id, force_suppress, in_format, out_format);
  raise_if("frcnn_nms", nms_check(s, p));
  int64_t batches, n, width;
  nms_flatten(s, &batches, &n, &width);
  return nms_cuda_workspace(gpu_dtype("frcnn_nms", dtype), batches, n, width, p);
}

void nms_backward_gpu(int dtype, uintptr_t grad, uintptr_t data, uintptr_t grad_data, Shape s,
                      float overlap_thresh, float valid_thresh, int topk, int coord_start,
                      int score_index, int id_index, int background_id, bool force_suppress,
                      std::string in_format, std::string out_format, uintptr_t workspace,
                      size_t workspace_bytes, uintptr_t stream) {
  const char* op = "frcnn_nms";
  const NmsParams p = nms_params(overlap_thresh, valid_thresh, topk, coord_start, score_index,
                                 id_index, background_id, force_suppress, in_format, out_format);
  raise_if(op, nms_check(s, p));
  int64_t batches, n, width;
  nms_flatten(s, &batches, &n, &width);
  nms_backward_cuda(gpu_dtype(op, dtype), dptr(grad), dptr(data), dptr(grad_data), batches, n,
                    width, p, dptr(workspace), workspace_bytes, dptr(stream));
}

void nms_gpu(int dtype, uintptr_t data, uintptr_t out, Shape s, float overlap_thresh,
             float valid_thresh, int topk, int coord_start, int score_index, int id_index,
             int background_id, bool force_suppress, std::string in_format,
             std::string out_format, uintptr_t workspace, size_t workspace_bytes,
             uintptr_t stream) {
  const char* op = "frcnn_nms";
  const NmsParams p = nms_params(overlap_thresh, valid_thresh, topk, coord_start, score_index,
                                 id_index, background_id, force_suppress, in_format, out_format);
  raise_if(op, nms_check(s, p));
  int64_t batches, n, width;
  nms_flatten(s, &batches, &n, &width);
  nms_cuda(gpu_dtype(op, dtype), dptr(data), dptr(out), batches, n, width, p, dptr(workspace),
           workspace_bytes, dptr(stream));
}
#endif

void bind(py::module_& m) {
  m.def("proposal", &proposal_np);
  m.def("nms", &nms_np);
  m.def("nms_backward", &nms_backward_np);
  m.def("proposal_check", &proposal_check_np);
  m.def("nms_check", &nms_check_np);
#ifdef FRCNN_WITH_CUDA
  m.def("proposal_workspace_gpu", &proposal_ws_gpu);
  m.def("proposal_gpu", &proposal_gpu);
  m.def("nms_workspace_gpu", &nms_ws_gpu);
  m.def("nms_gpu", &nms_gpu);
  m.def("nms_backward_gpu", &nms_backward_gpu);
#endif
}

FRCNN_PY_BINDER(bind);

}  // namespace
}  // namespace pyglue
}  // namespace frcnn
