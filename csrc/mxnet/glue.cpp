#include "mxnet/glue.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "common/memory.h"

namespace frcnn {
namespace mxglue {

Shape shape_of(const MXTensor& t) { return Shape(t.shape.begin(), t.shape.end()); }
Shape shape_of(const std::vector<unsigned int>& s) { return Shape(s.begin(), s.end()); }

Shape known_shape(const std::vector<unsigned int>& s, const char* arg) {
  Shape out(s.begin(), s.end());
  bool unknown = false;
  std::string dims;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool u = s[i] == 0xFFFFFFFFu;
    unknown = unknown || u;
    dims += (i ? ", " : "") + (u ? std::string("?") : std::to_string(s[i]));
  }
  if (unknown)
    throw InputError(std::string(arg) + " has a dim MXNet marks unknown, shape (" + dims +
                     "): in MXNet's legacy shape mode (the default) a 0 dim means unknown, so "
                     "an empty array cannot be passed; turn on NumPy shape semantics with "
                     "mx.util.np_shape(True) (or mx.npx.set_np()) for empty arrays");
  return out;
}

std::string mx_dtype_name(int mx_dtype) {
  static const char* names[] = {"float32", "float64", "float16", "uint8",
                                "int32",   "int8",    "int64"};
  return (mx_dtype >= 0 && mx_dtype <= 6) ? names[mx_dtype] : "code " + std::to_string(mx_dtype);
}

DType dtype_of(int mx_dtype, const char* arg) {
  switch (mx_dtype) {
    case mxnet::ext::kFloat32: return DType::kFloat32;
    case mxnet::ext::kFloat64: return DType::kFloat64;
    case mxnet::ext::kFloat16: return DType::kFloat16;
    default: break;
  }
  throw DTypeError(std::string(arg) + " must be float32, float64 or float16, got " +
                   mx_dtype_name(mx_dtype));
}

bool on_gpu(const MXTensor& t) { return t.ctx.dev_type == "gpu"; }

void* gpu_workspace(const OpResource& res, size_t bytes) {
  if (bytes == 0) return nullptr;
  if (bytes > static_cast<size_t>(INT32_MAX))
    throw InputError("needs " + std::to_string(bytes) +
                     " bytes of GPU scratch memory, more than lib_api can allocate at once (2 GiB)");
  return res.alloc_gpu(static_cast<int>(bytes));
}

void zero_fill(MXTensor& t, const OpResource& res) {
  const size_t bytes = static_cast<size_t>(t.size()) *
                       dtype_size(dtype_of(t.dtype, "gradient"));
  if (bytes == 0) return;
  if (on_gpu(t)) {
#ifdef FRCNN_WITH_CUDA
    zero_cuda(t.data_ptr, bytes, res.get_cuda_stream());
#else
    no_cuda();
#endif
  } else {
    std::memset(t.data_ptr, 0, bytes);
  }
}

MXReturnValue infer_same_type(const char* op, const std::vector<std::string>& names,
                              std::vector<int>* in, std::vector<int>* out) {
  return guard(op, [&]() {
    // dtype -1 (unknown) takes the first known dtype.
    int t = -1;
    for (int x : *in) if (x >= 0 && t < 0) t = x;
    if (t < 0) return;
    dtype_of(t, names[0].c_str());
    for (size_t i = 0; i < in->size(); ++i) {
      if ((*in)[i] >= 0 && (*in)[i] != t)
        throw DTypeError(std::string(names[i]) + " must have the dtype of " + names[0] + " (" +
                         mx_dtype_name(t) + "), got " + mx_dtype_name((*in)[i]));
      (*in)[i] = t;
    }
    for (auto& o : *out) o = t;
  });
}

}  // namespace mxglue
}  // namespace frcnn
