"""proposal and nms: NumPy reference, GluonCV RPNProposal + box_nms and mx.nd.contrib.box_nms
parity on random and adversarial data, hybridized blocks, bad input."""
import numpy as np
import pytest

import frcnn_ops
from frcnn_ops import reference as ref
from frcnn_ops.bench.cases.shapes import rpn_anchors

ANCHORS = rpn_anchors()  # (1, 28500, 4): the seed's 38x50 feature map
N = ANCHORS.shape[1]


def _rpn_inputs(rng, B=1, scale=0.3, dtype=np.float32):
    scores = rng.uniform(size=(B, N, 1)).astype(dtype)
    deltas = rng.normal(0, scale, size=(B, N, 4)).astype(dtype)
    return scores, deltas


def gluoncv_proposal(mx, scores, deltas, img_hw, pre=6000, post=300, thresh=0.7, min_size=16,
                     clip=None, anchors=ANCHORS):
    """GluonCV's path: RPNProposal, box_nms(topk=pre, force_suppress), slice post."""
    from gluoncv.model_zoo.rcnn.rpn.proposal import RPNProposal
    prop = RPNProposal(clip=clip, min_size=min_size, stds=(1.0, 1.0, 1.0, 1.0))
    img = mx.nd.zeros((scores.shape[0], 3) + tuple(img_hw))
    pre_t = prop(mx.nd.array(anchors), mx.nd.array(scores), mx.nd.array(deltas), img)
    tmp = mx.nd.contrib.box_nms(pre_t, overlap_thresh=thresh, topk=pre, coord_start=1,
                                score_index=0, id_index=-1, force_suppress=True)
    return mx.nd.slice_axis(tmp, axis=1, begin=0, end=post).asnumpy()


def _info(B, hw=(600, 800)):
    return np.array([[hw[0], hw[1], 1.0]] * B, np.float32)


# ---- proposal ---------------------------------------------------------------------------

@pytest.mark.parametrize("B,pre,post,clip", [(1, 6000, 300, None), (2, 12000, 2000, None),
                                             (1, 6000, 300, 4.135)])
def test_proposal_matches_gluoncv(mx, gluoncv, rng, B, pre, post, clip):
    scores, deltas = _rpn_inputs(rng, B)
    theirs = gluoncv_proposal(mx, scores, deltas, (600, 800), pre, post, clip=clip)
    kw = dict(rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post, clip=-1.0 if clip is None else clip)
    ours_np = frcnn_ops.proposal(scores, deltas, ANCHORS, _info(B), **kw)
    ours_mx = mx.nd.frcnn_proposal(mx.nd.array(scores), mx.nd.array(deltas), mx.nd.array(ANCHORS),
                                   mx.nd.array(_info(B)), **kw).asnumpy()
    np.testing.assert_array_equal(ours_np, theirs)
    np.testing.assert_array_equal(ours_mx, theirs)


def test_proposal_adversarial_matches_gluoncv(mx, gluoncv, rng):
    scores, deltas = _rpn_inputs(rng, 1, scale=1.0)
    s = scores[0, :, 0]
    s[::7] = 0.5            # many exact ties: the lower anchor index must come first
    s[1::11] = 0.0          # score exactly 0: never a candidate (strict > 0)
    s[2::13] = 1.0
    deltas[0, 3::5, 2:] = -3.0   # tiny boxes: under the min size
    deltas[0, 4::17, 2:] = 30.0  # huge exp: boxes clipped to the whole image
    theirs = gluoncv_proposal(mx, scores, deltas, (600, 800))
    ours = frcnn_ops.proposal(scores, deltas, ANCHORS, _info(1))
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("pre,post", [(300, 100), (6000, 300)])
def test_proposal_invalid_boxes_at_the_top_match_gluoncv(mx, gluoncv, rng, pre, post):
    """The CPU kernel first sorts only a prefix of the candidates a little longer than pre_nms;
    here the best-scored 5000 boxes are all under the min size, so that prefix runs out and
    the whole order is made: the result must not change."""
    scores, deltas = _rpn_inputs(rng, 1)
    top = np.argsort(-scores[0, :, 0], kind="stable")[:5000]
    deltas[0, top, 2:] = -4.0  # tiny boxes: under the min size
    theirs = gluoncv_proposal(mx, scores, deltas, (600, 800), pre, post)
    ours = frcnn_ops.proposal(scores, deltas, ANCHORS, _info(1), pre, post)
    np.testing.assert_array_equal(ours, theirs)
    assert (ours[0, :, 0] > 0).sum() == post


