"""mx.nd.frcnn_* / mx.sym.frcnn_* take their contrib twins' calling conventions (inputs by
position or keyword, attributes by keyword or position, name=, out=) and accumulate gradients
under grad_req='add' as the twins do (frcnn_ops/_mxnet_api.py). README: compatibility table."""
import json

import numpy as np
import pytest

import frcnn_ops

mx = pytest.importorskip("mxnet")


@pytest.fixture(autouse=True)
def _loaded(mx):  # noqa: F811  (conftest's fixture loads the op library)
    return mx


def _decode_case(rng):
    d = rng.normal(0, 0.3, size=(2, 40, 4)).astype(np.float32)
    xy = rng.uniform(0, 100, size=(1, 40, 2))
    a = np.concatenate([xy, xy + rng.uniform(5, 50, size=(1, 40, 2))], -1).astype(np.float32)
    return d, a


def _roi_case(rng, R=12):
    data = rng.normal(size=(2, 4, 10, 12)).astype(np.float32)
    xy = rng.uniform(0, 30, size=(R, 2))
    rois = np.concatenate([rng.integers(0, 2, size=(R, 1)), xy, xy + rng.uniform(4, 15, (R, 2))],
                          1).astype(np.float32)
    return data, rois


def _nms_case(rng):
    x = np.zeros((2, 50, 6), np.float32)
    x[..., 0] = rng.integers(0, 3, size=(2, 50))
    x[..., 1] = rng.uniform(size=(2, 50))
    xy = rng.uniform(0, 60, size=(2, 50, 2))
    x[..., 2:4], x[..., 4:6] = xy, xy + rng.uniform(5, 40, size=(2, 50, 2))
    return x


# ---- calling conventions -------------------------------------------------------------------

def test_box_decode_conventions(rng):
    d, a = (mx.nd.array(v) for v in _decode_case(rng))
    twin = mx.nd.contrib.box_decode(d, a, .1, .1, .2, .2, -1, "corner").asnumpy()
    calls = [
        lambda: mx.nd.frcnn_box_decode(d, a, .1, .1, .2, .2, -1, "corner"),
        lambda: mx.nd.frcnn_box_decode(d, a, .1, .1, .2, .2, format="corner"),
        lambda: mx.nd.frcnn_box_decode(data=d, anchors=a, std0=.1, std1=.1, std2=.2, std3=.2,
                                       format="corner"),
        lambda: mx.nd.frcnn_box_decode(d, anchors=a, std0=.1, std1=.1, std2=.2, std3=.2,
                                       format="corner", name="dec"),
    ]
    for call in calls:
        np.testing.assert_array_equal(call().asnumpy(), twin)
    out = mx.nd.zeros(d.shape)
    res = mx.nd.frcnn_box_decode(d, a, .1, .1, .2, .2, format="corner", out=out)
    assert res is out
    np.testing.assert_array_equal(out.asnumpy(), twin)


def test_nms_and_roi_align_conventions(rng):
    x = mx.nd.array(_nms_case(rng))
    twin = mx.nd.contrib.box_nms(x, 0.5, 0.1, 20, 2, 1, 0).asnumpy()
    for ours in (mx.nd.frcnn_nms(x, 0.5, 0.1, 20, 2, 1, 0),
                 mx.nd.frcnn_nms(data=x, overlap_thresh=0.5, valid_thresh=0.1, topk=20,
                                 id_index=0)):
        np.testing.assert_array_equal(ours.asnumpy(), twin)
    data, rois = (mx.nd.array(v) for v in _roi_case(rng))
    twin = mx.nd.contrib.ROIAlign(data, rois, (3, 3), 0.5, 2).asnumpy()
    for ours in (mx.nd.frcnn_roi_align(data, rois, (3, 3), 0.5, 2),
                 mx.nd.frcnn_roi_align(data=data, rois=rois, pooled_size=(3, 3),
                                       spatial_scale=0.5, sample_ratio=2)):
        np.testing.assert_allclose(ours.asnumpy(), twin, rtol=1e-5, atol=1e-6)


