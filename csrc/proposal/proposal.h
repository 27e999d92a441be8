// Framework-free launchers of the fused RPN proposal op and of nms (box_nms drop-in).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "box_coder/box_coder_math.h"
#include "common/host_device.h"

namespace frcnn {

using Shape = std::vector<int64_t>;

// ---- proposal ------------------------------------------------------------------------
struct ProposalParams {
  int pre_nms = 6000;        // rpn_pre_nms_top_n
  int post_nms = 300;        // rpn_post_nms_top_n
  float threshold = 0.7f;    // NMS IoU threshold
  float min_size = 16.f;     // rpn_min_size, +1 convention
  BoxDecodeParams decode;    // std0..3, clip; anchors are corner boxes
};

// scores (B, N, 1) or (B, N); deltas (B, N, 4); anchors (1 or B, N, 4); im_info (B, >=2).
std::string proposal_check(const Shape& scores, const Shape& deltas, const Shape& anchors,
                           const Shape& im_info);
std::string proposal_check_params(const ProposalParams& p);

// out: (B, post_nms, 5) = [score, x1, y1, x2, y2], rows past the kept count all -1.
void proposal_cpu(DType dt, const void* scores, const void* deltas, const void* anchors,
                  const void* im_info, void* out, int64_t B, int64_t N, int64_t anchor_batch,
                  int64_t info_cols, const ProposalParams& p);

// GPU: the caller provides one scratch buffer of proposal_cuda_workspace() bytes.
size_t proposal_cuda_workspace(DType dt, int64_t B, int64_t N, const ProposalParams& p);
void proposal_cuda(DType dt, const void* scores, const void* deltas, const void* anchors,
                   const void* im_info, void* out, int64_t B, int64_t N, int64_t anchor_batch,
                   int64_t info_cols, const ProposalParams& p, void* workspace,
                   size_t workspace_bytes, void* stream);

// ---- nms (= mx.nd.contrib.box_nms) ----------------------------------------------------
struct NmsParams {
  float overlap_thresh = 0.5f;
  float valid_thresh = 0.f;
  int topk = -1;
  int coord_start = 2;
  int score_index = 1;
  int id_index = -1;
  int background_id = -1;
  bool force_suppress = false;
  bool in_center = false;   // in_format == 'center'
  bool out_center = false;  // out_format == 'center'
};

// data (..., n, width): the leading dims are batches.
std::string nms_check(const Shape& data, const NmsParams& p);

// (..., n, width) -> batches = product of the leading dims, n, width.
inline void nms_flatten(const Shape& s, int64_t* batches, int64_t* n, int64_t* width) {
  *width = s.back();
  *n = s[s.size() - 2];
  *batches = 1;
  for (size_t i = 0; i + 2 < s.size(); ++i) *batches *= s[i];
}

// data, out: (batches, n, width).
void nms_cpu(DType dt, const void* data, void* out, int64_t batches, int64_t n, int64_t width,
             const NmsParams& p);

// box_nms's gradient w.r.t. data: output row k's gradient (all columns, unchanged) goes to
// the input row the k-th kept row came from, every other row gets 0 (with topk = 0: the
// identity). The selection is run again on data (deterministic). grad_data is overwritten.
void nms_backward_cpu(DType dt, const void* grad_out, const void* data, void* grad_data,
                      int64_t batches, int64_t n, int64_t width, const NmsParams& p);

size_t nms_cuda_workspace(DType dt, int64_t batches, int64_t n, int64_t width,
                          const NmsParams& p);
void nms_cuda(DType dt, const void* data, void* out, int64_t batches, int64_t n, int64_t width,
              const NmsParams& p, void* workspace, size_t workspace_bytes, void* stream);
// The gradient on the GPU: same workspace as nms_cuda, no host synchronisation.
void nms_backward_cuda(DType dt, const void* grad_out, const void* data, void* grad_data,
                       int64_t batches, int64_t n, int64_t width, const NmsParams& p,
                       void* workspace, size_t workspace_bytes, void* stream);

}  // namespace frcnn
