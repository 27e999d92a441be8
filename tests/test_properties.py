"""Property tests (hypothesis): random shapes (0 and 1 included), degenerate and inverted
boxes, huge and tiny coordinates, NaN and inf, attributes across their ranges, each op against
its MXNet contrib twin and its NumPy reference.

A short profile runs in CI; FRCNN_HYPOTHESIS_EXAMPLES=1000 runs the long one."""
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import frcnn_ops  # noqa: E402
from frcnn_ops import reference as ref  # noqa: E402

EXAMPLES = int(os.environ.get("FRCNN_HYPOTHESIS_EXAMPLES", "40"))
PROFILE = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

COORD = st.one_of(
    st.floats(-1e3, 1e3, width=32),
    st.floats(float(np.float32(-1e30)), float(np.float32(1e30)), width=32),
    st.floats(float(np.float32(-1e-30)), float(np.float32(1e-30)), width=32),
    st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf]),
)


@st.composite
def boxes(draw, n, extra_cols=0, nan=True):
    coord = COORD if nan else st.floats(-1e3, 1e3, width=32)
    arr = np.array(draw(st.lists(coord, min_size=n * (4 + extra_cols),
                                 max_size=n * (4 + extra_cols))), np.float32)
    return arr.reshape(n, 4 + extra_cols)


@st.composite
def nms_case(draw):
    batches = draw(st.integers(1, 3))
    n = draw(st.integers(0, 40))
    use_id = draw(st.booleans())
    width = 6 if use_id else 5
    rows = []
    for _ in range(batches):
        b = draw(boxes(n, nan=draw(st.booleans())))
        score = np.array(draw(st.lists(st.sampled_from([0.0, 0.5, 0.9, -1.0, np.nan]) |
                                       st.floats(0, 1, width=32), min_size=n, max_size=n)),
                         np.float32).reshape(n, 1)
        cols = [score, b]
        if use_id:
            cols.insert(0, np.array(draw(st.lists(st.integers(-1, 2), min_size=n, max_size=n)),
                                    np.float32).reshape(n, 1))
        rows.append(np.concatenate(cols, axis=1) if n else np.zeros((0, width), np.float32))
    data = np.stack(rows)
    kw = dict(overlap_thresh=draw(st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0])),
              valid_thresh=draw(st.sampled_from([0.0, 0.01, 0.5])),
              topk=draw(st.sampled_from([-1, 1, 5, 100])),
              coord_start=2 if use_id else 1, score_index=1 if use_id else 0,
              id_index=0 if use_id else -1, force_suppress=draw(st.booleans()),
              background_id=draw(st.sampled_from([-1, 0])),
              in_format=draw(st.sampled_from(["corner", "center"])))
    kw["out_format"] = kw["in_format"]
    return data, kw


@PROFILE
@given(nms_case())
def test_nms_property(mx, case):
    data, kw = case
    ours = frcnn_ops.nms(data, **kw)
    np.testing.assert_array_equal(ours, ref.nms(data, **kw))
    if data.shape[1] > 0:  # MXNet 1.x cannot make 0-sized NDArrays without np_shape
        theirs = mx.nd.contrib.box_nms(mx.nd.array(data), **kw).asnumpy()
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(mx.nd.frcnn_nms(mx.nd.array(data), **kw).asnumpy(), ours)


@PROFILE
@given(st.integers(1, 3), st.integers(0, 30), st.data())
def test_box_decode_and_clip_property(mx, B, n, data):
    deltas = np.stack([data.draw(boxes(n)) for _ in range(B)]) if n else \
        np.zeros((B, 0, 4), np.float32)
    anchors = data.draw(boxes(n, nan=False))[None] if n else np.zeros((1, 0, 4), np.float32)
    fmt = data.draw(st.sampled_from(["center", "corner"]))
    clip = data.draw(st.sampled_from([-1.0, 0.5, 4.135]))
    stds = data.draw(st.sampled_from([(1.0, 1.0, 1.0, 1.0), (0.1, 0.1, 0.2, 0.2)]))
    with np.errstate(all="ignore"):
        ours = frcnn_ops.box_decode(deltas, anchors, *stds, clip=clip, format=fmt)
        np.testing.assert_array_equal(ours, ref.box_decode(deltas, anchors, *stds, clip=clip,
                                                           format=fmt))
        if n:
            kw = dict(std0=stds[0], std1=stds[1], std2=stds[2], std3=stds[3], clip=clip,
                      format=fmt)
            theirs = mx.nd.contrib.box_decode(mx.nd.array(deltas), mx.nd.array(anchors), **kw)
            # MXNet's kernel flushes denormal results to zero, ours keeps them: equal up to
            # the smallest normal float (NaN and inf in the same places)
            np.testing.assert_allclose(ours, theirs.asnumpy(), rtol=0,
                                       atol=np.finfo(np.float32).tiny)
        info = np.array([[data.draw(st.sampled_from([1.0, 37.0, 600.0])),
                          data.draw(st.sampled_from([1.0, 50.0, 800.0]))] for _ in range(B)],
                        np.float32)
        np.testing.assert_array_equal(frcnn_ops.clip_boxes(ours, info), ref.clip_boxes(ours, info))


