"""roi_align: NumPy reference, MXNet contrib parity (forward and backward), gradients, thread-count
determinism, edge cases (empty, invalid batch index, NaN, out-of-map, tiny rois), bad input,
hybridized blocks, GPU (CuPy) parity."""
import numpy as np
import pytest

import frcnn_ops
from frcnn_ops import _C, _dispatch
from frcnn_ops import reference as ref

OP = "frcnn_roi_align"


def make_rois(rng, R, N, H, W, scale, dtype=np.float32, positive=True):
    """R rois in image coordinates over an (H, W) map at `scale`: some partly or wholly
    outside, some under one feature pixel, batch indices over N images."""
    ih, iw = H / scale, W / scale
    xy = rng.uniform(-0.3, 1.1, size=(R, 2)) * [iw, ih]
    wh = rng.uniform(0.05, 0.8, size=(R, 2)) * [iw, ih]
    tiny = rng.random(R) < 0.25
    wh[tiny] = rng.uniform(0.05, 0.9, size=(tiny.sum(), 2)) / scale  # under one feature pixel
    if not positive:
        wh[rng.random(R) < 0.2] *= -0.3                              # malformed (x2 < x1)
    b = rng.integers(0, N, size=(R, 1))
    rois = np.concatenate([b, xy, xy + wh], axis=1)
    rois[0, 1:] = [-5 / scale, -4 / scale, -2 / scale, -1 / scale]  # wholly outside, top left
    rois[1 % R, 1:] = [iw + 3 / scale, ih, iw + 9 / scale, ih + 5 / scale]  # bottom right
    return rois.astype(dtype)


def make_case(rng, N=2, C=8, H=10, W=13, R=12, scale=0.25, dtype=np.float32, positive=True):
    data = rng.normal(size=(N, C, H, W)).astype(dtype)
    return data, make_rois(rng, R, N, H, W, scale, dtype, positive)


CONFIGS = [  # (pooled_size, sample_ratio, position_sensitive, aligned)
    ((3, 4), 2, False, False),
    ((2, 2), -1, False, False),
    ((3, 3), 1, False, True),
    ((2, 3), -1, False, True),
    ((2, 2), 2, True, False),
    ((2, 2), -1, True, True),
]


def _kw(cfg, scale):
    ps, sr, psn, al = cfg
    return dict(pooled_size=ps, spatial_scale=scale, sample_ratio=sr, position_sensitive=psn,
                aligned=al)


def _backward_np(g, rois, shape, cfg, scale):
    ps, sr, psn, al = cfg
    return frcnn_ops.roi_align_backward(g, rois, list(shape), list(ps), scale, sr, psn, al)


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


# ---- NumPy path against the NumPy reference -----------------------------------------------

