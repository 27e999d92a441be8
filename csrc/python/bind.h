// The pybind11 module frcnn_ops._C (and _C_emu): generic entry points over the ops of
// csrc/ops.h, by op name with the attributes as MXNet passes them (a dict of strings), so that
// both front ends parse, check and refuse attributes in one place (common/op.cpp).
// CPU entry points take C-contiguous NumPy arrays; GPU entry points take raw device pointers
// (CuPy's .data.ptr) and a cudaStream_t as integers.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <unordered_map>

#include "common/op.h"

namespace frcnn {
namespace pyglue {

namespace py = pybind11;
using AttrText = std::unordered_map<std::string, std::string>;

// Runs f; InputError -> ValueError("<op>: ..."), DTypeError -> TypeError("<op>: ...").
template <typename F>
auto guard(const std::string& op, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const DTypeError& e) {
    throw py::type_error(op + ": " + e.what());
  } catch (const InputError& e) {
    throw py::value_error(op + ": " + e.what());
  }
}

}  // namespace pyglue
}  // namespace frcnn

#ifdef FRCNN_CUDA_EMULATE
void frcnn_register_emu_selftest(pybind11::module_& m);  // common/cuda_emu/selftest.cpp
#endif
