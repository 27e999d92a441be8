// lib_api glue (register.cc): tensor shapes, dtype mapping and the guard that turns C++
// exceptions into MXNet error messages.
// Compiled by the host compiler only (lib_api.h needs curand under nvcc).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/op.h"
#include "common/host_device.h"
#include "mxnet/lib_api.h"

namespace frcnn {
namespace mxglue {

using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using Attrs = std::unordered_map<std::string, std::string>;

Shape shape_of(const MXTensor& t);
Shape shape_of(const std::vector<unsigned int>& s);
// An input shape in infer_shape, refusing unknown dims: MXNet passes an unknown dim as -1
// (4294967295 here), and in its legacy shape mode (the default) a 0 dim means unknown, so an
// empty array arrives so. The message names the cause and the fix (np_shape / set_np).
Shape known_shape(const std::vector<unsigned int>& s, const char* arg);
// MXNet dtype code -> DType, refusing anything but float32, float64 and float16 (float16 runs
// on every device; the CPU kernels compute it in float32, common/half_cpu.h).
DType dtype_of(int mx_dtype, const char* arg);
// "float32", "int32", ... for an MXNet dtype code.
std::string mx_dtype_name(int mx_dtype);
bool on_gpu(const MXTensor& t);
// One scratch buffer of `bytes` on the GPU from MXNet's allocator (nullptr for 0 bytes).
void* gpu_workspace(const OpResource& res, size_t bytes);
// Fills a tensor with zeros on its device (the gradient of inputs that have none).
void zero_fill(MXTensor& t, const OpResource& res);

// Records the message of a failing call for MXNet to show (see init.cpp: _msgSize/_msgGet).
void report_error(const std::string& msg);

// Runs f and converts an exception into an error message + MX_FAIL, naming the op.
template <typename F>
MXReturnValue guard(const char* op, F&& f) {
  try {
    f();
    return mxnet::ext::MX_SUCCESS;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (msg.rfind(op, 0) != 0) msg = std::string(op) + ": " + msg;
    report_error(msg);
    return mxnet::ext::MX_FAIL;
  }
}

// Every input has the dtype of the first; outputs get it too.
MXReturnValue infer_same_type(const char* op, const std::vector<std::string>& names,
                              std::vector<int>* in, std::vector<int>* out);

}  // namespace mxglue
}  // namespace frcnn

