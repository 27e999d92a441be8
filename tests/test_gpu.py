"""The CUDA kernels against the CPU path, on a GPU (CuPy, marker gpu) and on the CPU execution
harness (marker cuda_emu): the same test bodies through the `dev` fixture (conftest.py).

Expected values are the CPU path on the inputs rounded to the tested dtype (float16 inputs are
computed in float32 on the CPU, as the CUDA kernels compute them, and rounded once). Policy
held here (docs/GPU.md): box_decode, clip_boxes, proposal and nms are bitwise equal to the CPU
path in float32 and float16 (the CUDA build does not contract multiply-adds in those files;
exp is evaluated in double on both); float64 box decoding differs by the last bit at most
(the devices' double exp); ROIAlign agrees to 1e-5 relative (float32).
No test here needs MXNet.
"""
import numpy as np
import pytest

import frcnn_ops
from testutil import corner_anchors

F16, F32, F64 = np.float16, np.float32, np.float64
DTYPES = [F32, F64, F16]
SIZES = [0, 1, 63, 64, 65]


def cpu_dtype(dtype):
    return F32 if dtype == F16 else dtype


def on_cpu(fn, *arrays, dtype, **kw):
    """fn on the CPU path with the inputs as the device sees them, result in `dtype`."""
    out = fn(*[a.astype(dtype).astype(cpu_dtype(dtype)) for a in arrays], **kw)
    return out.astype(dtype)


def assert_bitwise(got, exp):
    assert got.dtype == exp.dtype and got.shape == exp.shape
    np.testing.assert_array_equal(got, exp)  # NaN == NaN here
    # array_equal treats -0.0 == 0.0; the bytes must agree too (NaN payloads aside)
    if got.size:
        same = (got.view(np.uint8) == exp.view(np.uint8)).reshape(got.shape + (-1,)).all(-1)
        assert (same | np.isnan(got)).all()


# ---- box_decode / clip_boxes --------------------------------------------------------------