def test_symbols_by_keyword_bind_and_export(rng, tmp_path):
    data, rois = _roi_case(rng)
    s = mx.sym.frcnn_roi_align(data=mx.sym.var("data"), rois=mx.sym.var("rois"),
                               pooled_size=(2, 2), spatial_scale=0.5, name="pool")
    t = mx.sym.contrib.ROIAlign(data=mx.sym.var("data"), rois=mx.sym.var("rois"),
                                pooled_size=(2, 2), spatial_scale=0.5)
    assert s.list_arguments() == t.list_arguments() == ["data", "rois"]
    args = {"data": mx.nd.array(data), "rois": mx.nd.array(rois)}
    ours = s.bind(mx.cpu(), args).forward()[0].asnumpy()
    np.testing.assert_allclose(ours, t.bind(mx.cpu(), args).forward()[0].asnumpy(), rtol=1e-5,
                               atol=1e-6)
    # inputs left out become variables named after the op, as with contrib
    v = mx.sym.frcnn_nms(overlap_thresh=0.5, name="n")
    assert v.list_arguments() == ["n_data"]
    # export and load back as a SymbolBlock
    s.save(str(tmp_path / "s.json"))
    blk = mx.gluon.SymbolBlock.imports(str(tmp_path / "s.json"), ["data", "rois"])
    np.testing.assert_array_equal(blk(*[args[k] for k in ("data", "rois")]).asnumpy(), ours)


def test_hybridized_block_keyword_and_positional(rng):
    class Net(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, d, a):
            x = F.frcnn_box_decode(data=d, anchors=a, std0=.1, std1=.1, std2=.2, std3=.2,
                                   format="corner")
            return F.frcnn_clip_boxes(x, F.slice_axis(d, axis=1, begin=0, end=1).reshape(
                (0, -1)) * 0 + 100)

    d, a = (mx.nd.array(v) for v in _decode_case(rng))
    net = Net()
    eager = net(d, a).asnumpy()
    net.hybridize()
    np.testing.assert_array_equal(net(d, a).asnumpy(), eager)


def test_bad_calls_name_the_op_and_argument(rng):
    d, a = (mx.nd.array(v) for v in _decode_case(rng))
    with pytest.raises(TypeError, match="frcnn_box_decode: got multiple values for argument "
                                        "'anchors'"):
        mx.nd.frcnn_box_decode(d, a, anchors=a)
    with pytest.raises(TypeError, match="frcnn_box_decode takes at most 8 positional"):
        mx.nd.frcnn_box_decode(d, a, 1, 1, 1, 1, -1, "corner", 3)
    with pytest.raises(TypeError, match="frcnn_roi_align: missing input 'rois'"):
        mx.nd.frcnn_roi_align(d, pooled_size=2, spatial_scale=1.0)
    with pytest.raises(TypeError, match="frcnn_nms: input 'data' must be an NDArray, got ndarray"):
        mx.nd.frcnn_nms(np.zeros((1, 4, 6), np.float32))
    with pytest.raises(mx.base.MXNetError, match="frcnn_nms: unknown attribute 'sampling'"):
        mx.nd.frcnn_nms(mx.nd.zeros((1, 4, 6)), sampling=2).wait_to_read()


# ---- grad_req='add' ------------------------------------------------------------------------

def _leaf_grads(fn, inputs, req, times=2):
    xs = [mx.nd.array(v) for v in inputs]
    for x in xs:
        x.attach_grad(grad_req=req)
    for t in range(times):
        with mx.autograd.record():
            y = fn(*xs)
        y.backward(mx.nd.ones_like(y) * (t + 1))
    return [x.grad.asnumpy() for x in xs]


@pytest.mark.parametrize("op", ["roi_align", "box_decode", "clip_boxes", "nms"])
def test_grad_req_add_on_leaves_accumulates(rng, op):
    if op == "roi_align":
        inputs = _roi_case(rng)
        ours = lambda d, r: mx.nd.frcnn_roi_align(d, r, (2, 2), 0.5, 2)  # noqa: E731
        twin = lambda d, r: mx.nd.contrib.ROIAlign(d, r, (2, 2), 0.5, 2)  # noqa: E731
    elif op == "box_decode":  # contrib.box_decode has no gradient (zeros): ours is d out/d data
        inputs = _decode_case(rng)
        ours = lambda d, a: mx.nd.frcnn_box_decode(d, a, format="corner")  # noqa: E731
        twin = None
    elif op == "clip_boxes":
        inputs = (rng.uniform(-20, 120, size=(2, 30, 4)).astype(np.float32),
                  np.array([[100, 80], [60, 90]], np.float32))
        ours = mx.nd.frcnn_clip_boxes
        twin = None
    else:
        inputs = (_nms_case(rng),)
        ours = lambda x: mx.nd.frcnn_nms(x, 0.5, id_index=0)  # noqa: E731
        twin = lambda x: mx.nd.contrib.box_nms(x, 0.5, id_index=0)  # noqa: E731
    once = _leaf_grads(ours, inputs, "write", times=1)
    added = _leaf_grads(ours, inputs, "add", times=2)
    written = _leaf_grads(ours, inputs, "write", times=2)
    for g1, g_add, g_w in zip(once, added, written):
        np.testing.assert_allclose(g_add, 3 * g1, rtol=1e-6, atol=1e-6)  # 1x + 2x
        np.testing.assert_allclose(g_w, 2 * g1, rtol=1e-6, atol=1e-6)
    if op == "nms":  # box_nms's backward ignores the request: it overwrites (MXNet 1.9.1)
        np.testing.assert_allclose(_leaf_grads(twin, inputs, "add", times=2)[0], 2 * once[0])
        np.testing.assert_allclose(_leaf_grads(twin, inputs, "write", times=1)[0], once[0])
    elif twin is not None:
        for g_ours, g_twin in zip(added, _leaf_grads(twin, inputs, "add", times=2)):
            np.testing.assert_allclose(g_ours, g_twin, rtol=1e-5, atol=1e-5)