@PROFILE
@given(st.integers(1, 2), st.integers(0, 60), st.data())
def test_proposal_property(B, n, data):
    scores = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.5, 0.7, np.nan, -1.0]) |
                                         st.floats(0, 1, width=32), min_size=B * n,
                                         max_size=B * n)), np.float32).reshape(B, n, 1)
    deltas = (np.stack([data.draw(boxes(n)) for _ in range(B)]) if n
              else np.zeros((B, 0, 4), np.float32))
    xy = np.array(data.draw(st.lists(st.floats(-50, 200, width=32), min_size=2 * n,
                                     max_size=2 * n)), np.float32).reshape(n, 2)
    wh = np.array(data.draw(st.lists(st.floats(0, 120, width=32), min_size=2 * n,
                                     max_size=2 * n)), np.float32).reshape(n, 2)
    anchors = np.concatenate([xy, xy + wh], axis=1)[None] if n else np.zeros((1, 0, 4),
                                                                           np.float32)
    info = np.array([[data.draw(st.sampled_from([16.0, 100.0, 300.0])),
                      data.draw(st.sampled_from([16.0, 120.0, 400.0]))] for _ in range(B)],
                    np.float32)
    post = data.draw(st.integers(1, 20))
    pre = data.draw(st.integers(post, 40))
    kw = dict(rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post,
              threshold=data.draw(st.sampled_from([0.0, 0.5, 0.7, 1.0])),
              rpn_min_size=data.draw(st.sampled_from([0.0, 1.0, 16.0])))
    with np.errstate(all="ignore"):
        ours = frcnn_ops.proposal(scores, deltas, anchors, info, **kw)
        np.testing.assert_array_equal(ours, ref.proposal(scores, deltas, anchors, info, **kw))
    assert ours.shape == (B, post, 5)
    assert not np.isnan(ours).any()  # NaN boxes and scores never come out


@PROFILE
@given(st.integers(1, 3), st.integers(0, 30), st.data())
def test_clip_boxes_vs_gluoncv_property(mx, gluoncv, B, n, data):
    """Per image against GluonCV's BBoxClipToImage (one image size per call there), images of
    different sizes in one batch; NaN stays NaN in both."""
    from gluoncv.nn.bbox import BBoxClipToImage
    b = np.stack([data.draw(boxes(n)) for _ in range(B)]) if n else np.zeros((B, 0, 4),
                                                                            np.float32)
    sizes = [(data.draw(st.integers(1, 900)), data.draw(st.integers(1, 900))) for _ in range(B)]
    info = np.array([[h, w, 1.0] for h, w in sizes], np.float32)
    ours = frcnn_ops.clip_boxes(b, info)
    np.testing.assert_array_equal(ours, ref.clip_boxes(b, info))
    if n:
        np.testing.assert_array_equal(
            mx.nd.frcnn_clip_boxes(mx.nd.array(b), mx.nd.array(info)).asnumpy(), ours)
        clip = BBoxClipToImage()
        for i, (h, w) in enumerate(sizes):
            theirs = clip(mx.nd.array(b[i:i + 1]), mx.nd.zeros((1, 3, h, w))).asnumpy()
            np.testing.assert_array_equal(ours[i:i + 1], theirs)


# roi_align: batch indices in and out of [0, N) (NaN, truncation to int), huge/tiny/NaN/inf
# and inverted coordinates, rois outside the map; pooled sizes, sample ratios, aligned,
# position sensitive, spatial scales across their ranges.
BATCH = st.one_of(st.integers(0, 1).map(float),
                  st.sampled_from([-1.0, 2.0, 0.5, -0.5, 1.9, 1e9, np.nan, np.inf]))
ROI_COORD_SMALL = st.one_of(st.floats(-20, 60, width=32), st.sampled_from([0.0, 1e-30, -1e-30]))