def test_proposal_per_image_im_info_matches_reference(rng):
    scores, deltas = _rpn_inputs(rng, 3)
    info = np.array([[600, 800, 1], [375, 500, 1], [200, 1000, 1]], np.float32)
    ours = frcnn_ops.proposal(scores, deltas, ANCHORS, info)
    np.testing.assert_array_equal(ours, ref.proposal(scores, deltas, ANCHORS, info))
    for b in range(3):  # each image is clipped to its own size
        kept = ours[b, ours[b, :, 0] > 0]
        assert (kept[:, [1, 3]] <= info[b, 1]).all() and (kept[:, [2, 4]] <= info[b, 0]).all()
    # and each image alone gives the same rows
    one = frcnn_ops.proposal(scores[1:2], deltas[1:2], ANCHORS, info[1:2])
    np.testing.assert_array_equal(one[0], ours[1])


def test_proposal_float64_matches_reference(rng):
    scores, deltas = _rpn_inputs(rng, 1, dtype=np.float64)
    info = _info(1).astype(np.float64)
    ours = frcnn_ops.proposal(scores, deltas, ANCHORS.astype(np.float64), info)
    exp = ref.proposal(scores, deltas, ANCHORS.astype(np.float64), info)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, exp, rtol=1e-12)


def _tiny(scores, boxes_corner, info=(100, 100), **kw):
    """Proposals of hand-made boxes: anchors are the boxes, deltas zero."""
    n = len(scores)
    s = np.asarray(scores, np.float32).reshape(1, n, 1)
    a = np.asarray(boxes_corner, np.float32).reshape(1, n, 4)
    d = np.zeros((1, n, 4), np.float32)
    return frcnn_ops.proposal(s, d, a, np.array([info], np.float32), **kw)


def test_proposal_threshold_is_strict():
    # IoU exactly 0.5 (inter 50, union 100): not suppressed at 0.5, suppressed below it
    boxes = [[0, 0, 20, 20], [0, 0, 10, 10], [0, 0, 10, 5]]
    out = _tiny([0.9, 0.8, 0.7], boxes, rpn_pre_nms_top_n=3, rpn_post_nms_top_n=3,
                threshold=0.5, rpn_min_size=1)
    np.testing.assert_array_equal(out[0, :, 0], np.float32([0.9, 0.8, 0.7]))
    out = _tiny([0.9, 0.8, 0.7], boxes, rpn_pre_nms_top_n=3, rpn_post_nms_top_n=3,
                threshold=0.49, rpn_min_size=1)
    np.testing.assert_array_equal(out[0, :, 0], np.float32([0.9, 0.8, -1]))
    # 0.7 in float32 is 0.699999988; IoU 70/100 rounds to the same float: not suppressed
    out = _tiny([0.9, 0.8], [[0, 0, 10, 10], [0, 0, 10, 7]], rpn_pre_nms_top_n=2,
                rpn_post_nms_top_n=2, threshold=0.7, rpn_min_size=1)
    assert (out[0, :, 0] > 0).all()