# R = 3 takes the direct kernels, R = 40 the channel-blocked ones (C = 70: a partial block)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("R,C", [(3, 8), (40, 8), (40, 72)])
def test_numpy_matches_reference(rng, dtype, cfg, R, C):
    if cfg[2] and C % (cfg[0][0] * cfg[0][1]):
        pytest.skip("C not divisible")
    data, rois = make_case(rng, C=C, R=R, dtype=dtype, positive=False)
    kw = _kw(cfg, 0.25)
    out = frcnn_ops.roi_align(data, rois, **kw)
    exp = ref.roi_align(data, rois, **kw)
    assert out.dtype == dtype and out.shape == exp.shape
    np.testing.assert_allclose(out, exp, **_tol(dtype))
    g = rng.normal(size=out.shape).astype(dtype)
    gd = _backward_np(g, rois, data.shape, cfg, 0.25)
    np.testing.assert_allclose(gd, ref.roi_align_backward(g, rois, data.shape, **kw),
                               **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rois_in_row_order_take_the_row_ring(rng, dtype):
    """Rois sorted by their top edge over a tall map (more than 4096 pixels: narrow channel
    blocks) pool through a row ring smaller than the map (csrc/roi_align/roi_align_cpu.cpp)."""
    data = rng.normal(size=(1, 20, 200, 40)).astype(dtype)
    xy = rng.uniform(0, [150, 750], size=(300, 2))
    wh = rng.uniform(4, 40, size=(300, 2))
    rois = np.concatenate([np.zeros((300, 1)), xy, xy + wh], 1).astype(dtype)
    rois = rois[np.argsort(rois[:, 2], kind="stable")]
    kw = dict(pooled_size=(7, 7), spatial_scale=0.25, sample_ratio=2)
    out = frcnn_ops.roi_align(data, rois, **kw)
    np.testing.assert_allclose(out, ref.roi_align(data, rois, **kw), **_tol(dtype))
    g = rng.normal(size=out.shape).astype(dtype)
    np.testing.assert_allclose(frcnn_ops.roi_align_backward(g, rois, data.shape, **kw),
                               ref.roi_align_backward(g, rois, data.shape, **kw), **_tol(dtype))


def test_output_shapes():
    data = np.zeros((1, 18, 5, 5), np.float32)
    rois = np.array([[0, 0, 0, 4, 4]], np.float32)
    assert frcnn_ops.roi_align(data, rois, (3, 2), 1.0).shape == (1, 18, 3, 2)
    assert frcnn_ops.roi_align(data, rois, 3, 1.0, position_sensitive=True).shape == (1, 2, 3, 3)


def test_zero_rois(mx):
    data = np.ones((1, 4, 6, 6), np.float32)
    rois = np.zeros((0, 5), np.float32)
    assert frcnn_ops.roi_align(data, rois, 2, 1.0).shape == (0, 4, 2, 2)
    gd = frcnn_ops.roi_align_backward(np.zeros((0, 4, 2, 2), np.float32), rois, [1, 4, 6, 6], [2, 2],
                               1.0, -1, False, False)
    assert gd.shape == data.shape and not gd.any()
    # MXNet 1.x's legacy shapes read a 0 as "unknown": zero-size arrays need np_shape
    with mx.util.np_shape(True):
        x = mx.nd.array(data)
        x.attach_grad()
        with mx.autograd.record():
            y = mx.nd.frcnn_roi_align(x, mx.nd.array(rois), pooled_size=(2, 2),
                                      spatial_scale=1.0)
        assert y.shape == (0, 4, 2, 2)
        y.backward()
        assert not x.grad.asnumpy().any()


@pytest.mark.parametrize("R", [10, 200])  # direct and blocked kernels
def test_invalid_batch_index_gives_zeros(rng, R):
    data, rois = make_case(rng, N=2, R=R)
    bad = [-1, 2, 7, np.nan, -1.5, np.inf]
    for k, b in enumerate(bad):
        rois[k, 0] = b
    rois[len(bad), 0] = 1.7   # truncated to 1 like MXNet: valid
    rois[len(bad) + 1, 0] = -0.5  # truncated to 0: valid
    out = frcnn_ops.roi_align(data, rois, 2, 0.25)
    assert not out[:len(bad)].any() and np.isfinite(out).all()
    np.testing.assert_allclose(out, ref.roi_align(data, rois, 2, 0.25), rtol=1e-5, atol=1e-5)
    # no gradient flows from them
    g = np.zeros_like(out)
    g[:len(bad)] = 1
    gd = frcnn_ops.roi_align_backward(g, rois, list(data.shape), [2, 2], 0.25, -1, False, False)
    assert not gd.any()


@pytest.mark.parametrize("aligned", [False, True])
def test_nonfinite_rois_give_zeros(rng, aligned):
    data, rois = make_case(rng, N=1, R=40)
    bad = [[0, np.nan, 1, 5, 5], [0, 1, 1, np.inf, 5], [0, -np.inf, 1, 5, 5],
           [0, 1, np.nan, np.nan, np.nan]]
    rois[:4] = bad
    # finite but absurd: overflowing geometry, huge adaptive grids; must not crash
    rois[4] = [0, -3e38, -3e38, 3e38, 3e38]
    rois[5] = [0, 1e6, 1e6, 2e6, 2e6]
    rois[6] = [0, -1e5, -1e5, 1e5, 1e5]
    for sr in (-1, 2):
        out = frcnn_ops.roi_align(data, rois, 3, 0.25, sample_ratio=sr, aligned=aligned)
        assert np.isfinite(out).all()
        assert not out[:4].any()
        assert not out[5].any()  # wholly outside the map
        g = np.ones_like(out)
        gd = frcnn_ops.roi_align_backward(g, rois, list(data.shape), [3, 3], 0.25, sr, False, aligned)
        assert np.isfinite(gd).all()
        g[4:] = 0
        assert not frcnn_ops.roi_align_backward(g, rois, list(data.shape), [3, 3], 0.25, sr, False,
                                         aligned).any()


def test_aligned_empty_roi_gives_zeros():
    # aligned: no size clamp; an adaptive grid over a roi of size <= 0 is empty -> zeros
    data = np.ones((1, 2, 6, 6), np.float32)
    rois = np.array([[0, 8, 8, 8, 12], [0, 8, 8, 4, 4], [0, 8, 8, 16, 16]], np.float32)
    out = frcnn_ops.roi_align(data, rois, 2, 0.25, aligned=True)
    assert not out[:2].any() and (out[2] == 1).all()
    np.testing.assert_array_equal(out, ref.roi_align(data, rois, 2, 0.25, aligned=True))


def test_data_values_are_interpolated_exactly():
    # a linear ramp is reproduced exactly by bilinear sampling inside the map
    H, W = 8, 10
    yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    data = np.stack([xx, yy]).astype(np.float64)[None]
    rois = np.array([[0, 1, 2, 5, 6]], np.float64)
    out = frcnn_ops.roi_align(data, rois, (2, 2), 1.0, sample_ratio=2)
    np.testing.assert_allclose(out[0, 0], [[2, 4], [2, 4]])
    np.testing.assert_allclose(out[0, 1], [[3, 3], [5, 5]])


# ---- MXNet: parity with contrib, gradients, threads, hybridize ---------------------------

def _mx_pair(mx, data, rois, kw, op):
    x = mx.nd.array(data, dtype=data.dtype)
    x.attach_grad()
    r = mx.nd.array(rois, dtype=rois.dtype)
    with mx.autograd.record():
        y = op(x, r, **kw)
    g = np.random.default_rng(1).normal(size=y.shape).astype(data.dtype)
    y.backward(mx.nd.array(g, dtype=data.dtype))
    return y.asnumpy(), x.grad.asnumpy()


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("R", [4, 60])
def test_matches_mxnet_contrib(mx, rng, cfg, R):
    C = 8 if cfg[2] else 70
    data, rois = make_case(rng, N=2, C=C, R=R, positive=True)  # contrib aborts on empty aligned rois
    kw = _kw(cfg, 0.25)
    ours, ours_g = _mx_pair(mx, data, rois, kw, mx.nd.frcnn_roi_align)
    theirs, theirs_g = _mx_pair(mx, data, rois, kw, mx.nd.contrib.ROIAlign)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(ours_g, theirs_g, rtol=1e-5, atol=2e-5)


def test_matches_mxnet_contrib_seed_like(mx, rng):
    # seed settings (14x14, 1/16, sample_ratio 2) on a small map, with invalid batch rows that
    # contrib leaves uninitialised: those are compared to zero, the others to contrib
    data = rng.normal(size=(2, 16, 12, 16)).astype(np.float32)
    R = 50
    wh = rng.uniform(4, 200, size=(R, 2))
    xy = rng.uniform(0, 1, size=(R, 2)) * (np.array([256, 192]) - wh)
    rois = np.concatenate([rng.integers(0, 2, (R, 1)), xy, xy + wh], 1).astype(np.float32)
    rois[:3, 0] = [-1, 2, 5]
    kw = dict(pooled_size=(14, 14), spatial_scale=1 / 16, sample_ratio=2)
    ours, _ = _mx_pair(mx, data, rois, kw, mx.nd.frcnn_roi_align)
    assert not ours[:3].any()
    ours3, ours3_g = _mx_pair(mx, data, rois[3:], kw, mx.nd.frcnn_roi_align)
    theirs3, theirs3_g = _mx_pair(mx, data, rois[3:], kw, mx.nd.contrib.ROIAlign)
    np.testing.assert_array_equal(ours[3:], ours3)
    np.testing.assert_allclose(ours3, theirs3, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(ours3_g, theirs3_g, rtol=1e-5, atol=2e-5)


def test_float64_matches_mxnet_contrib(mx, rng):
    data, rois = make_case(rng, N=2, C=6, R=30, dtype=np.float64)
    kw = dict(pooled_size=(3, 3), spatial_scale=0.25, sample_ratio=-1)
    ours, ours_g = _mx_pair(mx, data, rois, kw, mx.nd.frcnn_roi_align)
    theirs, theirs_g = _mx_pair(mx, data, rois, kw, mx.nd.contrib.ROIAlign)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours_g, theirs_g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[3], CONFIGS[5]])
