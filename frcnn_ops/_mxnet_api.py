"""The `mx.nd.frcnn_*` / `mx.sym.frcnn_*` functions, with their MXNet contrib twins' calling
conventions.

MXNet generates a `(*data, **kwargs)` function for every external-library op: inputs by
position only, attributes by keyword only. The contrib twins take inputs by position or by
keyword (their input names) and attributes by keyword or by position, in one order
(`box_decode(data, anchors, std0, ...)`). `install(mx)` replaces the generated functions in
mx.nd, mx.sym (and their .op modules, so `F.frcnn_*` inside hybrid_forward too) with wrappers
that take both, refuse anything else naming the op and the argument, and call the generated
function: the graph, its export and SymbolBlock loading are unchanged.

grad_req='add': MXNet 1.9.1 gives external-library ops no write/add request, so an op that
fills the gradient of a graph input whose gradient is accumulated would overwrite it. The
wrappers route such inputs through `identity` (whose backward honours the request): NDArray
leaves with an attached gradient while autograd records, and Symbol variables (graph inputs
and parameters). Inputs computed inside the graph get a gradient buffer that the op writes
(also with MXNET_EXEC_ENABLE_ADDTO=1: tests/test_mx_conventions.py holds both).
"""
import inspect

# op -> (input names, attributes in the twin's positional order with their defaults).
# The twins: contrib.box_decode, GluonCV BBoxClipToImage (inputs only), GluonCV RPNProposal +
# box_nms (ours), contrib.box_nms, contrib.ROIAlign (+ our `deterministic` last).
SIGNATURES = {
    "frcnn_box_decode": (("data", "anchors"),
                         (("std0", 1.0), ("std1", 1.0), ("std2", 1.0), ("std3", 1.0),
                          ("clip", -1.0), ("format", "center"))),
    "frcnn_clip_boxes": (("boxes", "im_info"), ()),
    "frcnn_proposal": (("scores", "deltas", "anchors", "im_info"),
                       (("rpn_pre_nms_top_n", 6000), ("rpn_post_nms_top_n", 300),
                        ("threshold", 0.7), ("rpn_min_size", 16), ("std0", 1.0),
                        ("std1", 1.0), ("std2", 1.0), ("std3", 1.0), ("clip", -1.0))),
    "frcnn_nms": (("data",),
                  (("overlap_thresh", 0.5), ("valid_thresh", 0.0), ("topk", -1),
                   ("coord_start", 2), ("score_index", 1), ("id_index", -1),
                   ("background_id", -1), ("force_suppress", False), ("in_format", "corner"),
                   ("out_format", "corner"))),
    "frcnn_roi_align": (("data", "rois"),
                        (("pooled_size", None), ("spatial_scale", None), ("sample_ratio", -1),
                         ("position_sensitive", False), ("aligned", False),
                         ("deterministic", False))),
}

_PASS_THROUGH = {"ndarray": ("out", "name"), "symbol": ("name", "attr", "out")}


def _bind(op, kind, args, kwargs):
    """(inputs, attributes, pass-through keywords) of one call, in the twin's conventions."""
    inputs, attrs = SIGNATURES[op]
    attr_names = [a for a, _ in attrs]
    order = list(inputs) + attr_names
    if len(args) > len(order):
        raise TypeError("%s takes at most %d positional arguments (%s), got %d" % (
            op, len(order), ", ".join(order), len(args)))
    given = dict(zip(order, args))
    extra = {}
    for key, value in kwargs.items():
        if key in given:
            raise TypeError("%s: got multiple values for argument '%s'" % (op, key))
        if key in order:
            given[key] = value
        elif key in _PASS_THROUGH[kind]:
            extra[key] = value
        else:  # the op refuses it by name ("unknown attribute"), as on every other path
            given[key] = value
    values = [given.pop(name, None) for name in inputs]
    attr_kw = {k: v for k, v in given.items() if v is not None}
    return values, attr_kw, extra


def _nd_wrapper(mx, op, generated):
    nd_type = mx.nd.NDArray
    inputs = SIGNATURES[op][0]

    def call(*args, **kwargs):
        values, attrs, extra = _bind(op, "ndarray", args, kwargs)
        for name, x in zip(inputs, values):
            if x is None:
                raise TypeError("%s: missing input '%s'" % (op, name))
            if not isinstance(x, nd_type):
                raise TypeError("%s: input '%s' must be an NDArray, got %s" % (
                    op, name, type(x).__name__))
        if mx.autograd.is_recording():
            # a leaf with an attached gradient may accumulate (grad_req='add'): identity's
            # backward adds or writes as asked, ours only writes (module docstring)
            values = [mx.nd.identity(x) if x.grad is not None else x for x in values]
        return generated(*values, **attrs, **extra)

    return call


def _sym_wrapper(mx, op, generated):
    sym_type = mx.sym.Symbol
    inputs = SIGNATURES[op][0]
    hint = op.lower()

    def call(*args, **kwargs):
        values, attrs, extra = _bind(op, "symbol", args, kwargs)
        name = mx.name.NameManager.current.get(extra.pop("name", None), hint)
        for i, (inp, x) in enumerate(zip(inputs, values)):
            if x is None:  # as the contrib ops: a variable named after the op and the input
                values[i] = mx.sym.var("%s_%s" % (name, inp))
            elif not isinstance(x, sym_type):
                raise TypeError("%s: input '%s' must be a Symbol, got %s" % (
                    op, inp, type(x).__name__))
        # graph inputs and parameters may accumulate their gradient (module docstring)
        values = [mx.sym.identity(x, name="%s_%s_id" % (name, inp))
                  if x.get_children() is None else x for inp, x in zip(inputs, values)]
        return generated(*values, name=name, **attrs, **extra)

    return call


def _signature(op, kind):
    inputs, attrs = SIGNATURES[op]
    P = inspect.Parameter
    params = [P(n, P.POSITIONAL_OR_KEYWORD, default=None) for n in inputs]
    params += [P(n, P.POSITIONAL_OR_KEYWORD, default=d) for n, d in attrs]
    params += [P(n, P.KEYWORD_ONLY, default=None) for n in _PASS_THROUGH[kind]]
    return inspect.Signature(params)


def install(mx):
    """Replaces MXNet's generated frcnn_* functions with the wrappers (idempotent)."""
    import sys
    for kind, make in (("ndarray", _nd_wrapper), ("symbol", _sym_wrapper)):
        modules = [sys.modules["mxnet.%s" % kind], sys.modules["mxnet.%s.op" % kind]]
        for op in SIGNATURES:
            generated = getattr(modules[1], op)
            generated = getattr(generated, "__wrapped_generated__", generated)
            func = make(mx, op, generated)
            func.__name__ = op
            func.__qualname__ = op
            func.__doc__ = _doc(op, kind)
            func.__signature__ = _signature(op, kind)
            func.__wrapped_generated__ = generated
            for m in modules:
                setattr(m, op, func)


def _doc(op, kind):
    import frcnn_ops
    python_name = op[len("frcnn_"):]
    inputs, attrs = SIGNATURES[op]
    head = ("%s(%s): the frcnn_ops op as an MXNet %s function. Inputs by position or by name "
            "(%s); attributes by name or by position in this order: %s. See "
            "frcnn_ops.%s for the semantics.\n\n" % (
                op, ", ".join(list(inputs) + [a for a, _ in attrs]),
                "NDArray" if kind == "ndarray" else "Symbol", ", ".join(inputs),
                ", ".join(a for a, _ in attrs) or "(none)", python_name))
    return head + (getattr(frcnn_ops, python_name).__doc__ or "")