def decode_inputs(rng, B, N, fmt, anchor_batch=1):
    deltas = rng.normal(0, 0.5, size=(B, N, 4))
    anc = corner_anchors(rng, anchor_batch * N, dtype=F64).reshape(anchor_batch, N, 4)
    if fmt == "center":
        a = anc.copy()
        anc = np.concatenate([(a[..., :2] + a[..., 2:]) / 2, a[..., 2:] - a[..., :2]], -1)
    return deltas, anc


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N", SIZES)
@pytest.mark.parametrize("fmt", ["corner", "center"])
def test_box_decode(dev, rng, dtype, N, fmt):
    deltas, anc = decode_inputs(rng, 2, N, fmt, anchor_batch=2 if N == 63 else 1)
    deltas[:, ::5, 2] = 9.0  # exp clip
    kw = dict(std0=0.1, std1=0.1, std2=0.2, std3=0.2, clip=1.5, format=fmt)
    got = dev.call(frcnn_ops.box_decode, deltas.astype(dtype), anc.astype(dtype), **kw)
    exp = on_cpu(frcnn_ops.box_decode, deltas, anc, dtype=dtype, **kw)
    if dtype == F64:
        np.testing.assert_allclose(got, exp, rtol=1e-15, atol=0)
    else:
        assert_bitwise(got, exp)
    g = rng.normal(size=deltas.shape)
    got_g = dev.call(frcnn_ops.box_decode_backward, g.astype(dtype), deltas.astype(dtype),
                     anc.astype(dtype), **kw)
    exp_g = on_cpu(frcnn_ops.box_decode_backward, g, deltas, anc, dtype=dtype, **kw)
    if dtype == F64:
        np.testing.assert_allclose(got_g, exp_g, rtol=1e-15, atol=0)
    else:
        assert_bitwise(got_g, exp_g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_box_decode_nan_inf(dev, rng, dtype):
    deltas, anc = decode_inputs(rng, 1, 64, "corner")
    deltas[0, 0, 0] = np.nan
    deltas[0, 1, 2] = np.inf
    deltas[0, 2, 3] = -np.inf
    anc[0, 3, 1] = np.nan
    got = dev.call(frcnn_ops.box_decode, deltas.astype(dtype), anc.astype(dtype), format="corner")
    exp = on_cpu(frcnn_ops.box_decode, deltas, anc, dtype=dtype, format="corner")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exp))
    np.testing.assert_array_equal(got[~np.isnan(got)], exp[~np.isnan(exp)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N", SIZES)
def test_clip_boxes(dev, rng, dtype, N):
    boxes = rng.uniform(-200, 1200, size=(3, N, 4))
    if N:
        boxes[0, 0] = [np.nan, np.inf, -np.inf, 5]
    info = np.array([[600, 800, 1, 7], [300, 500, 1, 7], [1000, 60, 2, 7]], F64)  # wide im_info
    got = dev.call(frcnn_ops.clip_boxes, boxes.astype(dtype), info.astype(dtype))
    exp = on_cpu(frcnn_ops.clip_boxes, boxes, info, dtype=dtype)
    assert_bitwise(got, exp)
    g = rng.normal(size=boxes.shape)
    got_g = dev.call(frcnn_ops.clip_boxes_backward, g.astype(dtype), boxes.astype(dtype),
                     info.astype(dtype))
    exp_g = on_cpu(frcnn_ops.clip_boxes_backward, g, boxes, info, dtype=dtype)
    assert_bitwise(got_g, exp_g)


def test_box_ops_many_rows(dev, rng):
    """More rows than a grid dimension of 2^16 blocks would hold with one row per thread."""
    if not dev.real:
        pytest.skip("large sizes run on the GPU only")
    deltas, anc = decode_inputs(rng, 2, 70000, "corner")
    got = dev.call(frcnn_ops.box_decode, deltas.astype(F32), anc.astype(F32), format="corner")
    assert_bitwise(got, on_cpu(frcnn_ops.box_decode, deltas, anc, dtype=F32, format="corner"))


# ---- proposal ------------------------------------------------------------------------------

def rpn_inputs(rng, B, N, anchor_batch=1):
    scores = rng.uniform(size=(B, N, 1))
    deltas = rng.normal(0, 0.3, size=(B, N, 4))
    anc = corner_anchors(rng, anchor_batch * N, scale=600.0, dtype=F64)
    anc = anc.reshape(anchor_batch, N, 4)
    info = np.array([[600, 800, 1], [375, 500, 1], [600, 600, 1]][:B], F64)
    return scores, deltas, anc, info


def check_proposal(dev, dtype, scores, deltas, anc, info, **kw):
    got = dev.call(frcnn_ops.proposal, scores.astype(dtype), deltas.astype(dtype),
                   anc.astype(dtype), info.astype(dtype), **kw)
    exp = on_cpu(frcnn_ops.proposal, scores, deltas, anc, info, dtype=dtype, **kw)
    if dtype == F64:  # the device's double exp may differ in the last bit
        np.testing.assert_array_equal(got[..., 0], exp[..., 0])
        np.testing.assert_allclose(got, exp, rtol=1e-14, atol=0)
    else:
        assert_bitwise(got, exp)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N", [0, 1, 63, 64, 65, 700])
def test_proposal(dev, rng, dtype, N):
    scores, deltas, anc, info = rpn_inputs(rng, 2, N)
    kw = dict(rpn_pre_nms_top_n=300, rpn_post_nms_top_n=100, threshold=0.7, rpn_min_size=4)
    check_proposal(dev, dtype, scores, deltas, anc, info, **kw)


@pytest.mark.parametrize("dtype", [F32, F16])
def test_proposal_edges(dev, rng, dtype):
    N = 500
    scores, deltas, anc, info = rpn_inputs(rng, 3, N, anchor_batch=3)  # per-image anchors
    scores[0] = 0.0                      # an image without any candidate
    scores[1, ::3] = 0.5                 # ties: lower anchor index first
    scores[2, 5] = np.nan                # NaN score: never a candidate
    deltas[2, 7] = np.nan                # NaN box: dropped
    kw = dict(rpn_pre_nms_top_n=1000, rpn_post_nms_top_n=300, threshold=0.5, rpn_min_size=8,
              clip=4.135)                # N < pre_nms; post > kept count: -1 padding
    check_proposal(dev, dtype, scores, deltas, anc, info, **kw)
    # 2-D scores (B, N) are taken as (B, N, 1)
    check_proposal(dev, dtype, scores[..., 0], deltas, anc, info, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_proposal_per_level_nms(dev, rng, dtype):
    levels = [400, 0, 100, 37]  # FPN levels along N, one of them empty
    scores, deltas, anc, info = rpn_inputs(rng, 2, sum(levels), anchor_batch=2)
    scores[1, ::5] = 0.5  # ties across levels: level order first
    for pre, post in [(400, 300), (40, 40)]:  # padding; pre // levels = 10 per level
        check_proposal(dev, dtype, scores, deltas, anc, info, rpn_pre_nms_top_n=pre,
                       rpn_post_nms_top_n=post, threshold=0.6, rpn_min_size=2,
                       level_sizes=levels, per_level_nms=True)


def test_proposal_seed_shape(dev, rng):
    if not dev.real:
        pytest.skip("the seed shape runs on the GPU only")
    scores, deltas, anc, info = rpn_inputs(rng, 2, 28500)
    for pre, post in [(6000, 300), (12000, 2000)]:
        check_proposal(dev, F32, scores, deltas, anc, info, rpn_pre_nms_top_n=pre,
                       rpn_post_nms_top_n=post)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_level_nms", [False, True])
def test_multilevel_proposal(dev, rng, dtype, per_level_nms):
    """The levels apart (the op gathers them in its workspace): frcnn_proposal's output on
    the concatenation, as the CPU path computes it."""
    levels = [400, 0, 100, 37]
    scores, deltas, anc, info = rpn_inputs(rng, 2, sum(levels))
    scores[1, ::5] = 0.5
    kw = dict(rpn_pre_nms_top_n=400, rpn_post_nms_top_n=300, threshold=0.6, rpn_min_size=2,
              per_level_nms=per_level_nms)
    cuts = np.cumsum(levels)[:-1]
    L = len(levels)
    got = dev.call(lambda a, i, *lv: frcnn_ops.multilevel_proposal(lv[:L], lv[L:], a, i, **kw),
                   anc.astype(dtype), info.astype(dtype),
                   *[x.astype(dtype) for x in np.split(scores, cuts, axis=1)],
                   *[x.astype(dtype) for x in np.split(deltas, cuts, axis=1)])
    exp = on_cpu(frcnn_ops.proposal, scores, deltas, anc, info, dtype=dtype, level_sizes=levels,
                 **kw)
    if dtype == F64:  # the device's double exp may differ in the last bit
        np.testing.assert_array_equal(got[..., 0], exp[..., 0])
        np.testing.assert_allclose(got, exp, rtol=1e-14, atol=0)
    else:
        assert_bitwise(got, exp)


# ---- nms -----------------------------------------------------------------------------------

def detections(rng, shape, classes=4, ties=False):
    """shape = (batch dims..., n): n rows (id, score, x1, y1, x2, y2) of overlapping boxes."""
    n = shape[-1]
    lead = tuple(shape[:-1])
    xy = rng.uniform(0, 100, size=lead + (n, 2))
    wh = rng.uniform(5, 60, size=lead + (n, 2))
    ids = rng.integers(-1, classes, size=lead + (n, 1)).astype(F64)
    scores = rng.uniform(size=lead + (n, 1))
    if ties:
        scores = np.round(scores * 4) / 4
    return np.concatenate([ids, scores, xy, xy + wh], -1)


NMS_CASES = [
    dict(overlap_thresh=0.5),
    dict(overlap_thresh=0.3, id_index=0, topk=50),
    dict(overlap_thresh=0.3, id_index=0, background_id=0, force_suppress=True),
    dict(overlap_thresh=0.7, valid_thresh=0.3, topk=1, id_index=0),
    dict(overlap_thresh=0.5, topk=500),           # topk > n
    dict(overlap_thresh=0.5, topk=0),             # input returned unchanged
    dict(overlap_thresh=0.4, in_format="center", out_format="corner"),
    dict(overlap_thresh=0.4, in_format="corner", out_format="center", id_index=0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", NMS_CASES, ids=lambda kw: "-".join("%s=%s" % i for i in kw.items()))
def test_nms(dev, rng, dtype, kw):
    data = detections(rng, (2, 3, 150), ties=True)  # 4-D: every leading dim is a batch
    got = dev.call(frcnn_ops.nms, data.astype(dtype), **kw)
    assert_bitwise(got, on_cpu(frcnn_ops.nms, data, dtype=dtype, **kw))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", NMS_CASES, ids=lambda kw: "-".join("%s=%s" % i for i in kw.items()))
def test_nms_backward(dev, rng, dtype, kw):
    """box_nms's gradient (output row k -> the input row of the k-th kept row) on the device,
    the selection run again there: bitwise the CPU path's."""
    data = detections(rng, (2, 3, 150), ties=True)
    g = rng.normal(size=data.shape)
    got = dev.call(frcnn_ops.nms_backward, g.astype(dtype), data.astype(dtype), **kw)
    assert_bitwise(got, on_cpu(frcnn_ops.nms_backward, g, data, dtype=dtype, **kw))


@pytest.mark.parametrize("n", SIZES + [129])
def test_nms_sizes(dev, rng, n):
    data = detections(rng, (3, n))
    for kw in ({}, dict(id_index=0, topk=64)):
        got = dev.call(frcnn_ops.nms, data.astype(F32), **kw)
        assert_bitwise(got, on_cpu(frcnn_ops.nms, data, dtype=F32, **kw))


@pytest.mark.parametrize("dtype", [F32, F16])
def test_nms_nan_and_odd_ids(dev, rng, dtype):
    data = detections(rng, (1, 200))
    data[0, ::9, 1] = np.nan              # NaN score: never a candidate
    data[0, 1::13, 3] = np.nan            # NaN box: neither suppresses nor is suppressed
    data[0, 2::7, 0] = np.nan             # NaN id: its own class (as box_nms on x86)
    data[0, 3::7, 0] = 1.7                # non-integer id: truncated (class 1)
    data[0, 4::11, 0] = 3e9               # out of int range: the NaN class
    for kw in (dict(id_index=0), dict(id_index=0, background_id=1),
               dict(id_index=0, force_suppress=True)):
        got = dev.call(frcnn_ops.nms, data.astype(dtype), **kw)
        assert_bitwise(got, on_cpu(frcnn_ops.nms, data, dtype=dtype, **kw))


def test_nms_many_batches_and_rows(dev, rng):
    """More batches than grid.z allows in one launch (65535), and > 2^16 rows in one batch."""
    if not dev.real:
        pytest.skip("large sizes run on the GPU only")
    data = detections(rng, (70000, 3))
    assert_bitwise(dev.call(frcnn_ops.nms, data.astype(F32), id_index=0),
                   on_cpu(frcnn_ops.nms, data, dtype=F32, id_index=0))
    data = detections(rng, (1, 70000))
    assert_bitwise(dev.call(frcnn_ops.nms, data.astype(F32), topk=70000),
                   on_cpu(frcnn_ops.nms, data, dtype=F32, topk=70000))


def test_nms_refuses_2_31_rows_before_sizing(dev):
    """The refusal names the op and comes before CUB's size query (which would overflow)."""
    lib = frcnn_ops._dispatch.device("cupy" if dev.real else "emu").lib
    with pytest.raises(RuntimeError, match="frcnn_nms: 2 batches x 1073741825 rows"):
        lib.workspace_gpu("frcnn_nms", False, 0, [[2, 2 ** 30 + 1, 6]], {})
    with pytest.raises(RuntimeError, match="frcnn_proposal: 2 images x 1073741825 anchors"):
        lib.workspace_gpu("frcnn_proposal", False, 0, [[2, 2 ** 30 + 1, 1], [2, 2 ** 30 + 1, 4],
                                                       [1, 2 ** 30 + 1, 4], [2, 3]], {})


# ---- roi_align -----------------------------------------------------------------------------

def roi_case(rng, N, C, H, W, R, scale):
    data = rng.normal(size=(N, C, H, W))
    x1 = rng.uniform(-2, W / scale, size=R)
    y1 = rng.uniform(-2, H / scale, size=R)
    w = rng.uniform(0.5, W / scale / 2, size=R)
    h = rng.uniform(0.5, H / scale / 2, size=R)
    b = rng.integers(0, N, size=R).astype(F64)
    rois = np.stack([b, x1, y1, x1 + w, y1 + h], 1)
    if R > 3:
        rois[0, 0] = -1          # invalid batch index: zeros
        rois[1, 0] = N           # out of range
        rois[2, 3] = np.nan      # NaN coordinate: zeros
    return data, rois


ROI_CONFIGS = [  # pooled, sample_ratio, position_sensitive, aligned
    ((3, 4), 2, False, False),
    ((2, 2), -1, False, False),
    ((3, 3), 1, False, True),
    ((2, 3), -1, False, True),
    ((2, 2), 2, True, False),
]


def roi_kw(cfg, scale):
    ps, sr, psn, al = cfg
    return dict(pooled_size=ps, spatial_scale=scale, sample_ratio=sr, position_sensitive=psn,
                aligned=al)


def roi_tol(dtype):
    return {F16: dict(rtol=2e-3, atol=2e-3), F32: dict(rtol=1e-5, atol=1e-5),
            F64: dict(rtol=1e-12, atol=1e-12)}[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", ROI_CONFIGS)
def test_roi_align(dev, rng, dtype, cfg):
    C = 8 if cfg[2] else 13   # 13 channels at 3x4 bins: partial channel chunks
    data, rois = roi_case(rng, 2, C, 9, 11, 40, 0.25)
    kw = roi_kw(cfg, 0.25)
    got = dev.call(frcnn_ops.roi_align, data.astype(dtype), rois.astype(dtype), **kw)
    exp = on_cpu(frcnn_ops.roi_align, data, rois, dtype=dtype, **kw)
    np.testing.assert_allclose(got.astype(F64), exp.astype(F64), **roi_tol(dtype))
    g = rng.normal(size=got.shape)
    exp_g = on_cpu(frcnn_ops.roi_align_backward, g, rois, dtype=dtype, data_shape=data.shape,
                   **kw)
    tol = roi_tol(dtype)
    if dtype == F16:  # float16 gradients are sums of many rounded terms
        tol = dict(rtol=1e-2, atol=1e-2)
    for det in (False, True):
        got_g = dev.call(frcnn_ops.roi_align_backward, g.astype(dtype), rois.astype(dtype),
                         data_shape=data.shape, deterministic=det, **kw)
        np.testing.assert_allclose(got_g.astype(F64), exp_g.astype(F64), **tol)


@pytest.mark.parametrize("R", [0, 1, 300])
def test_roi_align_roi_counts(dev, rng, R):
    """R = 0; R = 300 > 256 rois: the deterministic kernel's roi chunks in shared memory."""
    data, rois = roi_case(rng, 2, 3, 8, 8, R, 0.5)
    kw = roi_kw(((2, 2), 2, False, False), 0.5)
    got = dev.call(frcnn_ops.roi_align, data.astype(F32), rois.astype(F32), **kw)
    exp = on_cpu(frcnn_ops.roi_align, data, rois, dtype=F32, **kw)
    np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-5)
    g = rng.normal(size=got.shape)
    exp_g = on_cpu(frcnn_ops.roi_align_backward, g, rois, dtype=F32, data_shape=data.shape, **kw)
    for det in (False, True):
        got_g = dev.call(frcnn_ops.roi_align_backward, g.astype(F32), rois.astype(F32),
                         data_shape=data.shape, deterministic=det, **kw)
        np.testing.assert_allclose(got_g, exp_g, rtol=1e-4, atol=1e-5)


def test_roi_align_tap_table_fallback(dev, rng):
    """Adaptive grids with more taps than the shared tables hold (> 512 per axis) evaluate
    them in place: a 2x2 output over a roi of 600 feature pixels has 600 samples per axis."""
    data = rng.normal(size=(1, 2, 620, 620))
    rois = np.array([[0, 3.5, 2.25, 603.0, 601.5], [0, 10, 10, 40, 50]], F64)
    kw = dict(pooled_size=(2, 2), spatial_scale=1.0, sample_ratio=-1)
    got = dev.call(frcnn_ops.roi_align, data.astype(F32), rois.astype(F32), **kw)
    np.testing.assert_allclose(got, on_cpu(frcnn_ops.roi_align, data, rois, dtype=F32, **kw),
                               rtol=1e-4, atol=1e-5)


def test_roi_align_deterministic_is_repeatable(dev, rng):
    data, rois = roi_case(rng, 1, 16, 19, 25, 300, 1 / 16)
    kw = roi_kw(((7, 7), 2, False, False), 1 / 16)
    g = rng.normal(size=(300, 16, 7, 7)).astype(F32)
    first = dev.call(frcnn_ops.roi_align_backward, g, rois.astype(F32), data_shape=data.shape,
                     deterministic=True, **kw)
    again = dev.call(frcnn_ops.roi_align_backward, g, rois.astype(F32), data_shape=data.shape,
                     deterministic=True, **kw)
    assert first.tobytes() == again.tobytes()


def test_roi_align_more_than_2_31_elements(dev, rng):
    """64-bit offsets: a feature map of more than 2^31 elements (float16, 4.3 GB)."""
    if not dev.real:
        pytest.skip("large sizes run on the GPU only")
    cp = dev.xp
    C = 2 ** 31 // (64 * 64) + 8
    try:
        data = cp.random.standard_normal((1, C, 64, 64), dtype=cp.float32).astype(cp.float16)
    except cp.cuda.memory.OutOfMemoryError:
        pytest.skip("not enough GPU memory")
    rois = np.array([[0, 3.0, 4.0, 40.0, 50.0], [0, 0.0, 0.0, 63.0, 63.0]], F64)
    kw = dict(pooled_size=(7, 7), spatial_scale=1.0, sample_ratio=2)
    out = frcnn_ops.roi_align(data, cp.asarray(rois, cp.float16), **kw)
    sel = np.r_[0:4, C - 4:C]
    host = cp.asnumpy(data[:, sel])
    exp = on_cpu(frcnn_ops.roi_align, host.astype(F64), rois, dtype=F16, **kw)
    np.testing.assert_allclose(cp.asnumpy(out[:, sel]).astype(F64), exp.astype(F64),
                               rtol=2e-3, atol=2e-3)
    del data, out


# ---- streams and graphs (GPU only) ---------------------------------------------------------

def _all_ops(xp, rng):
    """One call of every op (fwd and bwd) on device arrays; returns (name, fn) pairs."""
    deltas, anc = decode_inputs(rng, 2, 500, "corner")
    scores, pdeltas, panc, info = rpn_inputs(rng, 2, 2000)
    det = detections(rng, (2, 300))
    data, rois = roi_case(rng, 2, 16, 19, 25, 64, 1 / 16)
    g_roi = rng.normal(size=(64, 16, 7, 7))
    a = {k: xp.asarray(v.astype(F32)) for k, v in dict(
        deltas=deltas, anc=anc, scores=scores, pdeltas=pdeltas, panc=panc, info=info, det=det,
        data=data, rois=rois, g_roi=g_roi).items()}
    rkw = dict(pooled_size=(7, 7), spatial_scale=1 / 16, sample_ratio=2)
    return a, [
        ("box_decode", lambda: frcnn_ops.box_decode(a["deltas"], a["anc"], format="corner")),
        ("box_decode_backward", lambda: frcnn_ops.box_decode_backward(
            a["deltas"], a["deltas"], a["anc"], format="corner")),
        ("clip_boxes", lambda: frcnn_ops.clip_boxes(a["deltas"] * 1000, a["info"])),
        ("clip_boxes_backward", lambda: frcnn_ops.clip_boxes_backward(
            a["deltas"], a["deltas"] * 1000, a["info"])),
        ("proposal", lambda: frcnn_ops.proposal(a["scores"], a["pdeltas"], a["panc"], a["info"],
                                                1000, 100)),
        ("nms", lambda: frcnn_ops.nms(a["det"], overlap_thresh=0.3, id_index=0, topk=200)),
        ("roi_align", lambda: frcnn_ops.roi_align(a["data"], a["rois"], **rkw)),
        ("roi_align_backward", lambda: frcnn_ops.roi_align_backward(
            a["g_roi"], a["rois"], (2, 16, 19, 25), **rkw)),
        ("roi_align_backward_det", lambda: frcnn_ops.roi_align_backward(
            a["g_roi"], a["rois"], (2, 16, 19, 25), deterministic=True, **rkw)),
    ]


def test_stream_ordering(dev, rng):
    """Each op is fed by a slow producer on a non-blocking stream, with no synchronisation in
    between: the op must run after the producer on that stream (CuPy's current stream)."""
    if not dev.real:
        pytest.skip("streams exist on the GPU only")
    cp = dev.xp
    a, ops = _all_ops(cp, rng)
    expected = {name: cp.asnumpy(fn()) for name, fn in ops}
    big = cp.ones((4096, 4096), cp.float32)
    stream = cp.cuda.Stream(non_blocking=True)
    for name, fn in ops:
        with stream:
            saved = {k: v.copy() for k, v in a.items()}
            for v in a.values():
                v.fill(0)
            for _ in range(8):          # the slow producer: ~ms of matmuls
                big = big @ big * 1e-3
            for k, v in a.items():      # the real inputs arrive at the end of the queue
                v[...] = saved[k] + big[0, 0] * 0
            out = fn()
            host = cp.asnumpy(out)      # asnumpy synchronises on the current stream
        if name == "roi_align_backward":   # atomics: order varies
            np.testing.assert_allclose(host, expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(host, expected[name], err_msg=name)


def test_cuda_graph_capture_and_replay(dev, rng):
    """Every op captured in a CUDA graph (no host synchronisation inside), replayed after other
    allocations have reused the memory pool: workspaces are kept alive for the graph."""
    if not dev.real:
        pytest.skip("CUDA graphs exist on the GPU only")
    cp = dev.xp
    a, ops = _all_ops(cp, rng)
    expected = {name: cp.asnumpy(fn()) for name, fn in ops}
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        for _, fn in ops:               # warm CuPy's pool and CUB's kernels
            fn()
        stream.synchronize()
        stream.begin_capture()
        outs = [(name, fn()) for name, fn in ops]
        graph = stream.end_capture()
        for _, out in outs:
            out.fill(-7)
        junk = [cp.full(1 << 20, 3.0, cp.float32) for _ in range(64)]  # reuse freed blocks
        graph.launch(stream)
        stream.synchronize()
        del junk
    for name, out in outs:
        if name == "roi_align_backward":
            np.testing.assert_allclose(cp.asnumpy(out), expected[name], rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(cp.asnumpy(out), expected[name], err_msg=name)
    assert frcnn_ops.release_graph_workspaces() > 0


@pytest.mark.parametrize("sync_check", ["0", "1"])
def test_sync_check_names_the_failing_kernel(dev, tmp_path, sync_check):
    """With FRCNN_CUDA_SYNC_CHECK=1 a kernel that faults (here: reading a bogus device
    address) is named by the call that launched it; without it the launch returns and the
    error surfaces later, at the next synchronisation. In a subprocess: the fault poisons the
    CUDA context."""
    if not dev.real:
        pytest.skip("device faults happen on the GPU only")
    import os
    import subprocess
    import sys
    code = ("import cupy as cp, frcnn_ops\n"
            "try:\n"
            "    frcnn_ops._C.run_gpu('frcnn_box_decode', False, 0, 0, [256, 256],\n"
            "                         [[1, 1000, 4], [1, 1000, 4]], [256], {}, 0, 0, 0)\n"
            "    print('launch returned')\n"
            "except RuntimeError as e:\n"
            "    print('raised:', e)\n")
    env = dict(os.environ, FRCNN_CUDA_SYNC_CHECK=sync_check)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       cwd=str(tmp_path), timeout=120)
    if sync_check == "1":
        assert "raised: CUDA kernel frcnn_box_decode: decode_kernel" in r.stdout, r.stdout + r.stderr
    else:
        assert "launch returned" in r.stdout, r.stdout + r.stderr
