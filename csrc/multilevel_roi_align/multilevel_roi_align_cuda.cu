// multilevel_roi_align on CUDA: the roi_align kernels (roi_align_cuda_kernels.cuh) over a
// MapSet of all levels; each roi's block picks the map of its level (roi_level_index).
#include "multilevel_roi_align/multilevel_roi_align.h"
#include "roi_align/roi_align_cuda_kernels.cuh"

namespace frcnn {
namespace {

constexpr const char* kOp = "frcnn_multilevel_roi_align";

template <typename T, typename P>
MapSet<T> level_maps(const std::vector<P>& ptrs, const std::vector<Shape>& shapes,
                     const MultiLevelParams& mp) {
  if (ptrs.size() != mp.spatial_scales.size() || ptrs.size() > static_cast<size_t>(kMaxLevels))
    throw Error(std::string(kOp) + ": feature maps and spatial_scales differ in number");
  MapSet<T> m;
  m.count = static_cast<int>(ptrs.size());
  for (int k = 0; k < m.count; ++k) {
    m.ptr[k] = static_cast<T*>(const_cast<void*>(static_cast<const void*>(ptrs[k])));
    m.H[k] = static_cast<int>(shapes[k][2]);
    m.W[k] = static_cast<int>(shapes[k][3]);
    m.scale[k] = mp.spatial_scales[k];
  }
  m.multilevel = true;
  m.rule = mp.rule;
  return m;
}

}  // namespace

void multilevel_roi_align_cuda(DType dt, const void* rois,
                               const std::vector<const void*>& features,
                               const std::vector<Shape>& shapes, void* out, int64_t R,
                               const MultiLevelParams& p, void* stream) {
  FRCNN_DISPATCH_CUDA(dt, kOp,
    launch_forward<scalar_t>(kOp, level_maps<scalar_t>(features, shapes, p),
                             static_cast<const scalar_t*>(rois), static_cast<scalar_t*>(out),
                             shapes[0][0], shapes[0][1], R, p.p, as_stream(stream)));
}

void multilevel_roi_align_backward_cuda(DType dt, const void* grad_out, const void* rois,
                                        const std::vector<void*>& grad_features,
                                        const std::vector<Shape>& shapes, int64_t R,
                                        const MultiLevelParams& p, bool deterministic,
                                        void* stream) {
  FRCNN_DISPATCH_CUDA(dt, kOp,
    launch_backward<scalar_t>(kOp, level_maps<scalar_t>(grad_features, shapes, p),
                              static_cast<const scalar_t*>(grad_out),
                              static_cast<const scalar_t*>(rois), shapes[0][0], shapes[0][1], R,
                              p.p, deterministic, as_stream(stream)));
}

}  // namespace frcnn
