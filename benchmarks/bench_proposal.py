"""The RPN proposal step and nms at the seed's shapes and in sweeps.

proposal against GluonCV's composite (RPNProposal + box_nms + slice, hybridized), against
mx.nd.contrib.Proposal (same counts; older +1 conventions) and the NumPy reference; nms against
mx.nd.contrib.box_nms."""
import numpy as np
import pytest

import frcnn_ops
from benchutil import mx_sync
from shapes import (FEAT_HW, IMAGE_HW, detections, feature_for_anchors, im_info, pre_nms_boxes,
                    rpn_anchors, rpn_deltas, rpn_scores)


def _gluoncv_block(mx, pre, post):
    from gluoncv.model_zoo.rcnn.rpn.proposal import RPNProposal

    class GluonCVProposal(mx.gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            self.prop = RPNProposal(clip=None, min_size=16, stds=(1.0, 1.0, 1.0, 1.0))

        def hybrid_forward(self, F, anchors, scores, deltas, img):
            pre_t = self.prop(anchors, scores, deltas, img)
            tmp = F.contrib.box_nms(pre_t, overlap_thresh=0.7, topk=pre, coord_start=1,
                                    score_index=0, id_index=-1, force_suppress=True)
            return F.slice_axis(tmp, axis=1, begin=0, end=post)

    net = GluonCVProposal()
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def _proposal_callable(mx, impl, feat_hw, pre, post, batch=1):
    anchors = rpn_anchors(feat_hw)
    n = anchors.shape[1]
    # the seed's 600x800 image, or for a sweep the image that this feature map comes from
    img_hw = IMAGE_HW if tuple(feat_hw) == FEAT_HW else (feat_hw[0] * 16, feat_hw[1] * 16)
    scores, deltas, info = rpn_scores(batch, n), rpn_deltas(batch, n), im_info(batch, img_hw)
    S, D, A, I = (mx.nd.array(x) for x in (scores, deltas, anchors, info))
    if impl == "frcnn_ops":
        return mx_sync(lambda: mx.nd.frcnn_proposal(S, D, A, I, rpn_pre_nms_top_n=pre,
                                                    rpn_post_nms_top_n=post))
    if impl == "gluoncv":
        pytest.importorskip("gluoncv")
        net = _gluoncv_block(mx, pre, post)
        img = mx.nd.zeros((batch, 3) + tuple(img_hw))
        return mx_sync(lambda: net(A, S, D, img))
    if impl == "mx.contrib.Proposal":
        h, w = feat_hw
        # (B, H*W*A, 1) -> (B, 2A, H, W) with background = 1 - fg, as contrib.Proposal wants
        fg = scores.reshape(batch, h, w, 15).transpose(0, 3, 1, 2)
        cls_prob = mx.nd.array(np.concatenate([1 - fg, fg], axis=1))
        bbox = mx.nd.array(deltas.reshape(batch, h, w, 60).transpose(0, 3, 1, 2))
        info3 = mx.nd.array(info)
        return mx_sync(lambda: mx.nd.contrib.Proposal(
            cls_prob, bbox, info3, rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post,
            threshold=0.7, rpn_min_size=16, scales=(2, 4, 8, 16, 32), ratios=(0.5, 1, 2),
            feature_stride=16))
    from frcnn_ops import reference as ref
    return lambda: ref.proposal(scores, deltas, anchors, info, pre, post)


@pytest.mark.parametrize("impl", ["frcnn_ops", "gluoncv", "mx.contrib.Proposal", "numpy_ref"])
@pytest.mark.parametrize("pre,post", [(6000, 300), (12000, 2000)], ids=["test", "train"])
def test_proposal_seed(benchmark, mx, impl, pre, post):
    benchmark.group = "proposal 28500 anchors %d->%d" % (pre, post)
    benchmark(_proposal_callable(mx, impl, FEAT_HW, pre, post))


@pytest.mark.parametrize("impl", ["frcnn_ops", "gluoncv"])
def test_proposal_batch4(benchmark, mx, impl):
    benchmark.group = "proposal 28500 anchors 6000->300 B=4"
    benchmark(_proposal_callable(mx, impl, FEAT_HW, 6000, 300, batch=4))


@pytest.mark.parametrize("impl", ["frcnn_ops", "mx.contrib.Proposal"])
@pytest.mark.parametrize("anchors", [10000, 60000, 120000, 200000])
def test_proposal_sweep_anchors(benchmark, mx, impl, anchors):
    hw = feature_for_anchors(anchors)
    benchmark.group = "proposal sweep anchors=%d (%dx%d) 6000->300" % (hw[0] * hw[1] * 15, *hw)
    benchmark(_proposal_callable(mx, impl, hw, 6000, 300))


@pytest.mark.parametrize("impl", ["frcnn_ops", "mx.contrib.Proposal"])
@pytest.mark.parametrize("pre", [1000, 3000, 6000, 12000])
def test_proposal_sweep_pre_nms(benchmark, mx, impl, pre):
    benchmark.group = "proposal sweep pre_nms=%d 28500 anchors" % pre
    benchmark(_proposal_callable(mx, impl, FEAT_HW, pre, min(300, pre)))


@pytest.mark.parametrize("impl", ["frcnn_ops", "mx.contrib.box_nms"])
@pytest.mark.parametrize("n", [6000, 12000])
def test_nms_rpn_boxes(benchmark, mx, impl, n):
    benchmark.group = "nms %d boxes (rpn, 0.7)" % n
    x = mx.nd.array(pre_nms_boxes(n))
    kw = dict(overlap_thresh=0.7, coord_start=1, score_index=0, id_index=-1,
              force_suppress=True)
    f = mx.nd.frcnn_nms if impl == "frcnn_ops" else mx.nd.contrib.box_nms
    benchmark(mx_sync(lambda: f(x, **kw)))


@pytest.mark.parametrize("impl", ["frcnn_ops", "mx.contrib.box_nms"])
def test_nms_per_class(benchmark, mx, impl):
    benchmark.group = "nms per class 20x300 (topk 400, 0.3)"
    x = mx.nd.array(detections())
    kw = dict(overlap_thresh=0.3, topk=400, valid_thresh=0.0001, id_index=0, score_index=1,
              coord_start=2, force_suppress=False)
    f = mx.nd.frcnn_nms if impl == "frcnn_ops" else mx.nd.contrib.box_nms
    benchmark(mx_sync(lambda: f(x, **kw)))
