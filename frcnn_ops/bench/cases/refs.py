"""The references' code paths that take more than a line, and ours called the same way: the
composites (GluonCV, torchvision), mx.nd.contrib wrappers and autograd steps the cases time.

Each builder takes its inputs from ``shapes`` and returns callables that return when their
result is ready.
"""
import types

import numpy as np

from ..timing import mx_sync
from . import shapes as S
from .shapes import proposal_inputs, roi_kw


def gluoncv_proposal_block(mx, pre, post):
    """GluonCV's RPN path at test time: RPNProposal + box_nms + slice, hybridized."""
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


def fpn_proposal_fns(mx, pre, post):
    """(ours through MXNet: frcnn_multilevel_proposal on the levels as they come (no concat),
    GluonCV's multi-level RPN path after its head, hybridized: RPNProposal per level, concat,
    box_nms, slice) at the FPN shape."""
    from gluoncv.model_zoo.rcnn.rpn.proposal import RPNProposal
    anchors, scores, deltas, info = S.fpn_rpn_inputs()
    L = len(anchors)

    class GluonCVFPNProposal(mx.gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            self.prop = RPNProposal(clip=S.FPN_RPN["clip"], min_size=S.FPN_RPN["rpn_min_size"],
                                    stds=(1.0, 1.0, 1.0, 1.0))

        def hybrid_forward(self, F, img, *x):
            levels = [self.prop(x[i], x[L + i], x[2 * L + i], img) for i in range(L)]
            tmp = F.contrib.box_nms(F.concat(*levels, dim=1), overlap_thresh=0.7, topk=pre,
                                    coord_start=1, score_index=0, id_index=-1,
                                    force_suppress=True)
            return F.slice_axis(tmp, axis=1, begin=0, end=post)

    net = GluonCVFPNProposal()
    net.hybridize(static_alloc=True, static_shape=True)
    A, Sx, D = ([mx.nd.array(v) for v in x] for x in (anchors, scores, deltas))
    I, img = mx.nd.array(info), mx.nd.zeros((1, 3) + S.FPN_IMAGE_HW)
    cat_a = mx.nd.concat(*A, dim=1)  # anchors are constants of the model: concatenated once

    def ours():
        return mx.nd.frcnn_multilevel_proposal(cat_a, I, *Sx, *D, num_levels=L,
                                               rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post,
                                               **S.FPN_RPN)
    return mx_sync(ours), mx_sync(lambda: net(img, *A, *Sx, *D))


def contrib_proposal_fns(mx, feat_hw, pre, post):
    """(ours through MXNet, mx.nd.contrib.Proposal) on the same scores and deltas."""
    scores, deltas, anchors, info, _ = proposal_inputs(feat_hw)
    Sx, D, A, I = (mx.nd.array(x) for x in (scores, deltas, anchors, info))
    h, w = feat_hw
    # (1, H*W*A, 1) -> (1, 2A, H, W) with background = 1 - fg, as contrib.Proposal wants
    fg = scores.reshape(1, h, w, 15).transpose(0, 3, 1, 2)
    cls_prob = mx.nd.array(np.concatenate([1 - fg, fg], axis=1))
    bbox = mx.nd.array(deltas.reshape(1, h, w, 60).transpose(0, 3, 1, 2))
    ours = mx_sync(lambda: mx.nd.frcnn_proposal(Sx, D, A, I, rpn_pre_nms_top_n=pre,
                                                rpn_post_nms_top_n=post))
    ref = mx_sync(lambda: mx.nd.contrib.Proposal(
        cls_prob, bbox, I, rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post, threshold=0.7,
        rpn_min_size=16, scales=(2, 4, 8, 16, 32), ratios=(0.5, 1, 2), feature_stride=16))
    return ours, ref


def torchvision_proposal(torch, tv, scores, deltas, anchors, hw, pre, post):
    """torchvision's RPN post-processing: topk, decode, clip, remove_small_boxes, nms, top post
    (scores (N,), deltas and anchors (N, 4), on any device)."""
    s, idx = scores.topk(pre)
    d, a = deltas[idx], anchors[idx]
    wa, ha = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    xa, ya = a[:, 0] + 0.5 * wa, a[:, 1] + 0.5 * ha
    cx, cy = d[:, 0] * wa + xa, d[:, 1] * ha + ya
    w, h = torch.exp(d[:, 2]) * wa, torch.exp(d[:, 3]) * ha
    boxes = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=1)
    boxes = tv.ops.clip_boxes_to_image(boxes, hw)
    keep = tv.ops.remove_small_boxes(boxes, 16.0)
    boxes, s = boxes[keep], s[keep]
    keep = tv.ops.nms(boxes, s, 0.7)[:post]
    return boxes[keep], s[keep]


