// The op frcnn_nms (= contrib.box_nms, with box_nms's gradient): schema, validation and
// device choice. Kernels: nms_cpu.cpp / nms_greedy.cpp / nms_cuda.cu over nms_math.h.
#include "common/op.h"
#include "nms/nms.h"

namespace frcnn {
namespace {

NmsParams params(const AttrValues& a) {
  NmsParams p;
  p.overlap_thresh = a.f("overlap_thresh");
  p.valid_thresh = a.f("valid_thresh");
  p.topk = a.i("topk");
  p.coord_start = a.i("coord_start");
  p.score_index = a.i("score_index");
  p.id_index = a.i("id_index");
  p.background_id = a.i("background_id");
  p.force_suppress = a.b("force_suppress");
  p.in_center = a.str("in_format") == "center";
  p.out_center = a.str("out_format") == "center";
  return p;
}

// data (..., n, width): the leading dims are batches.
std::string check(const Shape& data, const NmsParams& p) {
  if (data.size() < 2)
    return "data must have shape (..., n, width) with at least 2 dims, got " + shape_str(data);
  const int64_t width = data.back();
  const int64_t expected = p.id_index >= 0 ? 6 : 5;
  if (width < expected)
    return "data's last dim must hold at least " + std::to_string(expected) +
           " values (score, 4 coordinates" + (p.id_index >= 0 ? ", id" : "") + "), got " +
           shape_str(data);
  if (p.score_index < 0 || p.score_index >= width)
    return "score_index " + std::to_string(p.score_index) + " is out of range [0, " +
           std::to_string(width) + ")";
  if (p.coord_start < 0 || p.coord_start + 3 >= width)
    return "coordinates [coord_start, coord_start + 3] = [" + std::to_string(p.coord_start) +
           ", " + std::to_string(p.coord_start + 3) + "] are out of range [0, " +
           std::to_string(width) + ")";
  if (p.score_index >= p.coord_start && p.score_index <= p.coord_start + 3)
    return "score_index " + std::to_string(p.score_index) + " overlaps the coordinates [" +
           std::to_string(p.coord_start) + ", " + std::to_string(p.coord_start + 3) + "]";
  if (p.id_index >= 0) {
    if (p.id_index >= width)
      return "id_index " + std::to_string(p.id_index) + " is out of range [0, " +
             std::to_string(width) + ")";
    if (p.id_index >= p.coord_start && p.id_index <= p.coord_start + 3)
      return "id_index " + std::to_string(p.id_index) + " overlaps the coordinates [" +
             std::to_string(p.coord_start) + ", " + std::to_string(p.coord_start + 3) + "]";
    if (p.id_index == p.score_index)
      return "id_index and score_index are both " + std::to_string(p.id_index);
  }
  if (!(p.overlap_thresh == p.overlap_thresh))
    return "overlap_thresh must be a number, got nan";
  int64_t n = data[data.size() - 2];
  if (n > 0x7FFFFFFFll) return "n must be below 2^31, got " + std::to_string(n);
  return "";
}

std::vector<Shape> infer_shape(const AttrValues& a, const std::vector<Shape>& in) {
  require_ok(check(in[0], params(a)));
  return {in[0]};
}

size_t workspace(const AttrValues& a, DType dt, const std::vector<Shape>& in, bool) {
  int64_t batches, n, width;
  nms_flatten(in[0], &batches, &n, &width);
  return if_cuda([&](auto) { return nms_cuda_workspace(dt, batches, n, width, params(a)); },
                 size_t(0));
}

void forward(const Call& c) {
  const NmsParams p = params(c.attrs);
  int64_t batches, n, width;
  nms_flatten(c.in[0].shape, &batches, &n, &width);
  on_device(c.dev, [&] {
    nms_cpu(c.dtype, c.in[0].data, c.out[0].data, batches, n, width, p);
  }, [&](auto stream) {
    nms_cuda(c.dtype, c.in[0].data, c.out[0].data, batches, n, width, p, c.dev.workspace,
             c.dev.workspace_bytes, stream);
  });
}

// box_nms's gradient: output row k's gradient goes to the input row the k-th kept row came
// from (all columns), every other row gets 0. No hidden outputs are kept (lib_api has none),
// so the kept rows are selected again from data (deterministic, the forward's selection).
void backward(const Call& c) {
  const NmsParams p = params(c.attrs);
  int64_t batches, n, width;
  nms_flatten(c.in[0].shape, &batches, &n, &width);
  on_device(c.dev, [&] {
    nms_backward_cpu(c.dtype, c.grad_out.data, c.in[0].data, c.out[0].data, batches, n, width,
                     p);
  }, [&](auto stream) {
    nms_backward_cuda(c.dtype, c.grad_out.data, c.in[0].data, c.out[0].data, batches, n, width,
                      p, c.dev.workspace, c.dev.workspace_bytes, stream);
  });
}

}  // namespace

const OpDef& nms_op() {
  static const OpDef op{
      "frcnn_nms",
      {{"data", true}},
      {{"overlap_thresh", AttrType::kFloat, "0.5", "IoU above which a box is suppressed"},
       {"valid_thresh", AttrType::kFloat, "0.0", "rows with score <= this are dropped"},
       {"topk", AttrType::kInt, "-1", "rows entering NMS by score (-1: all, 0: no-op)"},
       {"coord_start", AttrType::kInt, "2", "column of the first coordinate"},
       {"score_index", AttrType::kInt, "1", "column of the score"},
       {"id_index", AttrType::kInt, "-1", "column of the class id (-1: none)"},
       {"background_id", AttrType::kInt, "-1", "class id that is never kept"},
       {"force_suppress", AttrType::kBool, "false", "suppress across class ids"},
       {"in_format", AttrType::kChoice, "corner", "input box format", {"corner", "center"}},
       {"out_format", AttrType::kChoice, "corner", "output box format", {"corner", "center"}}},
      nullptr, infer_shape, workspace, forward, backward};
  return op;
}

}  // namespace frcnn