def test_gradient_float64_finite_differences(mx, rng, cfg):
    ps = cfg[0]
    C = ps[0] * ps[1] if cfg[2] else 2
    data, rois = make_case(rng, N=2, C=C, H=5, W=6, R=5, scale=0.5, dtype=np.float64)
    kw = _kw(cfg, 0.5)
    x = mx.nd.array(data, dtype="float64")
    r = mx.nd.array(rois, dtype="float64")
    x.attach_grad()
    r.attach_grad()
    w = rng.normal(size=ref.roi_align(data, rois, **kw).shape)
    with mx.autograd.record():
        loss = (mx.nd.frcnn_roi_align(x, r, **kw) * mx.nd.array(w, dtype="float64")).sum()
    loss.backward()
    num = np.zeros_like(data)
    flat, nflat, eps = data.reshape(-1), num.reshape(-1), 1e-4
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = (ref.roi_align(data, rois, **kw) * w).sum()
        flat[i] = old - eps
        lo = (ref.roi_align(data, rois, **kw) * w).sum()
        flat[i] = old
        nflat[i] = (hi - lo) / (2 * eps)
    np.testing.assert_allclose(x.grad.asnumpy(), num, rtol=1e-7, atol=1e-9)
    assert not r.grad.asnumpy().any()


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[1], CONFIGS[4]])
@pytest.mark.parametrize("R", [3, 300])
def test_backward_bitwise_identical_across_thread_counts(mx, rng, cfg, R):
    C = 136 if not cfg[2] else 16
    data, rois = make_case(rng, N=2, C=C, H=9, W=11, R=R)
    out = frcnn_ops.roi_align(data, rois, **_kw(cfg, 0.25))
    g = rng.normal(size=out.shape).astype(np.float32)
    old = frcnn_ops.get_num_threads()
    results, mx_results = [], []
    try:
        for nt in (1, 2, 3):
            frcnn_ops.set_num_threads(nt)
            results.append(_backward_np(g, rois, data.shape, cfg, 0.25))
            x = mx.nd.array(data)
            x.attach_grad()
            with mx.autograd.record():
                y = mx.nd.frcnn_roi_align(x, mx.nd.array(rois), **_kw(cfg, 0.25))
            y.backward(mx.nd.array(g))
            mx_results.append(x.grad.asnumpy())
            np.testing.assert_array_equal(y.asnumpy(), out)
    finally:
        frcnn_ops.set_num_threads(old)
    for a in results[1:] + mx_results:
        assert a.tobytes() == results[0].tobytes()


