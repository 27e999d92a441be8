// frcnn_clip_boxes: GluonCV BBoxClipToImage with per-image sizes from im_info.
#include "box_coder/box_coder.h"
#include "mxnet/glue.h"

namespace frcnn {
namespace mxglue {
namespace clip_boxes_op {

constexpr const char* kOp = "frcnn_clip_boxes";

MXReturnValue parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  *num_in = 2;
  *num_out = 1;
  return guard(kOp, [&]() { AttrReader(kOp, attrs).finish(); });
}

MXReturnValue infer_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  return infer_same_type(kOp, {"boxes", "im_info"}, in, out);
}

MXReturnValue infer_shape(const Attrs&, std::vector<std::vector<unsigned int>>* in,
                          std::vector<std::vector<unsigned int>>* out) {
  return guard(kOp, [&]() {
    require_ok(clip_boxes_check(known_shape((*in)[0], "boxes"), known_shape((*in)[1], "im_info")));
    (*out)[0] = (*in)[0];
  });
}

MXReturnValue forward(const Attrs&, std::vector<MXTensor>* in, std::vector<MXTensor>* out,
                      const OpResource& res) {
  return guard(kOp, [&]() {
    MXTensor &boxes = (*in)[0], &info = (*in)[1];
    const Shape bs = shape_of(boxes);
    require_ok(clip_boxes_check(bs, shape_of(info)));
    const DType dt = dtype_of(boxes.dtype, "boxes");
    if (on_gpu(boxes)) {
#ifdef FRCNN_WITH_CUDA
      clip_boxes_cuda(dt, boxes.data_ptr, info.data_ptr, (*out)[0].data_ptr, bs[0], bs[1],
                      info.shape[1], res.get_cuda_stream());
#else
      no_cuda();
#endif
    } else {
      clip_boxes_cpu(dt, boxes.data_ptr, info.data_ptr, (*out)[0].data_ptr, bs[0], bs[1],
                     info.shape[1]);
    }
  });
}

// inputs: [grad_out, boxes, im_info, out]; outputs: [grad_boxes, grad_im_info]
MXReturnValue backward(const Attrs&, std::vector<MXTensor>* in, std::vector<MXTensor>* out,
                       const OpResource& res) {
  return guard(kOp, [&]() {
    MXTensor &g = (*in)[0], &boxes = (*in)[1], &info = (*in)[2];
    const Shape bs = shape_of(boxes);
    const DType dt = dtype_of(boxes.dtype, "boxes");
    if (on_gpu(boxes)) {
#ifdef FRCNN_WITH_CUDA
      clip_boxes_backward_cuda(dt, g.data_ptr, boxes.data_ptr, info.data_ptr, (*out)[0].data_ptr,
                               bs[0], bs[1], info.shape[1], res.get_cuda_stream());
#else
      no_cuda();
#endif
    } else {
      clip_boxes_backward_cpu(dt, g.data_ptr, boxes.data_ptr, info.data_ptr, (*out)[0].data_ptr,
                              bs[0], bs[1], info.shape[1]);
    }
    zero_fill((*out)[1], res);
  });
}

}  // namespace clip_boxes_op
}  // namespace mxglue
}  // namespace frcnn

FRCNN_REGISTER_OP(frcnn_clip_boxes, frcnn::mxglue::clip_boxes_op);
