#include "box_coder/box_coder.h"
#include "python/bind.h"

namespace frcnn {
namespace pyglue {
namespace {

BoxDecodeParams decode_params(const char* op, const std::vector<float>& stds, float clip,
                              const std::string& format) {
  raise_if(op, check_choice("format", format, {"center", "corner"}));
  if (stds.size() != 4) raise_if(op, "stds must have 4 values, got " + std::to_string(stds.size()));
  BoxDecodeParams p;
  for (int k = 0; k < 4; ++k) p.std[k] = stds[k];
  p.clip = clip;
  p.corner = format == "corner";
  return p;
}

py::array box_decode_np(py::array data, py::array anchors, std::vector<float> stds, float clip,
                        std::string format) {
  const char* op = "frcnn_box_decode";
  const BoxDecodeParams p = decode_params(op, stds, clip, format);
  same_dtype(op, {{"data", data}, {"anchors", anchors}});
  const Shape ds = np_shape(data), as = np_shape(anchors);
  raise_if(op, box_decode_check(ds, as));
  const DType dt = np_dtype(op, "data", data);  // with the GIL held
  py::array out = new_array(dt, ds);
  {
    py::gil_scoped_release nogil;
    box_decode_cpu(dt, cptr(data), cptr(anchors), mptr(out), ds[0], ds[1],
                   as[0], p);
  }
  return out;
}

py::array box_decode_backward_np(py::array grad, py::array data, py::array anchors,
                                 std::vector<float> stds, float clip, std::string format) {
  const char* op = "frcnn_box_decode";
  const BoxDecodeParams p = decode_params(op, stds, clip, format);
  same_dtype(op, {{"data", data}, {"anchors", anchors}, {"grad", grad}});
  const Shape ds = np_shape(data), as = np_shape(anchors);
  raise_if(op, box_decode_check(ds, as));
  raise_if(op, np_shape(grad) == ds ? "" : "grad must have the shape of data " + shape_str(ds) +
                   ", got " + shape_str(np_shape(grad)));
  const DType dt = np_dtype(op, "data", data);  // with the GIL held
  py::array out = new_array(dt, ds);
  {
    py::gil_scoped_release nogil;
    box_decode_backward_cpu(dt, cptr(grad), cptr(data), cptr(anchors),
                            mptr(out), ds[0], ds[1], as[0], p);
  }
  return out;
}

py::array clip_boxes_np(py::array boxes, py::array im_info) {
  const char* op = "frcnn_clip_boxes";
  same_dtype(op, {{"boxes", boxes}, {"im_info", im_info}});
  const Shape bs = np_shape(boxes), is = np_shape(im_info);
  raise_if(op, clip_boxes_check(bs, is));
  const DType dt = np_dtype(op, "boxes", boxes);  // with the GIL held
  py::array out = new_array(dt, bs);
  {
    py::gil_scoped_release nogil;
    clip_boxes_cpu(dt, cptr(boxes), cptr(im_info), mptr(out), bs[0],
                   bs[1], is[1]);
  }
  return out;
}

py::array clip_boxes_backward_np(py::array grad, py::array boxes, py::array im_info) {
  const char* op = "frcnn_clip_boxes";
  same_dtype(op, {{"boxes", boxes}, {"im_info", im_info}, {"grad", grad}});
  const Shape bs = np_shape(boxes), is = np_shape(im_info);
  raise_if(op, clip_boxes_check(bs, is));
  raise_if(op, np_shape(grad) == bs ? "" : "grad must have the shape of boxes " + shape_str(bs) +
                   ", got " + shape_str(np_shape(grad)));
  const DType dt = np_dtype(op, "boxes", boxes);  // with the GIL held
  py::array out = new_array(dt, bs);
  {
    py::gil_scoped_release nogil;
    clip_boxes_backward_cpu(dt, cptr(grad), cptr(boxes), cptr(im_info),
                            mptr(out), bs[0], bs[1], is[1]);
  }
  return out;
}

// Shape and attribute checks alone (ValueError naming the op): the Python wrappers run them
// before making inputs contiguous, so an over-limit shape is refused without allocating.
void box_decode_check_np(Shape ds, Shape as, std::vector<float> stds, float clip,
                         std::string format) {
  const char* op = "frcnn_box_decode";
  decode_params(op, stds, clip, format);
  raise_if(op, box_decode_check(ds, as));
}

void clip_boxes_check_np(Shape bs, Shape is) { raise_if("frcnn_clip_boxes", clip_boxes_check(bs, is)); }

#ifdef FRCNN_WITH_CUDA
void box_decode_gpu(int dtype, uintptr_t data, uintptr_t anchors, uintptr_t out, Shape ds,
                    Shape as, std::vector<float> stds, float clip, std::string format,
                    uintptr_t stream) {
  const char* op = "frcnn_box_decode";
  const BoxDecodeParams p = decode_params(op, stds, clip, format);
  raise_if(op, box_decode_check(ds, as));
  box_decode_cuda(gpu_dtype(op, dtype), dptr(data), dptr(anchors), dptr(out), ds[0], ds[1], as[0],
                  p, dptr(stream));
}

void clip_boxes_gpu(int dtype, uintptr_t boxes, uintptr_t im_info, uintptr_t out, Shape bs,
                    Shape is, uintptr_t stream) {
  const char* op = "frcnn_clip_boxes";
  raise_if(op, clip_boxes_check(bs, is));
  clip_boxes_cuda(gpu_dtype(op, dtype), dptr(boxes), dptr(im_info), dptr(out), bs[0], bs[1],
                  is[1], dptr(stream));
}

void box_decode_backward_gpu(int dtype, uintptr_t grad, uintptr_t data, uintptr_t anchors,
                             uintptr_t grad_data, Shape ds, Shape as, std::vector<float> stds,
                             float clip, std::string format, uintptr_t stream) {
  const char* op = "frcnn_box_decode";
  const BoxDecodeParams p = decode_params(op, stds, clip, format);
  raise_if(op, box_decode_check(ds, as));
  box_decode_backward_cuda(gpu_dtype(op, dtype), dptr(grad), dptr(data), dptr(anchors),
                           dptr(grad_data), ds[0], ds[1], as[0], p, dptr(stream));
}

void clip_boxes_backward_gpu(int dtype, uintptr_t grad, uintptr_t boxes, uintptr_t im_info,
                             uintptr_t grad_boxes, Shape bs, Shape is, uintptr_t stream) {
  const char* op = "frcnn_clip_boxes";
  raise_if(op, clip_boxes_check(bs, is));
  clip_boxes_backward_cuda(gpu_dtype(op, dtype), dptr(grad), dptr(boxes), dptr(im_info),
                           dptr(grad_boxes), bs[0], bs[1], is[1], dptr(stream));
}
#endif

void bind(py::module_& m) {
  m.def("box_decode", &box_decode_np);
  m.def("box_decode_backward", &box_decode_backward_np);
  m.def("clip_boxes", &clip_boxes_np);
  m.def("clip_boxes_backward", &clip_boxes_backward_np);
  m.def("box_decode_check", &box_decode_check_np);
  m.def("clip_boxes_check", &clip_boxes_check_np);
#ifdef FRCNN_WITH_CUDA
  m.def("box_decode_gpu", &box_decode_gpu);
  m.def("clip_boxes_gpu", &clip_boxes_gpu);
  m.def("box_decode_backward_gpu", &box_decode_backward_gpu);
  m.def("clip_boxes_backward_gpu", &clip_boxes_backward_gpu);
#endif
}

FRCNN_PY_BINDER(bind);

}  // namespace
}  // namespace pyglue
}  // namespace frcnn