def _roi_block(mx):
    class Head(mx.gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            with self.name_scope():
                self.conv = mx.gluon.nn.Conv2D(4, 1, in_channels=6)

        def hybrid_forward(self, F, x, rois):
            feat = self.conv(x)
            pooled = frcnn_ops.roi_align(feat, rois, (3, 3), 0.25, sample_ratio=2)
            return F.sum(pooled, axis=(2, 3))
    return Head()


def test_hybridized_block_and_backward(mx, rng, tmp_path):
    data, rois = make_case(rng, N=2, C=6, R=7)
    net = _roi_block(mx)
    net.initialize(mx.init.Normal(0.5))
    x, r = mx.nd.array(data), mx.nd.array(rois)
    eager = net(x, r).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    hybrid = net(x, r).asnumpy()
    np.testing.assert_allclose(hybrid, eager, rtol=1e-6, atol=1e-6)
    x.attach_grad()
    with mx.autograd.record():
        y = net(x, r).sum()
    y.backward()
    gx = x.grad.asnumpy()
    assert np.isfinite(gx).all() and gx.any()
    assert np.isfinite(net.conv.weight.grad().asnumpy()).all()
    prefix = str(tmp_path / "head")
    net.export(prefix)
    sb = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data0", "data1"],
                                      prefix + "-0000.params")
    np.testing.assert_allclose(sb(x, r).asnumpy(), eager, rtol=1e-6, atol=1e-6)


