"""The RPN proposal step and nms at the seed's shapes and in sweeps.

proposal against GluonCV's composite (RPNProposal + box_nms + slice, hybridized), against
mx.nd.contrib.Proposal (same counts; older +1 conventions), the NumPy reference and
torchvision.ops' composite on the CPU (when torchvision is installed); nms against
mx.nd.contrib.box_nms and torchvision.ops.nms / batched_nms. Ours runs through MXNet against
MXNet and GluonCV, through NumPy against NumPy and torchvision (as in frcnn-bench)."""
import numpy as np
import pytest

import frcnn_ops
from benchutil import mx_sync
from frcnn_ops.bench.cases import NMS_CLASS, NMS_RPN, gluoncv_proposal_block, torchvision_proposal
from shapes import (FEAT_HW, IMAGE_HW, detections, feature_for_anchors, im_info, pre_nms_boxes,
                    rpn_anchors, rpn_deltas, rpn_scores)


def _gluoncv_block(mx, pre, post):
    pytest.importorskip("gluoncv")
    return gluoncv_proposal_block(mx, pre, post)


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
    if impl == "frcnn_ops.numpy":
        return lambda: frcnn_ops.proposal(scores, deltas, anchors, info, pre, post)
    if impl == "torchvision":
        torch = pytest.importorskip("torch")
        tv = pytest.importorskip("torchvision")
        Sx, D, A = (torch.from_numpy(x) for x in (scores[0, :, 0], deltas[0], anchors[0]))
        return lambda: torchvision_proposal(torch, tv, Sx, D, A, img_hw, pre, post)
    from frcnn_ops import reference as ref
    return lambda: ref.proposal(scores, deltas, anchors, info, pre, post)


SEED_IMPLS = ["frcnn_ops", "frcnn_ops.numpy", "gluoncv", "mx.contrib.Proposal", "numpy_ref",
              "torchvision"]


@pytest.mark.parametrize("impl", SEED_IMPLS)
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


def _torch():
    return pytest.importorskip("torch"), pytest.importorskip("torchvision")


NMS_IMPLS = ["frcnn_ops", "mx.contrib.box_nms", "frcnn_ops.numpy", "torchvision"]


@pytest.mark.parametrize("impl", NMS_IMPLS)
@pytest.mark.parametrize("n", [6000, 12000])
def test_nms_rpn_boxes(benchmark, mx, impl, n):
    benchmark.group = "nms %d boxes (rpn, 0.7)" % n
    data = pre_nms_boxes(n)
    if impl == "frcnn_ops.numpy":
        fn = lambda: frcnn_ops.nms(data, **NMS_RPN)  # noqa: E731
    elif impl == "torchvision":
        torch, tv = _torch()
        B, S = torch.from_numpy(data[0, :, 1:].copy()), torch.from_numpy(data[0, :, 0].copy())
        fn = lambda: tv.ops.nms(B, S, 0.7)  # noqa: E731
    else:
        x = mx.nd.array(data)
        f = mx.nd.frcnn_nms if impl == "frcnn_ops" else mx.nd.contrib.box_nms
        fn = mx_sync(lambda: f(x, **NMS_RPN))
    benchmark(fn)


@pytest.mark.parametrize("impl", NMS_IMPLS)
def test_nms_per_class(benchmark, mx, impl):
    benchmark.group = "nms per class 20x300 (topk 400, 0.3)"
    data = detections()
    if impl == "frcnn_ops.numpy":
        fn = lambda: frcnn_ops.nms(data, **NMS_CLASS)  # noqa: E731
    elif impl == "torchvision":
        torch, tv = _torch()
        flat = data.reshape(-1, 6)
        valid = flat[:, 1] > NMS_CLASS["valid_thresh"]
        B = torch.from_numpy(flat[valid, 2:].copy())
        S = torch.from_numpy(flat[valid, 1].copy())
        Id = torch.from_numpy(flat[valid, 0].astype(np.int64))
        fn = lambda: tv.ops.batched_nms(B, S, Id, 0.3)  # noqa: E731
    else:
        x = mx.nd.array(data)
        f = mx.nd.frcnn_nms if impl == "frcnn_ops" else mx.nd.contrib.box_nms
        fn = mx_sync(lambda: f(x, **NMS_CLASS))
    benchmark(fn)
