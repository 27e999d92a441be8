#include "common/parallel.h"
#include "python/bind.h"

namespace frcnn {
namespace pyglue {

static std::vector<Binder>& binders() {
  static std::vector<Binder> b;
  return b;
}

int add_binder(Binder b) {
  binders().push_back(b);
  return 0;
}

void run_binders(py::module_& m) {
  for (Binder b : binders()) b(m);
}

void raise_if(const char* op, const std::string& msg) {
  if (!msg.empty()) throw py::value_error(std::string(op) + ": " + msg);
}

DType np_dtype(const char* op, const char* arg, const py::array& a) {
  if (a.dtype().is(py::dtype::of<float>()))
    return DType::kFloat32;
  if (a.dtype().is(py::dtype::of<double>())) return DType::kFloat64;
  if (a.dtype().is(py::dtype("float16"))) return DType::kFloat16;
  throw py::type_error(std::string(op) + ": " + arg + " must be float32, float64 or float16, got " +
                       std::string(py::str(a.dtype())));
}

Shape np_shape(const py::array& a) {
  return Shape(a.shape(), a.shape() + a.ndim());
}

void same_dtype(const char* op, const std::vector<std::pair<const char*, py::array>>& arrays) {
  const DType first = np_dtype(op, arrays[0].first, arrays[0].second);
  for (size_t i = 1; i < arrays.size(); ++i) {
    if (np_dtype(op, arrays[i].first, arrays[i].second) != first)
      throw py::type_error(std::string(op) + ": " + arrays[i].first + " must have the dtype of " +
                           arrays[0].first + " (" + dtype_name(first) + "), got " +
                           std::string(py::str(arrays[i].second.dtype())));
  }
}

DType gpu_dtype(const char* op, int code) {
  if (code < 0 || code > 2)
    throw py::type_error(std::string(op) + ": dtype must be float32, float64 or float16, got code " +
                         std::to_string(code));
  return static_cast<DType>(code);
}

py::array new_array(DType dt, const Shape& s) {
  std::vector<py::ssize_t> shape(s.begin(), s.end());
  if (dt == DType::kFloat64) return py::array_t<double>(shape);
  if (dt == DType::kFloat16) return py::array(py::dtype("float16"), shape);
  return py::array_t<float>(shape);
}

}  // namespace pyglue
}  // namespace frcnn

// _C, or _C_emu for the CPU execution harness of the CUDA kernels (CMakeLists.txt).
#ifndef FRCNN_PY_MODULE_NAME
#define FRCNN_PY_MODULE_NAME _C
#endif

PYBIND11_MODULE(FRCNN_PY_MODULE_NAME, m) {
  m.doc() = "frcnn_ops kernels for NumPy (cpu) and raw device pointers (gpu)";
  // has_cuda: the *_gpu entry points run on a real GPU. emulated: they exist but run the CUDA
  // kernels on the CPU execution harness, on host pointers (frcnn_ops._C_emu).
#if defined(FRCNN_WITH_CUDA) && !defined(FRCNN_CUDA_EMULATE)
  m.attr("has_cuda") = true;
#else
  m.attr("has_cuda") = false;
#endif
#if defined(FRCNN_CUDA_EMULATE)
  m.attr("emulated") = true;
#else
  m.attr("emulated") = false;
#endif
  m.def("get_num_threads", &frcnn::get_num_threads);
  m.def("set_num_threads", &frcnn::set_num_threads);
  m.def("active_calls", &frcnn::active_calls);
  frcnn::pyglue::run_binders(m);
}
