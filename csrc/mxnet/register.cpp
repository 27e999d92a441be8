// Registers every op of csrc/ops.h with MXNet's lib_api, through one generic implementation
// of lib_api's callbacks over the op's OpDef (csrc/common/op.h). lib_api callbacks carry no
// op identity, so each op gets its own instantiation of the callbacks (template on the
// OpDef's accessor).
#include "mxnet/glue.h"
#include "ops.h"

namespace frcnn {
namespace mxglue {
namespace {

using ShapeList = std::vector<std::vector<unsigned int>>;

// Shapes of tensors [first, first + n), refusing a dtype other than the first tensor's.
std::vector<Shape> checked_shapes(const OpDef& op, std::vector<MXTensor>& t, size_t first,
                                  size_t n, DType* dt) {
  const std::vector<std::string> names = input_names(op, n);
  *dt = dtype_of(t[first].dtype, names[0].c_str());
  std::vector<Shape> shapes;
  for (size_t i = 0; i < n; ++i) {
    const MXTensor& x = t[first + i];
    if (x.dtype != t[first].dtype)
      throw DTypeError(names[i] + " must have the dtype of " + names[0] + " (" +
                       mx_dtype_name(t[first].dtype) + "), got " + mx_dtype_name(x.dtype));
    shapes.push_back(shape_of(x));
  }
  return shapes;
}

Tensor tensor(MXTensor& t) { return Tensor{t.data_ptr, shape_of(t)}; }

Device device(const OpDef& op, const MXTensor& first, const AttrValues& a, DType dt,
              const std::vector<Shape>& shapes, bool backward, const OpResource& res) {
  Device d;
  if (!on_gpu(first)) return d;
  d.gpu = true;
  d.stream = res.get_cuda_stream();
  d.workspace_bytes = op_workspace(op, a, dt, shapes, backward);
  d.workspace = gpu_workspace(res, d.workspace_bytes);
  return d;
}

template <const OpDef& (*Def)()>
struct Callbacks {
  static MXReturnValue parse(const Attrs& attrs, int* num_in, int* num_out) {
    const OpDef& op = Def();
    *num_in = static_cast<int>(op.inputs.size());
    *num_out = 1;
    return guard(op.name, [&]() {
      const AttrValues a = parse_attrs(op, attrs);
      if (op.num_inputs) *num_in = op.num_inputs(a);
    });
  }

  static MXReturnValue infer_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
    const OpDef& op = Def();
    return infer_same_type(op.name, input_names(op, in->size()), in, out);
  }

  static MXReturnValue infer_shape(const Attrs& attrs, ShapeList* in, ShapeList* out) {
    const OpDef& op = Def();
    return guard(op.name, [&]() {
      const std::vector<std::string> names = input_names(op, in->size());
      std::vector<Shape> shapes;
      for (size_t i = 0; i < in->size(); ++i)
        shapes.push_back(known_shape((*in)[i], names[i].c_str()));
      const std::vector<Shape> os = op.infer_shape(parse_attrs(op, attrs), shapes);
      for (size_t i = 0; i < os.size(); ++i)
        (*out)[i] = std::vector<unsigned int>(os[i].begin(), os[i].end());
    });
  }

  static MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* in,
                               std::vector<MXTensor>* out, const OpResource& res) {
    const OpDef& op = Def();
    return guard(op.name, [&]() {
      const AttrValues a = parse_attrs(op, attrs);
      DType dt;
      const std::vector<Shape> shapes = checked_shapes(op, *in, 0, in->size(), &dt);
      op.infer_shape(a, shapes);
      Call c{a, dt};
      for (auto& t : *in) c.in.push_back(tensor(t));
      for (auto& t : *out) c.out.push_back(tensor(t));
      c.dev = device(op, (*in)[0], a, dt, shapes, false, res);
      op.forward(c);
    });
  }

  // inputs: [grad_out, the forward's inputs..., out]; outputs: one gradient per input,
  // zeros where the op has none.
  static MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* in,
                                std::vector<MXTensor>* out, const OpResource& res) {
    const OpDef& op = Def();
    return guard(op.name, [&]() {
      const AttrValues a = parse_attrs(op, attrs);
      const size_t n = out->size();
      DType dt;
      const std::vector<Shape> shapes = checked_shapes(op, *in, 1, n, &dt);
      op.infer_shape(a, shapes);
      if (op.backward) {
        Call c{a, dt};
        c.grad_out = tensor((*in)[0]);
        for (size_t i = 0; i < n; ++i) {
          c.in.push_back(tensor((*in)[1 + i]));
          c.out.push_back(input_spec(op, i).grad ? tensor((*out)[i]) : Tensor{nullptr, shapes[i]});
        }
        c.dev = device(op, (*in)[1], a, dt, shapes, true, res);
        op.backward(c);
      }
      for (size_t i = 0; i < n; ++i)
        if (!op.backward || !input_spec(op, i).grad) zero_fill((*out)[i], res);
    });
  }
};

template <const OpDef& (*Def)()>
void add() {
  using C = Callbacks<Def>;
  auto& r = mxnet::ext::Registry<mxnet::ext::CustomOp>::get()->add(Def().name);
  r.setParseAttrs(C::parse).setInferType(C::infer_type).setInferShape(C::infer_shape);
  r.setForward(C::forward, "cpu").setBackward(C::backward, "cpu");
#ifdef FRCNN_WITH_CUDA
  r.setForward(C::forward, "gpu").setBackward(C::backward, "gpu");
#endif
}

int register_all() {
#define FRCNN_MX_ADD(name) add<&name##_op>();
  FRCNN_OPS(FRCNN_MX_ADD)
#undef FRCNN_MX_ADD
  return 0;
}

const int registered = register_all();

}  // namespace
}  // namespace mxglue
}  // namespace frcnn
