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

const std::string* AttrReader::find(const char* key) {
  seen_.emplace_back(key);
  auto it = attrs_.find(key);
  return it == attrs_.end() ? nullptr : &it->second;
}

float AttrReader::get_float(const char* key, float def) {
  return static_cast<float>(get_double(key, def));
}

double AttrReader::get_double(const char* key, double def) {
  const std::string* v = find(key);
  if (v == nullptr) return def;
  errno = 0;
  char* end = nullptr;
  double x = std::strtod(v->c_str(), &end);
  while (end && std::isspace(static_cast<unsigned char>(*end))) ++end;
  if (end == v->c_str() || *end != '\0' || errno == ERANGE)
    throw InputError(std::string("attribute ") + key + " must be a number, got '" + *v + "'");
  return x;
}

int AttrReader::get_int(const char* key, int def) {
  const std::string* v = find(key);
  if (v == nullptr) return def;
  errno = 0;
  char* end = nullptr;
  long x = std::strtol(v->c_str(), &end, 10);
  while (end && std::isspace(static_cast<unsigned char>(*end))) ++end;
  if (end == v->c_str() || *end != '\0' || errno == ERANGE || x < INT32_MIN || x > INT32_MAX)
    throw InputError(std::string("attribute ") + key + " must be an integer, got '" + *v + "'");
  return static_cast<int>(x);
}

bool AttrReader::get_bool(const char* key, bool def) {
  const std::string* v = find(key);
  if (v == nullptr) return def;
  std::string s = *v;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "true" || s == "1") return true;
  if (s == "false" || s == "0") return false;
  throw InputError(std::string("attribute ") + key + " must be a boolean, got '" + *v + "'");
}

std::string AttrReader::get_choice(const char* key, const std::string& def,
                                   const std::vector<std::string>& choices) {
  const std::string* v = find(key);
  if (v == nullptr) return def;
  std::string s = *v;
  if (s.size() >= 2 && (s.front() == '\'' || s.front() == '"') && s.back() == s.front())
    s = s.substr(1, s.size() - 2);
  const std::string err = check_choice(key, s, choices);
  if (!err.empty()) throw InputError(err);
  return s;
}

std::vector<int> AttrReader::get_int_tuple(const char* key, size_t n,
                                           const std::vector<int>* def) {
  const std::string* v = find(key);
  if (v == nullptr) {
    if (def == nullptr) throw InputError(std::string("attribute ") + key + " is required");
    return *def;
  }
  std::vector<int> out;
  std::string cur;
  auto flush = [&]() {
    if (cur.empty()) return;
    char* end = nullptr;
    long x = std::strtol(cur.c_str(), &end, 10);
    if (*end != '\0' || x < INT32_MIN || x > INT32_MAX)
      throw InputError(std::string("attribute ") + key + " must be integers, got '" + *v + "'");
    out.push_back(static_cast<int>(x));
    cur.clear();
  };
  for (char c : *v) {
    if (c == '(' || c == ')' || c == '[' || c == ']' || c == ',' || std::isspace(
        static_cast<unsigned char>(c))) {
      flush();
    } else if (c == 'L') {
      // Python 2 long suffix, harmless
    } else {
      cur += c;
    }
  }
  flush();
  if (out.size() == 1 && n > 1) out.assign(n, out[0]);
  if (out.size() != n)
    throw InputError(std::string("attribute ") + key + " must have " + std::to_string(n) +
                     " values, got '" + *v + "'");
  return out;
}

std::vector<float> AttrReader::get_float_tuple(const char* key, const std::vector<float>* def) {
  const std::string* v = find(key);
  if (v == nullptr) {
    if (def == nullptr) throw InputError(std::string("attribute ") + key + " is required");
    return *def;
  }
  std::vector<float> out;
  std::string cur;
  auto flush = [&]() {
    if (cur.empty()) return;
    errno = 0;
    char* end = nullptr;
    const double x = std::strtod(cur.c_str(), &end);
    if (*end != '\0' || errno == ERANGE)
      throw InputError(std::string("attribute ") + key + " must be numbers, got '" + *v + "'");
    out.push_back(static_cast<float>(x));
    cur.clear();
  };
  for (char c : *v) {
    if (c == '(' || c == ')' || c == '[' || c == ']' || c == ',' ||
        std::isspace(static_cast<unsigned char>(c)))
      flush();
    else
      cur += c;
  }
  flush();
  if (out.empty())
    throw InputError(std::string("attribute ") + key + " must have at least one value, got '" +
                     *v + "'");
  return out;
}

void AttrReader::finish() const {
  for (const auto& kv : attrs_) {
    if (kv.first.rfind("__", 0) == 0) continue;
    if (std::find(seen_.begin(), seen_.end(), kv.first) == seen_.end()) {
      std::string known;
      for (const auto& s : seen_) known += (known.empty() ? "" : ", ") + s;
      throw InputError("unknown attribute '" + kv.first + "' (known: " + known + ")");
    }
  }
}

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
  throw InputError(std::string(arg) + " must be float32, float64 or float16, got " +
                   mx_dtype_name(mx_dtype));
}

bool on_gpu(const MXTensor& t) { return t.ctx.dev_type == "gpu"; }

size_t elem_size(DType dt) {
  return dt == DType::kFloat64 ? 8 : (dt == DType::kFloat32 ? 4 : 2);
}

[[noreturn]] void no_cuda() { throw InputError("this build of frcnn_ops has no CUDA kernels"); }

void require_ok(const std::string& err) {
  if (!err.empty()) throw InputError(err);
}

void* gpu_workspace(const OpResource& res, size_t bytes) {
  if (bytes == 0) return nullptr;
  if (bytes > static_cast<size_t>(INT32_MAX))
    throw InputError("needs " + std::to_string(bytes) +
                     " bytes of GPU scratch memory, more than lib_api can allocate at once (2 GiB)");
  return res.alloc_gpu(static_cast<int>(bytes));
}

void zero_fill(MXTensor& t, const OpResource& res) {
  const size_t bytes = static_cast<size_t>(t.size()) *
                       elem_size(dtype_of(t.dtype, "gradient"));
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

void require(bool ok, const std::string& msg) {
  if (!ok) throw InputError(msg);
}

MXReturnValue infer_same_type(const char* op, const std::vector<const char*>& names,
                              std::vector<int>* in, std::vector<int>* out) {
  return guard(op, [&]() {
    // dtype -1 (unknown) takes the first known dtype.
    int t = -1;
    for (int x : *in) if (x >= 0 && t < 0) t = x;
    if (t < 0) return;
    dtype_of(t, names[0]);
    for (size_t i = 0; i < in->size(); ++i) {
      if ((*in)[i] >= 0 && (*in)[i] != t)
        throw InputError(std::string(names[i]) + " must have the dtype of " + names[0] + " (" +
                         mx_dtype_name(t) + "), got " + mx_dtype_name((*in)[i]));
      (*in)[i] = t;
    }
    for (auto& o : *out) o = t;
  });
}

}  // namespace mxglue
}  // namespace frcnn
