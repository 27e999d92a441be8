// The ops frcnn_box_decode (= contrib.box_decode, plus a gradient w.r.t. data) and
// frcnn_clip_boxes (= GluonCV's BBoxClipToImage with per-image sizes): schema, validation and
// device choice. Kernels: box_coder_cpu.cpp / box_coder_cuda.cu over box_coder_math.h.
#include "box_coder/box_coder.h"
#include "common/op.h"

namespace frcnn {
namespace {

// ---- box_decode ------------------------------------------------------------------------
BoxDecodeParams decode_params(const AttrValues& a) {
  BoxDecodeParams p;
  for (int k = 0; k < 4; ++k) p.std[k] = a.f(kStdNames[k]);
  p.clip = a.f("clip");
  p.corner = a.str("format") == "corner";
  return p;
}

std::vector<Shape> decode_shape(const AttrValues&, const std::vector<Shape>& in) {
  const Shape &data = in[0], &anchors = in[1];
  if (data.size() != 3 || data[2] != 4)
    throw InputError("data must have shape (B, N, 4), got " + shape_str(data));
  if (anchors.size() != 3 || anchors[2] != 4)
    throw InputError("anchors must have shape (1, N, 4) or (B, N, 4), got " +
                     shape_str(anchors));
  if (anchors[1] != data[1])
    throw InputError("anchors must have N = " + std::to_string(data[1]) + " rows like data " +
                     shape_str(data) + ", got " + shape_str(anchors));
  if (anchors[0] != 1 && anchors[0] != data[0])
    throw InputError("anchors batch must be 1 or B = " + std::to_string(data[0]) + ", got " +
                     shape_str(anchors));
  return {data};
}

void decode_forward(const Call& c) {
  const BoxDecodeParams p = decode_params(c.attrs);
  const Shape& ds = c.in[0].shape;
  const int64_t anchor_batch = c.in[1].shape[0];
  on_device(c.dev, [&] {
    box_decode_cpu(c.dtype, c.in[0].data, c.in[1].data, c.out[0].data, ds[0], ds[1],
                   anchor_batch, p);
  }, [&](auto stream) {
    box_decode_cuda(c.dtype, c.in[0].data, c.in[1].data, c.out[0].data, ds[0], ds[1],
                    anchor_batch, p, stream);
  });
}

void decode_backward(const Call& c) {
  const BoxDecodeParams p = decode_params(c.attrs);
  const Shape& ds = c.in[0].shape;
  const int64_t anchor_batch = c.in[1].shape[0];
  on_device(c.dev, [&] {
    box_decode_backward_cpu(c.dtype, c.grad_out.data, c.in[0].data, c.in[1].data,
                            c.out[0].data, ds[0], ds[1], anchor_batch, p);
  }, [&](auto stream) {
    box_decode_backward_cuda(c.dtype, c.grad_out.data, c.in[0].data, c.in[1].data,
                             c.out[0].data, ds[0], ds[1], anchor_batch, p, stream);
  });
}

// ---- clip_boxes ------------------------------------------------------------------------
std::vector<Shape> clip_shape(const AttrValues&, const std::vector<Shape>& in) {
  const Shape &boxes = in[0], &im_info = in[1];
  if (boxes.size() != 3 || boxes[2] != 4)
    throw InputError("boxes must have shape (B, N, 4), got " + shape_str(boxes));
  if (im_info.size() != 2 || im_info[1] < 2)
    throw InputError("im_info must have shape (B, >=2) = [height, width, ...], got " +
                     shape_str(im_info));
  if (im_info[0] != boxes[0])
    throw InputError("im_info must have one row per image: B = " + std::to_string(boxes[0]) +
                     ", got " + shape_str(im_info));
  return {boxes};
}

void clip_forward(const Call& c) {
  const Shape& bs = c.in[0].shape;
  const int64_t cols = c.in[1].shape[1];
  on_device(c.dev, [&] {
    clip_boxes_cpu(c.dtype, c.in[0].data, c.in[1].data, c.out[0].data, bs[0], bs[1], cols);
  }, [&](auto stream) {
    clip_boxes_cuda(c.dtype, c.in[0].data, c.in[1].data, c.out[0].data, bs[0], bs[1], cols,
                    stream);
  });
}

void clip_backward(const Call& c) {
  const Shape& bs = c.in[0].shape;
  const int64_t cols = c.in[1].shape[1];
  on_device(c.dev, [&] {
    clip_boxes_backward_cpu(c.dtype, c.grad_out.data, c.in[0].data, c.in[1].data,
                            c.out[0].data, bs[0], bs[1], cols);
  }, [&](auto stream) {
    clip_boxes_backward_cuda(c.dtype, c.grad_out.data, c.in[0].data, c.in[1].data,
                             c.out[0].data, bs[0], bs[1], cols, stream);
  });
}

}  // namespace

const OpDef& box_decode_op() {
  static const OpDef op{
      "frcnn_box_decode",
      {{"data", true}, {"anchors", false}},
      {{"std0", AttrType::kFloat, "1.0", "scale of dx"},
       {"std1", AttrType::kFloat, "1.0", "scale of dy"},
       {"std2", AttrType::kFloat, "1.0", "scale of dw"},
       {"std3", AttrType::kFloat, "1.0", "scale of dh"},
       {"clip", AttrType::kFloat, "-1.0", "upper bound of dw and dh before exp when > 0"},
       {"format", AttrType::kChoice, "center", "format of the anchors", {"center", "corner"}}},
      nullptr, decode_shape, nullptr, decode_forward, decode_backward};
  return op;
}

const OpDef& clip_boxes_op() {
  static const OpDef op{"frcnn_clip_boxes",
                        {{"boxes", true}, {"im_info", false}},
                        {},
                        nullptr,
                        clip_shape,
                        nullptr,
                        clip_forward,
                        clip_backward};
  return op;
}

}  // namespace frcnn