def test_symbol_api(mx):
    s = mx.sym.frcnn_roi_align(mx.sym.var("d"), mx.sym.var("r"), pooled_size=(7, 7),
                               spatial_scale=0.0625, sample_ratio=2)
    _, out_shapes, _ = s.infer_shape(d=(2, 256, 38, 50), r=(300, 5))
    assert out_shapes == [(300, 256, 7, 7)]
    s = mx.sym.frcnn_roi_align(mx.sym.var("d"), mx.sym.var("r"), pooled_size=(3, 3),
                               spatial_scale=0.0625, position_sensitive=True)
    _, out_shapes, _ = s.infer_shape(d=(1, 18, 10, 10), r=(4, 5))
    assert out_shapes == [(4, 2, 3, 3)]


def test_deterministic_attribute_accepted_on_cpu(mx, rng):
    data, rois = make_case(rng, R=5)
    a = frcnn_ops.roi_align(mx.nd.array(data), mx.nd.array(rois), 2, 0.25, deterministic=True)
    np.testing.assert_array_equal(a.asnumpy(), frcnn_ops.roi_align(data, rois, 2, 0.25))


# ---- Bad input ----------------------------------------------------------------------------

def _bad_calls(zeros):
    d, r = zeros((1, 8, 6, 6)), zeros((3, 5))
    return [
        ((zeros((8, 6, 6)), r), {}, "data must have shape (N, C, H, W)"),
        ((d, zeros((3, 4))), {}, "rois must have shape (R, 5)"),
        ((d, zeros((3, 5, 1))), {}, "rois must have shape (R, 5)"),
        ((d, r), {"position_sensitive": True, "pooled_size": (2, 3)},
         "position_sensitive needs C divisible by pooled_h * pooled_w = 6"),
        ((d, r), {"pooled_size": (0, 2)}, "pooled_size must be positive"),
        ((d, r), {"pooled_size": (-1, 2)}, "pooled_size must be positive"),
        ((d, r), {"spatial_scale": 0.0}, "spatial_scale must be a positive finite number"),
        ((d, r), {"spatial_scale": -1.0}, "spatial_scale must be a positive finite number"),
    ]


def test_bad_input_empty_map():
    # (through MXNet 1.x a 0 in a shape means "unknown", so only the NumPy path can pass it)
    with pytest.raises(ValueError, match=OP + ": data must have H >= 1 and W >= 1"):
        frcnn_ops.roi_align(np.zeros((1, 8, 0, 6), np.float32), np.zeros((3, 5), np.float32),
                            2, 1.0)


def test_bad_input_numpy():
    zeros = lambda s: np.zeros(s, np.float32)  # noqa: E731
    for args, kw, msg in _bad_calls(zeros):
        kw = dict(dict(pooled_size=(2, 2), spatial_scale=1.0), **kw)
        with pytest.raises(ValueError, match=OP) as e:
            frcnn_ops.roi_align(*args, **kw)
        assert msg in str(e.value)
    with pytest.raises(TypeError, match=OP + ".*rois must have the dtype of data"):
        frcnn_ops.roi_align(np.zeros((1, 2, 3, 3), np.float32), np.zeros((1, 5)), 2, 1.0)
    with pytest.raises(TypeError, match=OP + ".*float32, float64 or float16"):
        frcnn_ops.roi_align(np.zeros((1, 2, 3, 3), np.int32), np.zeros((1, 5), np.int32), 2, 1.0)
    with pytest.raises(TypeError, match=OP + ": data must be an MXNet NDArray"):
        frcnn_ops.roi_align([[0]], np.zeros((1, 5)), 2, 1.0)
    with pytest.raises(ValueError, match=OP + ": grad must have the output's shape"):
        frcnn_ops.roi_align_backward(np.zeros((3, 8, 2, 3), np.float32), np.zeros((3, 5), np.float32),
                              [1, 8, 6, 6], [2, 2], 1.0, -1, False, False)


