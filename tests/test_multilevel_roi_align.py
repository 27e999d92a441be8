"""multilevel_roi_align: the FPN level rule against MXNet's evaluation of GluonCV's expression,
the NumPy reference (reference roi_align per level), parity with GluonCV's
FasterRCNN._pyramid_roi_feats (forward and autograd gradient), float32/float64/float16,
thread-count determinism, bad input, MXNet nd/sym/hybridize/export, and the CUDA kernels
(`dev`: GPU or the CPU execution harness) against the CPU path."""
import types

import numpy as np
import pytest

import frcnn_ops
from frcnn_ops import _C
from frcnn_ops import reference as ref

OP = "frcnn_multilevel_roi_align"
STRIDES = (4, 8, 16, 32)
SCALES = [1.0 / s for s in STRIDES]


def make_features(rng, N=2, C=5, H=48, W=64, levels=4, dtype=np.float32):
    """Maps of an (H * 4, W * 4) image at strides 4, 8, ... (sizes rounded up as FPN's)."""
    return [rng.normal(size=(N, C, -(-H // 2 ** k), -(-W // 2 ** k))).astype(dtype)
            for k in range(levels)]


def make_rois(rng, R, N=2, ih=192, iw=256, dtype=np.float32, bad=True):
    """Rois of every level (square roots of areas log-uniform over 8 .. 900 pixels), some
    partly outside; with `bad`, invalid batch indices, a NaN level (w * h < 0), a roi with
    both sides negative (a level, clamped to 1x1 bins) and a zero-area roi."""
    side = np.exp(rng.uniform(np.log(8), np.log(900), size=R))
    aspect = np.exp(rng.uniform(-0.7, 0.7, size=R))
    wh = np.stack([side * aspect, side / aspect], 1)
    xy = rng.uniform(-0.2, 1.0, size=(R, 2)) * [iw, ih] - wh / 3
    rois = np.concatenate([rng.integers(0, N, (R, 1)), xy, xy + wh], 1)
    if bad and R >= 6:
        rois[0, 0] = -1                        # GluonCV's padding rois
        rois[1, 0] = N                         # out of range
        rois[2, 1:] = [50, 20, 30, 40]         # w = -19: w * h < 0, NaN level
        rois[3, 1:] = [60, 70, 20, 30]         # w, h < 0: w * h > 0, a level
        rois[4, 1:] = [10, 10, 9, 9]           # w = h = 0: log2(eps), min_level
        rois[5, 1:] = [0, 0, 223, 223]         # sqrt(wh) = 224: level 4 exactly
    return rois.astype(dtype)


def kw_of(**kw):
    base = dict(pooled_size=(7, 7), spatial_scales=SCALES, sample_ratio=2)
    base.update(kw)
    return base


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


# ---- Level rule --------------------------------------------------------------------------

def mx_levels(mx, rois, min_level=2, max_level=5, scale=224.0, eps=1e-6):
    """GluonCV's expression, evaluated by MXNet in the rois' dtype."""
    F = mx.nd
    r = F.array(rois, dtype=rois.dtype)
    _, x1, y1, x2, y2 = F.split(r, axis=-1, num_outputs=5)
    h = y2 - y1 + 1
    w = x2 - x1 + 1
    lv = F.floor(4 + F.log2(F.sqrt(w * h) / scale + eps))
    lv = F.squeeze(F.clip(lv, min_level, max_level), axis=1).asnumpy()
    return np.where(np.isnan(lv), -1, np.nan_to_num(lv)).astype(np.int64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_levels_match_mxnet_evaluation(mx, rng, dtype):
    rois = make_rois(rng, 4000, dtype=dtype)
    # near the boundaries: sqrt(w * h) = 112, 224, 448 (+-1 ulp-ish) with the +1 of GluonCV
    b = np.array([112, 224, 448, 896], dtype)
    side = np.concatenate([b - 1, b - 1 + 1e-4, b - 1 - 1e-4, b - 1 + 3e-5, b - 1 - 3e-5])
    edge = np.stack([np.zeros_like(side), 5 + 0 * side, 7 + 0 * side, 5 + side, 7 + side], 1)
    rois = np.concatenate([rois, edge.astype(dtype)])
    for lo, hi in [(2, 5), (3, 4), (2, 6), (4, 4)]:
        exp = mx_levels(mx, rois, lo, hi)
        got = frcnn_ops.multilevel_roi_levels(rois, lo, hi)
        np.testing.assert_array_equal(got, exp)
        np.testing.assert_array_equal(ref.roi_levels(rois, lo, hi), exp)
    lv = frcnn_ops.multilevel_roi_levels(rois)
    assert lv[2] == -1 and lv[3] >= 2 and lv[4] == 2 and lv[5] == 4
    assert set(np.unique(lv[6:4000])) == {2, 3, 4, 5}


# ---- NumPy path against the NumPy reference ----------------------------------------------

CONFIGS = [dict(), dict(sample_ratio=-1), dict(aligned=True, pooled_size=(3, 4)),
           dict(min_level=3, max_level=4, canonical_scale=150.0, canonical_level=3,
                pooled_size=(2, 2))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("R", [12, 150])   # direct and channel-blocked roi_align kernels
def test_numpy_matches_reference(rng, dtype, cfg, R):
    feats = make_features(rng, C=5 if R < 100 else 66, H=24, W=32, dtype=dtype)
    rois = make_rois(rng, R, ih=96, iw=128, dtype=dtype)
    kw = kw_of(**cfg)
    out = frcnn_ops.multilevel_roi_align(rois, feats, **kw)
    rkw = dict(kw)
    rkw.pop("pooled_size")
    exp = ref.multilevel_roi_align(rois, feats, kw["pooled_size"], **{
        k: v for k, v in rkw.items()})
    assert out.dtype == dtype and out.shape == exp.shape
    np.testing.assert_allclose(out, exp, **_tol(dtype))
    assert not out[:3].any()
    g = rng.normal(size=out.shape).astype(dtype)
    shapes = [f.shape for f in feats]
    got = frcnn_ops.multilevel_roi_align_backward(g, rois, shapes, **kw)
    exp_g = ref.multilevel_roi_align_backward(g, rois, shapes, kw["pooled_size"], **rkw)
    assert len(got) == len(feats)
    for a, b in zip(got, exp_g):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", [dict(), dict(sample_ratio=-1, aligned=True)])
def test_row_ring_matches_reference(rng, dtype, cfg):
    """A P2 of more than 4096 pixels takes the narrow channel blocks and a row ring smaller
    than the map (csrc/roi_align/roi_align_cpu.cpp): rows wrap around the ring, C = 70 leaves
    a partial block, two images, invalid rois; then a thread count of 1 and 3 give the same
    bits."""
    feats = make_features(rng, C=70, H=160, W=48, dtype=dtype)
    rois = make_rois(rng, 400, ih=640, iw=192, dtype=dtype)
    kw = kw_of(**cfg)
    rkw = {k: v for k, v in kw.items() if k != "pooled_size"}
    out = frcnn_ops.multilevel_roi_align(rois, feats, **kw)
    np.testing.assert_allclose(
        out, ref.multilevel_roi_align(rois, feats, kw["pooled_size"], **rkw), **_tol(dtype))
    g = rng.normal(size=out.shape).astype(dtype)
    shapes = [f.shape for f in feats]
    got = frcnn_ops.multilevel_roi_align_backward(g, rois, shapes, **kw)
    for a, b in zip(got, ref.multilevel_roi_align_backward(g, rois, shapes, kw["pooled_size"],
                                                           **rkw)):
        np.testing.assert_allclose(a, b, **_tol(dtype))
    old = frcnn_ops.get_num_threads()
    try:
        for nt in (1, 3):
            frcnn_ops.set_num_threads(nt)
            assert frcnn_ops.multilevel_roi_align(rois, feats, **kw).tobytes() == out.tobytes()
            for a, b in zip(frcnn_ops.multilevel_roi_align_backward(g, rois, shapes, **kw), got):
                assert a.tobytes() == b.tobytes()
    finally:
        frcnn_ops.set_num_threads(old)


def test_default_spatial_scales_and_extra_maps(rng):
    feats = make_features(rng, levels=5)       # P2..P6; P6 is never read (max_level 5)
    rois = make_rois(rng, 40)
    a = frcnn_ops.multilevel_roi_align(rois, feats, 7)
    b = frcnn_ops.multilevel_roi_align(rois, feats[:4], 7, spatial_scales=SCALES)
    np.testing.assert_array_equal(a, b)
    g = frcnn_ops.multilevel_roi_align_backward(np.ones_like(a), rois, [f.shape for f in feats], 7)
    assert len(g) == 5 and not g[4].any() and all(x.any() for x in g[:4])


def test_float16_cpu(rng):
    feats = make_features(rng, dtype=np.float16)
    rois = make_rois(rng, 60, dtype=np.float16)
    out = frcnn_ops.multilevel_roi_align(rois, feats, **kw_of())
    exp = frcnn_ops.multilevel_roi_align(rois.astype(np.float32),
                                         [f.astype(np.float32) for f in feats], **kw_of())
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, exp.astype(np.float16))
    g = rng.normal(size=out.shape).astype(np.float16)
    shapes = [f.shape for f in feats]
    got = frcnn_ops.multilevel_roi_align_backward(g, rois, shapes, **kw_of())
    exp_g = frcnn_ops.multilevel_roi_align_backward(g.astype(np.float32),
                                                    rois.astype(np.float32), shapes, **kw_of())
    for a, b in zip(got, exp_g):
        np.testing.assert_array_equal(a, b.astype(np.float16))


def test_zero_rois():
    feats = [np.ones((1, 3, 8 // 2 ** k + 1, 8 // 2 ** k + 1), np.float32) for k in range(4)]
    rois = np.zeros((0, 5), np.float32)
    assert frcnn_ops.multilevel_roi_align(rois, feats, 2).shape == (0, 3, 2, 2)
    g = frcnn_ops.multilevel_roi_align_backward(np.zeros((0, 3, 2, 2), np.float32), rois,
                                                [f.shape for f in feats], 2)
    assert all(x.shape == f.shape and not x.any() for x, f in zip(g, feats))


@pytest.mark.parametrize("R", [20, 400])
def test_backward_bitwise_identical_across_thread_counts(rng, R):
    feats = make_features(rng, C=70)
    rois = make_rois(rng, R)
    out = frcnn_ops.multilevel_roi_align(rois, feats, **kw_of())
    g = rng.normal(size=out.shape).astype(np.float32)
    old = frcnn_ops.get_num_threads()
    res = []
    try:
        for nt in (1, 2, 3):
            frcnn_ops.set_num_threads(nt)
            np.testing.assert_array_equal(frcnn_ops.multilevel_roi_align(rois, feats, **kw_of()),
                                          out)
            res.append(frcnn_ops.multilevel_roi_align_backward(
                g, rois, [f.shape for f in feats], **kw_of()))
    finally:
        frcnn_ops.set_num_threads(old)
    for r in res[1:]:
        for a, b in zip(r, res[0]):
            assert a.tobytes() == b.tobytes()


def test_scratch_buffers_are_reused_and_released(rng):
    """The threads' row rings (csrc/roi_align/roi_align_cpu.cpp) come from a pool kept between
    calls (csrc/common/scratch.h): a call on reused (stale) buffers gives what one on fresh
    memory gives, and release_cpu_scratch empties the pool."""
    # P2 of 64 x 1024 (rows of 256 KB a channel block): the rings reach the pool's 1 MiB
    feats = [make_features(rng, C=70, H=64, W=1024) for _ in range(2)]
    rois = make_rois(rng, 300, ih=256, iw=4096)
    shapes = [f.shape for f in feats[0]]
    grads = [rng.normal(size=(300, 70, 7, 7)).astype(np.float32) for _ in range(2)]

    def run(k):
        return (frcnn_ops.multilevel_roi_align(rois, feats[k], **kw_of()),
                frcnn_ops.multilevel_roi_align_backward(grads[k], rois, shapes, **kw_of()))
    frcnn_ops.release_cpu_scratch()
    fresh = run(1)
    frcnn_ops.release_cpu_scratch()
    run(0)
    assert _C.cached_cpu_scratch() >= 1 << 20
    reused = run(1)
    assert reused[0].tobytes() == fresh[0].tobytes()
    for a, b in zip(reused[1], fresh[1]):
        assert a.tobytes() == b.tobytes()
    assert frcnn_ops.release_cpu_scratch() > 0 and _C.cached_cpu_scratch() == 0


# ---- GluonCV parity ----------------------------------------------------------------------

class _NdWhere:
    """mx.nd as GluonCV's F, minus contrib.box_encode: _pyramid_roi_feats then takes its other
    align branch (contrib.ROIAlign on all rois, then where(level == l, pooled, 0)), the same
    values by GluonCV's intent. Its default branch (rois of other levels masked to batch -1,
    then ElementWiseSum) is not reliable on the CPU with MXNet 1.9.1: in these tests it
    returned uninitialised values for rows of batch -1 and, in one run, zeros in some
    entries of a valid roi's row, where the where branch (and ours) agree to 4e-7."""

    def __init__(self, nd):
        self._nd = nd
        self.contrib = types.SimpleNamespace(ROIAlign=nd.contrib.ROIAlign)

    def __getattr__(self, name):
        return getattr(self._nd, name)


def gluoncv_pyramid(mx, gluoncv, feats, rois, roi_size, strides, min_stage=2, max_stage=6,
                    sampling_ratio=2, masked=False):
    """GluonCV's FasterRCNN._pyramid_roi_feats itself, on a stand-in `self`."""
    from gluoncv.model_zoo.rcnn.faster_rcnn.faster_rcnn import FasterRCNN
    fake = types.SimpleNamespace(_max_stage=max_stage, _min_stage=min_stage)
    F = mx.nd if masked else _NdWhere(mx.nd)
    return FasterRCNN._pyramid_roi_feats(fake, F, feats, rois, roi_size, strides,
                                         roi_mode="align", sampling_ratio=sampling_ratio)


def _mx_run(mx, fn, feats, rois, head, dtype):
    xs = [mx.nd.array(f, dtype=dtype) for f in feats]
    for x in xs:
        x.attach_grad()
    r = mx.nd.array(rois, dtype=dtype)
    with mx.autograd.record():
        y = fn(xs, r)
    y.backward(mx.nd.array(head, dtype=dtype))
    return y.asnumpy(), [x.grad.asnumpy() for x in xs]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pooled", [(7, 7), (14, 14)])
def test_matches_gluoncv_pyramid_roi_feats(mx, gluoncv, rng, dtype, pooled):
    strides = (4, 8, 16, 32, 64)                  # GluonCV's FPN strides, P6 included
    feats = make_features(rng, C=6, levels=5, dtype=dtype)
    rois = make_rois(rng, 120, dtype=dtype)
    rois[1, 0] = 1.7    # contrib.ROIAlign aborts on a batch index >= N; 1.7 truncates to 1
    head = rng.normal(size=(120, 6) + pooled).astype(dtype)
    theirs, theirs_g = _mx_run(
        mx, lambda xs, r: gluoncv_pyramid(mx, gluoncv, xs, r, pooled, strides), feats, rois,
        head, dtype)
    ours, ours_g = _mx_run(
        mx, lambda xs, r: frcnn_ops.multilevel_roi_align(
            r, xs, pooled, spatial_scales=[1.0 / s for s in strides]), feats, rois, head, dtype)
    assert ours.dtype == dtype
    tol = dict(rtol=1e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    # row 0 (batch -1): contrib leaves it unwritten (garbage); ours gives zeros
    np.testing.assert_allclose(ours[1:], theirs[1:], **tol)
    assert not ours[[0, 2]].any() and ours[1].any()  # batch -1, NaN level; batch 1.7
    gtol = dict(tol, atol=2e-5) if dtype == np.float32 else tol
    for a, b in zip(ours_g, theirs_g):
        np.testing.assert_allclose(a, b, **gtol)
    assert not ours_g[4].any()                     # P6: not used by the RCNN head


def test_fewer_maps_than_levels(mx, gluoncv, rng):
    feats = make_features(rng, levels=3)
    rois = make_rois(rng, 30)
    xs = [mx.nd.array(f) for f in feats]
    with pytest.raises(IndexError):                # GluonCV: features[3] does not exist
        gluoncv_pyramid(mx, gluoncv, xs, mx.nd.array(rois), (7, 7), STRIDES, max_stage=5)
    msg = "levels min_level .. max_level (2 .. 5) need 4 feature maps"
    with pytest.raises(ValueError, match=OP) as e:
        frcnn_ops.multilevel_roi_align(rois, feats, 7)
    assert msg in str(e.value)
    with pytest.raises(mx.base.MXNetError, match=OP) as e:
        frcnn_ops.multilevel_roi_align(mx.nd.array(rois), xs, 7).wait_to_read()
    assert msg in str(e.value)
    # with max_level 4 three maps are enough
    out = frcnn_ops.multilevel_roi_align(rois, feats, 7, max_level=4)
    exp = gluoncv_pyramid(mx, gluoncv, xs, mx.nd.array(rois), (7, 7), STRIDES, max_stage=4)
    # rows 0 and 1 (batch -1 and N): contrib reads or leaves them undefined; ours are zero
    np.testing.assert_allclose(out[2:], exp.asnumpy()[2:], rtol=1e-5, atol=2e-6)
    assert not out[:2].any()


# ---- MXNet: nd, sym, hybridize, export -----------------------------------------------------

def test_mxnet_nd_matches_numpy(mx, rng):
    feats = make_features(rng)
    rois = make_rois(rng, 50)
    exp = frcnn_ops.multilevel_roi_align(rois, feats, **kw_of())
    xs = [mx.nd.array(f) for f in feats]
    a = mx.nd.frcnn_multilevel_roi_align(mx.nd.array(rois), *xs, pooled_size=(7, 7),
                                         spatial_scales=tuple(SCALES))
    np.testing.assert_array_equal(a.asnumpy(), exp)
    b = mx.nd.frcnn_multilevel_roi_align(mx.nd.array(rois), *xs, pooled_size=7)  # defaults
    np.testing.assert_array_equal(b.asnumpy(), exp)
    c = mx.nd.frcnn_multilevel_roi_align(rois=mx.nd.array(rois), features=xs, pooled_size=7)
    np.testing.assert_array_equal(c.asnumpy(), exp)


def test_symbol_api(mx):
    s = mx.sym.frcnn_multilevel_roi_align(mx.sym.var("r"), *[mx.sym.var("p%d" % k)
                                                             for k in range(2, 6)],
                                          pooled_size=(7, 7))
    shapes = {"p%d" % k: (2, 256, 800 // 2 ** k, 1216 // 2 ** k) for k in range(2, 6)}
    _, out_shapes, _ = s.infer_shape(r=(1000, 5), **shapes)
    assert out_shapes == [(1000, 256, 7, 7)]
    with pytest.raises(ValueError, match=OP + ": got 2 feature maps but spatial_scales has 4"):
        mx.sym.frcnn_multilevel_roi_align(mx.sym.var("r"), mx.sym.var("a"), mx.sym.var("b"),
                                          pooled_size=7, spatial_scales=SCALES)


def _fpn_head(mx):
    class Head(mx.gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            with self.name_scope():
                self.convs = mx.gluon.nn.HybridSequential()
                for _ in range(4):
                    self.convs.add(mx.gluon.nn.Conv2D(3, 1, in_channels=5))

        def hybrid_forward(self, F, rois, p2, p3, p4, p5):
            feats = [conv(p) for conv, p in zip(self.convs, (p2, p3, p4, p5))]
            pooled = frcnn_ops.multilevel_roi_align(rois, feats, (3, 3))
            return F.sum(pooled, axis=(2, 3))
    return Head()


def test_hybridized_block_backward_and_export(mx, rng, tmp_path):
    feats = make_features(rng, N=2, C=5, H=24, W=32)
    rois = make_rois(rng, 30, ih=96, iw=128)
    net = _fpn_head(mx)
    net.initialize(mx.init.Normal(0.5))
    args = [mx.nd.array(rois)] + [mx.nd.array(f) for f in feats]
    eager = net(*args).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    np.testing.assert_allclose(net(*args).asnumpy(), eager, rtol=1e-6, atol=1e-6)
    for a in args[1:]:
        a.attach_grad()
    with mx.autograd.record():
        y = net(*args).sum()
    y.backward()
    assert all(np.isfinite(a.grad.asnumpy()).all() and a.grad.asnumpy().any() for a in args[1:])
    prefix = str(tmp_path / "head")
    net.export(prefix)
    sb = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json",
                                      ["data%d" % i for i in range(5)], prefix + "-0000.params")
    np.testing.assert_allclose(sb(*args).asnumpy(), eager, rtol=1e-6, atol=1e-6)


def test_grad_req_add_accumulates(mx, rng):
    feats = make_features(rng, C=3)
    rois = make_rois(rng, 20)
    xs = [mx.nd.array(f) for f in feats]
    for x in xs:
        x.attach_grad(grad_req="add")
    for _ in range(2):
        with mx.autograd.record():
            y = frcnn_ops.multilevel_roi_align(mx.nd.array(rois), xs, 7)
        y.backward()
    once = frcnn_ops.multilevel_roi_align_backward(np.ones((20, 3, 7, 7), np.float32), rois,
                                                   [f.shape for f in feats], 7)
    for x, g in zip(xs, once):
        np.testing.assert_allclose(x.grad.asnumpy(), 2 * g, rtol=1e-6, atol=1e-6)


# ---- Bad input -----------------------------------------------------------------------------

def _bad_calls(zeros):
    f = [zeros((1, 4, 16 // 2 ** k, 16 // 2 ** k)) for k in range(4)]
    r = zeros((3, 5))
    return [
        ((zeros((3, 4)), f), {}, "rois must have shape (R, 5)"),
        ((r, f[:2] + [zeros((1, 4, 4))] + f[3:]), {}, "features[2] must have shape (N, C, H, W)"),
        ((r, f[:1] + [zeros((2, 4, 8, 8))] + f[2:]), {},
         "features[1] must have the N and C of features[0] (1, 4)"),
        ((r, f[:3] + [zeros((1, 3, 2, 2))]), {}, "features[3] must have the N and C"),
        ((r, f), {"min_level": 4, "max_level": 3}, "min_level must be <= max_level"),
        ((r, f), {"pooled_size": (0, 2)}, "pooled_size must be positive"),
        ((r, f), {"spatial_scales": [0.25, 0.125, 0.0, 0.03125]},
         "spatial_scales[2] must be a positive finite number"),
        ((r, f), {"canonical_scale": 0.0}, "canonical_scale must be a positive finite number"),
        ((r, f), {"eps": -1.0}, "eps must be a finite number >= 0"),
    ]


def test_bad_input_numpy():
    zeros = lambda s: np.zeros(s, np.float32)  # noqa: E731
    for args, kw, msg in _bad_calls(zeros):
        kw = dict(dict(pooled_size=(2, 2)), **kw)
        with pytest.raises(ValueError, match=OP) as e:
            frcnn_ops.multilevel_roi_align(*args, **kw)
        assert msg in str(e.value), (msg, str(e.value))
    f = [zeros((1, 4, 4, 4))] * 4
    with pytest.raises(ValueError, match=OP + ": got 4 feature maps but spatial_scales has 5"):
        frcnn_ops.multilevel_roi_align(zeros((1, 5)), f, 2, spatial_scales=[1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match=OP + ": levels min_level .. max_level \\(2 .. 5\\) need 4"):
        frcnn_ops.multilevel_roi_align(zeros((1, 5)), f[:3], 2, spatial_scales=[1, 1, 1])
    with pytest.raises(ValueError, match=OP + ": spatial_scales must have 1 to 8 values"):
        frcnn_ops.multilevel_roi_align(zeros((1, 5)), [f[0]] * 9, 2, max_level=2)
    with pytest.raises(TypeError, match=OP + ".*features\\[1\\] must have the dtype of rois"):
        frcnn_ops.multilevel_roi_align(zeros((1, 5)), [f[0], f[1].astype(np.float64)] + f[2:], 2)
    with pytest.raises(TypeError, match=OP + ".*float32, float64 or float16"):
        frcnn_ops.multilevel_roi_align(np.zeros((1, 5), np.int32),
                                       [x.astype(np.int32) for x in f], 2)
    with pytest.raises(TypeError, match=OP + ": features must be a list"):
        frcnn_ops.multilevel_roi_align(zeros((1, 5)), f[0], 2)
    with pytest.raises(ValueError, match=OP + ": grad must have the output's shape"):
        frcnn_ops.multilevel_roi_align_backward(zeros((1, 4, 3, 3)), zeros((1, 5)),
                                                [x.shape for x in f], 2)


def test_bad_input_mxnet(mx):
    for args, kw, msg in _bad_calls(lambda s: mx.nd.zeros(s)):
        kw = dict(dict(pooled_size=(2, 2)), **kw)
        with pytest.raises(mx.base.MXNetError, match=OP) as e:
            frcnn_ops.multilevel_roi_align(*args, **kw).wait_to_read()
        assert msg in str(e.value), (msg, str(e.value))
        assert str(e.value).count(OP + ":") == 1
    f = [mx.nd.zeros((1, 2, 4, 4))] * 4
    r = mx.nd.zeros((1, 5))
    with pytest.raises(mx.base.MXNetError, match=OP + ": features\\[1\\] must have the dtype"):
        mx.nd.frcnn_multilevel_roi_align(r, f[0], f[1].astype("float64"), *f[2:],
                                         pooled_size=2).wait_to_read()
    with pytest.raises(mx.base.MXNetError, match=OP + ": rois must be float32, float64"):
        mx.nd.frcnn_multilevel_roi_align(r.astype("int32"), *[x.astype("int32") for x in f],
                                         pooled_size=2).wait_to_read()
    with pytest.raises(mx.base.MXNetError, match=OP + ": attribute pooled_size is required"):
        mx.nd.frcnn_multilevel_roi_align(r, *f)
    with pytest.raises(mx.base.MXNetError, match=OP + ": unknown attribute 'roi_mode'"):
        mx.nd.frcnn_multilevel_roi_align(r, *f, pooled_size=2, roi_mode="align")
    with pytest.raises(TypeError, match=OP + ": needs at least one feature map"):
        mx.nd.frcnn_multilevel_roi_align(r, pooled_size=2)
    with pytest.raises(TypeError, match=OP + ": input 'features\\[1\\]' must be an NDArray"):
        mx.nd.frcnn_multilevel_roi_align(r, f[0], np.zeros((1, 2, 4, 4)), *f[2:], pooled_size=2)


# ---- CUDA kernels (GPU or the CPU execution harness) against the CPU path ------------------

F16, F32, F64 = np.float16, np.float32, np.float64


def _cpu(dtype):
    return F32 if dtype == F16 else dtype


@pytest.mark.parametrize("dtype", [F32, F64, F16])
@pytest.mark.parametrize("cfg", [dict(), dict(sample_ratio=-1, aligned=True, pooled_size=(3, 2))])
def test_device_matches_cpu(dev, rng, dtype, cfg):
    feats = make_features(rng, C=3, H=20, W=28, levels=5)
    rois = make_rois(rng, 40, ih=80, iw=112)
    kw = kw_of(**cfg)
    kw["spatial_scales"] = SCALES + [1 / 64]
    fd = [f.astype(dtype) for f in feats]
    rd = rois.astype(dtype)
    got = dev.call(lambda r, *f: frcnn_ops.multilevel_roi_align(r, list(f), **kw), rd, *fd)
    exp = frcnn_ops.multilevel_roi_align(rd.astype(_cpu(dtype)),
                                         [f.astype(_cpu(dtype)) for f in fd], **kw).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == F32 else (
        dict(rtol=1e-12, atol=1e-12) if dtype == F64 else dict(rtol=2e-3, atol=2e-3))
    assert got.dtype == dtype
    np.testing.assert_allclose(got.astype(F64), exp.astype(F64), **tol)
    g = rng.normal(size=got.shape).astype(dtype)
    shapes = [f.shape for f in feats]
    exp_g = frcnn_ops.multilevel_roi_align_backward(g.astype(_cpu(dtype)), rd.astype(_cpu(dtype)),
                                                    shapes, **kw)
    for det in (False, True):
        with dev.context():
            got_g = frcnn_ops.multilevel_roi_align_backward(dev.asarray(g), dev.asarray(rd),
                                                            shapes, deterministic=det, **kw)
        assert len(got_g) == 5
        for a, b in zip(got_g, exp_g):
            a = dev.asnumpy(a)
            assert a.dtype == dtype
            np.testing.assert_allclose(a.astype(F64), b.astype(dtype).astype(F64), **tol)
        assert not dev.asnumpy(got_g[4]).any()


def test_device_deterministic_is_repeatable(dev, rng):
    feats = make_features(rng, C=4, H=20, W=28)
    rois = make_rois(rng, 60, ih=80, iw=112)
    g = rng.normal(size=(60, 4, 7, 7)).astype(F32)
    shapes = [f.shape for f in feats]
    runs = []
    for _ in range(2):
        with dev.context():
            runs.append([dev.asnumpy(x) for x in frcnn_ops.multilevel_roi_align_backward(
                dev.asarray(g), dev.asarray(rois), shapes, deterministic=True, **kw_of())])
    for a, b in zip(*runs):
        assert a.tobytes() == b.tobytes()
