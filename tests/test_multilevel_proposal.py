"""frcnn_proposal over an FPN's levels (level_sizes, per_level_nms): row for row GluonCV's
multi-level RPN path (gluoncv.model_zoo.rcnn.rpn.RPN with multi_level=True) in its test and
training settings, on NumPy, MXNet and the CUDA kernels (the execution harness here)."""
import numpy as np
import pytest

import frcnn_ops

IMG_HW = (256, 320)
STRIDES = (4, 8, 16, 32, 64)  # P2..P6, GluonCV's FPN RPN
SCALES = (2, 4, 8, 16, 32)


def fpn_anchors(mx):
    """GluonCV's per-level anchors for IMG_HW, each (1, H*W*3, 4)."""
    from gluoncv.model_zoo.rcnn.rpn.anchor import RPNAnchorGenerator
    out = []
    for stride, scale in zip(STRIDES, SCALES):
        ag = RPNAnchorGenerator(stride, 16, (0.5, 1, 2), (scale,), (128, 128))
        ag.initialize()
        feat = mx.nd.zeros((1, 1, IMG_HW[0] // stride, IMG_HW[1] // stride))
        out.append(ag(feat).asnumpy())
    return out


def level_inputs(rng, anchors, B, dtype=np.float32):
    scores = [rng.uniform(size=(B, a.shape[1], 1)).astype(dtype) for a in anchors]
    deltas = [rng.normal(0, 0.5, size=(B, a.shape[1], 4)).astype(dtype) for a in anchors]
    for s in scores:  # ties across and within levels: level order, then anchor order
        s[:, ::9] = 0.5
    return scores, deltas


def gluoncv_multilevel(mx, anchors, scores, deltas, pre, post, per_level_nms, thresh=0.7,
                       min_size=1, clip=4.135):
    """RPN.hybrid_forward's multi-level branch after the head, as GluonCV writes it."""
    from gluoncv.model_zoo.rcnn.rpn.proposal import RPNProposal
    prop = RPNProposal(clip=clip, min_size=min_size, stds=(1.0, 1.0, 1.0, 1.0))
    img = mx.nd.zeros((scores[0].shape[0], 3) + IMG_HW)
    levels = []
    for a, s, d in zip(anchors, scores, deltas):
        rpn_pre = prop(mx.nd.array(a), mx.nd.array(s), mx.nd.array(d), img)
        if per_level_nms:
            rpn_pre = mx.nd.contrib.box_nms(rpn_pre, overlap_thresh=thresh,
                                            topk=pre // len(anchors), coord_start=1,
                                            score_index=0, id_index=-1)
        levels.append(rpn_pre)
    cat = mx.nd.concat(*levels, dim=1)
    if per_level_nms:
        tmp = mx.nd.contrib.box_nms(cat, overlap_thresh=2., topk=pre + 1, coord_start=1,
                                    score_index=0, id_index=-1, force_suppress=True)
    else:
        tmp = mx.nd.contrib.box_nms(cat, overlap_thresh=thresh, topk=pre, coord_start=1,
                                    score_index=0, id_index=-1, force_suppress=True)
    return mx.nd.slice_axis(tmp, axis=1, begin=0, end=post).asnumpy()


def ours(anchors, scores, deltas, pre, post, per_level_nms, mx=None, **kw):
    cat = [np.concatenate(x, axis=1) for x in (scores, deltas, anchors)]
    B = cat[0].shape[0]
    info = np.array([[IMG_HW[0], IMG_HW[1], 1.0]] * B, cat[0].dtype)
    kw = dict(dict(rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post, rpn_min_size=1, clip=4.135,
                   level_sizes=[a.shape[1] for a in anchors], per_level_nms=per_level_nms),
              **kw)
    if mx is not None:
        return frcnn_ops.proposal(*[mx.nd.array(x) for x in cat + [info]], **kw).asnumpy()
    return frcnn_ops.proposal(*cat, info, **kw)


SETTINGS = [(1, 6000, 1000), (2, 12000, 2000), (1, 100, 100)]  # test, training, padding


@pytest.mark.parametrize("per_level_nms", [False, True])
@pytest.mark.parametrize("B,pre,post", SETTINGS)
def test_matches_gluoncv(mx, gluoncv, rng, B, pre, post, per_level_nms):
    anchors = fpn_anchors(mx)
    scores, deltas = level_inputs(rng, anchors, B)
    theirs = gluoncv_multilevel(mx, anchors, scores, deltas, pre, post, per_level_nms)
    np.testing.assert_array_equal(ours(anchors, scores, deltas, pre, post, per_level_nms),
                                  theirs)
    np.testing.assert_array_equal(
        ours(anchors, scores, deltas, pre, post, per_level_nms, mx=mx), theirs)


def test_without_per_level_nms_is_the_concatenation(mx, rng):
    anchors = fpn_anchors(mx)
    scores, deltas = level_inputs(rng, anchors, 1)
    with_levels = ours(anchors, scores, deltas, 6000, 1000, False)
    cat = [np.concatenate(x, axis=1) for x in (scores, deltas, anchors)]
    info = np.array([[IMG_HW[0], IMG_HW[1], 1.0]], np.float32)
    plain = frcnn_ops.proposal(*cat, info, rpn_pre_nms_top_n=6000, rpn_post_nms_top_n=1000,
                               rpn_min_size=1, clip=4.135)
    np.testing.assert_array_equal(with_levels, plain)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("per_level_nms", [False, True])
def test_cuda_kernels_match_the_cpu(mx, rng, dtype, per_level_nms):
    if not frcnn_ops._dispatch.device("emu").available():
        pytest.skip("no CUDA execution harness in this build")
    anchors = [a.astype(dtype) for a in fpn_anchors(mx)]
    anchors[3] = anchors[3][:, :0]  # a level without anchors
    scores, deltas = level_inputs(rng, anchors, 2, dtype)
    want = ours(anchors, scores, deltas, 600, 500, per_level_nms)
    with frcnn_ops.emulate_cuda():
        got = ours(anchors, scores, deltas, 600, 500, per_level_nms)
    np.testing.assert_array_equal(got, want)


def test_bad_levels_are_refused(mx, rng):
    anchors = fpn_anchors(mx)[:2]
    scores, deltas = level_inputs(rng, anchors, 1)
    n = sum(a.shape[1] for a in anchors)
    for kw, msg in [
        (dict(level_sizes=None, per_level_nms=True), "per_level_nms needs level_sizes"),
        (dict(level_sizes=[n, 1]), "level_sizes must sum to the anchors' N = %d, got %d"
         % (n, n + 1)),
        (dict(level_sizes=[n + 1, -1]), "level_sizes must be >= 0 each"),
        (dict(rpn_pre_nms_top_n=1, rpn_post_nms_top_n=1, per_level_nms=True),
         "per_level_nms needs rpn_pre_nms_top_n >= the number of levels (2), got 1"),
    ]:
        per_level = kw.pop("per_level_nms", False)
        with pytest.raises(ValueError, match="frcnn_proposal") as e:
            ours(anchors, scores, deltas, 100, 10, per_level, **kw)
        assert msg in str(e.value)
        with pytest.raises(mx.base.MXNetError, match="frcnn_proposal") as e:
            ours(anchors, scores, deltas, 100, 10, per_level, mx=mx, **kw)
        assert msg in str(e.value)


# ---- frcnn_multilevel_proposal: the levels as separate inputs -------------------------------

def apart(anchors, scores, deltas, pre, post, per_level_nms, mx=None, **kw):
    """frcnn_ops.multilevel_proposal on the levels (anchors concatenated once)."""
    cat_a = np.concatenate(anchors, axis=1)
    B = scores[0].shape[0]
    info = np.array([[IMG_HW[0], IMG_HW[1], 1.0]] * B, scores[0].dtype)
    kw = dict(dict(rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post, rpn_min_size=1, clip=4.135,
                   per_level_nms=per_level_nms), **kw)
    if mx is not None:
        nd = [mx.nd.array(x, dtype=x.dtype) for x in scores + deltas + [cat_a, info]]
        L = len(scores)
        return frcnn_ops.multilevel_proposal(nd[:L], nd[L:2 * L], nd[-2], nd[-1],
                                             **kw).asnumpy()
    return frcnn_ops.multilevel_proposal(scores, deltas, cat_a, info, **kw)


@pytest.mark.parametrize("per_level_nms", [False, True])
@pytest.mark.parametrize("B,pre,post", SETTINGS)
def test_apart_is_bitwise_the_concatenation(mx, rng, B, pre, post, per_level_nms):
    anchors = fpn_anchors(mx)
    scores, deltas = level_inputs(rng, anchors, B)
    want = ours(anchors, scores, deltas, pre, post, per_level_nms)
    got = apart(anchors, scores, deltas, pre, post, per_level_nms)
    assert got.dtype == want.dtype and (got[..., 0] > 0).sum() > 0
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(apart(anchors, scores, deltas, pre, post, per_level_nms,
                                        mx=mx), want)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
@pytest.mark.parametrize("per_level_nms", [False, True])
def test_apart_other_dtypes_and_2d_scores(mx, rng, dtype, per_level_nms):
    for empty_level in (False, True):
        anchors = [a.astype(dtype) for a in fpn_anchors(mx)]
        if empty_level:
            anchors[3] = anchors[3][:, :0]  # a level without anchors
        scores, deltas = level_inputs(rng, anchors, 2, dtype)
        want = ours(anchors, scores, deltas, 600, 500, per_level_nms)
        got = apart(anchors, scores, deltas, 600, 500, per_level_nms)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
        flat = [s[..., 0] for s in scores]  # (B, n_i) scores as (B, n_i, 1)
        np.testing.assert_array_equal(apart(anchors, flat, deltas, 600, 500, per_level_nms),
                                      want)
        if not empty_level:  # MXNet 1.x reads a 0 in a shape as "unknown"
            np.testing.assert_array_equal(
                apart(anchors, scores, deltas, 600, 500, per_level_nms, mx=mx), want)
        if frcnn_ops._dispatch.device("emu").available():  # the CUDA kernels' gather
            with frcnn_ops.emulate_cuda():
                got = apart(anchors, scores, deltas, 600, 500, per_level_nms)
            np.testing.assert_array_equal(got, want)


def test_mxnet_op_positional_and_hybridized(mx, rng):
    anchors = fpn_anchors(mx)
    scores, deltas = level_inputs(rng, anchors, 2)
    L = len(anchors)
    want = ours(anchors, scores, deltas, 2000, 300, True)
    cat_a = mx.nd.array(np.concatenate(anchors, axis=1))
    info = mx.nd.array([[IMG_HW[0], IMG_HW[1], 1.0]] * 2)
    S, D = [mx.nd.array(s) for s in scores], [mx.nd.array(d) for d in deltas]
    kw = dict(rpn_pre_nms_top_n=2000, rpn_post_nms_top_n=300, rpn_min_size=1, clip=4.135,
              per_level_nms=True)
    out = mx.nd.frcnn_multilevel_proposal(cat_a, info, *S, *D, **kw)
    np.testing.assert_array_equal(out.asnumpy(), want)
    out = mx.nd.frcnn_multilevel_proposal(cat_a, info, *S, *D, num_levels=L, **kw)
    np.testing.assert_array_equal(out.asnumpy(), want)
    out = mx.nd.frcnn_multilevel_proposal(anchors=cat_a, im_info=info, scores=S, deltas=D, **kw)
    np.testing.assert_array_equal(out.asnumpy(), want)

    class Net(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, a, i, *x):
            return F.frcnn_multilevel_proposal(a, i, *x, **kw)

    net = Net()
    net.hybridize(static_alloc=True, static_shape=True)
    for _ in range(2):
        np.testing.assert_array_equal(net(cat_a, info, *S, *D).asnumpy(), want)
    sym = mx.sym.frcnn_multilevel_proposal(mx.sym.var("a"), mx.sym.var("i"),
                                           *[mx.sym.var("s%d" % k) for k in range(L)],
                                           *[mx.sym.var("d%d" % k) for k in range(L)], **kw)
    _, out_shapes, _ = sym.infer_shape(a=cat_a.shape, i=info.shape,
                                       **{"s%d" % k: s.shape for k, s in enumerate(S)},
                                       **{"d%d" % k: d.shape for k, d in enumerate(D)})
    assert out_shapes == [(2, 300, 5)]


def test_bad_level_inputs_are_refused(mx, rng):
    anchors = fpn_anchors(mx)[:3]
    scores, deltas = level_inputs(rng, anchors, 1)
    n = [a.shape[1] for a in anchors]
    N = sum(n)
    info = np.array([[IMG_HW[0], IMG_HW[1], 1.0]], np.float32)
    cat_a = np.concatenate(anchors, axis=1)

    def swap(xs, i, x):
        return xs[:i] + [x] + xs[i + 1:]

    cases = [  # (scores, deltas, anchors, kw, exception, message)
        (scores, deltas[:2], cat_a, {}, ValueError, "got 3 scores and 2 deltas"),
        ([], [], cat_a, {}, ValueError, "at least one level"),
        (scores, swap(deltas, 1, deltas[1][:, :-1]), cat_a, {}, ValueError,
         "scores[1] (1, %d, 1) and deltas[1] (1, %d, 4) must have the same B and n_1"
         % (n[1], n[1] - 1)),
        (scores, swap(deltas, 2, deltas[2][..., :3]), cat_a, {}, ValueError,
         "deltas[2] must have shape (B, n_2, 4), got (1, %d, 3)" % n[2]),
        (scores, swap(deltas, 1, np.concatenate([deltas[1]] * 2)), cat_a, {}, ValueError,
         "deltas[1] must have the batch size B = 1 of deltas[0], got (2, %d, 4)" % n[1]),
        (swap(scores, 0, np.concatenate([scores[0]] * 2)), deltas, cat_a, {}, ValueError,
         "scores[0] (2, %d, 1) and deltas[0] (1, %d, 4) must have the same B" % (n[0], n[0])),
        (swap(scores, 2, scores[2][..., None]), deltas, cat_a, {}, ValueError,
         "scores[2] must have shape (B, n_2, 1), got (1, %d, 1, 1)" % n[2]),
        (scores, deltas, cat_a[:, 1:], {}, ValueError,
         "anchors must have shape (1, N, 4), the levels' anchors concatenated: N = %d (the sum "
         "of the levels' n_i), got (1, %d, 4)" % (N, N - 1)),
        (scores, deltas, cat_a, dict(rpn_pre_nms_top_n=2, rpn_post_nms_top_n=2,
                                     per_level_nms=True), ValueError,
         "per_level_nms needs rpn_pre_nms_top_n >= the number of levels (3), got 2"),
        (scores, swap(deltas, 1, deltas[1].astype(np.float64)), cat_a, {}, TypeError,
         "deltas[1] must have the dtype of anchors (float32), got float64"),
    ]
    for s, d, a, kw, exc, msg in cases:
        kw = dict(dict(rpn_pre_nms_top_n=100, rpn_post_nms_top_n=10), **kw)
        with pytest.raises(exc, match="frcnn_multilevel_proposal") as e:
            frcnn_ops.multilevel_proposal(s, d, a, info, **kw)
        assert msg in str(e.value), (msg, str(e.value))
        if not s or len(s) != len(d):
            continue  # refused before any op runs, the same on every path
        with pytest.raises(mx.base.MXNetError, match="frcnn_multilevel_proposal") as e:
            frcnn_ops.multilevel_proposal([mx.nd.array(x, dtype=x.dtype) for x in s],
                                          [mx.nd.array(x, dtype=x.dtype) for x in d],
                                          mx.nd.array(a), mx.nd.array(info), **kw).wait_to_read()
        assert msg in str(e.value), (msg, str(e.value))
    # num_levels that disagrees with the inputs; without it MXNet cannot count them
    shapes = [list(cat_a.shape), list(info.shape)] + [list(x.shape) for x in scores + deltas]
    with pytest.raises(ValueError, match="frcnn_multilevel_proposal: got 6 level inputs after "
                       r"anchors and im_info, expected 2 \* num_levels = 4"):
        frcnn_ops._C.infer_shape("frcnn_multilevel_proposal", shapes, {"num_levels": "2"})
    generated = mx.nd.op.frcnn_multilevel_proposal.__wrapped_generated__
    with pytest.raises(mx.base.MXNetError, match="attribute num_levels is required"):
        generated(*[mx.nd.array(x) for x in [cat_a, info] + scores + deltas]).wait_to_read()
    with pytest.raises(TypeError, match="frcnn_multilevel_proposal: needs scores"):
        mx.nd.frcnn_multilevel_proposal(mx.nd.array(cat_a), mx.nd.array(info),
                                        *[mx.nd.array(x) for x in scores + deltas[:2]])
