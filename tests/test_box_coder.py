"""box_decode and clip_boxes: NumPy reference, MXNet contrib and GluonCV parity, gradients,
hybridized blocks, export/import, bad input."""
import os

import numpy as np
import pytest

import frcnn_ops
from frcnn_ops import reference as ref
from testutil import corner_anchors

STDS = [(1.0, 1.0, 1.0, 1.0), (0.1, 0.1, 0.2, 0.2)]


def _decode_inputs(rng, B, N, fmt, dtype=np.float32):
    data = rng.normal(0, 1, size=(B, N, 4)).astype(dtype)
    anchors = corner_anchors(rng, N, dtype=dtype)[None]
    if fmt == "center":
        c = anchors.copy()
        c[..., 2:] = anchors[..., 2:] - anchors[..., :2]
        c[..., :2] = anchors[..., :2] + c[..., 2:] / 2
        anchors = c
    return data, anchors


# ---- NumPy path against the NumPy reference --------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fmt", ["center", "corner"])
@pytest.mark.parametrize("stds", STDS)
@pytest.mark.parametrize("clip", [-1.0, 0.5])
def test_box_decode_numpy_matches_reference(rng, dtype, fmt, stds, clip):
    data, anchors = _decode_inputs(rng, 3, 1000, fmt, dtype)
    out = frcnn_ops.box_decode(data, anchors, *stds, clip=clip, format=fmt)
    exp = ref.box_decode(data, anchors, *stds, clip=clip, format=fmt)
    assert out.dtype == dtype and out.shape == data.shape
    if dtype == np.float32:
        np.testing.assert_array_equal(out, exp)
    else:  # NumPy's SIMD float64 exp and libm's differ in the last bit
        np.testing.assert_allclose(out, exp, rtol=1e-14, atol=1e-12)


def test_box_decode_per_image_anchors(rng):
    data, anchors = _decode_inputs(rng, 2, 50, "corner")
    anchors2 = np.concatenate([anchors, anchors[:, ::-1]], axis=0)
    out = frcnn_ops.box_decode(data, anchors2, format="corner")
    for b in range(2):
        np.testing.assert_array_equal(
            out[b], ref.box_decode(data[b:b + 1], anchors2[b:b + 1], format="corner")[0])


def test_box_decode_empty_and_nonfinite(rng):
    out = frcnn_ops.box_decode(np.zeros((2, 0, 4), np.float32), np.zeros((1, 0, 4), np.float32))
    assert out.shape == (2, 0, 4)
    data = np.array([[[np.nan, 0, 0, 0], [0, 0, np.inf, 0], [0, 0, 1000.0, 0]]], np.float32)
    anchors = np.array([[[10, 10, 4, 4]] * 3], np.float32)
    out = frcnn_ops.box_decode(data, anchors)
    assert np.isnan(out[0, 0, [0, 2]]).all()          # NaN stays NaN
    assert np.isinf(out[0, 1, [0, 2]]).all() and np.isinf(out[0, 2, [0, 2]]).all()
    out = frcnn_ops.box_decode(data[:, 1:], anchors[:, 1:], clip=4.135)  # clip caps exp
    assert np.isfinite(out).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_boxes_numpy_matches_reference(rng, dtype):
    boxes = rng.uniform(-200, 1200, size=(3, 500, 4)).astype(dtype)
    boxes[0, :5] = [0, 0, 800, 600]  # exactly at the bounds
    info = np.array([[600, 800, 1], [300, 1000, 1], [1, 1, 1]], dtype)
    out = frcnn_ops.clip_boxes(boxes, info)
    np.testing.assert_array_equal(out, ref.clip_boxes(boxes, info))
    assert (out[..., 0::2] <= info[:, None, 1:2]).all() and (out >= 0).all()


def test_clip_boxes_nan_stays_nan():
    boxes = np.array([[[np.nan, -5, 1e9, np.inf]]], np.float32)
    out = frcnn_ops.clip_boxes(boxes, np.array([[600, 800]], np.float32))
    assert np.isnan(out[0, 0, 0]) and out[0, 0, 1] == 0 and out[0, 0, 2] == 800
    assert out[0, 0, 3] == 600


# ---- MXNet: parity with contrib / GluonCV, gradients, hybridize, export -----------------

