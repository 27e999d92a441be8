"""Faster R-CNN with a feature pyramid (FPN), ResNet-50 v1b, COCO: GluonCV's
faster_rcnn_fpn_resnet50_v1b_coco on frcnn_ops.

Parameter names and shapes are GluonCV's, so its ``save_parameters`` files load unchanged and
ours load into GluonCV. GluonCV builds its backbone + pyramid as one SymbolBlock whose
parameters have flat symbol names (``features.resnetv1b_layers1_conv0_weight``,
``features.P2_conv_lat_bias``, ...); :class:`FPNFeatures` computes the same graph with Gluon
blocks and gives its parameters those names in files (:meth:`FPNFeatures.gluoncv_names`).

Inference is GluonCV's with the hot steps on frcnn_ops: one ``frcnn_proposal`` over the
levels' concatenated scores, deltas and anchors (GluonCV's multi-level RPN: RPNProposal per
level, concat, box_nms, slice), one ``frcnn_multilevel_roi_align`` for the pyramid pooling
(GluonCV's ``_pyramid_roi_feats``), then the same class-specific decoding and per-class NMS
as the C4 model (``frcnn_box_decode``, ``frcnn_nms``). Batches > 1 run as in the C4 model.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import frcnn_ops  # noqa: F401  (before mxnet: AMX for bf16, frcnn_ops/bf16.py)
import mxnet as mx
from frcnn_ops import bf16
from mxnet.gluon import nn

from ..data.classes import COCO_CLASSES
from .faster_rcnn import (BACKBONES, FasterRCNN, RPNAnchorGenerator, cfg_from, image_size,
                          proposal_rois, rcnn_decode)
from .resnet import ResNetV1bStages

ARCH = "faster_rcnn_fpn"

# GluonCV's settings for faster_rcnn_fpn_resnet50_v1b_coco (min_stage 2, max_stage 6: the RPN
# sees P2..P6, the RCNN head pools from P2..P5)
FPN_DEFAULTS = dict(
    classes=COCO_CLASSES, strides=(4, 8, 16, 32, 64), base_size=16, scales=(2, 4, 8, 16, 32),
    ratios=(0.5, 1, 2), alloc_size=(384, 384), rpn_channel=1024, num_fpn_filters=256,
    box_head_units=1024, rpn_nms_thresh=0.7, rpn_test_pre_nms=6000, rpn_test_post_nms=1000,
    rpn_train_pre_nms=12000, rpn_train_post_nms=2000, rpn_min_size=1, roi_size=(7, 7),
    sample_ratio=2, roi_canonical_scale=224.0, nms_thresh=0.5, nms_topk=-1, score_thresh=0.01,
    box_stds=(0.1, 0.1, 0.2, 0.2), clip=4.14,
    # training (GluonCV's defaults for this model)
    rpn_num_sample=256, rpn_pos_iou_thresh=0.7, rpn_neg_iou_thresh=0.3, rpn_pos_ratio=0.5,
    num_sample=512, pos_iou_thresh=0.5, pos_ratio=0.25,
)

MIN_LEVEL, MAX_LEVEL = 2, 5  # the levels the RCNN head pools from (P2..P5; P6 is RPN only)


def make_fpn_cfg(**overrides: Any) -> Dict[str, Any]:
    """FPN_DEFAULTS with overrides (see :func:`frcnn_model.modeling.faster_rcnn.cfg_from`);
    one scale per level: ``scales`` and ``strides`` must have the same length."""
    cfg = cfg_from(FPN_DEFAULTS, overrides)
    cfg["strides"], cfg["scales"] = tuple(cfg["strides"]), tuple(cfg["scales"])
    if len(cfg["scales"]) != len(cfg["strides"]) or len(cfg["strides"]) != 5:
        raise ValueError("frcnn_model: the FPN needs one anchor scale per level P2..P6: "
                         "strides has %d, scales %d (5 each)"
                         % (len(cfg["strides"]), len(cfg["scales"])))
    return cfg


def level_anchor_args(cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The ``generate_anchors`` arguments of each level, GluonCV's: its generate_base_anchors
    takes the level's stride as the reference window and ``scale * base_size / stride`` as
    the scale (which rounds differently from a base_size window); the allocated grid halves
    from level to level, at least 16."""
    out, size = [], cfg["alloc_size"][0]
    for stride, scale in zip(cfg["strides"], cfg["scales"]):
        out.append(dict(stride=stride, base_size=stride, ratios=tuple(cfg["ratios"]),
                        scales=(scale * cfg["base_size"] / float(stride),),
                        alloc_size=(size, size)))
        size = max(size // 2, 16)
    return out


class FPNFeatures(nn.HybridBlock):
    """ResNet v1b C2..C5 and GluonCV's FPNFeatureExpander on them (1x1 laterals with bias,
    nearest 2x upsampling cropped to the lateral and added, 3x3 output convs, P6 = a stride-2
    3x3 conv of P5's lateral): (B, 3, H, W) -> [P2, P3, P4, P5, P6] of ``num_filters``
    channels at strides 4, 8, 16, 32, 64."""

    def __init__(self, depth: int = 50, width: float = 1.0, use_global_stats: bool = True,
                 num_filters: int = 256, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        init = mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=1.0)  # GluonCV's
        with self.name_scope():
            stages = ResNetV1bStages(depth=depth, width=width, use_global_stats=use_global_stats)
            self.stem = nn.HybridSequential()
            self.stem.add(stages.conv1, stages.bn1, stages.relu, stages.maxpool)
            self.layer1, self.layer2 = stages.layer1, stages.layer2
            self.layer3, self.layer4 = stages.layer3, stages.layer4
            self.lateral = nn.HybridSequential()
            self.output = nn.HybridSequential()
            for channels in stages.channels:  # C2..C5
                self.lateral.add(nn.Conv2D(num_filters, 1, in_channels=channels,
                                           weight_initializer=init))
                self.output.add(nn.Conv2D(num_filters, 3, padding=1, in_channels=num_filters,
                                          weight_initializer=init))
            self.p6 = nn.Conv2D(num_filters, 3, strides=2, padding=1, in_channels=num_filters,
                                weight_initializer=init)
        self._gluoncv_names = self.gluoncv_names()

    def gluoncv_names(self) -> Dict[str, mx.gluon.Parameter]:
        """GluonCV's flat parameter name (its SymbolBlock's, without ``features.``) -> our
        parameter. ResNet v1b names count per layer: block b's k-th conv is ``conv{b*n+k}``
        (n convs a block), its downsample ``down{i}_conv0`` / ``down{i}_batchnorm0``."""
        names = {}

        def add(prefix, block, kinds):
            for kind in kinds:
                names[prefix + "_" + kind] = block._reg_params[kind]

        conv, bn = ("weight",), ("gamma", "beta", "running_mean", "running_var")
        add("resnetv1b_conv0", self.stem[0], conv)
        add("resnetv1b_batchnorm0", self.stem[1], bn)
        for i, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), 1):
            k = 0
            for block in layer:
                j = 1
                while hasattr(block, "conv%d" % j):
                    add("resnetv1b_layers%d_conv%d" % (i, k), getattr(block, "conv%d" % j), conv)
                    add("resnetv1b_layers%d_batchnorm%d" % (i, k), getattr(block, "bn%d" % j),
                        bn)
                    j += 1
                    k += 1
                if block.downsample is not None:
                    add("resnetv1b_down%d_conv0" % i, block.downsample[0], conv)
                    add("resnetv1b_down%d_batchnorm0" % i, block.downsample[1], bn)
        for level in range(2, 6):
            add("P%d_conv_lat" % level, self.lateral[level - 2], ("weight", "bias"))
            add("P%d_conv1" % level, self.output[level - 2], ("weight", "bias"))
        add("P6_conv1", self.p6, ("weight", "bias"))
        return names

    def _collect_params_with_prefix(self, prefix: str = "") -> Dict[str, mx.gluon.Parameter]:
        # what save_parameters / load_parameters use: GluonCV's flat names, so files are
        # interchangeable (collect_params, the initializer and Trainer see the blocks as usual)
        if prefix:
            prefix += "."
        return {prefix + name: p for name, p in self._gluoncv_names.items()}

    def hybrid_forward(self, F, x):
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        y = self.lateral[3](c5)
        p6 = self.p6(y)
        outs = [self.output[3](y)]
        for i, c in ((2, c4), (1, c3), (0, c2)):
            lat = self.lateral[i](c)
            up = F.slice_like(F.UpSampling(y, scale=2, sample_type="nearest", num_args=1), lat,
                              axes=(2, 3))
            y = F.ElementWiseSum(lat, up)
            outs.insert(0, self.output[i](y))
        return tuple(outs) + (p6,)