def test_proposal_everything_suppressed_or_invalid():
    same = [[10, 10, 50, 50]] * 5
    out = _tiny([0.5, 0.9, 0.9, 0.1, 0.3], same, rpn_pre_nms_top_n=5, rpn_post_nms_top_n=4)
    np.testing.assert_array_equal(out[0, 0], np.float32([0.9, 10, 10, 50, 50]))
    assert (out[0, 1:] == -1).all()  # fewer survivors than post_nms: -1 rows
    out = _tiny([0.5, 0.9], [[10, 10, 20, 20], [0, 0, 14, 40]], rpn_pre_nms_top_n=2,
                rpn_post_nms_top_n=2)  # both under the min size 16 (+1 convention)
    assert (out == -1).all()
    out = _tiny([0.0, -0.5], [[0, 0, 50, 50], [0, 0, 60, 60]], rpn_pre_nms_top_n=2,
                rpn_post_nms_top_n=2)  # no score > 0
    assert (out == -1).all()
    out = frcnn_ops.proposal(np.zeros((2, 0, 1), np.float32), np.zeros((2, 0, 4), np.float32),
                             np.zeros((1, 0, 4), np.float32), _info(2))
    assert out.shape == (2, 300, 5) and (out == -1).all()


def test_proposal_min_size_plus_one():
    # width 14 + 1 = 15 < 16 dropped; 15 + 1 = 16 kept
    out = _tiny([0.9, 0.8], [[0, 0, 14, 40], [50, 50, 65, 90]], rpn_pre_nms_top_n=2,
                rpn_post_nms_top_n=2)
    np.testing.assert_array_equal(out[0, 0], np.float32([0.8, 50, 50, 65, 90]))


def test_proposal_nan_and_inf_policy(rng):
    scores, deltas = _rpn_inputs(rng, 1)
    scores[0, :10, 0] = 2.0          # the ten best
    deltas[0, 0] = np.nan            # NaN box: dropped
    scores[0, 1, 0] = np.nan         # NaN score: never a candidate
    deltas[0, 2, 2:] = np.inf        # infinite size: clipped to the whole image, kept
    deltas[0, 3, :2] = -np.inf       # -inf center: NaN after decode (inf - inf): dropped
    out = frcnn_ops.proposal(scores, deltas, ANCHORS, _info(1))
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[0, 0], np.float32([2.0, 0, 0, 800, 600]))
    np.testing.assert_array_equal(out, ref.proposal(scores, deltas, ANCHORS, _info(1)))


def test_proposal_hybridized_block(mx, rng):
    class RPNPost(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, scores, deltas, anchors, im_info):
            return F.frcnn_proposal(scores, deltas, anchors, im_info, rpn_pre_nms_top_n=3000,
                                    rpn_post_nms_top_n=100)
    scores, deltas = _rpn_inputs(rng, 2)
    args = [mx.nd.array(x) for x in (scores, deltas, ANCHORS, _info(2))]
    net = RPNPost()
    net.hybridize(static_alloc=True, static_shape=True)
    out = net(*args).asnumpy()
    exp = ref.proposal(scores, deltas, ANCHORS, _info(2), 3000, 100)
    np.testing.assert_array_equal(out, exp)
    for a in args:
        a.attach_grad()
    with mx.autograd.record():
        y = net(*args).sum()
    y.backward()
    assert all((a.grad.asnumpy() == 0).all() for a in args)


def test_proposal_bad_input(mx):
    f32 = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    s, d, a, i = f32(1, 10, 1), f32(1, 10, 4), f32(1, 10, 4), f32(1, 3)
    cases = [
        ((f32(1, 9, 1), d, a, i), {}, "must have the same B and N"),
        ((s, d, f32(1, 11, 4), i), {}, "anchors must have N = 10"),
        ((s, f32(1, 10, 5), a, i), {}, "deltas must have shape (B, N, 4)"),
        ((f32(1, 10, 2), d, a, i), {}, "scores must have shape (B, N, 1)"),
        ((s, d, a, f32(2, 3)), {}, "im_info must have one row per image"),
        ((s, d, a, i), {"rpn_pre_nms_top_n": 100, "rpn_post_nms_top_n": 300},
         "rpn_pre_nms_top_n (100) must be >= rpn_post_nms_top_n (300)"),
        ((s, d, a, i), {"threshold": 1.5}, "threshold must be in [0, 1]"),
        ((s, d, a, i), {"threshold": -0.1}, "threshold must be in [0, 1]"),
        ((s, d, a, i), {"rpn_min_size": -1}, "rpn_min_size must be"),
    ]
    for args, kw, msg in cases:
        with pytest.raises(ValueError, match="frcnn_proposal") as e:
            frcnn_ops.proposal(*args, **kw)
        assert msg in str(e.value)
        with pytest.raises(mx.base.MXNetError, match="frcnn_proposal") as e:
            frcnn_ops.proposal(*[mx.nd.array(x) for x in args], **kw).wait_to_read()
        assert msg in str(e.value)
    with pytest.raises(TypeError, match="frcnn_proposal: deltas must have the dtype of scores"):
        frcnn_ops.proposal(s.astype(np.float64), d, a, i)


