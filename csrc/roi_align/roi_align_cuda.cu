// ROIAlign on CUDA: the kernels of roi_align_cuda_kernels.cuh over one feature map.
#include "roi_align/roi_align_cuda_kernels.cuh"
#include "roi_align/roi_align.h"

namespace frcnn {
namespace {

template <typename T>
MapSet<T> single_map(const void* data, int64_t H, int64_t W, const RoiAlignParams& p) {
  MapSet<T> m;
  m.count = 1;
  m.ptr[0] = static_cast<T*>(const_cast<void*>(data));
  m.H[0] = static_cast<int>(H);
  m.W[0] = static_cast<int>(W);
  m.scale[0] = p.spatial_scale;
  return m;
}

}  // namespace

void roi_align_cuda(DType dt, const void* data, const void* rois, void* out, int64_t N,
                    int64_t C, int64_t H, int64_t W, int64_t R, const RoiAlignParams& p,
                    void* stream) {
  FRCNN_DISPATCH_CUDA(dt, "frcnn_roi_align",
    launch_forward<scalar_t>("frcnn_roi_align", single_map<scalar_t>(data, H, W, p),
                             static_cast<const scalar_t*>(rois), static_cast<scalar_t*>(out), N,
                             C, R, p, as_stream(stream)));
}

void roi_align_backward_cuda(DType dt, const void* grad_out, const void* rois, void* grad_data,
                             int64_t N, int64_t C, int64_t H, int64_t W, int64_t R,
                             const RoiAlignParams& p, bool deterministic, void* stream) {
  FRCNN_DISPATCH_CUDA(dt, "frcnn_roi_align",
    launch_backward<scalar_t>("frcnn_roi_align", single_map<scalar_t>(grad_data, H, W, p),
                              static_cast<const scalar_t*>(grad_out),
                              static_cast<const scalar_t*>(rois), N, C, R, p, deterministic,
                              as_stream(stream)));
}

}  // namespace frcnn
