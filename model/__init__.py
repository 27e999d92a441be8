"""frcnn_model: the Gluon Faster R-CNN (ResNet-50 v1b C4, VOC) running on frcnn_ops."""
from .faster_rcnn import (DEFAULTS, VOC_CLASSES, FasterRCNN,  # noqa: F401
                          faster_rcnn_resnet50_v1b_voc, detect)

__all__ = ["FasterRCNN", "faster_rcnn_resnet50_v1b_voc", "VOC_CLASSES", "DEFAULTS", "detect"]
