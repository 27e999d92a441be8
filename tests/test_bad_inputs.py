"""Every bad call raises a Python error naming the op, the argument, and what came (and what was
expected), through mx.nd, mx.sym (bound and executed) and the NumPy path; none crashes the
process (the whole list runs once more in a subprocess). Then each op's NaN/inf policy, as its
docstring and the README state it, through the NumPy and MXNet paths.

`BAD_CALLS` is also run under the sanitizers by tools/sanitize.sh."""
import os
import subprocess
import sys

import numpy as np
import pytest

import frcnn_ops
from frcnn_ops import reference as ref

f32, f64 = np.float32, np.float64


def z(*shape, dtype=f32):
    return np.zeros(shape, dtype)


def boxes(n, dtype=f32):
    b = np.tile(np.array([[1, 2, 11, 22]], dtype), (n, 1))
    b[:, :2] += np.arange(n, dtype=dtype)[:, None]
    return b


def nms_data(B, n, width, dtype=f32):
    d = np.zeros((B, n, width), dtype)
    d[..., 1] = np.linspace(0.1, 0.9, n)
    d[..., 2:6] = boxes(n, dtype)
    return d


def rois(R, dtype=f32):
    r = np.zeros((R, 5), dtype)
    r[:, 1:] = [0, 0, 3, 3]
    return r


# (id, function, inputs (name -> array, in call order), attributes, substrings the message must
#  hold besides the op name: the argument and what came)
BOX = dict(data=z(1, 5, 4), anchors=boxes(5)[None])
BAD_CALLS = [
    # ---- box_decode
    ("decode-data-rank", "box_decode", dict(data=z(5, 4), anchors=boxes(5)[None]), {},
     ["data", "(B, N, 4)", "(5, 4)"]),
    ("decode-data-dim", "box_decode", dict(data=z(1, 5, 5), anchors=boxes(5)[None]), {},
     ["data", "(1, 5, 5)"]),
    ("decode-anchor-count", "box_decode", dict(data=z(1, 5, 4), anchors=boxes(6)[None]), {},
     ["anchors", "N = 5", "(1, 6, 4)"]),
    ("decode-anchor-batch", "box_decode", dict(data=z(2, 5, 4), anchors=z(3, 5, 4)), {},
     ["anchors batch", "1 or B = 2", "(3, 5, 4)"]),
    ("decode-int32", "box_decode", dict(data=z(1, 5, 4, dtype=np.int32),
                                        anchors=z(1, 5, 4, dtype=np.int32)), {},
     ["data", "float32", "int32"]),
    ("decode-int8", "box_decode", dict(data=z(1, 5, 4, dtype=np.int8),
                                       anchors=z(1, 5, 4, dtype=np.int8)), {},
     ["data", "float32, float64 or float16", "int8"]),
    ("decode-dtype-mismatch", "box_decode", dict(data=z(1, 5, 4), anchors=z(1, 5, 4, dtype=f64)),
     {}, ["anchors", "dtype of data", "float64"]),
    ("decode-format", "box_decode", BOX, dict(format="diag"), ["format", "'corner'", "'diag'"]),
    # ---- clip_boxes
    ("clip-im_info-cols", "clip_boxes", dict(boxes=z(2, 3, 4), im_info=z(2, 1)), {},
     ["im_info", "(B, >=2)", "(2, 1)"]),
    ("clip-im_info-rows", "clip_boxes", dict(boxes=z(2, 3, 4), im_info=z(3, 2)), {},
     ["im_info", "B = 2", "(3, 2)"]),
    ("clip-boxes-rank", "clip_boxes", dict(boxes=z(1, 2, 3, 4), im_info=z(1, 2)), {},
     ["boxes", "(B, N, 4)", "(1, 2, 3, 4)"]),
    ("clip-int32", "clip_boxes", dict(boxes=z(1, 3, 4, dtype=np.int32),
                                      im_info=z(1, 2, dtype=np.int32)), {},
     ["boxes", "float32", "int32"]),
]

