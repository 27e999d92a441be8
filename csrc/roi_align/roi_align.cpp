// The op frcnn_roi_align (= contrib.ROIAlign, plus a gradient w.r.t. data and the
// `deterministic` GPU backward): schema, validation, policies and device choice. Kernels:
// roi_align_cpu.cpp / roi_align_cuda.cu over roi_align_math.h.
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "common/hugepages.h"
#include "common/op.h"
#include "roi_align/roi_align.h"

namespace frcnn {

std::string roi_align_check_params(const RoiAlignParams& p) {
  if (p.pooled_h <= 0 || p.pooled_w <= 0)
    return "pooled_size must be positive, got (" + std::to_string(p.pooled_h) + ", " +
           std::to_string(p.pooled_w) + ")";
  if (static_cast<int64_t>(p.pooled_h) * p.pooled_w > kMaxBins)
    return "pooled_size must have pooled_h * pooled_w <= " + std::to_string(kMaxBins) +
           " bins, got (" + std::to_string(p.pooled_h) + ", " + std::to_string(p.pooled_w) +
           ")";
  if (p.sample_ratio > kMaxAdaptiveGrid)
    return "sample_ratio must be <= " + std::to_string(kMaxAdaptiveGrid) +
           " (samples per bin and axis; <= 0: adaptive), got " + std::to_string(p.sample_ratio);
  if (!(p.spatial_scale > 0.f) || !std::isfinite(p.spatial_scale))
    return "spatial_scale must be a positive finite number, got " +
           std::to_string(p.spatial_scale);
  return "";
}

bool roi_align_deterministic(bool requested) {
  const char* v = std::getenv("FRCNN_DETERMINISTIC");
  return requested || (v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0);
}

namespace {

std::string check(const Shape& data, const Shape& rois, const RoiAlignParams& p, Shape* out) {
  std::string err = roi_align_check_params(p);
  if (!err.empty()) return err;
  if (data.size() != 4) return "data must have shape (N, C, H, W), got " + shape_str(data);
  if (rois.size() != 2 || rois[1] != 5)
    return "rois must have shape (R, 5) = [batch_index, x1, y1, x2, y2], got " +
           shape_str(rois);
  if (data[2] < 1 || data[3] < 1)
    return "data must have H >= 1 and W >= 1, got " + shape_str(data);
  if (data[2] * data[3] > INT32_MAX)
    return "data H * W must be below 2^31, got " + shape_str(data);
  const int64_t bins = static_cast<int64_t>(p.pooled_h) * p.pooled_w;
  int64_t c_out = data[1];
  if (p.position_sensitive) {
    if (data[1] % bins != 0)
      return "position_sensitive needs C divisible by pooled_h * pooled_w = " +
             std::to_string(bins) + ", got data " + shape_str(data);
    c_out = data[1] / bins;
  }
  if (out) *out = {rois[0], c_out, p.pooled_h, p.pooled_w};
  return "";
}

RoiAlignParams params(const AttrValues& a) {
  RoiAlignParams p;
  p.pooled_h = static_cast<int>(a.list("pooled_size")[0]);
  p.pooled_w = static_cast<int>(a.list("pooled_size")[1]);
  p.spatial_scale = a.f("spatial_scale");
  p.sample_ratio = a.i("sample_ratio");
  p.position_sensitive = a.b("position_sensitive");
  p.aligned = a.b("aligned");
  require_ok(roi_align_check_params(p));
  return p;
}

std::vector<Shape> infer_shape(const AttrValues& a, const std::vector<Shape>& in) {
  Shape out;
  require_ok(check(in[0], in[1], params(a), &out));
  return {out};
}

void forward(const Call& c) {
  const RoiAlignParams p = params(c.attrs);
  const Shape& ds = c.in[0].shape;
  const int64_t R = c.in[1].shape[0];
  on_device(c.dev, [&] {
    prepare_output(c.out[0].data, bytes_of(c.out[0], c.dtype));
    roi_align_cpu(c.dtype, c.in[0].data, c.in[1].data, c.out[0].data, ds[0], ds[1], ds[2],
                  ds[3], R, p);
  }, [&](auto stream) {
    roi_align_cuda(c.dtype, c.in[0].data, c.in[1].data, c.out[0].data, ds[0], ds[1], ds[2],
                   ds[3], R, p, stream);
  });
}

void backward(const Call& c) {
  const RoiAlignParams p = params(c.attrs);
  const Shape& ds = c.in[0].shape;
  const int64_t R = c.in[1].shape[0];
  on_device(c.dev, [&] {
    prepare_output(c.out[0].data, bytes_of(c.out[0], c.dtype));
    roi_align_backward_cpu(c.dtype, c.grad_out.data, c.in[1].data, c.out[0].data, ds[0],
                           ds[1], ds[2], ds[3], R, p);
  }, [&](auto stream) {
    roi_align_backward_cuda(c.dtype, c.grad_out.data, c.in[1].data, c.out[0].data, ds[0],
                            ds[1], ds[2], ds[3], R, p,
                            roi_align_deterministic(c.attrs.b("deterministic")), stream);
  });
}

}  // namespace

const OpDef& roi_align_op() {
  static const OpDef op{
      "frcnn_roi_align",
      {{"data", true, false}, {"rois", false}},
      {{"pooled_size", AttrType::kIntPair, nullptr, "output (ph, pw)"},
       {"spatial_scale", AttrType::kFloat, nullptr, "feature map size / image size"},
       {"sample_ratio", AttrType::kInt, "-1", "samples per bin and axis; <= 0: adaptive"},
       {"position_sensitive", AttrType::kBool, "false", "R-FCN position-sensitive pooling"},
       {"aligned", AttrType::kBool, "false", "half-pixel shift, no size clamp"},
       {"deterministic", AttrType::kBool, "false", "GPU backward in a fixed order"}},
      nullptr, infer_shape, nullptr, forward, backward};
  return op;
}

}  // namespace frcnn
