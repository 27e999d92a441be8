"""Faster R-CNN, ResNet-50 v1b C4, VOC: GluonCV's faster_rcnn_resnet50_v1b_voc on frcnn_ops.

The block layout and attribute names are GluonCV's, so its parameter files load unchanged and
ours load into GluonCV. The forward pass is GluonCV's inference path with the hot steps done by
frcnn_ops: proposals (frcnn_proposal), ROIAlign (frcnn_roi_align), class-specific decoding
(frcnn_box_decode) and per-class NMS (frcnn_nms). Unlike GluonCV's, it runs batches > 1.
"""
from __future__ import annotations

import re
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

import frcnn_ops  # noqa: F401  (before mxnet: AMX for bf16, frcnn_ops/bf16.py)
import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from ..data.classes import VOC_CLASSES
from .anchors import generate_anchors
from .resnet import ResNetV1bStages

# GluonCV's settings for faster_rcnn_resnet50_v1b_voc
DEFAULTS = dict(
    classes=VOC_CLASSES, stride=16, base_size=16, scales=(2, 4, 8, 16, 32), ratios=(0.5, 1, 2),
    alloc_size=(128, 128), rpn_channel=1024, rpn_nms_thresh=0.7, rpn_test_pre_nms=6000,
    rpn_test_post_nms=300, rpn_train_pre_nms=12000, rpn_train_post_nms=2000, rpn_min_size=16,
    roi_size=(14, 14), sample_ratio=2, nms_thresh=0.3, nms_topk=400, score_thresh=0.01,
    box_stds=(0.1, 0.1, 0.2, 0.2), clip=None,
    # training (GluonCV's defaults): RPN anchor targets, then RCNN sampling of the proposals
    rpn_num_sample=256, rpn_pos_iou_thresh=0.7, rpn_neg_iou_thresh=0.3, rpn_pos_ratio=0.5,
    num_sample=128, pos_iou_thresh=0.5, pos_ratio=0.25,
)


def make_cfg(**overrides: Any) -> Dict[str, Any]:
    """DEFAULTS with overrides; derives num_class and turns clip=None into -1 (off)."""
    return cfg_from(DEFAULTS, overrides)