PROP = dict(scores=z(1, 8, 1), deltas=z(1, 8, 4), anchors=boxes(8)[None], im_info=z(1, 3) + 50)
PROP_KW = dict(rpn_pre_nms_top_n=6, rpn_post_nms_top_n=3)
BAD_CALLS += [
    # ---- proposal
    ("proposal-scores-dim", "proposal", dict(PROP, scores=z(1, 8, 2)), PROP_KW,
     ["scores", "(B, N, 1)", "(1, 8, 2)"]),
    ("proposal-batch-mismatch", "proposal", dict(PROP, scores=z(2, 8, 1)), PROP_KW,
     ["scores", "(2, 8, 1)", "(1, 8, 4)"]),
    ("proposal-anchor-count", "proposal", dict(PROP, anchors=boxes(7)[None]), PROP_KW,
     ["anchors", "N = 8", "(1, 7, 4)"]),
    ("proposal-im_info-cols", "proposal", dict(PROP, im_info=z(1, 1)), PROP_KW,
     ["im_info", "(B, >=2)", "(1, 1)"]),
    ("proposal-im_info-rows", "proposal", dict(PROP, im_info=z(2, 3)), PROP_KW,
     ["im_info", "B = 1", "(2, 3)"]),
    ("proposal-threshold-negative", "proposal", PROP, dict(PROP_KW, threshold=-0.1),
     ["threshold", "[0, 1]", "-0.1"]),
    ("proposal-threshold-above-1", "proposal", PROP, dict(PROP_KW, threshold=1.5),
     ["threshold", "[0, 1]", "1.5"]),
    ("proposal-min-size-negative", "proposal", PROP, dict(PROP_KW, rpn_min_size=-1),
     ["rpn_min_size", ">= 0", "-1"]),
    ("proposal-post-zero", "proposal", PROP, dict(rpn_pre_nms_top_n=6, rpn_post_nms_top_n=0),
     ["rpn_post_nms_top_n", ">= 1", "got 0"]),
    ("proposal-pre-below-post", "proposal", PROP, dict(rpn_pre_nms_top_n=2, rpn_post_nms_top_n=3),
     ["rpn_pre_nms_top_n", "(2)", "(3)"]),
    ("proposal-dtype-mismatch", "proposal", dict(PROP, scores=z(1, 8, 1, dtype=f64)), PROP_KW,
     ["scores", "float64"]),
    # ---- nms
    ("nms-rank-1", "nms", dict(data=z(6)), {}, ["data", "at least 2 dims", "(6,)"]),
    ("nms-width", "nms", dict(data=z(1, 3, 4)), dict(coord_start=1, score_index=0),
     ["data", "at least 5", "(1, 3, 4)"]),
    ("nms-coord_start", "nms", dict(data=nms_data(1, 4, 6)), dict(coord_start=3),
     ["coord_start", "[3, 6]", "[0, 6)"]),
    ("nms-score_index", "nms", dict(data=nms_data(1, 4, 6)), dict(score_index=7),
     ["score_index", "7", "[0, 6)"]),
    ("nms-id-overlaps", "nms", dict(data=nms_data(1, 4, 6)), dict(id_index=3),
     ["id_index", "3", "[2, 5]"]),
    ("nms-overlap-nan", "nms", dict(data=nms_data(1, 4, 6)), dict(overlap_thresh=float("nan")),
     ["overlap_thresh", "nan"]),
    ("nms-in_format", "nms", dict(data=nms_data(1, 4, 6)), dict(in_format="xyxy"),
     ["in_format", "'center'", "'xyxy'"]),
    ("nms-int32", "nms", dict(data=nms_data(1, 4, 6).astype(np.int32)), {},
     ["data", "float32", "int32"]),
    # ---- roi_align
    ("roi-data-rank", "roi_align", dict(data=z(1, 4, 4), rois=rois(2)),
     dict(pooled_size=2, spatial_scale=1.0), ["data", "(N, C, H, W)", "(1, 4, 4)"]),
    ("roi-rois-dim", "roi_align", dict(data=z(1, 2, 4, 4), rois=z(2, 4)),
     dict(pooled_size=2, spatial_scale=1.0), ["rois", "(R, 5)", "(2, 4)"]),
    ("roi-pooled-zero", "roi_align", dict(data=z(1, 2, 4, 4), rois=rois(2)),
     dict(pooled_size=(0, 2), spatial_scale=1.0), ["pooled_size", "positive", "(0, 2)"]),
    ("roi-pooled-huge", "roi_align", dict(data=z(1, 2, 4, 4), rois=rois(2)),
     dict(pooled_size=(300, 300), spatial_scale=1.0), ["pooled_size", "65536", "(300, 300)"]),
    ("roi-scale-negative", "roi_align", dict(data=z(1, 2, 4, 4), rois=rois(2)),
     dict(pooled_size=2, spatial_scale=-1.0), ["spatial_scale", "positive", "-1"]),
    ("roi-scale-zero", "roi_align", dict(data=z(1, 2, 4, 4), rois=rois(2)),
     dict(pooled_size=2, spatial_scale=0.0), ["spatial_scale", "positive", "got 0"]),
    ("roi-sample-ratio-huge", "roi_align", dict(data=z(1, 2, 4, 4), rois=rois(2)),
     dict(pooled_size=2, spatial_scale=1.0, sample_ratio=20000),
     ["sample_ratio", "16384", "20000"]),
    ("roi-position-sensitive", "roi_align", dict(data=z(1, 3, 4, 4), rois=rois(2)),
     dict(pooled_size=2, spatial_scale=1.0, position_sensitive=True),
     ["position_sensitive", "divisible", "(1, 3, 4, 4)"]),
    ("roi-dtype-mismatch", "roi_align", dict(data=z(1, 2, 4, 4), rois=rois(2, f64)),
     dict(pooled_size=2, spatial_scale=1.0), ["rois", "dtype of data", "float64"]),
    ("roi-float16-rois-float32", "roi_align", dict(data=z(1, 2, 4, 4, dtype=np.float16),
                                                   rois=rois(2)),
     dict(pooled_size=2, spatial_scale=1.0), ["rois", "dtype of data", "float32"]),
]

