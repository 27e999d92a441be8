"""ResNet v1b (GluonCV's ResNetV1b: BottleneckV1b for 50, BasicBlockV1b for 18), as the
Faster R-CNN backbone.

Attribute names follow GluonCV so that parameter files load unchanged: a bottleneck holds
conv1/bn1, conv2/bn2, conv3/bn3, a basic block conv1/bn1, conv2/bn2, both an optional
downsample (conv, bn). BatchNorm uses frozen global statistics (use_global_stats=True) in the
detector that loads ImageNet or GluonCV weights; training from scratch uses batch statistics.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from mxnet.gluon import nn


class BottleneckV1b(nn.HybridBlock):
    """1x1 -> 3x3 (stride here, v1b) -> 1x1 bottleneck with a residual connection."""
    expansion = 4

    def __init__(self, planes: int, strides: int = 1, downsample: Optional[nn.HybridBlock] = None,
                 norm_kwargs: Optional[dict] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        norm_kwargs = norm_kwargs or {}
        with self.name_scope():
            self.conv1 = nn.Conv2D(planes, kernel_size=1, use_bias=False)
            self.bn1 = nn.BatchNorm(in_channels=planes, **norm_kwargs)
            self.relu1 = nn.Activation("relu")
            self.conv2 = nn.Conv2D(planes, kernel_size=3, strides=strides, padding=1,
                                   use_bias=False)
            self.bn2 = nn.BatchNorm(in_channels=planes, **norm_kwargs)
            self.relu2 = nn.Activation("relu")
            self.conv3 = nn.Conv2D(planes * 4, kernel_size=1, use_bias=False)
            self.bn3 = nn.BatchNorm(in_channels=planes * 4, **norm_kwargs)
            self.relu3 = nn.Activation("relu")
            self.downsample = downsample

    def hybrid_forward(self, F, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = self.downsample(x) if self.downsample is not None else x
        return self.relu3(out + residual)


class BasicBlockV1b(nn.HybridBlock):
    """3x3 (stride here) -> 3x3 basic block with a residual connection (ResNet-18/34 v1b)."""
    expansion = 1

    def __init__(self, planes: int, strides: int = 1, downsample: Optional[nn.HybridBlock] = None,
                 norm_kwargs: Optional[dict] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        norm_kwargs = norm_kwargs or {}
        with self.name_scope():
            self.conv1 = nn.Conv2D(planes, kernel_size=3, strides=strides, padding=1,
                                   use_bias=False)
            self.bn1 = nn.BatchNorm(in_channels=planes, **norm_kwargs)
            self.relu1 = nn.Activation("relu")
            self.conv2 = nn.Conv2D(planes, kernel_size=3, strides=1, padding=1, use_bias=False)
            self.bn2 = nn.BatchNorm(in_channels=planes, **norm_kwargs)
            self.relu2 = nn.Activation("relu")
            self.downsample = downsample

    def hybrid_forward(self, F, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = self.downsample(x) if self.downsample is not None else x
        return self.relu2(out + residual)


# depth -> (block, blocks per stage)
SPECS = {18: (BasicBlockV1b, (2, 2, 2, 2)), 50: (BottleneckV1b, (3, 4, 6, 3))}


class ResNetV1bStages:
    """The stem and the four stages of ResNet v1b as separate blocks (no classifier):
    conv1, bn1, relu, maxpool, layer1..layer4.

    depth 18 or 50; ``width`` scales every channel count (1.0 = GluonCV's network; the small
    CPU training configuration uses 0.5).
    """

    def __init__(self, layers: Optional[Sequence[int]] = None, use_global_stats: bool = True,
                 depth: int = 50, width: float = 1.0) -> None:
        if depth not in SPECS:
            raise ValueError("frcnn_model: ResNet v1b depth must be one of %s, got %r"
                             % (sorted(SPECS), depth))
        if not width > 0:
            raise ValueError("frcnn_model: ResNet width must be > 0, got %r" % (width,))
        block, default_layers = SPECS[depth]
        layers = tuple(layers or default_layers)
        norm_kwargs = {"use_global_stats": True} if use_global_stats else {}
        stem = max(8, int(round(64 * width)))
        self.conv1 = nn.Conv2D(stem, kernel_size=7, strides=2, padding=3, use_bias=False)
        self.bn1 = nn.BatchNorm(in_channels=stem, **norm_kwargs)
        self.relu = nn.Activation("relu")
        self.maxpool = nn.MaxPool2D(pool_size=3, strides=2, padding=1)
        inplanes = stem
        stages = []
        self.channels = []
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            planes = max(8, int(round(planes * width)))
            out = planes * block.expansion
            strides = 1 if index == 0 else 2
            downsample = None
            if strides != 1 or inplanes != out:
                downsample = nn.HybridSequential(prefix="down%d_" % (index + 1))
                with downsample.name_scope():
                    downsample.add(nn.Conv2D(out, kernel_size=1, strides=strides,
                                             use_bias=False))
                    downsample.add(nn.BatchNorm(in_channels=out, **norm_kwargs))
            stage = nn.HybridSequential(prefix="layers%d_" % (index + 1))
            with stage.name_scope():
                stage.add(block(planes, strides, downsample, norm_kwargs))
                for _ in range(1, blocks):
                    stage.add(block(planes, 1, None, norm_kwargs))
            stages.append(stage)
            self.channels.append(out)
            inplanes = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