def _graph_ops(y):
    return [n["op"] for n in json.loads(mx.autograd.get_symbol(y).tojson())["nodes"]]


def test_leaves_known_to_write_skip_identity(rng):
    """A leaf's grad_req set through attach_grad / autograd.mark_variables is noted (module
    docstring of frcnn_ops/_mxnet_api.py): 'write' leaves feed the op directly, any other or an
    unknown request goes through identity, and the gradients stay right either way."""
    from frcnn_ops import _mxnet_api
    data, rois = _roi_case(rng)
    op = lambda d, r: mx.nd.frcnn_roi_align(d, r, (2, 2), 0.5, 2)  # noqa: E731
    once = _leaf_grads(op, (data, rois), "write", times=1)[0]

    def graph(x):
        r = mx.nd.array(rois)
        with mx.autograd.record():
            y = op(x, r)
        ops = _graph_ops(y)
        y.backward(mx.nd.ones_like(y))
        return ops
    x = mx.nd.array(data)
    x.attach_grad()                               # 'write' by default
    assert "_copy" not in graph(x)
    np.testing.assert_allclose(x.grad.asnumpy(), once, rtol=1e-6)
    x.attach_grad(grad_req="add")                 # the same array, now accumulating
    x.grad[:] = 1
    assert "_copy" in graph(x)
    np.testing.assert_allclose(x.grad.asnumpy(), 1 + once, rtol=1e-6)
    g = mx.nd.zeros(data.shape)
    mx.autograd.mark_variables([x], [g], ["write"])
    assert "_copy" not in graph(x)
    mx.autograd.mark_variables(x, g, "add")
    assert "_copy" in graph(x)
    np.testing.assert_allclose(g.asnumpy(), 2 * once, rtol=1e-6)
    # a request set behind the wrapped calls is unknown: identity
    key = x.handle.value
    del _mxnet_api._LEAF_REQS[key]
    assert "_copy" in graph(x)
    # a deleted array's entry goes with it (its handle may be reused by another array)
    x.attach_grad()
    assert _mxnet_api._LEAF_REQS[key] == "write"
    del x
    assert key not in _mxnet_api._LEAF_REQS


def test_leaf_requests_of_numpy_arrays_and_positional_arguments(rng):
    """mx.np arrays (whose attach_grad takes no stype) and a request given by position are
    noted too."""
    from frcnn_ops import _mxnet_api
    x = mx.nd.ones((2, 3))
    x.attach_grad("add")
    assert _mxnet_api._LEAF_REQS[x.handle.value] == "add"
    y = mx.np.ones((2, 3))
    y.attach_grad()
    assert _mxnet_api._LEAF_REQS[y.handle.value] == "write"
    y.attach_grad(grad_req="add")
    assert _mxnet_api._LEAF_REQS[y.handle.value] == "add"


def test_gluon_parameter_grad_req_add_accumulates(rng):
    """A Gluon parameter fed straight to an op (grad_req set through mark_variables) keeps
    accumulating when switched to 'add'."""
    data, rois = _roi_case(rng)
    p = mx.gluon.Parameter("feat", shape=data.shape)
    p.initialize(mx.init.Constant(0))
    p.set_data(mx.nd.array(data))
    r = mx.nd.array(rois)

    def step():
        with mx.autograd.record():
            y = mx.nd.frcnn_roi_align(p.data(), r, (2, 2), 0.5, 2)
        y.backward(mx.nd.ones_like(y))
        return p.grad().asnumpy().copy()
    once = step()
    assert np.abs(once).sum() > 0
    np.testing.assert_allclose(step(), once, rtol=1e-6)     # 'write'
    p.grad_req = "add"
    p.zero_grad()
    step()
    np.testing.assert_allclose(step(), 2 * once, rtol=1e-6)


