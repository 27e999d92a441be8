// Framework-free launchers of multilevel_roi_align: GluonCV's FPN pyramid ROI pooling
// (FasterRCNN._pyramid_roi_feats, align mode) in one call. Every roi is assigned its FPN level
// (multilevel_roi_align_math.h) and pooled by roi_align (roi_align_math.h) from that level's
// feature map only. Pointers are contiguous row-major arrays of the given dtype.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/checks.h"
#include "common/host_device.h"
#include "multilevel_roi_align/multilevel_roi_align_math.h"
#include "roi_align/roi_align_math.h"

namespace frcnn {


struct MultiLevelParams {
  RoiAlignParams p;                 // pooled size, sample_ratio, aligned (spatial_scale unused)
  LevelRule rule;
  std::vector<float> spatial_scales;  // one per feature map (their number)
};

// The op frcnn_multilevel_roi_align (schema, validation, device choice) is in
// multilevel_roi_align.cpp; the launchers below trust their arguments.

// Level of each roi after checking the rule and the rois' shape (InputError), for
// frcnn_ops.multilevel_roi_levels (multilevel_roi_align.cpp).
void multilevel_roi_levels(DType dt, const void* rois, const Shape& rs, const LevelRule& rule,
                           int32_t* level_out);
// Level of each roi (min_level .. max_level, or -1 for a NaN level) into level_out (R int32).
void multilevel_roi_levels_cpu(DType dt, const void* rois, int64_t R, const LevelRule& rule,
                               int32_t* level_out);

// out (R, C, ph, pw): each roi pooled from the map of its level; zeros for a roi without a
// level or with an invalid batch index. features: one pointer per shape.
void multilevel_roi_align_cpu(DType dt, const void* rois, const std::vector<const void*>& features,
                              const std::vector<Shape>& shapes, void* out, int64_t R,
                              const MultiLevelParams& p);
// grad_out (R, C, ph, pw) -> grad_features (overwritten; maps past max_level - min_level and
// maps no roi reads get zeros). Deterministic, bitwise the same for any thread count.
void multilevel_roi_align_backward_cpu(DType dt, const void* grad_out, const void* rois,
                                       const std::vector<void*>& grad_features,
                                       const std::vector<Shape>& shapes, int64_t R,
                                       const MultiLevelParams& p);

// CUDA launchers: one kernel over all rois (forward, atomic backward); the deterministic
// backward (and float16's) is one gather launch per map. Asynchronous, no scratch memory.
void multilevel_roi_align_cuda(DType dt, const void* rois,
                               const std::vector<const void*>& features,
                               const std::vector<Shape>& shapes, void* out, int64_t R,
                               const MultiLevelParams& p, void* stream);
void multilevel_roi_align_backward_cuda(DType dt, const void* grad_out, const void* rois,
                                        const std::vector<void*>& grad_features,
                                        const std::vector<Shape>& shapes, int64_t R,
                                        const MultiLevelParams& p, bool deterministic,
                                        void* stream);

}  // namespace frcnn
