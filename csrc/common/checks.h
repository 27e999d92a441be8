// Small helpers for building error messages and dispatching on dtype.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/host_device.h"
#include "common/parallel.h"

namespace frcnn {

// A tensor shape, every front end's and kernel's.
using Shape = std::vector<int64_t>;

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  if (s.size() == 1) os << ",";
  os << ")";
  return os.str();
}

inline const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kFloat16: return "float16";
  }
  return "unknown";
}

// "" when value is one of choices, else a message naming the attribute.
inline std::string check_choice(const std::string& key, const std::string& value,
                                const std::vector<std::string>& choices) {
  std::string list;
  for (const auto& c : choices) {
    if (c == value) return "";
    list += (list.empty() ? "'" : ", '") + c + "'";
  }
  return "attribute " + key + " must be one of " + list + ", got '" + value + "'";
}

// Raised by launchers on an internal precondition failure (the front ends check first).
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace frcnn

// Dispatch on a CPU dtype (float32, float64): `scalar_t` names the type inside BODY.
// The call counts as running (ActiveCall) while BODY runs: concurrent calls share the
// thread budget (common/parallel.h).
#define FRCNN_DISPATCH_CPU(DT, NAME, ...)                                                 \
  ::frcnn::ActiveCall frcnn_active_call_;                                                 \
  switch (DT) {                                                                           \
    case ::frcnn::DType::kFloat32: { using scalar_t = float; __VA_ARGS__; break; }        \
    case ::frcnn::DType::kFloat64: { using scalar_t = double; __VA_ARGS__; break; }       \
    default: throw ::frcnn::Error(std::string(NAME) + ": dtype " +                        \
                                  ::frcnn::dtype_name(DT) + " is not supported on cpu");  \
  }
