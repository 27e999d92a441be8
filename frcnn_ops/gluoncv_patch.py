"""patch_gluoncv: run an existing GluonCV Faster R-CNN or Mask R-CNN on frcnn_ops."""
import types
import warnings

__all__ = ["patch_gluoncv"]


def patch_gluoncv(net: "mxnet.gluon.HybridBlock",
                  precision: str = "fp32") -> "mxnet.gluon.HybridBlock":
    """Makes an unmodified GluonCV Faster R-CNN or Mask R-CNN instance use frcnn_ops.

    Every model, at inference and in training (``autograd.is_training()``): the RPN's proposal
    step (RPNProposal, box_nms, slice; the training or the test pre/post-NMS counts) becomes
    one ``frcnn_proposal``. GluonCV's heads, sampler, targets and losses stay GluonCV's, with
    the same outputs, losses and parameter gradients.

    Single-level (C4) models (``faster_rcnn_resnet50_v1b_voc``, ``mask_rcnn_resnet18_v1b_coco``,
    ``doublehead_rcnn_resnet50_v1b_voc``, ...): GluonCV's own forward runs with
    ``contrib.ROIAlign`` as ``frcnn_roi_align`` (with its backward; for a Mask R-CNN also the
    mask branch's pooling of the detections), ``contrib.box_nms`` as ``frcnn_nms`` and the
    class-specific ``box_decoder`` as ``frcnn_box_decode``. A plain C4 Faster R-CNN's inference
    is frcnn_model's ``detect`` (the same ops in one graph, batches > 1 too; not with
    ``force_nms`` or ``additional_output``, which take the path above).

    FPN models (``faster_rcnn_fpn_*``, ``mask_rcnn_fpn_*``, syncbn and resnest included): the
    proposal step is one ``frcnn_proposal`` over the concatenated levels, and the pyramid ROI
    pooling (``_pyramid_roi_feats``: ROIAlign on every level, masked, summed; the mask branch's
    too) becomes one ``frcnn_multilevel_roi_align`` (with its gradient into every level); the
    class-specific decoding and NMS stay GluonCV's. GluonCV's own pyramid pooling passes rois
    of other levels to contrib.ROIAlign with batch index -1, rows MXNet leaves unwritten; ours
    gives those rows zeros, which is what GluonCV's code means (its other branch). An RPN with
    ``per_level_nms=True`` (no GluonCV model uses one) keeps GluonCV's proposal step, with a
    warning.

    Left as GluonCV's (its own code, on MXNet's ops; cheap next to the convolutions): the
    backbone and heads, the RCNN sampler and target generators, the class decoder
    (MultiPerClassDecoder), a Mask R-CNN's top-k gather of its detections and mask pick, and
    in FPN models the class-specific decoding and NMS; GluonCV's batch size 1 at inference
    except in ``detect``.

    The weights and sub-blocks are the instance's own. Any cached graph is dropped, so
    hybridize before or after as usual. ``roi_mode='align'`` only.

    Args:
        net: a ``gluoncv.model_zoo.rcnn`` Faster R-CNN, Mask R-CNN or double-head R-CNN.
        precision: 'fp32' (default) or 'bf16' (a plain C4 Faster R-CNN only): convolutions
            and dense layers in bfloat16 through MXNet's AMP (oneDNN), the frcnn ops in float32
            (:mod:`frcnn_ops.bf16`); the net then hybridizes itself on its first call and
            ``export`` keeps the casts. Needs a CPU with AVX512-BF16 (a RuntimeError names it
            otherwise).

    Returns:
        the same instance, patched in place.
    """
    from mxnet import autograd
    from frcnn_model.modeling.faster_rcnn import detect
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
    if getattr(net.rpn, "region_proposer", None) is None:
        raise TypeError("patch_gluoncv: %s's rpn has no 'region_proposer': not a GluonCV RPN"
                        % type(net).__name__)
    if getattr(net, "_roi_mode", "align") != "align":
        raise ValueError("patch_gluoncv: roi_mode %r is not supported (only 'align')"
                         % net._roi_mode)
    gluoncv_forward = type(net).hybrid_forward  # the class's: patching twice wraps nothing
    plain = _is_plain_c4(net, fpn)
    if precision != "fp32" and not plain:
        raise ValueError("patch_gluoncv: precision %r is supported for a plain C4 Faster R-CNN "
                         "only (%s: only 'fp32')" % (precision, type(net).__name__))
    rpn = net.rpn
    if fpn and rpn._per_level_nms:
        warnings.warn("patch_gluoncv: the RPN has per_level_nms=True: its proposal step is "
                      "left as GluonCV's")
    else:
        rpn.hybrid_forward = types.MethodType(_rpn_forward, rpn)
        rpn._clear_cached_op()
    if fpn:
        net._pyramid_roi_feats = types.MethodType(_fpn_pyramid, net)
        net._clear_cached_op()
        return net
    net.box_decoder.hybrid_forward = types.MethodType(_box_decode, net.box_decoder)
    net.box_decoder._clear_cached_op()

    def hybrid_forward(self, F, x, gt_box=None, gt_label=None):
        if plain and not autograd.is_training() and not self.force_nms \
                and not self._additional_output:
            return detect(F, self, x, _detect_cfg(self))
        return gluoncv_forward(self, _FrcnnF(F), x, gt_box, gt_label)

    net.hybrid_forward = types.MethodType(hybrid_forward, net)
    net._clear_cached_op()
    if precision != "fp32" or getattr(net, "_frcnn_bf16_installed", False):
        bf16.install(net, precision)
    return net