OPS = {"box_decode": "frcnn_box_decode", "clip_boxes": "frcnn_clip_boxes",
       "proposal": "frcnn_proposal", "nms": "frcnn_nms", "roi_align": "frcnn_roi_align"}


def call(path, fn, inputs, kw):
    """Runs one call through `path` ('numpy', 'nd' or 'sym') and waits for its result."""
    f = getattr(frcnn_ops, fn)
    if path == "numpy":
        return f(*inputs.values(), **kw)
    import mxnet as mx
    nds = {k: mx.nd.array(v, dtype=v.dtype) for k, v in inputs.items()}
    if path == "nd":
        return f(*nds.values(), **kw).asnumpy()
    out = f(*[mx.sym.var(k) for k in inputs], **kw)
    ex = out.bind(mx.cpu(), args=nds)
    ex.forward()
    return ex.outputs[0].asnumpy()


def expected_errors(path):
    if path == "numpy":
        return (ValueError, TypeError)
    import mxnet as mx
    return (mx.base.MXNetError,)


def test_at_least_25_bad_calls():
    assert len(BAD_CALLS) >= 25
    assert len({c[0] for c in BAD_CALLS}) == len(BAD_CALLS)
    assert {c[1] for c in BAD_CALLS} == set(OPS)


@pytest.mark.parametrize("path", ["numpy", "nd", "sym"])
@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_call_names_op_argument_and_value(request, case, path):
    if path != "numpy":
        request.getfixturevalue("mx")  # skips without MXNet; the NumPy path runs anyway
    _, fn, inputs, kw, must = case
    with pytest.raises(expected_errors(path)) as info:
        call(path, fn, inputs, kw)
    msg = str(info.value)
    assert OPS[fn] in msg, msg
    for s in must:
        assert s in msg, "%r not in %r" % (s, msg)


def test_python_level_bad_calls(mx):
    with pytest.raises(TypeError, match="frcnn_box_decode: data must be an MXNet NDArray or "
                                        "Symbol, a NumPy array or a CuPy array, got list"):
        frcnn_ops.box_decode([[0.0] * 4], boxes(1)[None])
    with pytest.raises(TypeError, match="frcnn_clip_boxes: all inputs must be of one kind, got "
                                        "boxes=ndarray, im_info=numpy"):
        frcnn_ops.clip_boxes(mx.nd.zeros((1, 2, 4)), z(1, 2))
    with pytest.raises(mx.base.MXNetError, match="frcnn_nms: unknown attribute 'foo'"):
        mx.nd.frcnn_nms(mx.nd.array(nms_data(1, 4, 6)), foo=1).wait_to_read()
    with pytest.raises(mx.base.MXNetError, match="frcnn_roi_align: attribute sample_ratio must "
                                                 "be an integer, got 'two'"):
        mx.nd.frcnn_roi_align(mx.nd.zeros((1, 1, 2, 2)), mx.nd.array(rois(1)), pooled_size=2,
                              spatial_scale=1.0, sample_ratio="two").wait_to_read()


_SUBPROCESS = r"""
import sys, numpy as np
sys.path.insert(0, %r)
import test_bad_inputs as t
n = 0
for case in t.BAD_CALLS:
    for path in ("numpy", "nd", "sym"):
        try:
            t.call(path, case[1], case[2], case[3])
        except t.expected_errors(path):
            n += 1
        else:
            raise SystemExit("no error: %%s %%s" %% (case[0], path))
print("raised", n)
"""