TV_PROPOSAL_NOTE = "different conventions (topk before the min-size filter, no +1)"


def mx_roi_align_fns(mx, n_rois=S.NUM_ROIS, channels=S.FEAT_C, backward=False):
    """(ours, contrib) through MXNet: forward, or forward + backward with a head gradient
    (returning [output, data gradient])."""
    feat, rois = S.feature_map(channels), S.seed_rois(n_rois)

    def make(op):
        x, r = mx.nd.array(feat), mx.nd.array(rois)
        if not backward:
            return mx_sync(lambda: op(x, r, **roi_kw()))
        x.attach_grad()
        head = mx.nd.array(S.roi_head_grad(n_rois, channels))

        def step():
            with mx.autograd.record():
                y = op(x, r, **roi_kw())
            y.backward(head)
            return [y, x.grad]
        return mx_sync(step)
    return make(mx.nd.frcnn_roi_align), make(mx.nd.contrib.ROIAlign)


def numpy_roi_align_fns(torch, tv, backward=False):
    """(ours through NumPy, torchvision.ops.roi_align on CPU tensors) at the seed shape:
    forward, or forward + backward with a head gradient (returning [output, data gradient]).
    torch and tv may be None when only ours is wanted."""
    import frcnn_ops
    feat, rois, head = S.feature_map(), S.seed_rois(), S.roi_head_grad()
    kw = roi_kw()
    args = (kw["pooled_size"], kw["spatial_scale"], kw["sample_ratio"])

    def theirs():
        X, R, H = torch.from_numpy(feat), torch.from_numpy(rois), torch.from_numpy(head)
        if not backward:
            return tv.ops.roi_align(X, R, *args, aligned=False)
        x = X.clone().requires_grad_(True)
        y = tv.ops.roi_align(x, R, *args, aligned=False)
        y.backward(H)
        return [y, x.grad]

    def ours():
        y = frcnn_ops.roi_align(feat, rois, *args)
        if not backward:
            return y
        return [y, frcnn_ops.roi_align_backward(head, rois, feat.shape, *args)]
    return ours, theirs


def gluoncv_pyramid(mx, feats, rois):
    """GluonCV's FasterRCNN._pyramid_roi_feats (its FPN models: stages 2..6, P6 unused)."""
    from gluoncv.model_zoo.rcnn.faster_rcnn.faster_rcnn import FasterRCNN
    fake = types.SimpleNamespace(_max_stage=6, _min_stage=2)
    return FasterRCNN._pyramid_roi_feats(fake, mx.nd, feats, rois, S.FPN_POOLED,
                                         S.FPN_STRIDES + (64,), roi_mode="align")


