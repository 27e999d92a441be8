"""One Faster R-CNN training step on frcnn_ops, as GluonCV's train_faster_rcnn.py computes it.

The graph is GluonCV's training forward with the targets done in Cython between two
hybridized stages:

  stage 1 (graph):   image -> features -> RPN logits and deltas -> frcnn_proposal with the
                     training setting (rpn_train_pre_nms -> rpn_train_post_nms)
  targets (Cython):  RPN anchor targets for the padded batch's anchors (each image's own size
                     decides which anchors cross its border); RCNN sampling of the proposals
                     plus the ground truth (num_sample rois, pos_ratio positives, IoU
                     pos_iou_thresh) and the class and box targets
  stage 2 (graph):   frcnn_roi_align on the sampled rois (its backward feeds the features) ->
                     top_features -> class and box predictors

The FPN model (:class:`frcnn_model.modeling.fpn.FasterRCNNFPN`) trains the same way with its
pieces: stage 1 returns P2..P6 and every level's logits and deltas concatenated (one
frcnn_proposal over them), the RPN targets are computed on all levels' anchors concatenated
(GluonCV's FPN training does the same), and stage 2 pools the sampled rois with
frcnn_multilevel_roi_align (its backward feeds each level) before the two dense layers.

Losses (GluonCV's): RPN sigmoid binary cross-entropy + Huber (rho 1/9), head softmax
cross-entropy + Huber (rho 1); each summed over the batch's sampled entries and divided by
their count, times the batch size as GluonCV's per-image terms add up (``trainer.step(B)``
divides it again).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import frcnn_ops  # noqa: F401  (before mxnet: AMX for bf16, frcnn_ops/bf16.py)
import mxnet as mx
from mxnet import autograd, gluon
from mxnet.gluon import nn

from ..modeling.anchors import feature_anchors
from ..modeling.faster_rcnn import FasterRCNN, rpn_raw
from ..modeling.fpn import FasterRCNNFPN, fpn_rpn_raw, level_anchor_args, pyramid_align
from .targets import RPNTargetGenerator, rcnn_sample, rcnn_targets


def select_train_params(net: Any) -> gluon.ParameterDict:
    """What GluonCV's train_faster_rcnn.py does before training, on our models or on GluonCV's
    (the same methods): grad_req 'null' on every parameter, then 'write' on
    ``net.collect_train_params()``, which it returns (the Trainer's parameters)."""
    net.collect_params().setattr("grad_req", "null")
    train = net.collect_train_params()
    train.setattr("grad_req", "write")
    return train


def _train_proposals(F, logits, deltas, anchors, im_hw, cfg):
    """The RPN's proposals with the training setting (no gradient), for either stage 1."""
    return F.frcnn_proposal(F.sigmoid(F.stop_gradient(logits)), F.stop_gradient(deltas),
                            anchors, im_hw, rpn_pre_nms_top_n=cfg["rpn_train_pre_nms"],
                            rpn_post_nms_top_n=cfg["rpn_train_post_nms"],
                            threshold=cfg["rpn_nms_thresh"], rpn_min_size=cfg["rpn_min_size"],
                            clip=cfg["clip"])


class _Stage1(nn.HybridBlock):
    """(B, 3, H, W) images, (B, 2) [h, w] -> features, RPN logits (B, HWA, 1), RPN deltas
    (B, HWA, 4), proposals (B, post, 5) = [score, x1, y1, x2, y2] (no gradient)."""

    def __init__(self, net, cfg):
        super().__init__(prefix="")
        self._cfg = cfg
        self.features = net.features
        self.rpn = net.rpn

    def hybrid_forward(self, F, x, im_hw):
        feat = self.features(x)
        anchors, logits, deltas = rpn_raw(F, self.rpn, feat)
        props = _train_proposals(F, logits, deltas, anchors, im_hw, self._cfg)
        return feat, logits, deltas, props


class _Stage2(nn.HybridBlock):
    """features, rois (B*S, 5), flat indices of the box-regressed rois (B*P,) ->
    class logits (B*S, C+1), box deltas (B*P, C*4)."""

    def __init__(self, net, cfg):
        super().__init__(prefix="")
        self._cfg = cfg
        self.top_features = net.top_features
        self.class_predictor = net.class_predictor
        self.box_predictor = net.box_predictor

    def hybrid_forward(self, F, feat, rois, pos_index):
        cfg = self._cfg
        pooled = F.frcnn_roi_align(feat, rois, pooled_size=cfg["roi_size"],
                                   spatial_scale=1.0 / cfg["stride"],
                                   sample_ratio=cfg["sample_ratio"])
        box_feat = F.contrib.AdaptiveAvgPooling2D(self.top_features(pooled), output_size=1)
        box_feat = box_feat.reshape((0, -1))
        cls_pred = self.class_predictor(box_feat)
        box_pred = self.box_predictor(F.take(box_feat, pos_index))
        return cls_pred, box_pred


class _Stage1FPN(nn.HybridBlock):
    """The FPN's stage 1: (B, 3, H, W), (B, 2) -> P2..P6, logits (B, N, 1) and deltas
    (B, N, 4) of all levels concatenated, proposals (B, post, 5) (no gradient)."""

    def __init__(self, net, cfg):
        super().__init__(prefix="")
        self._cfg = cfg
        self.features = net.features
        self.rpn = net.rpn

    def hybrid_forward(self, F, x, im_hw):
        feats = self.features(x)
        anchors, logits, deltas = fpn_rpn_raw(F, self.rpn, feats)
        props = _train_proposals(F, logits, deltas, anchors, im_hw, self._cfg)
        return tuple(feats) + (logits, deltas, props)


class _Stage2FPN(nn.HybridBlock):
    """The FPN's stage 2: P2..P5, rois (B*S, 5), box-regressed roi indices (B*P,) ->
    class logits (B*S, C+1), box deltas (B*P, C*4)."""

    def __init__(self, net, cfg):
        super().__init__(prefix="")
        self._cfg = cfg
        self.box_features = net.box_features
        self.class_predictor = net.class_predictor
        self.box_predictor = net.box_predictor

    def hybrid_forward(self, F, p2, p3, p4, p5, rois, pos_index):
        box_feat = self.box_features(pyramid_align(F, rois, (p2, p3, p4, p5), self._cfg))
        return (self.class_predictor(box_feat),
                self.box_predictor(F.take(box_feat, pos_index)))


class TrainStep:
    """Forward, losses and backward of one batch; ``trainer.step`` is the caller's.

    ``net`` is a :class:`frcnn_model.FasterRCNN` (C4) or a
    :class:`frcnn_model.FasterRCNNFPN`; its blocks are shared, not copied, so the trainer
    updates ``net``'s parameters and the inference ``net`` sees the update. Gradients go to
    the parameters whose grad_req is not 'null': GluonCV's scripts (and frcnn-train) train
    ``net.collect_train_params()`` only.
    """

    def __init__(self, net: FasterRCNN, hybridize: bool = True, seed: int = 0) -> None:
        cfg = net._frcnn_cfg
        self.cfg = cfg
        self.num_class = cfg["num_class"]
        self.max_pos = int(round(cfg["num_sample"] * cfg["pos_ratio"]))
        self.fpn = isinstance(net, FasterRCNNFPN)
        self.stage1 = (_Stage1FPN if self.fpn else _Stage1)(net, cfg)
        self.stage2 = (_Stage2FPN if self.fpn else _Stage2)(net, cfg)
        if hybridize:
            self.stage1.hybridize(static_alloc=True)
            self.stage2.hybridize(static_alloc=True)
        self.rpn_target = RPNTargetGenerator(
            num_sample=cfg["rpn_num_sample"], pos_iou_thresh=cfg["rpn_pos_iou_thresh"],
            neg_iou_thresh=cfg["rpn_neg_iou_thresh"], pos_ratio=cfg["rpn_pos_ratio"])
        self.rng = np.random.default_rng(seed)
        self.rpn_cls_loss = gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
        self.rpn_box_loss = gluon.loss.HuberLoss(rho=1.0 / 9.0)
        self.rcnn_cls_loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self.rcnn_box_loss = gluon.loss.HuberLoss(rho=1.0)
        self._anchors = {}

    def anchors(self, feat_hw: Union[Tuple[int, int], Tuple[Tuple[int, int], ...]]
                ) -> np.ndarray:
        """(H*W*A, 4) numpy anchors of a feature map, as the network's anchor constant; for
        the FPN, ``feat_hw`` is each level's (H, W) and the levels' anchors are concatenated
        in level order (as the network's RPN concatenates them)."""
        if feat_hw not in self._anchors:
            cfg = self.cfg
            if self.fpn:
                self._anchors[feat_hw] = np.concatenate([
                    feature_anchors(hw, stride=a["stride"], base_size=a["base_size"],
                                    ratios=a["ratios"], scales=a["scales"])[0]
                    for hw, a in zip(feat_hw, level_anchor_args(cfg))])
            else:
                self._anchors[feat_hw] = feature_anchors(
                    feat_hw, stride=cfg["stride"], base_size=cfg["base_size"],
                    ratios=cfg["ratios"], scales=cfg["scales"])[0]
        return self._anchors[feat_hw]

    def rpn_targets(self, feat_hw: Any, labels: np.ndarray, im_hw: np.ndarray
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, N) cls targets, (B, N, 4) box targets and masks for a padded batch."""
        anchors = self.anchors(feat_hw)
        cls_t, box_t, mask_t = [], [], []
        for label, (h, w) in zip(labels, im_hw):
            gt = label[label[:, 4] >= 0, :4]
            c, b, m = self.rpn_target(gt, anchors, float(w), float(h), rng=self.rng)
            cls_t.append(c)
            box_t.append(b)
            mask_t.append(m)
        return np.stack(cls_t), np.stack(box_t), np.stack(mask_t)

    def __call__(self, data: np.ndarray, labels: np.ndarray, im_hw: np.ndarray,
                 ctx: Optional[mx.Context] = None) -> Dict[str, Union[float, int]]:
        """One forward/backward. data (B, 3, H, W), labels (B, M, 6) [x1, y1, x2, y2, class,
        difficult] padded with -1 rows, im_hw (B, 2): NumPy arrays. Returns a dict of the four
        losses (floats, GluonCV's sums over the batch) and the number of images."""
        ctx = ctx or mx.cpu()
        cfg = self.cfg
        batch = data.shape[0]
        labels = np.asarray(labels, dtype=np.float32)
        gt_boxes = labels[:, :, :4]
        gt_ids = labels[:, :, 4]
        x = mx.nd.array(data, ctx=ctx)
        hw = mx.nd.array(im_hw, ctx=ctx)
        with autograd.record():
            out = self.stage1(x, hw)
            if self.fpn:  # P2..P6: the head pools from P2..P5
                feats, (logits, deltas, props) = out[:-3], out[-3:]
                feat_hw = tuple(tuple(f.shape[2:]) for f in feats)
                feats = feats[:4]
            else:
                feat, logits, deltas, props = out
                feat_hw, feats = tuple(feat.shape[2:]), (feat,)
            # targets (NumPy/Cython; nothing here is recorded)
            rpn_cls_t, rpn_box_t, rpn_mask = self.rpn_targets(feat_hw, labels, im_hw)
            props = props.asnumpy()
            rois, samples, matches = rcnn_sample(
                props[:, :, 1:], props[:, :, :1], gt_boxes, num_sample=cfg["num_sample"],
                pos_iou_thresh=cfg["pos_iou_thresh"], pos_ratio=cfg["pos_ratio"], rng=self.rng)
            cls_t, box_t, box_mask, indices = rcnn_targets(
                rois, samples, matches, gt_ids, gt_boxes, self.num_class, self.max_pos,
                stds=cfg["box_stds"])
            num_sample = rois.shape[1]
            batch_index = np.repeat(np.arange(batch, dtype=np.float32), num_sample)[:, None]
            flat_rois = np.concatenate([batch_index, rois.reshape(-1, 4)], axis=1)
            flat_index = (indices + np.arange(batch)[:, None] * num_sample).reshape(-1)
            cls_pred, box_pred = self.stage2(*feats, mx.nd.array(flat_rois, ctx=ctx),
                                             mx.nd.array(flat_index, ctx=ctx))
            # RPN losses: over the sampled anchors (target >= 0)
            rpn_cls_t = mx.nd.array(rpn_cls_t, ctx=ctx)
            rpn_valid = rpn_cls_t >= 0
            num_rpn = mx.nd.maximum(rpn_valid.sum(), 1)
            rpn_loss1 = self.rpn_cls_loss(logits.squeeze(axis=-1), rpn_cls_t, rpn_valid) \
                * rpn_cls_t.size / num_rpn
            rpn_loss2 = self.rpn_box_loss(deltas, mx.nd.array(rpn_box_t, ctx=ctx),
                                          mx.nd.array(rpn_mask, ctx=ctx)) \
                * deltas.size / num_rpn
            # RCNN losses: over the sampled rois (target >= 0)
            cls_t = mx.nd.array(cls_t, ctx=ctx)
            cls_pred = cls_pred.reshape((batch, num_sample, -1))
            box_pred = box_pred.reshape((batch, self.max_pos, self.num_class, 4))
            num_rcnn = mx.nd.maximum((cls_t >= 0).sum(), 1)
            rcnn_loss1 = self.rcnn_cls_loss(cls_pred, cls_t, (cls_t >= 0).expand_dims(-1)) \
                * cls_t.size / num_rcnn
            rcnn_loss2 = self.rcnn_box_loss(box_pred, mx.nd.array(box_t, ctx=ctx),
                                            mx.nd.array(box_mask, ctx=ctx)) \
                * box_pred.size / num_rcnn
            total = rpn_loss1.sum() + rpn_loss2.sum() + rcnn_loss1.sum() + rcnn_loss2.sum()
        total.backward()
        return {"rpn_cls": float(rpn_loss1.sum().asscalar()),
                "rpn_box": float(rpn_loss2.sum().asscalar()),
                "rcnn_cls": float(rcnn_loss1.sum().asscalar()),
                "rcnn_box": float(rcnn_loss2.sum().asscalar()),
                "images": batch}