def test_bad_calls_in_a_subprocess_never_crash(mx, tmp_path):
    """The whole list once more in a fresh process: it must exit normally (no abort, no
    segfault), every call having raised. (cwd outside the checkout: `python -c` puts the
    cwd first on sys.path, and the source folder frcnn_ops/ is not the installed package.)"""
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-c", _SUBPROCESS % here], capture_output=True,
                       text=True, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "raised %d" % (3 * len(BAD_CALLS)) in r.stdout


@pytest.mark.parametrize("shape", [(0, 6), (2, 0, 6)])
def test_empty_nms_input_in_legacy_shape_mode_names_the_cause(mx, shape):
    """MXNet's legacy shape mode (the default) takes a 0 dim for unknown and hands it to the op
    as -1 (4294967295): the error names that and the fix. box_nms fails there too (its shape
    inference sees [-1, 6]). With NumPy shape semantics frcnn_nms returns the empty input;
    box_nms passes shape inference but its forward fails (mshadow: "RangeExp does not support
    (start, stop, step) = (0,0,1)", raised at the next wait)."""
    x = np.zeros(shape, f32)
    with mx.util.np_shape(False):
        with pytest.raises(mx.base.MXNetError) as info:
            frcnn_ops.nms(mx.nd.array(x)).wait_to_read()
        with pytest.raises(mx.base.MXNetError):
            mx.nd.contrib.box_nms(mx.nd.array(x)).wait_to_read()
    msg = str(info.value)
    for s in ["frcnn_nms", "data", "legacy shape mode", "0 dim means unknown",
              "mx.util.np_shape(True)", "mx.npx.set_np()", "?, 6)"]:
        assert s in msg, "%r not in %r" % (s, msg)
    assert "2^31" not in msg
    with mx.util.np_shape(True):
        ours = frcnn_ops.nms(mx.nd.array(x))
        mx.nd.waitall()
        assert ours.shape == shape
        theirs = mx.nd.contrib.box_nms(mx.nd.array(x))
        with pytest.raises(mx.base.MXNetError, match="RangeExp"):
            mx.nd.waitall()
        assert theirs.shape == shape
    assert frcnn_ops.nms(x).shape == shape


@pytest.mark.parametrize("valid_thresh", [-1.0, -0.25, 0.0, 0.5, float("nan")])
def test_nms_valid_thresh_range_is_box_nms(mx, valid_thresh):
    """box_nms (MXNet 1.9.1) declares valid_thresh without a bound and takes any float: a
    negative one keeps negative scores above it, NaN keeps nothing. frcnn_nms the same, on
    every path."""
    d = nms_data(2, 6, 6)
    d[..., 1] = [[-0.8, -0.5, -0.1, 0.2, 0.6, 0.9], [0.3, -0.3, -2, 0.5, -0.9, 0.1]]
    d[..., 2:6] += np.arange(6, dtype=f32)[:, None] * 20  # no overlaps
    theirs = mx.nd.contrib.box_nms(mx.nd.array(d), valid_thresh=valid_thresh).asnumpy()
    out = _both(mx, "nms", d, valid_thresh=valid_thresh)
    np.testing.assert_array_equal(out, theirs)


# ---- NaN / inf policy (README "Using it", each op's docstring) ------------------------------

def _both(mx, fn, *arrays, **kw):
    """The NumPy result, checked bitwise against the mx.nd one."""
    out = getattr(frcnn_ops, fn)(*arrays, **kw)
    got = getattr(frcnn_ops, fn)(*[mx.nd.array(a, dtype=a.dtype) for a in arrays], **kw)
    np.testing.assert_array_equal(got.asnumpy(), out)
    return out


def test_policy_box_decode_propagates_nan_and_inf(mx):
    nan, inf = np.nan, np.inf
    deltas = np.array([[[0, 0, 0, 0], [nan, 0, 0, 0], [0, 0, nan, 0], [0, 0, inf, 0],
                        [0, 0, -inf, 0], [inf, 0, 0, 0]]], f32)
    anchors = boxes(6)[None]
    anchors[0, 5] = [0, 0, 0, 0]  # zero width: inf * 0 = nan
    out = _both(mx, "box_decode", deltas, anchors, format="corner")
    np.testing.assert_array_equal(out, ref.box_decode(deltas, anchors, format="corner"))
    assert np.isfinite(out[0, 0]).all()
    assert np.isnan(out[0, 1, [0, 2]]).all() and np.isfinite(out[0, 1, [1, 3]]).all()
    assert np.isnan(out[0, 2, [0, 2]]).all()
    assert (out[0, 3, [0, 2]] == [-inf, inf]).all()             # exp(inf) = inf width
    assert (out[0, 4, [0, 2]] == out[0, 4, [0, 0]]).all()       # exp(-inf) = 0 width
    assert np.isnan(out[0, 5, [0, 2]]).all()


