"""patch_gluoncv: run an existing GluonCV Faster R-CNN or Mask R-CNN on frcnn_ops."""
import types
import warnings

__all__ = ["patch_gluoncv"]


def patch_gluoncv(net: "mxnet.gluon.HybridBlock",
                  precision: str = "fp32") -> "mxnet.gluon.HybridBlock":
    """Makes an unmodified GluonCV Faster R-CNN instance use frcnn_ops.

    Single-level (C4) models, e.g. ``faster_rcnn_resnet50_v1b_voc``: at inference, proposals
    (``frcnn_proposal``), ROIAlign (``frcnn_roi_align``), class-specific decoding
    (``frcnn_box_decode``) and the per-class NMS (``frcnn_nms``) replace GluonCV's composite
    and contrib ops; the training path (``autograd.is_training()``) is left as GluonCV's.

    FPN models (``faster_rcnn_fpn_*``, ``mask_rcnn_fpn_*``: their mask branch pools through the
    same pyramid), at inference and in training: the multi-level RPN's
    proposal step (RPNProposal per level, concat, box_nms, slice) becomes one
    ``frcnn_proposal`` over the concatenated levels, and the pyramid ROI pooling
    (``_pyramid_roi_feats``: ROIAlign on every level, masked, summed) becomes one
    ``frcnn_multilevel_roi_align`` (with its gradient into every level); the rest (heads,
    targets, losses, decoding, NMS) stays GluonCV's. GluonCV's own pyramid pooling passes rois
    of other levels to contrib.ROIAlign with batch index -1, rows MXNet leaves unwritten; ours
    gives those rows zeros, which is what GluonCV's code means (its other branch). An RPN with
    ``per_level_nms=True`` (no GluonCV model uses one) keeps GluonCV's proposal step, with a
    warning. A single-level (C4) Mask R-CNN is left as GluonCV's, with a warning.

    The weights and sub-blocks are the instance's own. Any cached graph is dropped, so
    hybridize before or after as usual. ``roi_mode='align'`` only.

    Args:
        net: a ``gluoncv.model_zoo.rcnn.FasterRCNN``.
        precision: 'fp32' (default) or 'bf16': convolutions and dense layers in bfloat16
            through MXNet's AMP (oneDNN), the frcnn ops in float32 (:mod:`frcnn_ops.bf16`); the
            net then hybridizes itself on its first call and ``export`` keeps the casts. Needs
            a CPU with AVX512-BF16 (a RuntimeError names it otherwise).

    Returns:
        the same instance, patched in place.
    """
    from mxnet import autograd
    from frcnn_model.modeling.faster_rcnn import detect, make_cfg
    from . import bf16

    bf16.check_precision(precision, "patch_gluoncv: precision")
    if precision == "bf16":
        bf16.check_bf16_cpu()

    fpn = getattr(net, "num_stages", 1) != 1 or getattr(getattr(net, "rpn", None),
                                                          "_multi_level", False)
    for name in ("features",) + (() if fpn else ("top_features",)) + (
            "rpn", "class_predictor", "box_predictor"):
        if getattr(net, name, None) is None:
            raise TypeError("patch_gluoncv: %s has no '%s': not a GluonCV Faster R-CNN"
                            % (type(net).__name__, name))
    if getattr(net, "_roi_mode", "align") != "align":
        raise ValueError("patch_gluoncv: roi_mode %r is not supported (only 'align')"
                         % net._roi_mode)
    if getattr(net, "mask", None) is not None and not fpn:
        warnings.warn("patch_gluoncv: %s is a single-level (C4) Mask R-CNN, which is not "
                      "accelerated: left as GluonCV's" % type(net).__name__)
        return net
    if fpn:
        if precision != "fp32":
            raise ValueError("patch_gluoncv: precision %r is not supported for FPN models "
                             "(only 'fp32')" % precision)
        _patch_fpn(net)
        net._clear_cached_op()
        return net
    rpn, proposer = net.rpn, net.rpn.region_proposer
    clip = net.box_decoder._clip
    net._frcnn_cfg = make_cfg(
        classes=net.classes, stride=net._strides, rpn_nms_thresh=rpn._nms_thresh,
        rpn_test_pre_nms=rpn._test_pre_nms, rpn_test_post_nms=net._rpn_test_post_nms,
        rpn_min_size=proposer._min_size, roi_size=tuple(net._roi_size), nms_thresh=net.nms_thresh,
        nms_topk=net.nms_topk, box_stds=tuple(net.box_decoder._stds),
        clip=None if clip is None or clip <= 0 else clip)
    gluoncv_forward = net.hybrid_forward

    def hybrid_forward(self, F, x, gt_box=None, gt_label=None):
        if autograd.is_training():
            return gluoncv_forward(F, x, gt_box, gt_label)
        return detect(F, self, x, self._frcnn_cfg)

    net.hybrid_forward = types.MethodType(hybrid_forward, net)
    net._clear_cached_op()
    if precision != "fp32" or getattr(net, "_frcnn_bf16_installed", False):
        bf16.install(net, precision)
    return net


