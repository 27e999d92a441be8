// The op frcnn_proposal: GluonCV's RPN proposal path (RPNProposal + box_nms + slice) as one
// op, single-level (C4) or FPN (the levels concatenated along N, as GluonCV's multi-level RPN
// concatenates them; per_level_nms as its RPN option): schema, validation and device choice.
// Kernels: proposal_cpu.cpp / proposal_cuda.cu. Also frcnn_multilevel_proposal: the same op
// with the FPN levels' scores and deltas as separate inputs (no concatenation by the caller).
#include <cmath>

#include "common/op.h"
#include "proposal/proposal.h"

namespace frcnn {
namespace {

std::string check(const Shape& scores, const Shape& deltas, const Shape& anchors,
                           const Shape& im_info) {
  if (deltas.size() != 3 || deltas[2] != 4)
    return "deltas must have shape (B, N, 4), got " + shape_str(deltas);
  const int64_t B = deltas[0], N = deltas[1];
  const bool scores_ok = (scores.size() == 3 && scores[2] == 1) || scores.size() == 2;
  if (!scores_ok) return "scores must have shape (B, N, 1), got " + shape_str(scores);
  if (scores[0] != B || scores[1] != N)
    return "scores " + shape_str(scores) + " and deltas " + shape_str(deltas) +
           " must have the same B and N";
  if (anchors.size() != 3 || anchors[2] != 4)
    return "anchors must have shape (1, N, 4), got " + shape_str(anchors);
  if (anchors[1] != N)
    return "anchors must have N = " + std::to_string(N) + " rows like deltas " +
           shape_str(deltas) + ", got " + shape_str(anchors);
  if (anchors[0] != 1 && anchors[0] != B)
    return "anchors batch must be 1 or B = " + std::to_string(B) + ", got " + shape_str(anchors);
  if (im_info.size() != 2 || im_info[1] < 2)
    return "im_info must have shape (B, >=2) = [height, width, ...], got " + shape_str(im_info);
  if (im_info[0] != B)
    return "im_info must have one row per image: B = " + std::to_string(B) + ", got " +
           shape_str(im_info);
  if (N > 0xFFFFFFFFll) return "N must be below 2^32, got " + std::to_string(N);
  return "";
}

std::string check_params(const ProposalParams& p) {
  if (p.pre_nms < p.post_nms)
    return "rpn_pre_nms_top_n (" + std::to_string(p.pre_nms) +
           ") must be >= rpn_post_nms_top_n (" + std::to_string(p.post_nms) + ")";
  if (!(p.min_size >= 0.f) || std::isinf(p.min_size))
    return "rpn_min_size must be a finite number >= 0, got " + std::to_string(p.min_size);
  return "";
}

ProposalParams params(const AttrValues& a) {
  ProposalParams p;
  p.pre_nms = a.i("rpn_pre_nms_top_n");
  p.post_nms = a.i("rpn_post_nms_top_n");
  p.threshold = a.f("threshold");
  p.min_size = a.f("rpn_min_size");
  for (int k = 0; k < 4; ++k) p.decode.std[k] = a.f(kStdNames[k]);
  p.decode.clip = a.f("clip");
  p.decode.corner = true;
  require_ok(check_params(p));
  return p;
}

// Anchors per FPN level (level_sizes), checked against N; empty without per_level_nms.
std::vector<int64_t> levels(const AttrValues& a, const ProposalParams& p, int64_t N) {
  std::vector<int64_t> sizes;
  if (a.has("level_sizes")) {
    int64_t sum = 0;
    for (double v : a.list("level_sizes")) {
      if (v < 0) throw InputError("level_sizes must be >= 0 each, got " + std::to_string(v));
      sizes.push_back(static_cast<int64_t>(v));
      sum += sizes.back();
    }
    if (sum != N)
      throw InputError("level_sizes must sum to the anchors' N = " + std::to_string(N) +
                       ", got " + std::to_string(sum));
  }
  if (!a.b("per_level_nms")) return {};
  if (sizes.empty()) throw InputError("per_level_nms needs level_sizes (anchors per level)");
  if (p.pre_nms < static_cast<int64_t>(sizes.size()))
    throw InputError("per_level_nms needs rpn_pre_nms_top_n >= the number of levels (" +
                     std::to_string(sizes.size()) + "), got " + std::to_string(p.pre_nms));
  return sizes;
}

std::vector<Shape> infer_shape(const AttrValues& a, const std::vector<Shape>& in) {
  const ProposalParams p = params(a);
  require_ok(check(in[0], in[1], in[2], in[3]));
  levels(a, p, in[1][1]);
  return {{in[1][0], p.post_nms, 5}};
}

size_t workspace(const AttrValues& a, DType dt, const std::vector<Shape>& in, bool backward) {
  const ProposalParams p = params(a);
  const std::vector<int64_t> lv = levels(a, p, in[1][1]);
  if (backward) return 0;
  return if_cuda([&](auto) {
    return lv.empty() ? proposal_cuda_workspace(dt, in[1][0], in[1][1], p)
                      : proposal_levels_cuda_workspace(dt, in[1][0], lv, p);
  }, size_t(0));
}

void forward(const Call& c) {
  const ProposalParams p = params(c.attrs);
  const Shape& ds = c.in[1].shape;
  const int64_t anchor_batch = c.in[2].shape[0], info_cols = c.in[3].shape[1];
  const std::vector<int64_t> lv = levels(c.attrs, p, ds[1]);
  const void *scores = c.in[0].data, *deltas = c.in[1].data, *anchors = c.in[2].data;
  const void* info = c.in[3].data;
  if (lv.empty()) {
    on_device(c.dev, [&] {
      proposal_cpu(c.dtype, scores, deltas, anchors, info, c.out[0].data, ds[0], ds[1],
                   anchor_batch, info_cols, p);
    }, [&](auto stream) {
      proposal_cuda(c.dtype, scores, deltas, anchors, info, c.out[0].data, ds[0], ds[1],
                    anchor_batch, info_cols, p, c.dev.workspace, c.dev.workspace_bytes, stream);
    });
    return;
  }
  on_device(c.dev, [&] {  // FPN levels with per_level_nms
    proposal_levels_cpu(c.dtype, scores, deltas, anchors, info, c.out[0].data, ds[0], ds[1],
                        anchor_batch, info_cols, lv, p);
  }, [&](auto stream) {
    proposal_levels_cuda(c.dtype, scores, deltas, anchors, info, c.out[0].data, ds[0], ds[1],
                         anchor_batch, info_cols, lv, p, c.dev.workspace,
                         c.dev.workspace_bytes, stream);
  });
}

// ---- frcnn_multilevel_proposal(anchors, im_info, scores[0..L), deltas[0..L)) -----------------

std::string level_name(const char* what, size_t i) {
  return std::string(what) + "[" + std::to_string(i) + "]";
}

// Validates the inputs of frcnn_multilevel_proposal; sizes: the levels' anchor counts n_i.
std::string check_multilevel(const AttrValues& a, const ProposalParams& p,
                             const std::vector<Shape>& in, std::vector<int64_t>* sizes) {
  const size_t got = in.size() < 2 ? 0 : in.size() - 2;
  const size_t L = a.has("num_levels") ? static_cast<size_t>(a.i("num_levels")) : got / 2;
  if (L == 0)
    return "needs at least one level (scores[0] and deltas[0] after anchors and im_info), got "
           "none";
  if (in.size() < 2 || got != 2 * L)
    return "got " + std::to_string(got) + " level inputs after anchors and im_info, expected " +
           "2 * num_levels = " + std::to_string(2 * L) + " (scores[0] .. scores[" +
           std::to_string(L - 1) + "], then deltas[0] .. deltas[" + std::to_string(L - 1) + "])";
  const Shape& d0 = in[2 + L];
  int64_t N = 0;
  for (size_t i = 0; i < L; ++i) {
    const Shape &s = in[2 + i], &d = in[2 + L + i];
    const std::string sn = level_name("scores", i), dn = level_name("deltas", i);
    if (d.size() != 3 || d[2] != 4)
      return dn + " must have shape (B, n_" + std::to_string(i) + ", 4), got " + shape_str(d);
    if (d[0] != d0[0])
      return dn + " must have the batch size B = " + std::to_string(d0[0]) +
             " of deltas[0], got " + shape_str(d);
    if (!((s.size() == 3 && s[2] == 1) || s.size() == 2))
      return sn + " must have shape (B, n_" + std::to_string(i) + ", 1), got " + shape_str(s);
    if (s[0] != d[0] || s[1] != d[1])
      return sn + " " + shape_str(s) + " and " + dn + " " + shape_str(d) +
             " must have the same B and n_" + std::to_string(i);
    sizes->push_back(d[1]);
    N += d[1];
  }
  const Shape& anchors = in[0];
  if (anchors.size() != 3 || anchors[2] != 4 || anchors[1] != N)
    return "anchors must have shape (1, N, 4), the levels' anchors concatenated: N = " +
           std::to_string(N) + " (the sum of the levels' n_i), got " + shape_str(anchors);
  if (a.b("per_level_nms") && p.pre_nms < static_cast<int64_t>(L))
    return "per_level_nms needs rpn_pre_nms_top_n >= the number of levels (" +
           std::to_string(L) + "), got " + std::to_string(p.pre_nms);
  // the rest as frcnn_proposal on the concatenation (anchors' batch, im_info, N < 2^32)
  return check({d0[0], N, 1}, {d0[0], N, 4}, anchors, in[1]);
}

std::vector<int64_t> multilevel_sizes(const AttrValues& a, const ProposalParams& p,
                                      const std::vector<Shape>& in) {
  std::vector<int64_t> sizes;
  require_ok(check_multilevel(a, p, in, &sizes));
  return sizes;
}

// MXNet fixes the input count when it parses the attributes: num_levels gives it.
int multilevel_num_inputs(const AttrValues& a) {
  if (!a.has("num_levels"))
    throw InputError("attribute num_levels is required (the inputs are anchors, im_info, "
                     "scores[0] .. scores[L-1], deltas[0] .. deltas[L-1])");
  return 2 + 2 * a.i("num_levels");
}

std::vector<Shape> multilevel_infer_shape(const AttrValues& a, const std::vector<Shape>& in) {
  const ProposalParams p = params(a);
  const std::vector<int64_t> sizes = multilevel_sizes(a, p, in);
  return {{in[2 + sizes.size()][0], p.post_nms, 5}};
}

size_t multilevel_workspace(const AttrValues& a, DType dt, const std::vector<Shape>& in,
                            bool backward) {
  const ProposalParams p = params(a);
  const std::vector<int64_t> sizes = multilevel_sizes(a, p, in);
  if (backward) return 0;
  return if_cuda([&](auto) {
    return proposal_multilevel_cuda_workspace(dt, in[2 + sizes.size()][0], sizes,
                                              a.b("per_level_nms"), p);
  }, size_t(0));
}

void multilevel_forward(const Call& c) {
  const ProposalParams p = params(c.attrs);
  std::vector<Shape> shapes;
  for (const Tensor& t : c.in) shapes.push_back(t.shape);
  const std::vector<int64_t> sizes = multilevel_sizes(c.attrs, p, shapes);
  const size_t L = sizes.size();
  std::vector<const void*> scores, deltas;
  for (size_t i = 0; i < L; ++i) {
    scores.push_back(c.in[2 + i].data);
    deltas.push_back(c.in[2 + L + i].data);
  }
  const int64_t B = shapes[2 + L][0], anchor_batch = shapes[0][0], info_cols = shapes[1][1];
  const bool per_level = c.attrs.b("per_level_nms");
  on_device(c.dev, [&] {
    proposal_multilevel_cpu(c.dtype, scores, deltas, c.in[0].data, c.in[1].data,
                            c.out[0].data, B, sizes, anchor_batch, info_cols, per_level, p);
  }, [&](auto stream) {
    proposal_multilevel_cuda(c.dtype, scores, deltas, c.in[0].data, c.in[1].data,
                             c.out[0].data, B, sizes, anchor_batch, info_cols, per_level, p,
                             c.dev.workspace, c.dev.workspace_bytes, stream);
  });
}

// frcnn_proposal's attributes (the twin's order); level_sizes only where the levels come
// concatenated.
std::vector<AttrSpec> proposal_attrs(bool concatenated) {
  std::vector<AttrSpec> attrs = {
      {"rpn_pre_nms_top_n", AttrType::kInt, "6000", "boxes entering NMS", {}, 1},
      {"rpn_post_nms_top_n", AttrType::kInt, "300", "boxes returned", {}, 1},
      {"threshold", AttrType::kFloat, "0.7", "NMS IoU threshold", {}, 0, 1},
      {"rpn_min_size", AttrType::kFloat, "16", "minimum box width and height (+1 convention)"},
      {"std0", AttrType::kFloat, "1.0", "scale of dx"},
      {"std1", AttrType::kFloat, "1.0", "scale of dy"},
      {"std2", AttrType::kFloat, "1.0", "scale of dw"},
      {"std3", AttrType::kFloat, "1.0", "scale of dh"},
      {"clip", AttrType::kFloat, "-1.0", "upper bound of dw and dh before exp when > 0"},
      {"level_sizes", AttrType::kIntList, "", "anchors per FPN level, in order along N"},
      {"per_level_nms", AttrType::kBool, "false", "GluonCV's per_level_nms (needs level_sizes)"}};
  if (!concatenated) {
    attrs.erase(attrs.end() - 2);  // level_sizes: the inputs' shapes give them
    attrs.back().doc = "GluonCV's per_level_nms";
  }
  return attrs;
}

}  // namespace

// No gradient: GluonCV computes proposals under autograd.pause().
const OpDef& proposal_op() {
  static const OpDef op{
      "frcnn_proposal",
      {{"scores", false}, {"deltas", false}, {"anchors", false}, {"im_info", false}},
      proposal_attrs(true), nullptr, infer_shape, workspace, forward, nullptr};
  return op;
}

// frcnn_multilevel_proposal(anchors, im_info, scores[0..L), deltas[0..L), num_levels=L, ...):
// exactly frcnn_proposal on the levels concatenated along N with level_sizes = their n_i.
const OpDef& multilevel_proposal_op() {
  static const OpDef op = [] {
    std::vector<AttrSpec> attrs = proposal_attrs(false);
    attrs.insert(attrs.begin(), AttrSpec{"num_levels", AttrType::kInt, "",
                                         "FPN levels L (scores[i], deltas[i] each)", {}, 1, 64});
    return OpDef{"frcnn_multilevel_proposal",
                 {{"anchors", false}, {"im_info", false}, {"*scores,deltas", false}},
                 attrs,
                 multilevel_num_inputs,
                 multilevel_infer_shape,
                 multilevel_workspace,
                 multilevel_forward,
                 nullptr};
  }();
  return op;
}

}  // namespace frcnn
