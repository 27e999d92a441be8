// lib_api glue shared by the register_<op>.cc files: attribute parsing, tensor shapes,
// dtype mapping and the guard that turns C++ exceptions into MXNet error messages.
// Compiled by the host compiler only (lib_api.h needs curand under nvcc).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/checks.h"
#include "common/host_device.h"
#include "mxnet/lib_api.h"

namespace frcnn {
namespace mxglue {

using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using Attrs = std::unordered_map<std::string, std::string>;
using Shape = std::vector<int64_t>;

// Thrown for bad input; the guard prefixes the op name.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads attributes, remembering which ones were consumed so that unknown names can be refused.
class AttrReader {
 public:
  AttrReader(const char* op, const Attrs& attrs) : op_(op), attrs_(attrs) {}
  float get_float(const char* key, float def);
  double get_double(const char* key, double def);
  int get_int(const char* key, int def);
  bool get_bool(const char* key, bool def);
  std::string get_choice(const char* key, const std::string& def,
                         const std::vector<std::string>& choices);
  // "(14, 14)", "[14,14]", "14" -> {14, 14} (a single value is repeated n times).
  std::vector<int> get_int_tuple(const char* key, size_t n, const std::vector<int>* def);
  // "(0.25, 0.125)", "[0.25]", "0.25" -> any number of floats (at least one).
  std::vector<float> get_float_tuple(const char* key, const std::vector<float>* def);
  // Refuses any attribute that was not read (names starting with "__" are MXNet's own).
  void finish() const;

 private:
  const std::string* find(const char* key);
  const char* op_;
  const Attrs& attrs_;
  std::vector<std::string> seen_;
};

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
size_t elem_size(DType dt);
void require(bool ok, const std::string& msg);
// Raised by a gpu branch in a build without CUDA (unreachable: gpu is then not registered).
[[noreturn]] void no_cuda();
// Throws err unless it is empty (the shape checks return "" when valid).
void require_ok(const std::string& err);
// One scratch buffer of `bytes` on the GPU from MXNet's allocator (nullptr for 0 bytes).
void* gpu_workspace(const OpResource& res, size_t bytes);
// Fills a tensor with zeros on its device (the gradient of inputs that have none).
void zero_fill(MXTensor& t, const OpResource& res);

// Records the message of a failing call for MXNet to show (see init.cc: _msgSize/_msgGet).
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
MXReturnValue infer_same_type(const char* op, const std::vector<const char*>& names,
                              std::vector<int>* in, std::vector<int>* out);

}  // namespace mxglue
}  // namespace frcnn

// Registers an op whose namespace NS defines parse_attrs, infer_type, infer_shape, forward
// and backward; the same entry points serve cpu and (when built with CUDA) gpu.
#ifdef FRCNN_WITH_CUDA
#define FRCNN_REGISTER_OP(NAME, NS)                                                       \
  REGISTER_OP(NAME)                                                                       \
      .setParseAttrs(NS::parse_attrs)                                                     \
      .setInferType(NS::infer_type)                                                       \
      .setInferShape(NS::infer_shape)                                                     \
      .setForward(NS::forward, "cpu")                                                     \
      .setBackward(NS::backward, "cpu")                                                   \
      .setForward(NS::forward, "gpu")                                                     \
      .setBackward(NS::backward, "gpu")
#else
#define FRCNN_REGISTER_OP(NAME, NS)                                                       \
  REGISTER_OP(NAME)                                                                       \
      .setParseAttrs(NS::parse_attrs)                                                     \
      .setInferType(NS::infer_type)                                                       \
      .setInferShape(NS::infer_shape)                                                     \
      .setForward(NS::forward, "cpu")                                                     \
      .setBackward(NS::backward, "cpu")
#endif
