"""ResNet-50 v1b (GluonCV's ResNetV1b with BottleneckV1b), as the Faster R-CNN backbone.

Attribute names follow GluonCV so that parameter files load unchanged: a bottleneck holds
conv1/bn1, conv2/bn2, conv3/bn3 and an optional downsample (conv, bn). BatchNorm uses frozen
global statistics (use_global_stats=True), as in the detector.
"""
from mxnet.gluon import nn


class BottleneckV1b(nn.HybridBlock):
    """1x1 -> 3x3 (stride here, v1b) -> 1x1 bottleneck with a residual connection."""
    expansion = 4

    def __init__(self, planes, strides=1, downsample=None, norm_kwargs=None, **kwargs):
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


class ResNetV1bStages:
    """The stem and the four stages of ResNet-50 v1b as separate blocks (no classifier):
    conv1, bn1, relu, maxpool, layer1..layer4."""

    def __init__(self, layers=(3, 4, 6, 3), use_global_stats=True):
        norm_kwargs = {"use_global_stats": True} if use_global_stats else {}
        self.conv1 = nn.Conv2D(64, kernel_size=7, strides=2, padding=3, use_bias=False)
        self.bn1 = nn.BatchNorm(in_channels=64, **norm_kwargs)
        self.relu = nn.Activation("relu")
        self.maxpool = nn.MaxPool2D(pool_size=3, strides=2, padding=1)
        inplanes = 64
        stages = []
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            strides = 1 if index == 0 else 2
            downsample = None
            if strides != 1 or inplanes != planes * 4:
                downsample = nn.HybridSequential(prefix="down%d_" % (index + 1))
                with downsample.name_scope():
                    downsample.add(nn.Conv2D(planes * 4, kernel_size=1, strides=strides,
                                             use_bias=False))
                    downsample.add(nn.BatchNorm(in_channels=planes * 4, **norm_kwargs))
            stage = nn.HybridSequential(prefix="layers%d_" % (index + 1))
            with stage.name_scope():
                stage.add(BottleneckV1b(planes, strides, downsample, norm_kwargs))
                for _ in range(1, blocks):
                    stage.add(BottleneckV1b(planes, 1, None, norm_kwargs))
            stages.append(stage)
            inplanes = planes * 4
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