def multilevel_fns(mx, backward=False):
    """(ours, GluonCV's _pyramid_roi_feats) at the FPN shape through MXNet: forward, or forward
    + backward with a head gradient into every level (returning the level gradients)."""
    import frcnn_ops

    def ours(feats, rois):
        return frcnn_ops.multilevel_roi_align(
            rois, feats, S.FPN_POOLED, spatial_scales=[1.0 / s for s in S.FPN_STRIDES],
            sample_ratio=2)

    def make(op):
        xs = [mx.nd.array(f) for f in S.fpn_features()]
        r = mx.nd.array(S.fpn_rois())
        if not backward:
            return mx_sync(lambda: op(xs, r))
        for x in xs:
            x.attach_grad()
        head = mx.nd.array(S.fpn_head_grad())

        def step():
            with mx.autograd.record():
                y = op(xs, r)
            y.backward(head)
            return [x.grad for x in xs]
        return mx_sync(step)
    return make(ours), make(lambda feats, rois: gluoncv_pyramid(mx, feats, rois))


def train_params_only(net):
    """frcnn_model's ``select_train_params`` (GluonCV's train_faster_rcnn.py setup: only
    ``net.collect_train_params()`` get a gradient) on its net or on GluonCV's."""
    import warnings
    from frcnn_model.training.step import select_train_params
    with warnings.catch_warnings():  # GluonCV's selection lists its anchors, constants
        warnings.simplefilter("ignore")
        select_train_params(net)


def gluoncv_train_step(mx, net, x, gt, anchors):
    """GluonCV's training iteration as its train_faster_rcnn.py computes it (RPN targets,
    forward, the four losses, backward; its parameter selection, :func:`train_params_only`)
    for a C4 or FPN net (the same training outputs), on image x (NDArray), gt (M, 5)
    [x1, y1, x2, y2, class] and the net's anchors (N, 4); returns a callable that runs one
    and returns the four losses."""
    from mxnet import autograd, gluon
    train_params_only(net)
    from gluoncv.model_zoo.rcnn.rpn.rpn_target import RPNTargetGenerator
    gen = RPNTargetGenerator(num_sample=256, pos_iou_thresh=0.7, neg_iou_thresh=0.3,
                             pos_ratio=0.5, stds=(1., 1., 1., 1.))
    rpn_cls_loss = gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
    rpn_box_loss = gluon.loss.HuberLoss(rho=1 / 9.)
    rcnn_cls_loss = gluon.loss.SoftmaxCrossEntropyLoss()
    rcnn_box_loss = gluon.loss.HuberLoss()
    gt_box = mx.nd.array(gt[None, :, :4])
    gt_label = mx.nd.array(gt[None, :, 4:5])
    anchors = mx.nd.array(anchors)
    h, w = x.shape[2:]

    def step():
        cls_t, box_t, mask = gen(gt_box[0], anchors, w, h)
        rpn_cls_t, rpn_box_t, rpn_mask = (mx.nd.array(np.asarray(t))[None]
                                          for t in (cls_t, box_t, mask))
        with autograd.record():
            out = net(x, gt_box, gt_label)
            cls_pred, box_pred, rpn_score, rpn_box = out[0], out[1], out[5], out[6]
            cls_targets, box_targets, box_masks = out[8], out[9], out[10]
            rpn_score = rpn_score.squeeze(axis=-1)
            num_rpn_pos = (rpn_cls_t >= 0).sum()
            l1 = rpn_cls_loss(rpn_score, rpn_cls_t, rpn_cls_t >= 0) * rpn_cls_t.size / num_rpn_pos
            l2 = rpn_box_loss(rpn_box, rpn_box_t, rpn_mask) * rpn_box.size / num_rpn_pos
            num_rcnn_pos = (cls_targets >= 0).sum()
            l3 = rcnn_cls_loss(cls_pred, cls_targets, cls_targets.expand_dims(-1) >= 0) \
                * cls_targets.size / num_rcnn_pos
            l4 = rcnn_box_loss(box_pred, box_targets, box_masks) * box_pred.size / num_rcnn_pos
            total = l1.sum() + l2.sum() + l3.sum() + l4.sum()
        total.backward()
        return np.array([float(v.sum().asscalar()) for v in (l1, l2, l3, l4)])
    return step