# ---- nms ----------------------------------------------------------------------------------

def _detections(rng, batches, n, classes=3, dtype=np.float32):
    data = np.zeros((batches, n, 6), dtype)
    data[..., 0] = rng.integers(0, classes, size=(batches, n))
    data[..., 1] = rng.uniform(size=(batches, n))
    xy = rng.uniform(0, 300, size=(batches, n, 2))
    wh = rng.uniform(5, 120, size=(batches, n, 2))
    data[..., 2:4] = xy
    data[..., 4:6] = xy + wh
    return data


NMS_CASES = [
    dict(overlap_thresh=0.3, topk=400, valid_thresh=0.0001, id_index=0, score_index=1,
         coord_start=2),                                        # the seed's per-class NMS
    dict(overlap_thresh=0.5, topk=50, id_index=0, force_suppress=True),
    dict(overlap_thresh=0.7, coord_start=2, score_index=1),     # defaults-like, ids ignored
    dict(overlap_thresh=0.45, id_index=0, background_id=1, valid_thresh=0.3),
    dict(overlap_thresh=0.5, in_format="center", out_format="center"),
    dict(overlap_thresh=0.5, topk=0),
]


@pytest.mark.parametrize("kw", NMS_CASES, ids=lambda kw: "-".join("%s=%s" % i for i in kw.items()))
def test_nms_matches_box_nms_and_reference(mx, rng, kw):
    data = _detections(rng, 20, 300)
    theirs = mx.nd.contrib.box_nms(mx.nd.array(data), **kw).asnumpy()
    np.testing.assert_array_equal(frcnn_ops.nms(data, **kw), theirs)
    np.testing.assert_array_equal(mx.nd.frcnn_nms(mx.nd.array(data), **kw).asnumpy(), theirs)
    np.testing.assert_array_equal(ref.nms(data, **kw), theirs)


def test_nms_large_and_leading_dims(mx, rng):
    data = _detections(rng, 2, 6000, classes=1)[..., 1:].reshape(2, 1, 6000, 5)
    kw = dict(overlap_thresh=0.7, topk=6000, coord_start=1, score_index=0, force_suppress=True)
    theirs = mx.nd.contrib.box_nms(mx.nd.array(data), **kw).asnumpy()
    ours = frcnn_ops.nms(data, **kw)
    assert ours.shape == data.shape
    np.testing.assert_array_equal(ours, theirs)


def test_nms_ties_nan_and_degenerate(mx, rng):
    data = _detections(rng, 1, 200)
    data[0, ::3, 1] = 0.5                  # ties
    data[0, 5, 2:] = np.nan                # NaN box: IoU NaN never suppresses
    data[0, 7, 1] = np.nan                 # NaN score: never a candidate
    data[0, 9, 2:] = [50, 50, 50, 50]      # empty boxes: IoU 0/0
    data[0, 11, 2:] = [50, 50, 50, 50]
    data[0, 13, 2:] = [80, 80, 40, 40]     # inverted: area 0
    kw = dict(overlap_thresh=0.5, id_index=0)
    theirs = mx.nd.contrib.box_nms(mx.nd.array(data), **kw).asnumpy()
    np.testing.assert_array_equal(frcnn_ops.nms(data, **kw), theirs)