@pytest.mark.parametrize("fmt", ["center", "corner"])
@pytest.mark.parametrize("stds", STDS)
@pytest.mark.parametrize("clip", [-1.0, 0.3])
def test_box_decode_matches_mxnet_contrib(mx, rng, fmt, stds, clip):
    data, anchors = _decode_inputs(rng, 2, 28500, fmt)
    kw = dict(std0=stds[0], std1=stds[1], std2=stds[2], std3=stds[3], clip=clip, format=fmt)
    ours = mx.nd.frcnn_box_decode(mx.nd.array(data), mx.nd.array(anchors), **kw).asnumpy()
    theirs = mx.nd.contrib.box_decode(mx.nd.array(data), mx.nd.array(anchors), **kw).asnumpy()
    np.testing.assert_array_equal(ours, theirs)


def test_box_decode_wide_exponents_bitwise_vs_mxnet_contrib(mx, rng):
    """The float32 path's vectorised exp (double polynomial) rounds like MXNet's double exp."""
    data = rng.uniform(-25, 25, size=(4, 250000, 4)).astype(np.float32)
    data[0, :8, 2] = [np.nan, np.inf, -np.inf, 88.7, 88.8, -103.0, -104.0, 0.0]
    anchors = np.tile(np.float32([[[10, 20, 30, 40]]]), (1, 250000, 1))
    ours = mx.nd.frcnn_box_decode(mx.nd.array(data), mx.nd.array(anchors), format="corner")
    theirs = mx.nd.contrib.box_decode(mx.nd.array(data), mx.nd.array(anchors), format="corner")
    np.testing.assert_array_equal(ours.asnumpy(), theirs.asnumpy())


def test_box_decode_float64_matches_mxnet_contrib(mx, rng):
    data, anchors = _decode_inputs(rng, 1, 2000, "corner", np.float64)
    ours = mx.nd.frcnn_box_decode(mx.nd.array(data, dtype="float64"),
                                  mx.nd.array(anchors, dtype="float64"), format="corner")
    theirs = mx.nd.contrib.box_decode(mx.nd.array(data, dtype="float64"),
                                      mx.nd.array(anchors, dtype="float64"), format="corner")
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours.asnumpy(), theirs.asnumpy(), rtol=1e-15, atol=1e-12)


def test_box_decode_matches_gluoncv_decoder(mx, gluoncv, rng):
    from gluoncv.nn.coder import NormalizedBoxCenterDecoder
    data, anchors = _decode_inputs(rng, 2, 3000, "corner")
    for stds in STDS:
        dec = NormalizedBoxCenterDecoder(stds=stds, convert_anchor=True)
        theirs = dec(mx.nd.array(data), mx.nd.array(anchors)).asnumpy()
        ours = frcnn_ops.box_decode(mx.nd.array(data), mx.nd.array(anchors), *stds,
                                    format="corner").asnumpy()
        np.testing.assert_array_equal(ours, theirs)


def test_clip_boxes_matches_gluoncv(mx, gluoncv, rng):
    from gluoncv.nn.bbox import BBoxClipToImage
    boxes = rng.uniform(-300, 1300, size=(2, 4000, 4)).astype(np.float32)
    img = mx.nd.zeros((2, 3, 600, 800))
    theirs = BBoxClipToImage()(mx.nd.array(boxes), img).asnumpy()
    info = mx.nd.array([[600, 800, 1.0]] * 2)
    ours = frcnn_ops.clip_boxes(mx.nd.array(boxes), info).asnumpy()
    np.testing.assert_array_equal(ours, theirs)


def _numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = f(x)
        flat[i] = old - eps
        lo = f(x)
        flat[i] = old
        gflat[i] = (hi - lo) / (2 * eps)
    return g


@pytest.mark.parametrize("fmt,clip", [("center", -1.0), ("corner", -1.0), ("corner", 0.2)])
def test_box_decode_gradient_float64(mx, rng, fmt, clip):
    data, anchors = _decode_inputs(rng, 2, 6, fmt, np.float64)
    data[0, 0, 2] = 0.9  # above the clip for the clipped case
    w = rng.normal(size=data.shape)
    stds = (0.1, 0.2, 0.3, 0.4)
    kw = dict(std0=stds[0], std1=stds[1], std2=stds[2], std3=stds[3], clip=clip, format=fmt)
    x = mx.nd.array(data, dtype="float64")
    a = mx.nd.array(anchors, dtype="float64")
    x.attach_grad()
    a.attach_grad()
    with mx.autograd.record():
        y = mx.nd.frcnn_box_decode(x, a, **kw)
        loss = (y * mx.nd.array(w, dtype="float64")).sum()
    loss.backward()
    num = _numeric_grad(lambda d: (ref.box_decode(d, anchors, *stds, clip=clip, format=fmt)
                                   * w).sum(), data.copy())
    np.testing.assert_allclose(x.grad.asnumpy(), num, rtol=1e-6, atol=1e-6)
    assert (a.grad.asnumpy() == 0).all()


