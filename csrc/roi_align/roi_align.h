// Framework-free launchers of roi_align (= mx.nd.contrib.ROIAlign). Pointers are contiguous
// row-major arrays of the given dtype; `stream` is a cudaStream_t (nullptr: default stream).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/checks.h"
#include "common/host_device.h"
#include "roi_align/roi_align_math.h"

namespace frcnn {

// The op frcnn_roi_align (schema, validation, the deterministic policy, device choice) is in
// roi_align.cpp; the launchers below trust their arguments.

// "" or a message naming the attribute (also checks each level of multilevel_roi_align).
std::string roi_align_check_params(const RoiAlignParams& p);
// The GPU backward runs in a fixed order when the call asks for it or FRCNN_DETERMINISTIC is
// set to anything but "" or "0" (docs: frcnn_ops.roi_align).
bool roi_align_deterministic(bool requested);

// data: (N, C, H, W); rois: (R, 5); out: (R, C_out, ph, pw) with C_out = C, or
// C / (ph * pw) when position sensitive. Rois with an invalid batch index give zeros.
void roi_align_cpu(DType dt, const void* data, const void* rois, void* out, int64_t N,
                   int64_t C, int64_t H, int64_t W, int64_t R, const RoiAlignParams& p);
// grad_out: (R, C_out, ph, pw) -> grad_data (N, C, H, W), overwritten (not added to).
// Multi-threaded over disjoint channel ranges of grad_data: the result is bitwise the same
// for any thread count.
void roi_align_backward_cpu(DType dt, const void* grad_out, const void* rois, void* grad_data,
                            int64_t N, int64_t C, int64_t H, int64_t W, int64_t R,
                            const RoiAlignParams& p);

// CUDA launchers: same arguments plus the stream. Asynchronous; no host synchronisation,
// no scratch memory. float16 is accumulated in float32.
void roi_align_cuda(DType dt, const void* data, const void* rois, void* out, int64_t N,
                    int64_t C, int64_t H, int64_t W, int64_t R, const RoiAlignParams& p,
                    void* stream);
// deterministic = false: scatter with atomicAdd (fast; float32/float64 sums in a
// run-dependent order). deterministic = true: each thread owns one element of grad_data
// and sums its contributions in a fixed order (bitwise identical run to run). float16
// always takes the deterministic kernel (float32 accumulation, one rounding).
void roi_align_backward_cuda(DType dt, const void* grad_out, const void* rois, void* grad_data,
                             int64_t N, int64_t C, int64_t H, int64_t W, int64_t R,
                             const RoiAlignParams& p, bool deterministic, void* stream);

// The CPU kernels over several maps at once (multilevel_roi_align's levels, not position
// sensitive): level l pools rois rows[0..n) of `rois` from its map (N, C, H, W) at params p
// into those rows of out (R rows; the others untouched). The backward reads the same rows of
// grad_out and overwrites every level's grad (zeros where no roi reads, all zeros for n = 0);
// deterministic, bitwise the same for any thread count. No ActiveCall of their own (the
// caller holds one).
namespace roi_align_detail {
template <typename T>
struct Level {
  const T* data = nullptr;   // forward
  T* grad = nullptr;         // backward
  const int64_t* rows = nullptr;
  int64_t n = 0;
  int64_t N = 0, C = 0, H = 0, W = 0;
  RoiAlignParams p;
};
template <typename T>
void forward_levels(const T* rois, const std::vector<Level<T>>& levels, T* out);
template <typename T>
void backward_levels(const T* grad_out, const T* rois, const std::vector<Level<T>>& levels);
}  // namespace roi_align_detail

}  // namespace frcnn