def test_output_shape_check_used_by_the_cupy_path():
    zeros = lambda s: np.zeros(s, np.float32)  # noqa: E731
    for args, kw, msg in _bad_calls(zeros):
        kw = dict(dict(pooled_size=(2, 2), spatial_scale=1.0, sample_ratio=-1,
                       position_sensitive=False, aligned=False), **kw)
        with pytest.raises(ValueError, match=OP) as e:
            _C.infer_shape(OP, [list(args[0].shape), list(args[1].shape)],
                           _dispatch.attrs_text(kw))
        assert msg in str(e.value)
    assert _C.infer_shape(OP, [[2, 18, 5, 5], [7, 5]], _dispatch.attrs_text(dict(
        pooled_size=(3, 3), spatial_scale=0.5, sample_ratio=2, position_sensitive=True))) == [
        [7, 2, 3, 3]]


def test_bad_input_mxnet(mx):
    for args, kw, msg in _bad_calls(lambda s: mx.nd.zeros(s)):
        kw = dict(dict(pooled_size=(2, 2), spatial_scale=1.0), **kw)
        with pytest.raises(mx.base.MXNetError, match=OP) as e:
            mx.nd.frcnn_roi_align(*args, **kw).wait_to_read()
        assert msg in str(e.value)
        assert str(e.value).count(OP + ":") == 1
    with pytest.raises(mx.base.MXNetError, match=OP + ": rois must have the dtype of data"):
        mx.nd.frcnn_roi_align(mx.nd.zeros((1, 2, 3, 3)), mx.nd.zeros((1, 5), dtype="float64"),
                              pooled_size=(2, 2), spatial_scale=1.0).wait_to_read()
    with pytest.raises(mx.base.MXNetError,
                       match=OP + ": data must be float32, float64 or float16"):
        mx.nd.frcnn_roi_align(mx.nd.zeros((1, 2, 3, 3), dtype="int32"),
                              mx.nd.zeros((1, 5), dtype="int32"),
                              pooled_size=(2, 2), spatial_scale=1.0).wait_to_read()
    with pytest.raises(mx.base.MXNetError, match=OP + ": attribute spatial_scale is required"):
        mx.nd.frcnn_roi_align(mx.nd.zeros((1, 2, 3, 3)), mx.nd.zeros((1, 5)), pooled_size=(2, 2))
    with pytest.raises(mx.base.MXNetError, match=OP + ": attribute pooled_size is required"):
        mx.nd.frcnn_roi_align(mx.nd.zeros((1, 2, 3, 3)), mx.nd.zeros((1, 5)), spatial_scale=1.0)
    with pytest.raises(mx.base.MXNetError, match=OP + ": unknown attribute 'sampling_ratio'"):
        mx.nd.frcnn_roi_align(mx.nd.zeros((1, 2, 3, 3)), mx.nd.zeros((1, 5)), pooled_size=(2, 2),
                              spatial_scale=1.0, sampling_ratio=2)


def test_sample_ratio_zero_is_adaptive(rng):
    # as in MXNet: any sample_ratio <= 0 means ceil(roi size / pooled size)
    data, rois = make_case(rng, R=10)
    np.testing.assert_array_equal(frcnn_ops.roi_align(data, rois, 2, 0.25, sample_ratio=0),
                                  frcnn_ops.roi_align(data, rois, 2, 0.25, sample_ratio=-1))


# ---- GPU ----------------------------------------------------------------------------------

@pytest.mark.gpu
def test_gpu_mxnet_op(mx, rng):
    if not frcnn_ops.build_info()["cuda"] or mx.context.num_gpus() == 0:
        pytest.skip("MXNet without GPU")
    data, rois = make_case(rng, N=2, C=16, R=40)
    kw = dict(pooled_size=(7, 7), spatial_scale=0.25, sample_ratio=2)
    ctx = mx.gpu(0)
    x = mx.nd.array(data, ctx=ctx)
    x.attach_grad()
    with mx.autograd.record():
        y = mx.nd.frcnn_roi_align(x, mx.nd.array(rois, ctx=ctx), deterministic=True, **kw)
    y.backward()
    np.testing.assert_allclose(y.asnumpy(), ref.roi_align(data, rois, **kw), rtol=1e-5,
                               atol=1e-5)
    exp_g = ref.roi_align_backward(np.ones(y.shape, np.float32), rois, data.shape, **kw)
    np.testing.assert_allclose(x.grad.asnumpy(), exp_g, rtol=1e-5, atol=1e-5)