@st.composite
def roi_case(draw):
    N = draw(st.integers(1, 2))
    ph, pw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ps = draw(st.booleans())
    C = ph * pw * draw(st.integers(0, 2)) if ps else draw(st.integers(0, 5))
    H, W = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    R = draw(st.integers(0, 8))
    sr = draw(st.sampled_from([-1, 0, 1, 2, 3]))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25, 0.0625, 2.0]))
    # huge, NaN and inf coordinates only with a fixed grid (the adaptive grid of a huge roi is
    # 16384 x 16384 samples a bin: fine for the kernels, too slow for the Python reference)
    coord = COORD if sr > 0 else ROI_COORD_SMALL
    rois = np.zeros((R, 5), np.float32)
    for r in range(R):
        rois[r, 0] = draw(BATCH)
        rois[r, 1:] = [draw(coord) for _ in range(4)]
    dt = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    data = rng.normal(size=(N, C, H, W)).astype(dt)
    kw = dict(pooled_size=(ph, pw), spatial_scale=scale, sample_ratio=sr, position_sensitive=ps,
              aligned=draw(st.booleans()))
    return data, rois.astype(dt), kw, rng


def _contrib_safe(data, rois, kw):
    """Rois MXNet's ROIAlign handles without undefined behaviour: a batch index in [0, N), finite
    moderate coordinates, and (aligned) a positive size (it aborts on an empty grid)."""
    N = data.shape[0]
    b = rois[:, 0]
    ok = (b >= 0) & (b < N) & (b == np.floor(b)) & np.isfinite(rois).all(1)
    ok &= (np.abs(rois[:, 1:]) < 1e4).all(1)
    if kw["aligned"]:  # the size after scaling and the half-pixel shift, in the data's dtype
        t = rois.dtype.type
        sc, half = t(np.float32(kw["spatial_scale"])), t(0.5)
        with np.errstate(all="ignore"):
            c = rois[:, 1:] * sc - half
        ok &= (c[:, 2] - c[:, 0] > 0) & (c[:, 3] - c[:, 1] > 0)
    return ok


@PROFILE
@given(roi_case())
def test_roi_align_property(mx, case):
    data, rois, kw, rng = case
    dt = data.dtype
    tol = dict(rtol=1e-5, atol=1e-5) if dt == np.float32 else dict(rtol=1e-12, atol=1e-12)
    with np.errstate(all="ignore"):
        ours = frcnn_ops.roi_align(data, rois, **kw)
        np.testing.assert_allclose(ours, ref.roi_align(data, rois, **kw), **tol)
        grad = rng.normal(size=ours.shape).astype(dt)
        g = frcnn_ops.roi_align_backward(grad, rois, list(data.shape), list(kw["pooled_size"]),
                                            kw["spatial_scale"], kw["sample_ratio"],
                                            kw["position_sensitive"], kw["aligned"])
        np.testing.assert_allclose(g, ref.roi_align_backward(grad, rois, data.shape, **kw), **tol)
    if data.size == 0 or rois.shape[0] == 0:
        return  # MXNet 1.x cannot make 0-sized NDArrays without np_shape
    x = mx.nd.array(data, dtype=dt)
    x.attach_grad()
    with mx.autograd.record():
        y = mx.nd.frcnn_roi_align(x, mx.nd.array(rois, dtype=dt), **kw)
    y.backward(mx.nd.array(grad, dtype=dt))
    np.testing.assert_array_equal(y.asnumpy(), ours)  # the same kernel through MXNet
    np.testing.assert_array_equal(x.grad.asnumpy(), g)
    ok = _contrib_safe(data, rois, kw)
    if not ok.any() or kw["spatial_scale"] > 1:  # contrib's spatial_scale is bounded to [0, 1]
        return
    safe = rois[ok]
    x2 = mx.nd.array(data, dtype=dt)
    x2.attach_grad()
    with mx.autograd.record():
        y2 = mx.nd.contrib.ROIAlign(x2, mx.nd.array(safe, dtype=dt), **kw)
    y2.backward(mx.nd.array(grad[ok], dtype=dt))
    # not bitwise: samples reading the same pixel are merged (relative + absolute tolerance)
    ctol = dict(rtol=1e-4, atol=1e-5) if dt == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ours[ok], y2.asnumpy(), **ctol)
    g_safe = frcnn_ops.roi_align_backward(
        grad[ok], safe, list(data.shape), list(kw["pooled_size"]), kw["spatial_scale"],
        kw["sample_ratio"], kw["position_sensitive"], kw["aligned"])
    np.testing.assert_allclose(g_safe, x2.grad.asnumpy(), **ctol)
