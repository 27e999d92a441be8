// Shared pieces of the pybind11 module: binder registration, NumPy dtype/shape helpers.
// CPU entry points take C-contiguous NumPy arrays; GPU entry points take raw device
// pointers (CuPy's .data.ptr) and a cudaStream_t as integers.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/checks.h"
#include "common/host_device.h"

namespace frcnn {
namespace pyglue {

namespace py = pybind11;
using Shape = std::vector<int64_t>;
using Binder = void (*)(py::module_&);

int add_binder(Binder b);
void run_binders(py::module_& m);

// ValueError("<op>: <msg>") unless msg is empty.
void raise_if(const char* op, const std::string& msg);
// dtype of a NumPy array, refusing anything but float32, float64 and float16 (the CPU
// kernels compute float16 in float32 and round once: common/half_cpu.h).
DType np_dtype(const char* op, const char* arg, const py::array& a);
Shape np_shape(const py::array& a);
// Requires that every array has the dtype of the first.
void same_dtype(const char* op, const std::vector<std::pair<const char*, py::array>>& arrays);
// dtype code (0 float32, 1 float64, 2 float16) given by the CuPy wrapper.
DType gpu_dtype(const char* op, int code);
// A new C-contiguous array of shape s and dtype dt.
py::array new_array(DType dt, const Shape& s);

inline const void* cptr(const py::array& a) { return a.data(); }
inline void* mptr(py::array& a) { return a.mutable_data(); }
inline void* dptr(uintptr_t p) { return reinterpret_cast<void*>(p); }

}  // namespace pyglue
}  // namespace frcnn

#define FRCNN_PY_CONCAT_(a, b) a##b
#define FRCNN_PY_CONCAT(a, b) FRCNN_PY_CONCAT_(a, b)
// Registers a function void(py::module_&) that adds bindings to frcnn_ops._C.
#define FRCNN_PY_BINDER(fn) \
  static const int FRCNN_PY_CONCAT(frcnn_binder_, __LINE__) = ::frcnn::pyglue::add_binder(fn)