def test_clip_boxes_gradient(mx, rng):
    boxes = rng.uniform(-50, 150, size=(2, 40, 4))
    boxes[0, 0] = [0, 0, 100, 80]  # on the bounds: gradient passes
    info = np.array([[80, 100], [120, 60]], np.float64)
    x = mx.nd.array(boxes, dtype="float64")
    x.attach_grad()
    g = rng.normal(size=boxes.shape)
    with mx.autograd.record():
        y = mx.nd.frcnn_clip_boxes(x, mx.nd.array(info, dtype="float64"))
    y.backward(mx.nd.array(g, dtype="float64"))
    hi = np.stack([info[:, 1], info[:, 0]] * 2, axis=1)[:, None, :]
    expected = np.where((boxes >= 0) & (boxes <= hi), g, 0)
    np.testing.assert_array_equal(x.grad.asnumpy(), expected)


def _decoder_block(mx):
    class Decoder(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, deltas, anchors, im_info):
            boxes = frcnn_ops.box_decode(deltas, anchors, 0.1, 0.1, 0.2, 0.2, format="corner")
            return frcnn_ops.clip_boxes(boxes, im_info)
    return Decoder()


def test_hybridized_block_export_and_symbolblock(mx, rng, tmp_path):
    data, anchors = _decode_inputs(rng, 2, 500, "corner")
    info = np.array([[600, 800, 1], [500, 700, 1]], np.float32)
    args = [mx.nd.array(data), mx.nd.array(anchors), mx.nd.array(info)]
    net = _decoder_block(mx)
    eager = net(*args).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    hybrid = net(*args).asnumpy()
    exp = ref.clip_boxes(ref.box_decode(data, anchors, 0.1, 0.1, 0.2, 0.2, format="corner"), info)
    np.testing.assert_array_equal(eager, exp)
    np.testing.assert_array_equal(hybrid, exp)
    prefix = str(tmp_path / "decoder")
    net.export(prefix)
    sb = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data0", "data1", "data2"],
                                      prefix + "-0000.params")
    np.testing.assert_array_equal(sb(*args).asnumpy(), exp)
    # training through the hybridized graph needs the registered backward
    x = args[0]
    x.attach_grad()
    with mx.autograd.record():
        y = net(x, args[1], args[2]).sum()
    y.backward()
    assert np.isfinite(x.grad.asnumpy()).all()


def test_symbol_api(mx, rng):
    data, anchors = _decode_inputs(rng, 1, 100, "center")
    s = mx.sym.frcnn_box_decode(mx.sym.var("d"), mx.sym.var("a"), std0=0.5)
    _, out_shapes, _ = s.infer_shape(d=(1, 100, 4), a=(1, 100, 4))
    assert out_shapes == [(1, 100, 4)]
    ex = s.bind(mx.cpu(), {"d": mx.nd.array(data), "a": mx.nd.array(anchors)})
    np.testing.assert_array_equal(ex.forward()[0].asnumpy(),
                                  ref.box_decode(data, anchors, std0=0.5))


# ---- Bad input ----------------------------------------------------------------------------

def _bad_decode_calls(np_mod):
    f = np_mod
    d, a = f((1, 10, 4)), f((1, 10, 4))
    return [
        ((f((10, 4)), a), {}, "data must have shape (B, N, 4)"),
        ((f((1, 10, 5)), a), {}, "data must have shape (B, N, 4)"),
        ((d, f((1, 10, 3))), {}, "anchors must have shape"),
        ((d, f((1, 9, 4))), {}, "anchors must have N = 10"),
        ((f((2, 10, 4)), f((3, 10, 4))), {}, "anchors batch must be 1 or B"),
        ((d, a), {"format": "xywh"}, "format must be one of"),
    ]


