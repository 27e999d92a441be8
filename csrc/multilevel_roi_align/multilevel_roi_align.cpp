// The op frcnn_multilevel_roi_align(rois, feature_0, ..., feature_{n-1}): GluonCV's FPN
// pyramid roi pooling (FasterRCNN._pyramid_roi_feats, align mode) as one op: schema,
// validation and device choice. Kernels: multilevel_roi_align_cpu.cpp / _cuda.cu over
// multilevel_roi_align_math.h (the level rule) and roi_align's kernels.
#include <cmath>

#include "common/hugepages.h"
#include "common/op.h"
#include "multilevel_roi_align/multilevel_roi_align.h"
#include "roi_align/roi_align.h"

namespace frcnn {
namespace {

std::string feature_name(size_t i) { return "features[" + std::to_string(i) + "]"; }

std::string check_rule(const LevelRule& r) {
  if (r.min_level > r.max_level)
    return "min_level must be <= max_level, got min_level " + std::to_string(r.min_level) +
           " and max_level " + std::to_string(r.max_level);
  if (!(r.canonical_scale > 0.0) || !std::isfinite(r.canonical_scale))
    return "canonical_scale must be a positive finite number, got " +
           std::to_string(r.canonical_scale);
  if (!(r.eps >= 0.0) || !std::isfinite(r.eps))
    return "eps must be a finite number >= 0, got " + std::to_string(r.eps);
  return "";
}

std::string check_params(const MultiLevelParams& mp) {
  const LevelRule& r = mp.rule;
  const size_t n = mp.spatial_scales.size();
  const std::string err = check_rule(r);
  if (!err.empty()) return err;
  if (n < 1 || n > static_cast<size_t>(kMaxLevels))
    return "spatial_scales must have 1 to " + std::to_string(kMaxLevels) +
           " values (one per feature map), got " + std::to_string(n);
  const int64_t levels = static_cast<int64_t>(r.max_level) - r.min_level + 1;
  if (levels > static_cast<int64_t>(n))
    return "levels min_level .. max_level (" + std::to_string(r.min_level) + " .. " +
           std::to_string(r.max_level) + ") need " + std::to_string(levels) +
           " feature maps, but spatial_scales has " + std::to_string(n) + " values";
  if (mp.p.position_sensitive) return "position_sensitive is not supported";
  for (size_t i = 0; i < n; ++i) {
    RoiAlignParams p = mp.p;
    p.spatial_scale = mp.spatial_scales[i];
    std::string err = roi_align_check_params(p);
    if (!err.empty()) {
      if (err.rfind("spatial_scale", 0) == 0)
        err = "spatial_scales[" + std::to_string(i) + "]" + err.substr(13);
      return err;
    }
  }
  return "";
}

std::string check(const Shape& rois, const std::vector<Shape>& features,
                  const MultiLevelParams& mp, Shape* out) {
  std::string err = check_params(mp);
  if (!err.empty()) return err;
  if (features.size() != mp.spatial_scales.size())
    return "got " + std::to_string(features.size()) + " feature maps but spatial_scales has " +
           std::to_string(mp.spatial_scales.size()) + " values (one per feature map)";
  if (rois.size() != 2 || rois[1] != 5)
    return "rois must have shape (R, 5) = [batch_index, x1, y1, x2, y2], got " +
           shape_str(rois);
  for (size_t i = 0; i < features.size(); ++i) {
    const Shape& f = features[i];
    if (f.size() != 4)
      return feature_name(i) + " must have shape (N, C, H, W), got " + shape_str(f);
    if (f[2] < 1 || f[3] < 1)
      return feature_name(i) + " must have H >= 1 and W >= 1, got " + shape_str(f);
    if (f[2] * f[3] > INT32_MAX)
      return feature_name(i) + " H * W must be below 2^31, got " + shape_str(f);
    if (f[0] != features[0][0] || f[1] != features[0][1])
      return feature_name(i) + " must have the N and C of features[0] (" +
             std::to_string(features[0][0]) + ", " + std::to_string(features[0][1]) +
             "), got " + shape_str(f);
  }
  if (out) *out = {rois[0], features[0][1], mp.p.pooled_h, mp.p.pooled_w};
  return "";
}

// spatial_scales defaults to 2 ** -(min_level + i), one per feature map given (n_maps).
MultiLevelParams params(const AttrValues& a, size_t n_maps) {
  MultiLevelParams mp;
  mp.p.pooled_h = static_cast<int>(a.list("pooled_size")[0]);
  mp.p.pooled_w = static_cast<int>(a.list("pooled_size")[1]);
  mp.p.sample_ratio = a.i("sample_ratio");
  mp.p.aligned = a.b("aligned");
  mp.rule.min_level = a.i("min_level");
  mp.rule.max_level = a.i("max_level");
  mp.rule.canonical_scale = a.num("canonical_scale");
  mp.rule.canonical_level = a.i("canonical_level");
  mp.rule.eps = a.num("eps");
  if (a.has("spatial_scales")) {
    for (double s : a.list("spatial_scales")) mp.spatial_scales.push_back(static_cast<float>(s));
  } else {
    for (size_t i = 0; i < n_maps; ++i)
      mp.spatial_scales.push_back(static_cast<float>(std::ldexp(1.0, -(mp.rule.min_level + int(i)))));
  }
  require_ok(check_params(mp));
  return mp;
}

// MXNet fixes the input count when it parses the attributes: spatial_scales gives it.
int num_inputs(const AttrValues& a) {
  if (!a.has("spatial_scales"))
    throw InputError("attribute spatial_scales is required (one value per feature map)");
  return 1 + static_cast<int>(params(a, 0).spatial_scales.size());
}

std::vector<Shape> features_of(const std::vector<Shape>& in) {
  return std::vector<Shape>(in.begin() + 1, in.end());
}

std::vector<Shape> infer_shape(const AttrValues& a, const std::vector<Shape>& in) {
  Shape out;
  require_ok(check(in[0], features_of(in), params(a, in.size() - 1), &out));
  return {out};
}

std::vector<Shape> shapes_of(const Call& c) {
  std::vector<Shape> s;
  for (size_t i = 1; i < c.in.size(); ++i) s.push_back(c.in[i].shape);
  return s;
}

void forward(const Call& c) {
  const MultiLevelParams mp = params(c.attrs, c.in.size() - 1);
  const std::vector<Shape> fs = shapes_of(c);
  std::vector<const void*> maps;
  for (size_t i = 1; i < c.in.size(); ++i) maps.push_back(c.in[i].data);
  const int64_t R = c.in[0].shape[0];
  on_device(c.dev, [&] {
    prepare_output(c.out[0].data, bytes_of(c.out[0], c.dtype));
    multilevel_roi_align_cpu(c.dtype, c.in[0].data, maps, fs, c.out[0].data, R, mp);
  }, [&](auto stream) {
    multilevel_roi_align_cuda(c.dtype, c.in[0].data, maps, fs, c.out[0].data, R, mp,
                              stream);
  });
}

void backward(const Call& c) {
  const MultiLevelParams mp = params(c.attrs, c.in.size() - 1);
  const std::vector<Shape> fs = shapes_of(c);
  std::vector<void*> grads;
  for (size_t i = 1; i < c.out.size(); ++i) grads.push_back(c.out[i].data);
  const int64_t R = c.in[0].shape[0];
  on_device(c.dev, [&] {
    for (size_t i = 1; i < c.out.size(); ++i)
      prepare_output(c.out[i].data, bytes_of(c.out[i], c.dtype));
    multilevel_roi_align_backward_cpu(c.dtype, c.grad_out.data, c.in[0].data, grads, fs, R, mp);
  }, [&](auto stream) {
    multilevel_roi_align_backward_cuda(c.dtype, c.grad_out.data, c.in[0].data, grads, fs, R, mp,
                                       roi_align_deterministic(c.attrs.b("deterministic")),
                                       stream);
  });
}

}  // namespace

void multilevel_roi_levels(DType dt, const void* rois, const Shape& rs, const LevelRule& rule,
                           int32_t* level_out) {
  require_ok(check_rule(rule));
  if (rs.size() != 2 || rs[1] != 5)
    throw InputError("rois must have shape (R, 5) = [batch_index, x1, y1, x2, y2], got " +
                     shape_str(rs));
  multilevel_roi_levels_cpu(dt, rois, rs[0], rule, level_out);
}

const OpDef& multilevel_roi_align_op() {
  static const OpDef op{
      "frcnn_multilevel_roi_align",
      {{"rois", false}, {"*features", true, false}},
      {{"pooled_size", AttrType::kIntPair, nullptr, "output (ph, pw)"},
       {"spatial_scales", AttrType::kFloatList, "",
        "one per feature map (default 2 ** -(min_level + i))"},
       {"sample_ratio", AttrType::kInt, "2", "samples per bin and axis; <= 0: adaptive"},
       {"min_level", AttrType::kInt, "2", "lowest level rois are clipped to"},
       {"max_level", AttrType::kInt, "5", "highest level rois are clipped to"},
       {"canonical_scale", AttrType::kDouble, "224.0", "the level rule's canonical size"},
       {"canonical_level", AttrType::kInt, "4", "the level of a roi of canonical size"},
       {"eps", AttrType::kDouble, "1e-6", "added before log2 in the level rule"},
       {"aligned", AttrType::kBool, "false", "half-pixel shift, no size clamp"},
       {"deterministic", AttrType::kBool, "false", "GPU backward in a fixed order"}},
      num_inputs, infer_shape, nullptr, forward, backward};
  return op;
}

}  // namespace frcnn