def test_grad_req_add_in_a_bound_symbol(rng):
    data, rois = _roi_case(rng)
    for make in (mx.sym.frcnn_roi_align, mx.sym.contrib.ROIAlign):
        s = make(mx.sym.var("data"), mx.sym.var("rois"), pooled_size=(2, 2), spatial_scale=0.5)
        ex = s.simple_bind(mx.cpu(), data=data.shape, rois=rois.shape, grad_req="add")
        ex.arg_dict["data"][:] = data
        ex.arg_dict["rois"][:] = rois
        ex.grad_dict["data"][:] = 1.0
        for _ in range(2):
            ex.forward(is_train=True)
            ex.backward(mx.nd.ones(ex.outputs[0].shape))
        g = ex.grad_dict["data"].asnumpy()
        if make is mx.sym.frcnn_roi_align:
            ours = g
        else:
            np.testing.assert_allclose(ours, g, rtol=1e-5, atol=1e-5)
    assert (ours != 1.0).any()


class _Head(mx.gluon.HybridBlock):
    """The model's shape of graph: a conv feature map read by two consumers (an RPN-like conv
    and ROIAlign + a dense head), parameters accumulating their gradients."""

    def __init__(self, contrib, **kw):
        super().__init__(**kw)
        self.contrib = contrib
        with self.name_scope():
            self.conv = mx.gluon.nn.Conv2D(6, 3, padding=1, in_channels=3)
            self.rpn = mx.gluon.nn.Conv2D(2, 1, in_channels=6)
            self.fc = mx.gluon.nn.Dense(5, in_units=6 * 4)

    def hybrid_forward(self, F, x, rois):
        feat = self.conv(x)
        pool = (F.contrib.ROIAlign(feat, rois, (2, 2), 0.5, 2) if self.contrib else
                F.frcnn_roi_align(feat, rois, (2, 2), 0.5, 2))
        return F.sum(self.fc(pool)) + F.sum(self.rpn(feat) ** 2)


@pytest.mark.parametrize("hybridize", [False, True])
def test_training_graph_accumulates_like_contrib(rng, hybridize):
    """Gradient accumulation over several batches with parameter grad_req='add' gives the same
    gradients as the same graph on contrib.ROIAlign."""
    batches = [(rng.normal(size=(2, 3, 12, 14)).astype(np.float32), _roi_case(rng, 9)[1])
               for _ in range(3)]
    grads = []
    for contrib in (False, True):
        net = _Head(contrib, prefix="head_")
        net.initialize(mx.init.Xavier(rnd_type="gaussian", magnitude=2))
        for i, p in enumerate(net.collect_params().values()):
            p.set_data(mx.nd.array(np.random.default_rng(i).normal(size=p.shape)) * 0.1)
            p.grad_req = "add"
            p.zero_grad()
        if hybridize:
            net.hybridize()
        for x, rois in batches:
            with mx.autograd.record():
                loss = net(mx.nd.array(x), mx.nd.array(rois))
            loss.backward()
        grads.append({k.split("_", 1)[1]: p.grad().asnumpy()
                      for k, p in net.collect_params().items()})
    for k in grads[0]:
        np.testing.assert_allclose(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_training_graph_with_addto_executor(tmp_path):
    """MXNET_EXEC_ENABLE_ADDTO=1 (MXNet's in-place gradient aggregation, read when MXNet
    loads): the same accumulation test in a fresh process gives contrib's gradients too."""
    import os
    import subprocess
    import sys
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(frcnn_ops.__file__)))
    env = dict(os.environ, MXNET_EXEC_ENABLE_ADDTO="1", PYTHONPATH=pkg_root)  # this frcnn_ops
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        os.path.abspath(__file__), "-k", "training_graph_accumulates"],
                       env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "2 passed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def test_numpy_functions_unchanged(rng):
    d, a = _decode_case(rng)
    np.testing.assert_array_equal(
        frcnn_ops.box_decode(d, a, format="corner"),
        mx.nd.frcnn_box_decode(mx.nd.array(d), mx.nd.array(a), format="corner").asnumpy())