def _is_plain_c4(net, fpn):
    """A C4 gluoncv FasterRCNN itself (not Mask R-CNN, double head, ...): what ``detect`` is."""
    from gluoncv.model_zoo.rcnn.faster_rcnn.faster_rcnn import FasterRCNN
    return (not fpn and isinstance(net, FasterRCNN)
            and type(net).hybrid_forward is FasterRCNN.hybrid_forward
            and getattr(net, "box_features", None) is None)


def _detect_cfg(net):
    """frcnn_model's settings from the instance's, read at each graph build: set_nms and
    reset_class change them after patching."""
    from frcnn_model.modeling.faster_rcnn import make_cfg
    rpn, proposer, clip = net.rpn, net.rpn.region_proposer, net.box_decoder._clip
    return make_cfg(
        classes=net.classes, stride=net._strides, rpn_nms_thresh=rpn._nms_thresh,
        rpn_test_pre_nms=rpn._test_pre_nms, rpn_test_post_nms=net._rpn_test_post_nms,
        rpn_min_size=proposer._min_size, roi_size=tuple(net._roi_size), nms_thresh=net.nms_thresh,
        nms_topk=net.nms_topk, box_stds=tuple(net.box_decoder._stds),
        score_thresh=net.cls_decoder._thresh,
        clip=None if clip is None or clip <= 0 else clip)


class _FrcnnF:
    """F for GluonCV's own hybrid_forward: ``contrib.ROIAlign`` is ``frcnn_roi_align`` and
    ``contrib.box_nms`` is ``frcnn_nms`` (drop-ins, same arguments); the rest is F's. Its
    sub-blocks get the real F (HybridBlock.__call__), so only this level's calls change."""

    class _Contrib:
        def __init__(self, F):
            self._contrib = F.contrib
            self.ROIAlign = F.frcnn_roi_align
            self.box_nms = F.frcnn_nms

        def __getattr__(self, name):
            return getattr(self._contrib, name)

    def __init__(self, F):
        self._F = F
        self.contrib = self._Contrib(F)

    def __getattr__(self, name):
        return getattr(self._F, name)


def _box_decode(self, F, x, anchors):
    """GluonCV NormalizedBoxCenterDecoder.hybrid_forward as one frcnn_box_decode."""
    stds = self._stds
    return F.frcnn_box_decode(x, anchors, stds[0], stds[1], stds[2], stds[3],
                              clip=-1.0 if self._clip is None else self._clip,
                              format=self._format)


def _rpn_forward(self, F, img, *x):
    """GluonCV RPN.hybrid_forward (either branch) with one frcnn_proposal."""
    from mxnet import autograd
    from frcnn_model.modeling.faster_rcnn import image_size

    if autograd.is_training():
        pre, post = self._train_pre_nms, self._train_post_nms
    else:
        pre, post = self._test_pre_nms, self._test_post_nms
    if self._multi_level:
        heads = [(self.anchor_generator[i](feat),) + tuple(self.rpn_head(feat))
                 for i, feat in enumerate(x)]
    else:  # GluonCV's single-level head: its own conv1/score/loc, not an RPNHead
        feat = x[0]
        anchor = self.anchor_generator(feat)
        h = self.conv1(feat)
        raw_score = self.score(h).transpose(axes=(0, 2, 3, 1)).reshape((0, -1, 1))
        raw_box = self.loc(h).transpose(axes=(0, 2, 3, 1)).reshape((0, -1, 4))
        heads = [(anchor, F.sigmoid(F.stop_gradient(raw_score)), F.stop_gradient(raw_box),
                  raw_score, raw_box)]
    anchors, scores, boxes, raw_scores, raw_boxes = (list(a) for a in zip(*heads))

    def cat(arrays):
        return arrays[0] if len(arrays) == 1 else F.concat(*arrays, dim=1)
    proposer = self.region_proposer
    decoder = proposer._box_decoder
    stds = decoder._stds
    with autograd.pause():
        props = F.frcnn_proposal(
            cat(scores), cat(boxes), cat(anchors), image_size(F, img),
            rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post, threshold=self._nms_thresh,
            rpn_min_size=proposer._min_size, std0=stds[0], std1=stds[1], std2=stds[2],
            std3=stds[3], clip=-1.0 if decoder._clip is None else decoder._clip)
        rpn_scores = F.slice_axis(props, axis=-1, begin=0, end=1)
        rpn_boxes = F.slice_axis(props, axis=-1, begin=1, end=None)
    if autograd.is_training():  # GluonCV's anchors: a list per level (FPN), else one array
        return (rpn_scores, rpn_boxes, cat(raw_scores), cat(raw_boxes),
                anchors if self._multi_level else anchors[0])
    return rpn_scores, rpn_boxes


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
