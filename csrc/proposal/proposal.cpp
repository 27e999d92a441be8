// The op frcnn_proposal: GluonCV's RPN proposal path (RPNProposal + box_nms + slice) as one
// op, single-level (C4) or FPN (the levels concatenated along N, as GluonCV's multi-level RPN
// concatenates them; per_level_nms as its RPN option): schema, validation and device choice.
// Kernels: proposal_cpu.cpp / proposal_cuda.cu.
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

}  // namespace

// No gradient: GluonCV computes proposals under autograd.pause().
const OpDef& proposal_op() {
  static const OpDef op{
      "frcnn_proposal",
      {{"scores", false}, {"deltas", false}, {"anchors", false}, {"im_info", false}},
      {{"rpn_pre_nms_top_n", AttrType::kInt, "6000", "boxes entering NMS", {}, 1},
       {"rpn_post_nms_top_n", AttrType::kInt, "300", "boxes returned", {}, 1},
       {"threshold", AttrType::kFloat, "0.7", "NMS IoU threshold", {}, 0, 1},
       {"rpn_min_size", AttrType::kFloat, "16", "minimum box width and height (+1 convention)"},
       {"std0", AttrType::kFloat, "1.0", "scale of dx"},
       {"std1", AttrType::kFloat, "1.0", "scale of dy"},
       {"std2", AttrType::kFloat, "1.0", "scale of dw"},
       {"std3", AttrType::kFloat, "1.0", "scale of dh"},
       {"clip", AttrType::kFloat, "-1.0", "upper bound of dw and dh before exp when > 0"},
       {"level_sizes", AttrType::kIntList, "", "anchors per FPN level, in order along N"},
       {"per_level_nms", AttrType::kBool, "false", "GluonCV's per_level_nms (needs level_sizes)"}},
      nullptr, infer_shape, workspace, forward, nullptr};
  return op;
}

}  // namespace frcnn
