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

A leaf whose request is known to be 'write' skips `identity` (a copy of the array forward
and of its gradient backward: 56 ms a step for an FPN's P2-P5): `install` wraps
NDArray.attach_grad (and mx.np's) and autograd.mark_variables, the calls that set a leaf's
request, to note it by the array's handle, and NDArray deletion to forget it, so a request
set any other way, or a handle reused by a new array, reads as unknown and takes `identity`.
"""
import inspect

def _default(attr):
    """A schema attribute's default as the Python value a caller would pass (None: none)."""
    text, kind = attr["default"], attr["type"]
    if not text:
        return None
    if kind in ("float", "double"):
        return float(text)
    if kind == "int":
        return int(text)
    if kind == "bool":
        return text == "true"
    if kind in ("int_pair", "int_list", "float_list"):
        return text
    return text


def _signatures():
    """op -> (input names, attributes in the twin's positional order with their defaults),
    read from the ops' schemas (csrc/<op>/<op>.cpp). An input name "*name" (last) takes every
    remaining positional input (name[0], name[1], ...), "*a,b" (last) 2k of them (a[0] ..
    a[k-1], then b[0] .. b[k-1]); such an op's attributes are keyword-only. The twins: contrib.box_decode, GluonCV BBoxClipToImage (inputs only),
    GluonCV RPNProposal + box_nms (ours), contrib.box_nms, contrib.ROIAlign (+ our
    `deterministic` last); multilevel_roi_align has none (GluonCV's _pyramid_roi_feats'
    defaults; spatial_scales defaults to 2 ** -(min_level + i), one per feature map)."""
    from ._dispatch import schema
    return {name: (tuple(i["name"] for i in s["inputs"]),
                   tuple((a["name"], _default(a)) for a in s["attrs"]))
            for name, s in schema().items()}


SIGNATURES = _signatures()

_PASS_THROUGH = {"ndarray": ("out", "name"), "symbol": ("name", "attr", "out")}


def _variadic(op):
    inputs = SIGNATURES[op][0]
    return inputs[-1][1:] if inputs and inputs[-1].startswith("*") else None


def _input_names(op, n):
    """Names of n inputs (a variadic input's as name[i]): the op table's own
    (csrc/common/op.cpp input_names)."""
    from ._lib import _C
    return list(_C.input_names(op, n))


def _bind_variadic(op, kind, args, kwargs):
    """_bind for an op whose last input is variadic: attributes by keyword only."""
    inputs = SIGNATURES[op][0]
    fixed, var = list(inputs[:-1]), inputs[-1][1:]
    groups = var.split(",")  # "a,b": a[0..k) then b[0..k), by keyword a=[...], b=[...]
    args = list(args)
    given = dict(zip(fixed, args))
    rest = args[len(fixed):]
    by_key = {}
    extra, attr_kw = {}, {}
    for key, value in kwargs.items():
        if key in given:
            raise TypeError("%s: got multiple values for argument '%s'" % (op, key))
        if key in fixed:
            given[key] = value
        elif key in groups:
            if rest:
                raise TypeError("%s: got %s both by position and by keyword" % (op, key))
            if not isinstance(value, (list, tuple)):
                raise TypeError("%s: %s must be a list or tuple, got %s" % (
                    op, key, type(value).__name__))
            by_key[key] = list(value)
        elif key in _PASS_THROUGH[kind]:
            extra[key] = value
        else:  # attributes, and unknown names (refused by the op, naming them)
            attr_kw[key] = value
    if by_key:
        missing = [g for g in groups if g not in by_key]
        if missing:
            raise TypeError("%s: got %s by keyword but not %s" % (
                op, ", ".join(by_key), ", ".join(missing)))
        rest = [x for g in groups for x in by_key[g]]
    attr_kw = {k: v for k, v in attr_kw.items() if v is not None}
    if op == "frcnn_multilevel_roi_align":
        _check_scales(op, attr_kw, len(rest))
    if op == "frcnn_multilevel_proposal":
        _check_levels(op, attr_kw, by_key, len(rest))
    return [given.get(name) for name in fixed] + rest, attr_kw, extra


def _check_levels(op, attr_kw, by_key, n):
    """num_levels: half the inputs after anchors and im_info (scores[i], then deltas[i])."""
    if by_key and len(by_key["scores"]) != len(by_key["deltas"]):
        raise ValueError("%s: got %d scores but %d deltas (one of each per level)" % (
            op, len(by_key["scores"]), len(by_key["deltas"])))
    if n == 0 or n % 2:
        raise TypeError("%s: needs scores[0] .. scores[L-1], then deltas[0] .. deltas[L-1] "
                        "after anchors and im_info (2 * L inputs), got %d" % (op, n))
    attr_kw.setdefault("num_levels", n // 2)  # a different one is refused by the op


def _check_scales(op, attr_kw, n):
    """spatial_scales: one per feature map (default 2 ** -(min_level + i))."""
    if n == 0:
        raise TypeError("%s: needs at least one feature map after rois" % op)
    scales = attr_kw.get("spatial_scales")
    if scales is None:
        lo = int(attr_kw.get("min_level", 2))
        attr_kw["spatial_scales"] = tuple(2.0 ** -(lo + i) for i in range(n))
        return
    if isinstance(scales, str):
        return  # the op parses and checks it
    try:
        m = len(scales)
    except TypeError:
        m = 1
    if m != n:
        raise ValueError("%s: got %d feature maps but spatial_scales has %d values (one per "
                         "feature map)" % (op, n, m))


def _bind(op, kind, args, kwargs):
    """(inputs, attributes, pass-through keywords) of one call, in the twin's conventions."""
    if _variadic(op) is not None:
        return _bind_variadic(op, kind, args, kwargs)
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

    def call(*args, **kwargs):
        values, attrs, extra = _bind(op, "ndarray", args, kwargs)
        for name, x in zip(_input_names(op, len(values)), values):
            if x is None:
                raise TypeError("%s: missing input '%s'" % (op, name))
            if not isinstance(x, nd_type):
                raise TypeError("%s: input '%s' must be an NDArray, got %s" % (
                    op, name, type(x).__name__))
        if mx.autograd.is_recording():
            # a leaf with an attached gradient may accumulate (grad_req='add'): identity's
            # backward adds or writes as asked, ours only writes (module docstring)
            values = [mx.nd.identity(x) if _LEAF_REQS.get(x.handle.value) != "write" and
                      x.grad is not None else x for x in values]
        return generated(*values, **attrs, **extra)

    return call


def _sym_wrapper(mx, op, generated):
    sym_type = mx.sym.Symbol
    hint = op.lower()

    def call(*args, **kwargs):
        values, attrs, extra = _bind(op, "symbol", args, kwargs)
        inputs = [n.replace("[", "").replace("]", "") for n in _input_names(op, len(values))]
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
    var = _variadic(op)
    if var is not None:
        params = [P(n, P.POSITIONAL_OR_KEYWORD, default=None) for n in inputs[:-1]]
        params += [P(var.replace(",", "_then_"), P.VAR_POSITIONAL)]
        params += [P(n, P.KEYWORD_ONLY, default=d) for n, d in attrs]
        params += [P(n, P.KEYWORD_ONLY, default=None) for n in _PASS_THROUGH[kind]]
        return inspect.Signature(params)
    params = [P(n, P.POSITIONAL_OR_KEYWORD, default=None) for n in inputs]
    params += [P(n, P.POSITIONAL_OR_KEYWORD, default=d) for n, d in attrs]
    params += [P(n, P.KEYWORD_ONLY, default=None) for n in _PASS_THROUGH[kind]]
    return inspect.Signature(params)


# grad_req of NDArray leaves by handle address, as set through the wrapped calls (module
# docstring); absent: unknown
_LEAF_REQS = {}


def _note_reqs(arrays, reqs):
    for x, r in zip(arrays, reqs):
        if x.handle is not None:
            _LEAF_REQS[x.handle.value] = r


def _track_leaf_reqs(mx):
    """Wraps the calls that set a leaf's grad_req, and NDArray deletion (idempotent)."""
    from mxnet._ctypes.ndarray import NDArrayBase
    classes = [mx.nd.NDArray] + ([mx.np.ndarray] if hasattr(mx, "np") else [])
    for cls in classes:
        attach = cls.__dict__.get("attach_grad")
        if attach is None or getattr(attach, "_frcnn_noted", False):
            continue

        def attach_grad(self, *args, _attach=attach, _sig=inspect.signature(attach), **kwargs):
            _LEAF_REQS.pop(self.handle.value, None)  # unknown if the call fails
            _attach(self, *args, **kwargs)
            bound = _sig.bind(self, *args, **kwargs)
            bound.apply_defaults()
            _note_reqs([self], [bound.arguments.get("grad_req")])
        attach_grad._frcnn_noted = True
        attach_grad.__doc__ = attach.__doc__
        cls.attach_grad = attach_grad

    mark = mx.autograd.mark_variables
    if not getattr(mark, "_frcnn_noted", False):
        def mark_variables(variables, gradients, grad_reqs="write"):
            vs = [variables] if isinstance(variables, mx.nd.NDArray) else list(variables)
            for v in vs:
                _LEAF_REQS.pop(v.handle.value, None)
            mark(variables, gradients, grad_reqs)
            _note_reqs(vs, [grad_reqs] * len(vs) if isinstance(grad_reqs, str) else grad_reqs)
        mark_variables._frcnn_noted = True
        mark_variables.__doc__ = mark.__doc__
        mx.autograd.mark_variables = mark_variables

    delete = NDArrayBase.__dict__.get("__del__")
    if delete is not None and not getattr(delete, "_frcnn_noted", False):
        def __del__(self, _delete=delete, _reqs=_LEAF_REQS):
            handle = getattr(self, "handle", None)
            if handle is not None and _reqs:
                _reqs.pop(handle.value, None)
            _delete(self)
        __del__._frcnn_noted = True
        NDArrayBase.__del__ = __del__


def install(mx):
    """Replaces MXNet's generated frcnn_* functions with the wrappers (idempotent)."""
    import sys
    _track_leaf_reqs(mx)
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
    if _variadic(op) is not None:
        head = ("%s(%s, *%s, %s): the frcnn_ops op as an MXNet %s function. Inputs by position "
                "(%s after %s); attributes by name. See frcnn_ops.%s for the "
                "semantics.\n\n" % (op, ", ".join(inputs[:-1]),
                                    _variadic(op).replace(",", "_then_"),
                                    ", ".join(a for a, _ in attrs),
                                    "NDArray" if kind == "ndarray" else "Symbol",
                                    " then ".join("the %s" % g for g in _variadic(op).split(",")),
                                    ", ".join(inputs[:-1]), python_name))
        return head + (getattr(frcnn_ops, python_name).__doc__ or "")
    head = ("%s(%s): the frcnn_ops op as an MXNet %s function. Inputs by position or by name "
            "(%s); attributes by name or by position in this order: %s. See "
            "frcnn_ops.%s for the semantics.\n\n" % (
                op, ", ".join(list(inputs) + [a for a, _ in attrs]),
                "NDArray" if kind == "ndarray" else "Symbol", ", ".join(inputs),
                ", ".join(a for a, _ in attrs) or "(none)", python_name))
    return head + (getattr(frcnn_ops, python_name).__doc__ or "")
