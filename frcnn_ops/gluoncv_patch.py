"""patch_gluoncv: run an existing GluonCV Faster R-CNN on frcnn_ops."""
import types

__all__ = ["patch_gluoncv"]


def patch_gluoncv(net: "mxnet.gluon.HybridBlock",
                  precision: str = "fp32") -> "mxnet.gluon.HybridBlock":
    """Makes an unmodified GluonCV Faster R-CNN instance use frcnn_ops at inference.

    Proposals (``frcnn_proposal``), ROIAlign (``frcnn_roi_align``), class-specific decoding
    (``frcnn_box_decode``) and the per-class NMS (``frcnn_nms``) replace GluonCV's composite and
    contrib ops; the weights and sub-blocks are the instance's own, the detections the same.
    The training path (``autograd.is_training()``) is left as GluonCV's. Any cached graph is
    dropped, so hybridize before or after as usual. Single-level (C4) models with
    ``roi_mode='align'`` only, e.g. ``faster_rcnn_resnet50_v1b_voc``.

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

    for name in ("features", "top_features", "rpn", "class_predictor", "box_predictor"):
        if getattr(net, name, None) is None:
            raise TypeError("patch_gluoncv: %s has no '%s': not a GluonCV Faster R-CNN"
                            % (type(net).__name__, name))
    if getattr(net, "num_stages", 1) != 1 or getattr(net.rpn, "_multi_level", False):
        raise ValueError("patch_gluoncv: FPN (multi-level) Faster R-CNN is not supported")
    if getattr(net, "_roi_mode", "align") != "align":
        raise ValueError("patch_gluoncv: roi_mode %r is not supported (only 'align')"
                         % net._roi_mode)
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
