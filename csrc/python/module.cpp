#include "common/parallel.h"
#include "common/scratch.h"
#include "multilevel_roi_align/multilevel_roi_align.h"
#include "ops.h"
#include "python/bind.h"

namespace frcnn {
namespace pyglue {
namespace {

DType np_dtype(const std::string& arg, const py::array& a) {
  if (a.dtype().is(py::dtype::of<float>())) return DType::kFloat32;
  if (a.dtype().is(py::dtype::of<double>())) return DType::kFloat64;
  if (a.dtype().is(py::dtype("float16"))) return DType::kFloat16;
  throw DTypeError(arg + " must be float32, float64 or float16, got " +
                   std::string(py::str(a.dtype())));
}

Shape np_shape(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

py::array new_array(DType dt, const Shape& s) {
  std::vector<py::ssize_t> shape(s.begin(), s.end());
  if (dt == DType::kFloat64) return py::array_t<double>(shape);
  if (dt == DType::kFloat16) return py::array(py::dtype("float16"), shape);
  return py::array_t<float>(shape);
}

// The dtype of arrays[0], refusing other dtypes and non-contiguous arrays (the Python
// wrappers pass np.ascontiguousarray; a strided array here would be read wrongly).
DType common_dtype(const std::vector<std::pair<std::string, const py::array*>>& arrays) {
  const DType dt = np_dtype(arrays[0].first, *arrays[0].second);
  for (const auto& [name, a] : arrays) {
    if (np_dtype(name, *a) != dt)
      throw DTypeError(name + " must have the dtype of " + arrays[0].first + " (" +
                       dtype_name(dt) + "), got " + std::string(py::str(a->dtype())));
    if (!(a->flags() & py::array::c_style))
      throw InputError(name + " must be C-contiguous");
  }
  return dt;
}

DType gpu_dtype(int code) {
  if (code < 0 || code > 2)
    throw DTypeError("dtype must be float32, float64 or float16, got code " +
                     std::to_string(code));
  return static_cast<DType>(code);
}

void* ptr(uintptr_t p) { return reinterpret_cast<void*>(p); }

void check_grad(const OpDef& op, const AttrValues& a, const std::vector<Shape>& shapes,
                const Shape& grad) {
  const Shape out = op.infer_shape(a, shapes)[0];
  if (grad != out)
    throw InputError("grad must have the output's shape " + shape_str(out) + ", got " +
                     shape_str(grad));
}

// ---- CPU (NumPy) -----------------------------------------------------------------------
std::vector<Shape> infer_shape(const std::string& name, const std::vector<Shape>& shapes,
                               const AttrText& attrs) {
  return guard(name, [&]() {
    const OpDef& op = find_op(name);
    return op.infer_shape(parse_attrs(op, attrs), shapes);
  });
}

std::vector<py::array> forward(const std::string& name, const std::vector<py::array>& inputs,
                               const AttrText& attrs) {
  return guard(name, [&]() {
    const OpDef& op = find_op(name);
    const AttrValues a = parse_attrs(op, attrs);
    const std::vector<std::string> names = input_names(op, inputs.size());
    std::vector<std::pair<std::string, const py::array*>> named;
    std::vector<Shape> shapes;
    for (size_t i = 0; i < inputs.size(); ++i) {
      named.emplace_back(names[i], &inputs[i]);
      shapes.push_back(np_shape(inputs[i]));
    }
    const std::vector<Shape> out_shapes = op.infer_shape(a, shapes);
    Call c{a, common_dtype(named)};
    for (size_t i = 0; i < inputs.size(); ++i)
      c.in.push_back(Tensor{const_cast<void*>(inputs[i].data()), shapes[i]});
    std::vector<py::array> outs;
    for (const Shape& s : out_shapes) {
      outs.push_back(new_array(c.dtype, s));
      c.out.push_back(Tensor{outs.back().mutable_data(), s});
    }
    py::gil_scoped_release nogil;
    op.forward(c);
    return outs;
  });
}

// Gradients of the inputs the op differentiates. inputs[i] may be None where the backward
// reads only the shape (shapes[i]).
std::vector<py::array> backward(const std::string& name, const py::array& grad,
                                const std::vector<std::optional<py::array>>& inputs,
                                const std::vector<Shape>& shapes, const AttrText& attrs) {
  return guard(name, [&]() {
    const OpDef& op = find_op(name);
    if (!op.backward) throw InputError("has no gradient");
    const AttrValues a = parse_attrs(op, attrs);
    const std::vector<std::string> names = input_names(op, shapes.size());
    std::vector<std::pair<std::string, const py::array*>> named;
    for (size_t i = 0; i < shapes.size(); ++i) {
      const bool given = i < inputs.size() && inputs[i].has_value();
      if (given) {
        named.emplace_back(names[i], &*inputs[i]);
        if (np_shape(*inputs[i]) != shapes[i])
          throw InputError(names[i] + " has shape " + shape_str(np_shape(*inputs[i])) +
                           ", not " + shape_str(shapes[i]));
      } else if (input_spec(op, i).backward_reads) {
        throw InputError("the backward needs " + names[i]);
      }
    }
    named.emplace_back("grad", &grad);
    check_grad(op, a, shapes, np_shape(grad));
    Call c{a, common_dtype(named)};
    c.grad_out = Tensor{const_cast<void*>(grad.data()), np_shape(grad)};
    std::vector<py::array> grads;
    for (size_t i = 0; i < shapes.size(); ++i) {
      const bool given = i < inputs.size() && inputs[i].has_value();
      c.in.push_back(Tensor{given ? const_cast<void*>(inputs[i]->data()) : nullptr, shapes[i]});
      if (input_spec(op, i).grad) {
        grads.push_back(new_array(c.dtype, shapes[i]));
        c.out.push_back(Tensor{grads.back().mutable_data(), shapes[i]});
      } else {
        c.out.push_back(Tensor{nullptr, shapes[i]});
      }
    }
    py::gil_scoped_release nogil;
    op.backward(c);
    return grads;
  });
}

py::array multilevel_levels(const py::array& rois, int min_level, int max_level,
                            double canonical_scale, int canonical_level, double eps) {
  return guard("frcnn_multilevel_roi_align", [&]() {
    const DType dt = common_dtype({{"rois", &rois}});
    const Shape rs = np_shape(rois);
    LevelRule rule;
    rule.min_level = min_level;
    rule.max_level = max_level;
    rule.canonical_scale = canonical_scale;
    rule.canonical_level = canonical_level;
    rule.eps = eps;
    py::array_t<int32_t> out(std::vector<py::ssize_t>{rs.empty() ? 0 : rs[0]});
    multilevel_roi_levels(dt, rois.data(), rs, rule, out.mutable_data());
    return py::array(out);
  });
}

// ---- GPU (raw device pointers) -----------------------------------------------------------
#ifdef FRCNN_WITH_CUDA
size_t workspace_gpu(const std::string& name, bool backward, int dtype,
                     const std::vector<Shape>& shapes, const AttrText& attrs) {
  return guard(name, [&]() {
    const OpDef& op = find_op(name);
    const AttrValues a = parse_attrs(op, attrs);
    op.infer_shape(a, shapes);
    return op_workspace(op, a, gpu_dtype(dtype), shapes, backward);
  });
}

// out_ptrs: the outputs (forward) or the gradients of the inputs the op differentiates
// (backward, then grad_ptr is the output's gradient and in_ptrs[i] may be 0 where only
// shapes[i] is read). Asynchronous on `stream`.
void run_gpu(const std::string& name, bool backward, int dtype, uintptr_t grad_ptr,
             const std::vector<uintptr_t>& in_ptrs, const std::vector<Shape>& shapes,
             const std::vector<uintptr_t>& out_ptrs, const AttrText& attrs, uintptr_t workspace,
             size_t workspace_bytes, uintptr_t stream) {
  guard(name, [&]() {
    const OpDef& op = find_op(name);
    const AttrValues a = parse_attrs(op, attrs);
    const std::vector<Shape> out_shapes = op.infer_shape(a, shapes);
    if (in_ptrs.size() != shapes.size()) throw InputError("inputs and shapes differ in number");
    Call c{a, gpu_dtype(dtype)};
    c.dev = Device{true, ptr(stream), ptr(workspace), workspace_bytes};
    if (workspace_bytes < op_workspace(op, a, c.dtype, shapes, backward))
      throw InputError("workspace is smaller than workspace_gpu() asked for");
    for (size_t i = 0; i < shapes.size(); ++i) {
      if (in_ptrs[i] == 0 && (!backward || input_spec(op, i).backward_reads))
        throw InputError("input " + std::to_string(i) + " has a null pointer");
      c.in.push_back(Tensor{ptr(in_ptrs[i]), shapes[i]});
    }
    size_t k = 0;
    if (!backward) {
      for (const Shape& s : out_shapes) c.out.push_back(Tensor{ptr(out_ptrs.at(k++)), s});
      op.forward(c);
      return;
    }
    if (!op.backward) throw InputError("has no gradient");
    c.grad_out = Tensor{ptr(grad_ptr), out_shapes[0]};
    for (size_t i = 0; i < shapes.size(); ++i)
      c.out.push_back(input_spec(op, i).grad ? Tensor{ptr(out_ptrs.at(k++)), shapes[i]}
                                             : Tensor{nullptr, shapes[i]});
    op.backward(c);
  });
}
#endif

// The ops' schemas, for the Python wrappers' signatures and docs (frcnn_ops._schema).
py::list schema() {
  static const char* types[] = {"float", "double", "int", "bool", "choice", "int_pair",
                                "float_list", "int_list"};
  py::list ops;
  for (const OpDef* op : all_ops()) {
    py::list inputs, attrs;
    for (const InputSpec& s : op->inputs)
      inputs.append(py::dict(py::arg("name") = s.name, py::arg("grad") = s.grad,
                             py::arg("backward_reads") = s.backward_reads));
    for (const AttrSpec& s : op->attrs)
      attrs.append(py::dict(py::arg("name") = s.name,
                            py::arg("type") = types[static_cast<int>(s.type)],
                            py::arg("default") = s.def ? py::object(py::str(s.def)) : py::none(),
                            py::arg("doc") = s.doc, py::arg("choices") = s.choices));
    ops.append(py::dict(py::arg("name") = op->name, py::arg("inputs") = inputs,
                        py::arg("attrs") = attrs, py::arg("backward") = op->backward != nullptr));
  }
  return ops;
}

}  // namespace
}  // namespace pyglue
}  // namespace frcnn

// _C, or _C_emu for the CPU execution harness of the CUDA kernels (CMakeLists.txt).
#ifndef FRCNN_PY_MODULE_NAME
#define FRCNN_PY_MODULE_NAME _C
#endif

PYBIND11_MODULE(FRCNN_PY_MODULE_NAME, m) {
  namespace g = frcnn::pyglue;
  namespace py = pybind11;
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
  m.def("release_cpu_scratch", &frcnn::release_cpu_scratch);
  m.def("cached_cpu_scratch", &frcnn::cached_cpu_scratch);
  m.def("active_calls", &frcnn::active_calls);
  m.def("schema", &g::schema);
  m.def("input_names", [](const std::string& op, size_t n) {
    return frcnn::input_names(frcnn::find_op(op), n);  // a variadic input's as name[i]
  }, py::arg("op"), py::arg("n"));
  m.def("infer_shape", &g::infer_shape, py::arg("op"), py::arg("shapes"), py::arg("attrs"));
  m.def("forward", &g::forward, py::arg("op"), py::arg("inputs"), py::arg("attrs"));
  m.def("backward", &g::backward, py::arg("op"), py::arg("grad"), py::arg("inputs"),
        py::arg("shapes"), py::arg("attrs"));
  m.def("multilevel_roi_levels", &g::multilevel_levels);
#ifdef FRCNN_WITH_CUDA
  m.def("workspace_gpu", &g::workspace_gpu, py::arg("op"), py::arg("backward"), py::arg("dtype"),
        py::arg("shapes"), py::arg("attrs"));
  m.def("run_gpu", &g::run_gpu, py::arg("op"), py::arg("backward"), py::arg("dtype"),
        py::arg("grad"), py::arg("inputs"), py::arg("shapes"), py::arg("outputs"),
        py::arg("attrs"), py::arg("workspace"), py::arg("workspace_bytes"), py::arg("stream"));
#endif
#ifdef FRCNN_CUDA_EMULATE
  frcnn_register_emu_selftest(m);
#endif
}