def cfg_from(defaults: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    """``defaults`` (a model's DEFAULTS) with ``overrides``, which must all be known settings;
    derives num_class and turns clip=None into -1 (off)."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise TypeError("frcnn_model: unknown settings %s (known: %s)"
                        % (sorted(unknown), ", ".join(sorted(defaults))))
    cfg = dict(defaults, **overrides)
    cfg["classes"] = tuple(cfg["classes"])
    cfg["num_class"] = len(cfg["classes"])
    cfg["clip"] = -1.0 if cfg["clip"] is None else float(cfg["clip"])
    return cfg


class RPNAnchorGenerator(nn.HybridBlock):
    """Holds the anchor constant (1, 1, 128, 128, A*4) and slices it to a feature map."""

    def __init__(self, stride: int, base_size: int, ratios: Sequence[float],
                 scales: Sequence[float], alloc_size: Tuple[int, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        anchors = generate_anchors(stride, base_size, ratios, scales, alloc_size)
        self.num_depth = len(ratios) * len(scales)
        with self.name_scope():
            self.anchors = self.params.get_constant("anchor_", anchors)

    def hybrid_forward(self, F, x, anchors):
        # (1, 1, 128, 128, A*4) -> (1, 1, H, W, A*4) -> (1, H*W*A, 4)
        return F.slice_like(anchors, x * 0, axes=(2, 3)).reshape((1, -1, 4))


class RPN(nn.HybridBlock):
    """RPN parameters: anchor generator, 3x3 conv + relu, 1x1 score and box heads."""

    def __init__(self, channels: int, stride: int, base_size: int, scales: Sequence[float],
                 ratios: Sequence[float], alloc_size: Tuple[int, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        init = mx.init.Normal(0.01)
        with self.name_scope():
            self.anchor_generator = RPNAnchorGenerator(stride, base_size, ratios, scales,
                                                       alloc_size)
            depth = self.anchor_generator.num_depth
            self.conv1 = nn.HybridSequential()
            self.conv1.add(nn.Conv2D(channels, 3, 1, 1, weight_initializer=init),
                           nn.Activation("relu"))
            self.score = nn.Conv2D(depth, 1, 1, 0, weight_initializer=init)
            self.loc = nn.Conv2D(depth * 4, 1, 1, 0, weight_initializer=init)

    def hybrid_forward(self, F, feat):
        return rpn_head(F, self, feat)


def rpn_raw(F: Any, rpn: nn.HybridBlock, feat: Any) -> Tuple[Any, Any, Any]:
    """anchors (1, HWA, 4), objectness logits (B, HWA, 1) before the sigmoid, deltas (B, HWA, 4).

    Uses only the sub-blocks, so it serves GluonCV's RPN too (patch_gluoncv)."""
    h = rpn.conv1(feat)
    score = rpn.score(h)
    # the generator only needs the map's H, W: the small score map instead of the features
    # (its `x * 0` and that product's zero gradient cost a pass over C=1024 channels)
    anchors = rpn.anchor_generator(score)
    logits = score.transpose(axes=(0, 2, 3, 1)).reshape((0, -1, 1))
    deltas = rpn.loc(h).transpose(axes=(0, 2, 3, 1)).reshape((0, -1, 4))
    return anchors, logits, deltas


def rpn_head(F: Any, rpn: nn.HybridBlock, feat: Any) -> Tuple[Any, Any, Any]:
    """anchors (1, HWA, 4), scores (B, HWA, 1) after sigmoid, deltas (B, HWA, 4)."""
    anchors, logits, deltas = rpn_raw(F, rpn, feat)
    return anchors, F.sigmoid(logits), deltas


def image_size(F: Any, x: Any) -> Any:
    """(B, 2) = [height, width] of the (padded) input batch: where proposals are clipped."""
    hw = F.cast(F.slice_axis(F.shape_array(x), axis=0, begin=2, end=4), "float32")
    like = x.slice_axis(axis=1, begin=0, end=1).slice_axis(axis=2, begin=0, end=1)
    like = like.slice_axis(axis=3, begin=0, end=2).reshape((0, 2))  # (B, 2)
    return F.broadcast_like(hw.reshape((1, 2)), like)


def detect(F: Any, net: nn.HybridBlock, x: Any, cfg: Dict[str, Any]) -> Tuple[Any, Any, Any]:
    """The inference pass on any block that has GluonCV's sub-block names.

    Returns ids (B, C*N, 1), scores (B, C*N, 1), bboxes (B, C*N, 4) with N = the number of
    proposals and C the foreground classes; rows NMS dropped are -1.
    """
    post = cfg["rpn_test_post_nms"]
    # 1. backbone: (B, 3, H, W) -> (B, 1024, H/16, W/16)
    feat = net.features(x)
    # 2. RPN head: anchors (1, HWA, 4), scores (B, HWA, 1), deltas (B, HWA, 4)
    anchors, rpn_scores, rpn_deltas = rpn_head(F, net.rpn, feat)
    # 3. proposals, clipped to the input size: (B, post, 5) = [score, x1, y1, x2, y2]
    props = F.frcnn_proposal(rpn_scores, rpn_deltas, anchors, image_size(F, x),
                             rpn_pre_nms_top_n=cfg["rpn_test_pre_nms"], rpn_post_nms_top_n=post,
                             threshold=cfg["rpn_nms_thresh"], rpn_min_size=cfg["rpn_min_size"],
                             clip=cfg["clip"])
    # 4. rois (B*post, 5) = [batch index, x1, y1, x2, y2], padded -1 rows included
    rpn_boxes, rois = proposal_rois(F, x, props)
    # 5. ROIAlign: (B*post, 1024, 14, 14)
    pooled = F.frcnn_roi_align(feat, rois, pooled_size=cfg["roi_size"],
                               spatial_scale=1.0 / cfg["stride"], sample_ratio=cfg["sample_ratio"])
    # 6. head: layer4 -> global average pool -> class and box predictors
    box_feat = F.contrib.AdaptiveAvgPooling2D(net.top_features(pooled), output_size=1)
    return rcnn_decode(F, net.class_predictor(box_feat), net.box_predictor(box_feat), rpn_boxes,
                       cfg)


def proposal_rois(F: Any, x: Any, props: Any) -> Tuple[Any, Any]:
    """proposals (B, post, 5) -> their boxes (B, post, 4) and the rois (B*post, 5) =
    [batch index, x1, y1, x2, y2] of ROIAlign, padded -1 rows included."""
    rpn_boxes = F.slice_axis(props, axis=-1, begin=1, end=None)            # (B, post, 4)
    batch_index = F.broadcast_like(F.contrib.arange_like(x, axis=0).reshape((-1, 1, 1)),
                                   F.slice_axis(props, axis=-1, begin=0, end=1))
    return rpn_boxes, F.concat(batch_index, rpn_boxes, dim=-1).reshape((-1, 5))


def rcnn_decode(F: Any, cls_pred: Any, box_pred: Any, rpn_boxes: Any,
                cfg: Dict[str, Any]) -> Tuple[Any, Any, Any]:
    """The head's outputs to detections, as GluonCV's inference does after its predictors.

    cls_pred (B*N, C+1) and box_pred (B*N, C*4) of the rois of rpn_boxes (B, N, 4) ->
    ids (B, C*N, 1), scores (B, C*N, 1), bboxes (B, C*N, 4); rows NMS dropped are -1.
    """
    num_class, post = cfg["num_class"], cfg["rpn_test_post_nms"]
    cls_pred = cls_pred.reshape((-4, -1, post, 0))                        # (B, N, C+1)
    box_pred = box_pred.reshape((-4, -1, post, -4, num_class, 4))         # (B, N, C, 4)
    # 7. per-class scores: softmax, drop background, score <= thresh -> id -1, score 0
    scores = F.slice_axis(F.softmax(cls_pred, axis=-1), axis=-1, begin=1, end=None)  # (B, N, C)
    ids = F.broadcast_like(F.arange(num_class).reshape((1, 1, num_class)), scores)
    keep = scores > cfg["score_thresh"]
    ids = F.where(keep, ids, F.ones_like(ids) * -1)
    scores = F.where(keep, scores, F.zeros_like(scores))
    ids = ids.transpose((0, 2, 1)).reshape((-3, 0, 1))                    # (B*C, N, 1)
    scores = scores.transpose((0, 2, 1)).reshape((-3, 0, 1))              # (B*C, N, 1)
    # 8. class-specific decoding against each image's proposals: (B*C, N, 4)
    deltas = box_pred.transpose((0, 2, 1, 3)).reshape((-3, 0, 0))
    proposals = F.repeat(rpn_boxes, repeats=num_class, axis=0)            # (B*C, N, 4)
    stds = cfg["box_stds"]
    bboxes = F.frcnn_box_decode(deltas, proposals, std0=stds[0], std1=stds[1], std2=stds[2],
                                std3=stds[3], clip=cfg["clip"], format="corner")
    # 9. per-class NMS, each (image, class) its own batch: (B*C, N, 6)
    res = F.frcnn_nms(F.concat(ids, scores, bboxes, dim=-1), overlap_thresh=cfg["nms_thresh"],
                      topk=cfg["nms_topk"], valid_thresh=0.0001, id_index=0, score_index=1,
                      coord_start=2, force_suppress=False)
    # 10. (B, C*N, 6) -> ids, scores, bboxes
    res = res.reshape((-4, -1, num_class, 0, 0)).reshape((0, -3, 0))
    return (F.slice_axis(res, axis=-1, begin=0, end=1), F.slice_axis(res, axis=-1, begin=1, end=2),
            F.slice_axis(res, axis=-1, begin=2, end=6))


class FasterRCNN(nn.HybridBlock):
    """Faster R-CNN with a C4 head: features (stride 16), RPN, ROIAlign, top_features, predictors.

    Call it on a normalized image batch (B, 3, H, W); returns (ids, scores, bboxes) with
    GluonCV's shapes and meaning: (B, C*N, 1), (B, C*N, 1), (B, C*N, 4), C = number of classes,
    N = rpn_test_post_nms proposals; rows removed by NMS are -1.
    """

    def __init__(self, features: nn.HybridBlock, top_features: nn.HybridBlock,
                 **cfg: Any) -> None:
        super().__init__()
        cfg = make_cfg(**cfg)
        self.classes = cfg["classes"]
        self._frcnn_cfg = cfg
        with self.name_scope():
            self.features = features
            self.top_features = top_features
            self.rpn = RPN(cfg["rpn_channel"], cfg["stride"], cfg["base_size"], cfg["scales"],
                           cfg["ratios"], cfg["alloc_size"])
            self.class_predictor = nn.Dense(cfg["num_class"] + 1,
                                            weight_initializer=mx.init.Normal(0.01))
            self.box_predictor = nn.Dense(cfg["num_class"] * 4,
                                          weight_initializer=mx.init.Normal(0.001))

    @property
    def num_class(self) -> int:
        return self._frcnn_cfg["num_class"]

    def hybrid_forward(self, F, x):
        return detect(F, self, x, self._frcnn_cfg)

    def rpn_outputs(self, F: Any, x: Any) -> Tuple[Any, Any, Any]:
        """anchors (1, HWA, 4), objectness (B, HWA, 1) after the sigmoid, deltas (B, HWA, 4)
        of an input batch (what the proposal step takes)."""
        return rpn_head(F, self.rpn, self.features(x))

    def _stem_and_layer1(self) -> Sequence[nn.Block]:
        return self.features[:5]  # conv1, bn1, relu, maxpool, layer1

    def collect_train_params(self, select: Optional[str] = None) -> mx.gluon.ParameterDict:
        """What GluonCV's training scripts train: they set every parameter's grad_req to
        'null', then this selection's to 'write', and hand it to the Trainer.

        - BatchNorm frozen (``use_global_stats``, GluonCV's C4 and FPN models): the convs of
          layer2..layer4 and their downsamples, the FPN's convs, the RPN and the head (GluonCV's
          ``train_patterns``); the stem, layer1 and every BatchNorm stay as loaded.
        - BatchNorm trained (GluonCV's syncbn models): everything but the running statistics.

        Constants (the anchors) are never in it; GluonCV's selection lists them, and MXNet
        refuses them a gradient.

        ``select`` (a regular expression, as ``collect_params`` takes) chooses instead.
        """
        if select is not None:
            return self.collect_params(select)
        frozen, bn_frozen = set(), False
        stack = [self]
        while stack:
            block = stack.pop()
            stack.extend(block._children.values())
            if isinstance(block, nn.BatchNorm):
                params = block._reg_params
                frozen.update(id(params[k]) for k in ("running_mean", "running_var"))
                if block._kwargs.get("use_global_stats"):
                    bn_frozen = True
                    frozen.update(id(p) for p in params.values())
        if bn_frozen:
            for block in self._stem_and_layer1():
                frozen.update(id(p) for p in block.collect_params().values())
        names = [p.name for p in self.collect_params().values()
                 if id(p) not in frozen and not isinstance(p, mx.gluon.Constant)]
        return self.collect_params("^(?:%s)$" % "|".join(map(re.escape, names)))

    def load_parameters(self, filename: str, ctx: Optional[mx.Context] = None,
                        allow_missing: bool = False, ignore_extra: bool = False,
                        cast_dtype: bool = False, dtype_source: str = "current") -> None:
        """Loads a GluonCV ``save_parameters`` file (or one of ours) unchanged.

        Keys this model does not have (training-time extras) are ignored with a warning that
        names them; missing keys are an error unless ``allow_missing``.
        """
        ctx = ctx or mx.cpu()
        loaded = mx.nd.load(filename)
        params = self._collect_params_with_prefix()
        extra = sorted(k for k in loaded if k not in params)
        if extra and not ignore_extra:
            warnings.warn("frcnn_model: ignoring %d parameters that this model does not have: %s"
                          % (len(extra), ", ".join(extra[:10]) + (" ..." if len(extra) > 10
                                                                  else "")))
        super().load_parameters(filename, ctx=ctx, allow_missing=allow_missing, ignore_extra=True,
                                cast_dtype=cast_dtype, dtype_source=dtype_source)


def stages(net: nn.HybridBlock, x: mx.nd.NDArray) -> Dict[str, np.ndarray]:
    """Eager pass that also returns what the RPN saw, for figures (frcnn-detect); for the C4
    model and the FPN one (its levels together, as its proposal step sees them).

    Returns a dict of NumPy arrays for image 0: rpn_scores (HWA,), rpn_boxes (HWA, 4) decoded
    and clipped before NMS, proposals (post, 5) after NMS.
    """
    F = mx.nd
    cfg = net._frcnn_cfg
    anchors, rpn_scores, rpn_deltas = net.rpn_outputs(F, x)
    boxes = F.frcnn_clip_boxes(F.frcnn_box_decode(rpn_deltas, anchors, format="corner",
                                                  clip=cfg["clip"]), image_size(F, x))
    props = F.frcnn_proposal(rpn_scores, rpn_deltas, anchors, image_size(F, x),
                             rpn_pre_nms_top_n=cfg["rpn_test_pre_nms"],
                             rpn_post_nms_top_n=cfg["rpn_test_post_nms"],
                             threshold=cfg["rpn_nms_thresh"], rpn_min_size=cfg["rpn_min_size"],
                             clip=cfg["clip"])
    return {"rpn_scores": rpn_scores[0, :, 0].asnumpy(), "rpn_boxes": boxes[0].asnumpy(),
            "proposals": props[0].asnumpy()}


def c4_backbone(depth: int = 50, width: float = 1.0,
                use_global_stats: bool = True) -> Tuple[nn.HybridBlock, nn.HybridBlock, int]:
    """features = conv1..layer3 (stride 16), top_features = layer4, of ResNet v1b, and the
    features' channel count."""
    stages = ResNetV1bStages(depth=depth, width=width, use_global_stats=use_global_stats)
    features = nn.HybridSequential()
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"):
        features.add(getattr(stages, name))
    top_features = nn.HybridSequential()
    top_features.add(stages.layer4)
    return features, top_features, stages.channels[2]


def resnet50_v1b_c4(use_global_stats: bool = True) -> Tuple[nn.HybridBlock, nn.HybridBlock]:
    """features = conv1..layer3 (stride 16, 1024 channels), top_features = layer4."""
    features, top_features, _ = c4_backbone(50, 1.0, use_global_stats)
    return features, top_features


BACKBONES = {"resnet50_v1b": 50, "resnet18_v1b": 18}


def faster_rcnn(backbone: str = "resnet50_v1b", width: float = 1.0, use_global_stats: bool = True,
                precision: str = "fp32", **overrides: Any) -> FasterRCNN:
    """A C4 Faster R-CNN on ResNet v1b: ``backbone`` resnet50_v1b (the seed) or resnet18_v1b,
    ``width`` scaling its channels, BatchNorm frozen (``use_global_stats``, for ImageNet or
    GluonCV weights) or trained (from scratch). ``rpn_channel`` defaults to the feature
    channels. The arguments are kept in ``net.spec`` (what :func:`save_model` writes).

    ``precision`` 'fp32' (default) or 'bf16': inference with convolutions and dense layers in
    bfloat16 (MXNet AMP, oneDNN; :mod:`frcnn_ops.bf16`), the frcnn ops in float32; needs a CPU
    with AVX512-BF16. The parameters stay float32 either way, so it is not part of
    ``net.spec``: choose it again when loading (``load_model(path, precision='bf16')``)."""
    from frcnn_ops import bf16
    bf16.check_precision(precision, "faster_rcnn: precision")
    if backbone not in BACKBONES:
        raise ValueError("frcnn_model: backbone must be one of %s, got %r"
                         % (", ".join(sorted(BACKBONES)), backbone))
    features, top_features, channels = c4_backbone(BACKBONES[backbone], width, use_global_stats)
    overrides.setdefault("rpn_channel", channels)
    net = FasterRCNN(features, top_features, **overrides)
    net.spec = dict(backbone=backbone, width=width, use_global_stats=use_global_stats,
                    **{k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()})
    net.precision = precision
    if precision != "fp32":
        bf16.install(net, precision)
    return net


def faster_rcnn_resnet50_v1b_voc(**overrides: Any) -> FasterRCNN:
    """GluonCV's faster_rcnn_resnet50_v1b_voc on frcnn_ops (random init; load weights with
    ``load_parameters``). Keyword overrides change DEFAULTS (e.g. ``rpn_test_post_nms``);
    ``precision='bf16'`` runs it in bfloat16 (see :func:`faster_rcnn`)."""
    return faster_rcnn("resnet50_v1b", **overrides)


# GluonCV ResNetV1b (ImageNet classifier) parameter names -> this detector's
_BASE_PREFIXES = (("conv1.", "features.0."), ("bn1.", "features.1."),
                  ("layer1.", "features.4."), ("layer2.", "features.5."),
                  ("layer3.", "features.6."), ("layer4.", "top_features.0."))


# ... and the FPN detector's backbone (FPNFeatures' blocks)
_FPN_BASE_PREFIXES = (("conv1.", "features.stem.0."), ("bn1.", "features.stem.1."),
                      ("layer1.", "features.layer1."), ("layer2.", "features.layer2."),
                      ("layer3.", "features.layer3."), ("layer4.", "features.layer4."))


def load_pretrained_base(net: FasterRCNN, path: str) -> int:
    """Copies a GluonCV ResNet v1b classifier's ``save_parameters`` file (e.g. resnet50_v1b's
    ImageNet weights) into the detector's backbone: the C4 model's features and top_features,
    the FPN model's ResNet under its pyramid (the classifier's fc layer is not used). Every backbone parameter must come from the file with the right shape: anything
    missing or mismatched is an error naming it. Call after ``net.initialize()``."""
    import mxnet as mx
    loaded = {k.split(":", 1)[-1]: v for k, v in mx.nd.load(path).items()}
    prefixes = _BASE_PREFIXES
    if hasattr(net.features, "gluoncv_names"):
        # the FPN's backbone by its block names (its files use GluonCV's flat names instead);
        # the pyramid's layers are not the classifier's
        params = {"features." + k: v for k, v in
                  nn.Block._collect_params_with_prefix(net.features).items()
                  if k.startswith(("stem.", "layer"))}
        prefixes = _FPN_BASE_PREFIXES
    else:
        params = net._collect_params_with_prefix()
    backbone = sorted(k for k in params if k.startswith(("features.", "top_features.")))
    copied = set()
    for key, value in loaded.items():
        target = next((new + key[len(old):] for old, new in prefixes
                       if key.startswith(old)), None)
        if target is None:
            continue  # the classifier (fc) and anything else outside the backbone
        if target not in params:
            raise ValueError("frcnn_model: pretrained base %s: %s has no place in this backbone "
                             "(expected a GluonCV ResNet v1b of the same depth)" % (path, key))
        shape = params[target].shape  # 0 = not known yet (deferred initialisation)
        if len(shape) != len(value.shape) or any(a not in (0, b)
                                                 for a, b in zip(shape, value.shape)):
            raise ValueError("frcnn_model: pretrained base %s: %s has shape %s, the backbone's "
                             "%s has %s" % (path, key, value.shape, target, shape))
        params[target]._load_init(value, None)  # what load_parameters does, deferred or not
        copied.add(target)
    missing = [k for k in backbone if k not in copied]
    if missing:
        raise ValueError("frcnn_model: pretrained base %s lacks %d backbone parameters: %s"
                         % (path, len(missing), ", ".join(missing[:5])
                            + (" ..." if len(missing) > 5 else "")))
    return len(copied)


def save_model(net: FasterRCNN, path: str,
               input_size: Optional[Tuple[int, int]] = None) -> None:
    """Writes ``path`` (the parameters, GluonCV's save_parameters format) and ``path + '.json'``
    (the architecture: backbone, width, classes and settings, and the ``input_size`` =
    (short, max_size) it was trained at) so that :func:`load_model` rebuilds it. Each file is
    written crash-safe (:func:`frcnn_model.training.checkpoint.atomic_file`)."""
    from ..training.checkpoint import atomic_file, write_json
    spec = dict(getattr(net, "spec", {"backbone": "resnet50_v1b"}))
    spec.setdefault("arch", "faster_rcnn")  # which builder load_model calls
    if input_size is not None:
        spec["input_size"] = [int(v) for v in input_size]
    # each file atomically (a temporary file fsynced, then renamed): a crash leaves the old
    # file or the new one, never a truncated one
    with atomic_file(path) as tmp:
        net.save_parameters(tmp)
    write_json(path + ".json", spec, indent=1)


# the named models (frcnn-train/-eval/-detect --model) and the ``arch`` of each in a spec
MODELS = {"faster_rcnn_resnet50_v1b_voc": "faster_rcnn",
          "faster_rcnn_fpn_resnet50_v1b_coco": "faster_rcnn_fpn"}


def model_spec(path: str) -> Dict[str, Any]:
    """The architecture saved beside ``path`` by :func:`save_model`; for a parameter file
    without one (GluonCV's), the GluonCV model its parameter names say:
    faster_rcnn_fpn_resnet50_v1b_coco (an FPN RPN head, ``rpn.rpn_head.*``) or the seed
    faster_rcnn_resnet50_v1b_voc. ``spec['arch']`` is 'faster_rcnn' (C4; absent in files of
    older versions) or 'faster_rcnn_fpn'."""
    import json
    import os
    if os.path.exists(path + ".json"):
        with open(path + ".json") as f:
            spec = json.load(f)
        spec.setdefault("arch", "faster_rcnn")
        return spec
    from .fpn import is_fpn_params
    try:
        names = list(mx.nd.load(path)) if os.path.isfile(path) else None
    except mx.base.MXNetError:  # not a parameter file: loading it names the problem later
        names = None
    if is_fpn_params(names):
        return {"arch": "faster_rcnn_fpn", "backbone": "resnet50_v1b"}
    return {"arch": "faster_rcnn", "backbone": "resnet50_v1b"}


def model_name(spec: Dict[str, Any]) -> str:
    """The named model (a key of MODELS) whose architecture ``spec`` has."""
    return {v: k for k, v in MODELS.items()}.get(spec.get("arch", "faster_rcnn"),
                                                 str(spec.get("arch")))


def default_input_size(spec: Dict[str, Any]) -> Tuple[int, int]:
    """(short, max_size) of the test-time resize: the size saved with the weights, else
    GluonCV's for the architecture (C4 VOC 600/1000, FPN COCO 800/1333)."""
    if spec.get("input_size"):
        return tuple(int(v) for v in spec["input_size"])
    return (800, 1333) if spec.get("arch") == "faster_rcnn_fpn" else (600, 1000)


def build_model(spec: Dict[str, Any]) -> FasterRCNN:
    """The (uninitialised) network of a spec (:func:`model_spec`, ``net.spec``)."""
    spec = dict(spec)
    arch = spec.pop("arch", "faster_rcnn")
    if arch == "faster_rcnn":
        return faster_rcnn(**spec)
    if arch == "faster_rcnn_fpn":
        from .fpn import faster_rcnn_fpn
        return faster_rcnn_fpn(**spec)
    raise ValueError("frcnn_model: unknown architecture arch=%r (known: %s)"
                     % (arch, ", ".join(sorted(set(MODELS.values())))))


def named_model(name: str, **overrides: Any) -> FasterRCNN:
    """A model of MODELS by name (random init), e.g. 'faster_rcnn_fpn_resnet50_v1b_coco'."""
    if name not in MODELS:
        raise ValueError("frcnn_model: unknown model %r (known: %s)"
                         % (name, ", ".join(sorted(MODELS))))
    return build_model(dict(arch=MODELS[name], backbone="resnet50_v1b", **overrides))


def load_model(path: str, ctx: Optional[mx.Context] = None, calib_data: Any = None,
               calib_mode: str = "naive", **overrides: Any) -> FasterRCNN:
    """The network saved by :func:`save_model` (architecture from ``path + '.json'``), or, for a
    parameter file without one (GluonCV's), the GluonCV model its parameter names say (see
    :func:`model_spec`); ``overrides`` change test-time settings (e.g. ``rpn_test_post_nms``,
    ``precision='bf16'`` for the C4 model).

    ``precision='int8'`` (C4 model, CPU with AVX512-VNNI) loads the float32 weights and then
    quantizes the backbone with :func:`frcnn_ops.int8.quantize`, calibrated on ``calib_data``
    (image batches (B, 3, H, W) with the inference transform, e.g. a few training batches;
    required) with ``calib_mode`` ('naive' or 'entropy')."""
    spec = model_spec(path)
    spec.pop("precision", None)
    spec.pop("input_size", None)
    int8 = overrides.get("precision") == "int8"
    if int8:
        from frcnn_ops import int8 as int8_mod
        int8_mod.check_int8_cpu()
        if calib_data is None:
            raise ValueError("load_model: precision='int8' needs calib_data (a few batches of "
                             "training images with the inference transform, to calibrate on)")
        overrides = dict(overrides, precision="fp32")
    elif calib_data is not None:
        raise ValueError("load_model: calib_data is for precision='int8' only (precision=%r)"
                         % overrides.get("precision", "fp32"))
    spec.update(overrides)
    net = build_model(spec)
    net.load_parameters(path, ctx=ctx)
    if int8:
        int8_mod.quantize(net, calib_data, calib_mode=calib_mode)
    return net
