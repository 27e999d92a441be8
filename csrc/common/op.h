// What an op is, independent of any front end: its schema (inputs, attributes with types,
// defaults and ranges, in the MXNet twin's positional order) and its device-neutral entry
// points (shape inference and validation, GPU scratch size, forward, backward). Each op
// defines one OpDef in csrc/<op>/<op>.cpp; csrc/ops.h lists them all; the MXNet glue
// (csrc/mxnet) and the pybind11 module (csrc/python) are generic over this table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/checks.h"

namespace frcnn {

// Bad input (shape, attribute): ValueError in Python, MXNetError in MXNet. The front ends
// prefix the op's name.
struct InputError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// An input of the wrong dtype: TypeError in Python.
struct DTypeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// ---- Attributes ------------------------------------------------------------------------
enum class AttrType {
  kFloat,      // float32 (as MXNet's dmlc::Parameter float)
  kDouble,
  kInt,        // int32
  kBool,       // true/false/1/0, any case
  kChoice,     // one of `choices`
  kIntPair,    // "(7, 7)", "[7,7]", "7" -> {7, 7}
  kFloatList,  // "(0.25, 0.125)", "0.25" -> at least one float
  kIntList,    // "(1000, 250)", "[7]" -> at least one int32
};

struct AttrSpec {
  const char* name;
  AttrType type;
  const char* def;  // default as text; nullptr: required; "": optional, no default (has())
  const char* doc;  // one line (Python reads it: frcnn_ops._C.schema())
  std::vector<std::string> choices = {};  // kChoice
  double lo = -1e308, hi = 1e308;         // allowed range (kFloat/kDouble/kInt, inclusive)
};

// The parsed attributes of one call. Parsing refuses unknown names (MXNet's own "__*__"
// names are skipped), values of the wrong type and values out of range, naming the attribute.
class AttrValues {
 public:
  double num(const char* name) const { return at(name).num; }
  float f(const char* name) const { return static_cast<float>(at(name).num); }
  int i(const char* name) const { return static_cast<int>(at(name).num); }
  bool b(const char* name) const { return at(name).num != 0; }
  const std::string& str(const char* name) const { return at(name).text; }  // kChoice
  const std::vector<double>& list(const char* name) const { return at(name).list; }
  // false for an optional attribute without default (AttrSpec::def "") that was not given
  bool has(const char* name) const { return at(name).set; }

 private:
  friend AttrValues parse_attrs(const struct OpDef&,
                                const std::unordered_map<std::string, std::string>&);
  // One per attribute of the schema, in its order (no map: parsing runs on every call, and
  // MXNet calls it several times per call).
  struct Value {
    bool set = false;
    double num = 0;
    std::string text;          // kChoice only
    std::vector<double> list;  // kIntPair, kFloatList
  };
  const Value& at(const char* name) const;
  const struct OpDef* op_ = nullptr;
  std::vector<Value> values_;
};

// ---- Tensors and devices ---------------------------------------------------------------
// A contiguous row-major array. `data` may be null where only the shape is known (the
// inputs a backward does not read, e.g. roi_align's data).
struct Tensor {
  void* data = nullptr;
  Shape shape;
};

inline int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}
inline size_t bytes_of(const Tensor& t, DType dt) {
  return static_cast<size_t>(numel(t.shape)) * dtype_size(dt);
}

// Where a call runs. GPU: `stream` is a cudaStream_t (nullptr: the default stream) and
// `workspace` holds OpDef::workspace bytes of scratch memory.
struct Device {
  bool gpu = false;
  void* stream = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// One call's arguments. Forward: `in` the inputs, `out` the outputs (allocated with the
// shapes infer_shape returned). Backward: `grad_out` the output's gradient, `in` the forward
// inputs, `out` one gradient per input (null data: the front end fills no gradient there
// because the op has none for that input; see InputSpec::grad).
struct Call {
  Call(const AttrValues& a, DType dt) : attrs(a), dtype(dt) {}
  const AttrValues& attrs;
  DType dtype;
  std::vector<Tensor> in;
  std::vector<Tensor> out;
  Tensor grad_out;
  Device dev;
};

struct InputSpec {
  // "*name" (last only): any number of inputs, named name[0], name[1], ...; "*a,b" (last
  // only): 2k inputs, a[0] .. a[k-1] then b[0] .. b[k-1] (frcnn_multilevel_proposal)
  const char* name;
  bool grad;         // the op computes a gradient for it (else the MXNet glue writes zeros)
  bool backward_reads = true;  // the backward reads its values (else only its shape)
};

struct OpDef {
  const char* name;  // MXNet op name, e.g. "frcnn_box_decode"
  std::vector<InputSpec> inputs;
  std::vector<AttrSpec> attrs;  // the twin's positional order
  // Number of inputs of a variadic op, from its attributes (MXNet fixes it at parse time).
  int (*num_inputs)(const AttrValues&) = nullptr;
  // Validates the input shapes with the attributes; returns the output shapes. Every front
  // end calls it before running (and before allocating anything).
  std::vector<Shape> (*infer_shape)(const AttrValues&, const std::vector<Shape>& in) = nullptr;
  // GPU scratch bytes of one forward (backward = false) or backward call; nullptr: none.
  size_t (*workspace)(const AttrValues&, DType, const std::vector<Shape>& in,
                      bool backward) = nullptr;
  void (*forward)(const Call&) = nullptr;
  void (*backward)(const Call&) = nullptr;  // nullptr: no gradient (all zeros)
};

AttrValues parse_attrs(const OpDef& op, const std::unordered_map<std::string, std::string>& raw);
// Input names of a call with n inputs (a variadic input's as name[i]).
std::vector<std::string> input_names(const OpDef& op, size_t n);
// Whether input i (of a call with any count) has a gradient / is read by the backward.
const InputSpec& input_spec(const OpDef& op, size_t i);
// The ops of this build (csrc/ops.h), and one by name (InputError naming the known ones).
const std::vector<const OpDef*>& all_ops();
const OpDef& find_op(const std::string& name);
// The scratch bytes of a call (0 when the op needs none).
size_t op_workspace(const OpDef& op, const AttrValues& a, DType dt, const std::vector<Shape>& in,
                    bool backward);

[[noreturn]] void no_cuda();

// Runs cpu() for a call on the CPU, or cuda(stream) for one on the GPU: the one place where an
// op's code depends on whether CUDA was built. `cuda` is a generic lambda ([&](auto stream)),
// instantiated only in a CUDA build, so a CPU-only build never references a *_cuda launcher.
template <typename Cpu, typename Cuda>
void on_device(const Device& dev, Cpu&& cpu, Cuda&& cuda) {
  if (!dev.gpu) return cpu();
#ifdef FRCNN_WITH_CUDA
  cuda(dev.stream);
#else
  (void)cuda;
  no_cuda();
#endif
}

// cuda(0) in a CUDA build (a generic lambda, as above), `otherwise` in a CPU-only one: the
// GPU workspace sizes.
template <typename R, typename Cuda>
R if_cuda(Cuda&& cuda, R otherwise) {
#ifdef FRCNN_WITH_CUDA
  (void)otherwise;
  return cuda(nullptr);
#else
  (void)cuda;
  return otherwise;
#endif
}
// Throws InputError(msg) unless msg is empty (the *_check functions return "" when valid).
void require_ok(const std::string& msg);

}  // namespace frcnn
