// Framework-free launchers of box_decode and clip_boxes. Pointers are contiguous
// row-major arrays of the given dtype; `stream` is a cudaStream_t (nullptr: default stream).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "box_coder/box_coder_math.h"
#include "common/checks.h"
#include "common/host_device.h"

namespace frcnn {

// The ops frcnn_box_decode and frcnn_clip_boxes (schema, validation, device choice) are in
// box_coder.cpp; the kernels below trust their arguments.

// data, out: (B, N, 4); anchors: (1 or B, N, 4) (anchor_batch = 1 or B).
void box_decode_cpu(DType dt, const void* data, const void* anchors, void* out, int64_t B,
                    int64_t N, int64_t anchor_batch, const BoxDecodeParams& p);
void box_decode_backward_cpu(DType dt, const void* grad_out, const void* data,
                             const void* anchors, void* grad_data, int64_t B, int64_t N,
                             int64_t anchor_batch, const BoxDecodeParams& p);
// boxes, out: (B, N, 4); im_info: (B, info_cols) = [height, width, ...].
void clip_boxes_cpu(DType dt, const void* boxes, const void* im_info, void* out, int64_t B,
                    int64_t N, int64_t info_cols);
void clip_boxes_backward_cpu(DType dt, const void* grad_out, const void* boxes,
                             const void* im_info, void* grad_boxes, int64_t B, int64_t N,
                             int64_t info_cols);

// CUDA launchers: same arguments plus the stream. Asynchronous; no host synchronisation.
void box_decode_cuda(DType dt, const void* data, const void* anchors, void* out, int64_t B,
                     int64_t N, int64_t anchor_batch, const BoxDecodeParams& p, void* stream);
void box_decode_backward_cuda(DType dt, const void* grad_out, const void* data,
                              const void* anchors, void* grad_data, int64_t B, int64_t N,
                              int64_t anchor_batch, const BoxDecodeParams& p, void* stream);
void clip_boxes_cuda(DType dt, const void* boxes, const void* im_info, void* out, int64_t B,
                     int64_t N, int64_t info_cols, void* stream);
void clip_boxes_backward_cuda(DType dt, const void* grad_out, const void* boxes,
                              const void* im_info, void* grad_boxes, int64_t B, int64_t N,
                              int64_t info_cols, void* stream);

}  // namespace frcnn
