// Framework-free launchers of nms (= mx.nd.contrib.box_nms). The op frcnn_nms (schema,
// validation, device choice) is in nms.cpp; the launchers below trust their arguments.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/checks.h"
#include "common/host_device.h"

namespace frcnn {

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