class RPNHead(nn.HybridBlock):
    """The RPN layers shared by all levels: 3x3 conv + relu, 1x1 score and box convs."""

    def __init__(self, channels: int, anchor_depth: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        init = mx.init.Normal(0.01)
        with self.name_scope():
            self.conv1 = nn.HybridSequential()
            self.conv1.add(nn.Conv2D(channels, 3, 1, 1, weight_initializer=init),
                           nn.Activation("relu"))
            self.score = nn.Conv2D(anchor_depth, 1, 1, 0, weight_initializer=init)
            self.loc = nn.Conv2D(anchor_depth * 4, 1, 1, 0, weight_initializer=init)

    def hybrid_forward(self, F, x):
        """logits (B, HWA, 1) before the sigmoid, deltas (B, HWA, 4)."""
        h = self.conv1(x)
        return (self.score(h).transpose(axes=(0, 2, 3, 1)).reshape((0, -1, 1)),
                self.loc(h).transpose(axes=(0, 2, 3, 1)).reshape((0, -1, 4)))


class MultiLevelRPN(nn.HybridBlock):
    """GluonCV's multi-level RPN parameters: one anchor generator per level, one shared head."""

    def __init__(self, cfg: Dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        with self.name_scope():
            self.anchor_generator = nn.HybridSequential()
            for args in level_anchor_args(cfg):
                self.anchor_generator.add(RPNAnchorGenerator(
                    args["stride"], args["base_size"], args["ratios"], args["scales"],
                    args["alloc_size"]))
            self.rpn_head = RPNHead(cfg["rpn_channel"], self.anchor_generator[0].num_depth)

    def hybrid_forward(self, F, *feats):
        return fpn_rpn_raw(F, self, feats)


def fpn_rpn_raw(F: Any, rpn: nn.HybridBlock, feats: Sequence[Any]) -> Tuple[Any, Any, Any]:
    """Every level's anchors (1, N, 4), logits (B, N, 1) and deltas (B, N, 4) concatenated in
    level order (N = the sum of H_i * W_i * A), as GluonCV's multi-level RPN concatenates
    them. Uses only the sub-blocks, so it serves GluonCV's RPN too."""
    anchors, logits, deltas = [], [], []
    for generator, feat in zip(rpn.anchor_generator, feats):
        h = rpn.rpn_head.conv1(feat)
        score = rpn.rpn_head.score(h)
        # H, W from the small score map, not the 256-channel level (faster_rcnn.rpn_raw)
        anchors.append(generator(score))
        logits.append(score.transpose(axes=(0, 2, 3, 1)).reshape((0, -1, 1)))
        deltas.append(rpn.rpn_head.loc(h).transpose(axes=(0, 2, 3, 1)).reshape((0, -1, 4)))
    return (F.concat(*anchors, dim=1), F.concat(*logits, dim=1), F.concat(*deltas, dim=1))


def pyramid_align(F: Any, rois: Any, feats: Sequence[Any], cfg: Dict[str, Any]) -> Any:
    """GluonCV's ``_pyramid_roi_feats`` (align): each roi pooled from its level of P2..P5."""
    n = MAX_LEVEL - MIN_LEVEL + 1
    return F.frcnn_multilevel_roi_align(
        rois, *feats[:n], pooled_size=tuple(cfg["roi_size"]),
        spatial_scales=tuple(1.0 / s for s in cfg["strides"][:n]),
        sample_ratio=cfg["sample_ratio"], min_level=MIN_LEVEL, max_level=MAX_LEVEL,
        canonical_scale=cfg["roi_canonical_scale"], canonical_level=4, eps=1e-6)


def detect_fpn(F: Any, net: nn.HybridBlock, x: Any, cfg: Dict[str, Any]) -> Tuple[Any, Any, Any]:
    """The FPN inference pass; returns (ids, scores, bboxes) as :func:`faster_rcnn.detect`,
    (B, C*N, 1), (B, C*N, 1), (B, C*N, 4) with N = rpn_test_post_nms."""
    # 1. backbone + pyramid: [P2..P6]
    feats = net.features(x)
    # 2. RPN on every level, concatenated: anchors (1, N, 4), logits, deltas (B, N, .)
    anchors, logits, deltas = fpn_rpn_raw(F, net.rpn, feats)
    # 3. one proposal step over all levels (GluonCV: per-level decode, concat, box_nms, slice)
    props = F.frcnn_proposal(F.sigmoid(logits), deltas, anchors, image_size(F, x),
                             rpn_pre_nms_top_n=cfg["rpn_test_pre_nms"],
                             rpn_post_nms_top_n=cfg["rpn_test_post_nms"],
                             threshold=cfg["rpn_nms_thresh"], rpn_min_size=cfg["rpn_min_size"],
                             clip=cfg["clip"])
    rpn_boxes, rois = proposal_rois(F, x, props)
    # 4. pyramid ROIAlign (B*N, C, 7, 7) -> 2 x (Dense 1024 + relu) -> predictors
    box_feat = net.box_features(pyramid_align(F, rois, feats, cfg))
    return rcnn_decode(F, net.class_predictor(box_feat), net.box_predictor(box_feat), rpn_boxes,
                       cfg)


class FasterRCNNFPN(FasterRCNN):
    """Faster R-CNN with a feature pyramid: features (P2..P6), multi-level RPN, pyramid
    ROIAlign, box_features (two dense layers), class and box predictors (GluonCV's names).

    Called on a normalized image batch (B, 3, H, W); returns (ids, scores, bboxes) with
    GluonCV's shapes: (B, C*N, 1), (B, C*N, 1), (B, C*N, 4), N = rpn_test_post_nms; rows
    removed by NMS are -1. Saving and loading are the C4 model's (FasterRCNN's).
    """

    def __init__(self, features: nn.HybridBlock, **cfg: Any) -> None:
        nn.HybridBlock.__init__(self)
        cfg = make_fpn_cfg(**cfg)
        self.classes = cfg["classes"]
        self._frcnn_cfg = cfg
        with self.name_scope():
            self.features = features
            self.rpn = MultiLevelRPN(cfg)
            self.box_features = nn.HybridSequential()
            for _ in range(2):
                self.box_features.add(nn.Dense(cfg["box_head_units"],
                                               weight_initializer=mx.init.Normal(0.01)),
                                      nn.Activation("relu"))
            self.class_predictor = nn.Dense(cfg["num_class"] + 1,
                                            weight_initializer=mx.init.Normal(0.01))
            self.box_predictor = nn.Dense(cfg["num_class"] * 4,
                                          weight_initializer=mx.init.Normal(0.001))

    def _stem_and_layer1(self) -> Sequence[nn.Block]:
        return (self.features.stem, self.features.layer1)

    def hybrid_forward(self, F, x):
        return detect_fpn(F, self, x, self._frcnn_cfg)

    def rpn_outputs(self, F: Any, x: Any) -> Tuple[Any, Any, Any]:
        """anchors (1, N, 4), objectness (B, N, 1) after the sigmoid, deltas (B, N, 4), all
        levels concatenated (what the proposal step takes)."""
        anchors, logits, deltas = fpn_rpn_raw(F, self.rpn, self.features(x))
        return anchors, F.sigmoid(logits), deltas


def faster_rcnn_fpn(backbone: str = "resnet50_v1b", width: float = 1.0,
                    use_global_stats: bool = True, precision: str = "fp32",
                    **overrides: Any) -> FasterRCNNFPN:
    """An FPN Faster R-CNN on ResNet v1b: ``backbone`` resnet50_v1b (GluonCV's) or
    resnet18_v1b, ``width`` scaling the backbone's channels, BatchNorm frozen
    (``use_global_stats``) or trained; ``overrides`` change FPN_DEFAULTS (e.g.
    ``num_fpn_filters``, ``rpn_channel``, ``box_head_units`` for a small network). The
    arguments are kept in ``net.spec`` (what :func:`save_model` writes), with
    ``arch='faster_rcnn_fpn'``. ``precision`` 'fp32' (default) or 'bf16': inference with
    convolutions and dense layers in bfloat16, as the C4 model's (:mod:`frcnn_ops.bf16`)."""
    bf16.check_precision(precision, "faster_rcnn_fpn: precision")
    if backbone not in BACKBONES:
        raise ValueError("frcnn_model: backbone must be one of %s, got %r"
                         % (", ".join(sorted(BACKBONES)), backbone))
    filters = overrides.get("num_fpn_filters", FPN_DEFAULTS["num_fpn_filters"])
    features = FPNFeatures(BACKBONES[backbone], width, use_global_stats, filters)
    net = FasterRCNNFPN(features, **overrides)
    net.spec = dict(arch=ARCH, backbone=backbone, width=width,
                    use_global_stats=use_global_stats,
                    **{k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()})
    net.precision = precision
    if precision != "fp32":
        bf16.install(net, precision)
    return net


def faster_rcnn_fpn_resnet50_v1b_coco(**overrides: Any) -> FasterRCNNFPN:
    """GluonCV's faster_rcnn_fpn_resnet50_v1b_coco on frcnn_ops (random init; load GluonCV's
    or our weights with ``load_parameters``). Keyword overrides change FPN_DEFAULTS (e.g.
    ``rpn_test_post_nms``, ``classes``)."""
    return faster_rcnn_fpn("resnet50_v1b", **overrides)


def is_fpn_params(keys: Optional[Sequence[str]]) -> bool:
    """Whether parameter names are an FPN Faster R-CNN's (GluonCV's or ours): its RPN head is
    ``rpn.rpn_head.*``, the C4 model's ``rpn.conv1.*``."""
    return any(k.split(":", 1)[-1].startswith("rpn.rpn_head.") for k in keys or ())