def test_box_decode_bad_input_numpy():
    for args, kw, msg in _bad_decode_calls(lambda s: np.zeros(s, np.float32)):
        with pytest.raises(ValueError, match="frcnn_box_decode") as e:
            frcnn_ops.box_decode(*args, **kw)
        assert msg in str(e.value)
    with pytest.raises(TypeError, match="frcnn_box_decode.*float32, float64 or float16"):
        frcnn_ops.box_decode(np.zeros((1, 2, 4), np.int32), np.zeros((1, 2, 4), np.int32))
    with pytest.raises(TypeError, match="frcnn_box_decode.*anchors must have the dtype"):
        frcnn_ops.box_decode(np.zeros((1, 2, 4), np.float32), np.zeros((1, 2, 4)))
    with pytest.raises(TypeError, match="frcnn_box_decode: data must be an MXNet NDArray"):
        frcnn_ops.box_decode([[[0, 0, 0, 0]]], np.zeros((1, 1, 4)))


def test_box_decode_bad_input_mxnet(mx):
    for args, kw, msg in _bad_decode_calls(lambda s: mx.nd.zeros(s)):
        with pytest.raises(mx.base.MXNetError, match="frcnn_box_decode") as e:
            mx.nd.frcnn_box_decode(*args, **kw).wait_to_read()
        assert msg in str(e.value)
        # only this call's message, not the ones before it
        assert str(e.value).count("frcnn_box_decode:") == 1
    with pytest.raises(mx.base.MXNetError, match="frcnn_box_decode: data must be float32"):
        mx.nd.frcnn_box_decode(mx.nd.zeros((1, 2, 4), dtype="int32"),
                               mx.nd.zeros((1, 2, 4), dtype="int32")).wait_to_read()
    with pytest.raises(mx.base.MXNetError, match="frcnn_box_decode: unknown attribute 'std4'"):
        mx.nd.frcnn_box_decode(mx.nd.zeros((1, 2, 4)), mx.nd.zeros((1, 2, 4)), std4=1)
    with pytest.raises(mx.base.MXNetError, match="frcnn_box_decode: attribute clip must be a"):
        mx.nd.frcnn_box_decode(mx.nd.zeros((1, 2, 4)), mx.nd.zeros((1, 2, 4)), clip="big")


def test_clip_boxes_bad_input(mx):
    f = np.zeros
    cases = [
        ((f((10, 4), np.float32), f((1, 2), np.float32)), "boxes must have shape (B, N, 4)"),
        ((f((1, 10, 4), np.float32), f((1, 1), np.float32)), "im_info must have shape (B, >=2)"),
        ((f((2, 10, 4), np.float32), f((1, 3), np.float32)), "im_info must have one row per"),
    ]
    for (b, i), msg in cases:
        with pytest.raises(ValueError, match="frcnn_clip_boxes") as e:
            frcnn_ops.clip_boxes(b, i)
        assert msg in str(e.value)
        with pytest.raises(mx.base.MXNetError, match="frcnn_clip_boxes") as e:
            mx.nd.frcnn_clip_boxes(mx.nd.array(b), mx.nd.array(i)).wait_to_read()
        assert msg in str(e.value)


def test_threads_setting_gives_same_result(rng):
    data, anchors = _decode_inputs(rng, 8, 28500, "corner")
    old = frcnn_ops.get_num_threads()
    try:
        frcnn_ops.set_num_threads(1)
        one = frcnn_ops.box_decode(data, anchors, format="corner")
        frcnn_ops.set_num_threads(2)
        two = frcnn_ops.box_decode(data, anchors, format="corner")
    finally:
        frcnn_ops.set_num_threads(old)
    np.testing.assert_array_equal(one, two)


# ---- Build facts and GPU ----------------------------------------------------------------

def test_build_info():
    info = frcnn_ops.build_info()
    for key in ("cuda", "cuda_archs", "mxnet_version", "version"):
        assert key in info
    assert isinstance(info["cuda"], bool)
    assert info["cuda"] == bool(frcnn_ops._C.has_cuda)


def test_cuda_kernels_built_where_nvcc_is():
    """CI's proof that the CUDA code compiles: with nvcc on PATH the default build has it."""
    import shutil
    if shutil.which("nvcc") is None or os.environ.get("FRCNN_CUDA", "auto") == "0":
        pytest.skip("no nvcc on PATH (or FRCNN_CUDA=0): a CPU-only build is expected")
    info = frcnn_ops.build_info()
    assert info["cuda"] is True
    assert "90" in info["cuda_archs"]