def test_policy_clip_boxes_keeps_nan_and_clips_inf(mx):
    b = np.array([[[np.nan, 1, np.inf, -np.inf], [-5, np.nan, 500, 7]]], f32)
    info = np.array([[100, 200]], f32)  # height 100, width 200
    out = _both(mx, "clip_boxes", b, info)
    np.testing.assert_array_equal(out, [[[np.nan, 1, 200, 0], [0, np.nan, 200, 7]]])


def test_policy_proposal_drops_nan_boxes_and_nan_scores(mx):
    n = 6
    anchors = (boxes(n) * 3)[None]
    scores = np.array([[0.9, np.nan, 0.8, 0.7, 0.6, np.inf]], f32).reshape(1, n, 1)
    deltas = np.zeros((1, n, 4), f32)
    deltas[0, 2, 0] = np.nan     # box 2 decodes to NaN x: dropped like a small box
    deltas[0, 3, 2] = np.inf     # box 3: infinite width, clipped to the image: kept
    info = np.array([[100, 120, 1]], f32)
    kw = dict(rpn_pre_nms_top_n=n, rpn_post_nms_top_n=n, threshold=1.0, rpn_min_size=1)
    out = _both(mx, "proposal", scores, deltas, anchors, info, **kw)
    np.testing.assert_array_equal(out, ref.proposal(scores, deltas, anchors, info, **kw))
    assert not np.isnan(out).any()
    kept = out[0, :, 0]
    # inf score ranks first; NaN score (row 1) and NaN box (row 2, score 0.8) are absent
    np.testing.assert_array_equal(kept[:4], np.array([np.inf, 0.9, 0.7, 0.6], f32))
    assert (out[0, 4:] == -1).all()
    assert out[0, 2, 3] == 120  # the infinite-width box clipped to the image width


def test_policy_nms_nan_like_box_nms(mx):
    d = np.array([[[0, 0.9, 0, 0, 10, 10],
                   [0, np.nan, 0, 0, 10, 10],      # NaN score: never a candidate
                   [0, 0.8, np.nan, 0, 10, 10],    # NaN box: kept, suppresses nothing
                   [0, 0.7, 1, 1, 10, 10],         # suppressed by row 0
                   [0, 0.6, 0, 0, np.inf, 10]]], f32)
    out = _both(mx, "nms", d, overlap_thresh=0.5)
    theirs = mx.nd.contrib.box_nms(mx.nd.array(d), overlap_thresh=0.5).asnumpy()
    np.testing.assert_array_equal(out, theirs)
    np.testing.assert_array_equal(out, ref.nms(d, overlap_thresh=0.5))
    assert not np.isnan(out[:, :, 1]).any()


@pytest.mark.parametrize("aligned", [False, True])
def test_policy_roi_align_zero_roi_for_nan_and_bad_batch(mx, aligned):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(2, 3, 6, 7)).astype(f32)
    r = np.array([[0, 1, 1, 4, 4], [1, np.nan, 1, 4, 4], [0, 1, 1, np.inf, 4],
                  [-1, 1, 1, 4, 4], [2, 1, 1, 4, 4], [np.nan, 1, 1, 4, 4], [1e9, 1, 1, 4, 4],
                  [1, 0, 0, 5, 5]], f32)
    kw = dict(pooled_size=(2, 2), spatial_scale=1.0, sample_ratio=2, aligned=aligned)
    out = _both(mx, "roi_align", data, r, **kw)
    assert out[[0, 7]].any() and not out[1:7].any()
    x, rr = mx.nd.array(data), mx.nd.array(r)
    x.attach_grad()
    with mx.autograd.record():
        y = mx.nd.frcnn_roi_align(x, rr, **kw)
    g = np.zeros(out.shape, f32)
    g[1:7] = 1  # gradient only through the zero rois: none reaches the data
    y.backward(mx.nd.array(g))
    assert not x.grad.asnumpy().any()
