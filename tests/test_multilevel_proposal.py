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