def _patch_fpn(net):
    """FPN: the multi-level RPN's proposal step and the pyramid ROI pooling (see
    patch_gluoncv)."""
    from mxnet import autograd
    from frcnn_model.modeling.faster_rcnn import image_size

    rpn = net.rpn
    if rpn._per_level_nms:
        warnings.warn("patch_gluoncv: the RPN has per_level_nms=True: its proposal step is "
                      "left as GluonCV's")
    else:
        rpn.hybrid_forward = types.MethodType(_fpn_rpn_forward(autograd, image_size), rpn)
        rpn._clear_cached_op()
    net._pyramid_roi_feats = types.MethodType(_fpn_pyramid, net)


def _fpn_rpn_forward(autograd, image_size):
    def hybrid_forward(self, F, img, *x):
        """GluonCV RPN.hybrid_forward's multi-level branch with one frcnn_proposal."""
        if autograd.is_training():
            pre, post = self._train_pre_nms, self._train_post_nms
        else:
            pre, post = self._test_pre_nms, self._test_post_nms
        anchors, scores, boxes, raw_scores, raw_boxes = [], [], [], [], []
        for i, feat in enumerate(x):
            anchors.append(self.anchor_generator[i](feat))
            score, box, raw_score, raw_box = self.rpn_head(feat)
            scores.append(score)
            boxes.append(box)
            raw_scores.append(raw_score)
            raw_boxes.append(raw_box)
        proposer = self.region_proposer
        decoder = proposer._box_decoder
        stds = decoder._stds
        with autograd.pause():
            props = F.frcnn_proposal(
                F.concat(*scores, dim=1), F.concat(*boxes, dim=1), F.concat(*anchors, dim=1),
                image_size(F, img), rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post,
                threshold=self._nms_thresh, rpn_min_size=proposer._min_size,
                std0=stds[0], std1=stds[1], std2=stds[2], std3=stds[3],
                clip=-1.0 if decoder._clip is None else decoder._clip)
            rpn_scores = F.slice_axis(props, axis=-1, begin=0, end=1)
            rpn_boxes = F.slice_axis(props, axis=-1, begin=1, end=None)
        if autograd.is_training():
            return (rpn_scores, rpn_boxes, F.concat(*raw_scores, dim=1),
                    F.concat(*raw_boxes, dim=1), anchors)
        return rpn_scores, rpn_boxes
    return hybrid_forward


def _fpn_pyramid(self, F, features, rpn_rois, roi_size, strides, roi_mode="align",
                 roi_canonical_scale=224.0, sampling_ratio=2, eps=1e-6):
    """GluonCV FasterRCNN._pyramid_roi_feats (align) as one frcnn_multilevel_roi_align."""
    max_stage = self._max_stage - 1 if self._max_stage > 5 else self._max_stage  # no P6
    n = max_stage - self._min_stage + 1
    return F.frcnn_multilevel_roi_align(
        rpn_rois, *features[:n], pooled_size=tuple(roi_size),
        spatial_scales=tuple(1.0 / s for s in strides[:n]), sample_ratio=sampling_ratio,
        min_level=self._min_stage, max_level=max_stage, canonical_scale=roi_canonical_scale,
        canonical_level=4, eps=eps)
