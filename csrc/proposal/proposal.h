// Framework-free launchers of the fused RPN proposal op (its NMS: nms/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "box_coder/box_coder_math.h"
#include "common/checks.h"
#include "common/host_device.h"

namespace frcnn {

// The op frcnn_proposal (schema, validation, device choice) is in proposal.cpp; the
// launchers below trust their arguments.

// ---- proposal ------------------------------------------------------------------------
struct ProposalParams {
  int pre_nms = 6000;        // rpn_pre_nms_top_n
  int post_nms = 300;        // rpn_post_nms_top_n
  float threshold = 0.7f;    // NMS IoU threshold
  float min_size = 16.f;     // rpn_min_size, +1 convention
  BoxDecodeParams decode;    // std0..3, clip; anchors are corner boxes
};

// scores (B, N, 1) or (B, N); deltas (B, N, 4); anchors (1 or B, N, 4); im_info (B, >=2).
// out: (B, post_nms, 5) = [score, x1, y1, x2, y2], rows past the kept count all -1.
void proposal_cpu(DType dt, const void* scores, const void* deltas, const void* anchors,
                  const void* im_info, void* out, int64_t B, int64_t N, int64_t anchor_batch,
                  int64_t info_cols, const ProposalParams& p);

// GluonCV's per_level_nms: N holds levels[0], levels[1], ... anchors in order (summing to N);
// each level is proposed alone with pre_nms / levels.size() boxes in and as many out (>= 1),
// then the levels' kept boxes are merged by descending score (ties: level, then rank) and the
// first post_nms returned. The GPU launcher takes proposal_levels_cuda_workspace() bytes.
void proposal_levels_cpu(DType dt, const void* scores, const void* deltas, const void* anchors,
                         const void* im_info, void* out, int64_t B, int64_t N,
                         int64_t anchor_batch, int64_t info_cols,
                         const std::vector<int64_t>& levels, const ProposalParams& p);
size_t proposal_levels_cuda_workspace(DType dt, int64_t B, const std::vector<int64_t>& levels,
                                      const ProposalParams& p);
void proposal_levels_cuda(DType dt, const void* scores, const void* deltas, const void* anchors,
                          const void* im_info, void* out, int64_t B, int64_t N,
                          int64_t anchor_batch, int64_t info_cols,
                          const std::vector<int64_t>& levels, const ProposalParams& p,
                          void* workspace, size_t workspace_bytes, void* stream);

// frcnn_multilevel_proposal: the FPN levels' scores[l] (B, levels[l]) or (B, levels[l], 1) and
// deltas[l] (B, levels[l], 4) apart, anchors (1 or B, N = sum of levels, 4) concatenated.
// Exactly proposal_* (per_level_nms false) or proposal_levels_* (true) on the levels
// concatenated along N: the levels are gathered into contiguous scratch memory (CPU: the
// scratch pool; GPU: the front of proposal_multilevel_cuda_workspace() bytes), then those run.
void proposal_multilevel_cpu(DType dt, const std::vector<const void*>& scores,
                             const std::vector<const void*>& deltas, const void* anchors,
                             const void* im_info, void* out, int64_t B,
                             const std::vector<int64_t>& levels, int64_t anchor_batch,
                             int64_t info_cols, bool per_level_nms, const ProposalParams& p);
size_t proposal_multilevel_cuda_workspace(DType dt, int64_t B,
                                          const std::vector<int64_t>& levels,
                                          bool per_level_nms, const ProposalParams& p);
void proposal_multilevel_cuda(DType dt, const std::vector<const void*>& scores,
                              const std::vector<const void*>& deltas, const void* anchors,
                              const void* im_info, void* out, int64_t B,
                              const std::vector<int64_t>& levels, int64_t anchor_batch,
                              int64_t info_cols, bool per_level_nms, const ProposalParams& p,
                              void* workspace, size_t workspace_bytes, void* stream);

// GPU: the caller provides one scratch buffer of proposal_cuda_workspace() bytes.
size_t proposal_cuda_workspace(DType dt, int64_t B, int64_t N, const ProposalParams& p);
void proposal_cuda(DType dt, const void* scores, const void* deltas, const void* anchors,
                   const void* im_info, void* out, int64_t B, int64_t N, int64_t anchor_batch,
                   int64_t info_cols, const ProposalParams& p, void* workspace,
                   size_t workspace_bytes, void* stream);

}  // namespace frcnn