def test_nms_odd_class_ids_as_box_nms(mx, rng):
    """Ids compare as box_nms compares them: truncated to int (1.2 and 1.7 are one class);
    NaN and out-of-range ids all fall in one class (INT_MIN, x86's conversion): defined
    behaviour on our CPU and GPU paths, where the plain cast was undefined."""
    data = _detections(rng, 2, 300)
    data[:, ::4, 0] += 0.7                  # non-integer ids
    data[:, 1::9, 0] = np.nan               # NaN ids
    data[:, 2::9, 0] = 3e9                  # beyond int32
    data[:, 3::9, 0] = -0.5                 # truncates to 0
    data[:, ::2, 2:] = data[:, 1::2, 2:]    # pairs of identical boxes: ids decide
    for kw in (dict(overlap_thresh=0.5, id_index=0), dict(overlap_thresh=0.3, id_index=0, topk=100)):
        theirs = mx.nd.contrib.box_nms(mx.nd.array(data), **kw).asnumpy()
        np.testing.assert_array_equal(frcnn_ops.nms(data, **kw), theirs)
        np.testing.assert_array_equal(mx.nd.frcnn_nms(mx.nd.array(data), **kw).asnumpy(), theirs)


def test_nms_float64_and_format_conversion(rng):
    data = _detections(rng, 3, 100, dtype=np.float64)
    for kw in [dict(id_index=0), dict(in_format="corner", out_format="center"),
               dict(in_format="center", out_format="corner", topk=30)]:
        np.testing.assert_array_equal(frcnn_ops.nms(data, **kw), ref.nms(data, **kw))


def test_nms_hybridized_and_backward(mx, rng):
    class Post(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, x):
            return F.frcnn_nms(x, overlap_thresh=0.3, topk=400, valid_thresh=0.0001, id_index=0)
    data = _detections(rng, 4, 100)
    x = mx.nd.array(data)
    net = Post()
    net.hybridize()
    np.testing.assert_array_equal(
        net(x).asnumpy(), mx.nd.contrib.box_nms(x, overlap_thresh=0.3, topk=400,
                                                valid_thresh=0.0001, id_index=0).asnumpy())
    x.attach_grad()
    with mx.autograd.record():
        y = net(x).sum()
    y.backward()
    ours = x.grad.asnumpy()
    with mx.autograd.record():
        y = mx.nd.contrib.box_nms(x, overlap_thresh=0.3, topk=400, valid_thresh=0.0001,
                                  id_index=0).sum()
    y.backward()
    np.testing.assert_array_equal(ours, x.grad.asnumpy())  # box_nms's gradient (kept rows)
    assert ours.any()


def test_nms_bad_input(mx):
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    cases = [
        (z(10), {}, "at least 2 dims"),
        (z(1, 10, 4), {}, "must hold at least 5 values"),
        (z(1, 10, 5), {"id_index": 0, "coord_start": 1, "score_index": 0},
         "must hold at least 6 values"),
        (z(1, 10, 6), {"score_index": 6}, "score_index 6 is out of range"),
        (z(1, 10, 6), {"coord_start": 3}, "out of range"),
        (z(1, 10, 6), {"score_index": 3}, "overlaps the coordinates"),
        (z(1, 10, 6), {"id_index": 1}, "id_index and score_index are both 1"),
        (z(1, 10, 6), {"in_format": "xywh"}, "in_format must be one of"),
    ]
    for data, kw, msg in cases:
        with pytest.raises(ValueError, match="frcnn_nms") as e:
            frcnn_ops.nms(data, **kw)
        assert msg in str(e.value)
        with pytest.raises(mx.base.MXNetError, match="frcnn_nms") as e:
            mx.nd.frcnn_nms(mx.nd.array(data), **kw).wait_to_read()
        assert msg in str(e.value)


