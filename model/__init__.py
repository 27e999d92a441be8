"""frcnn_model: the Gluon Faster R-CNN (ResNet v1b C4; GluonCV's faster_rcnn_resnet50_v1b_voc)
running on frcnn_ops, and its training.

The package is organised by role:

  modeling/    the network: faster_rcnn (FasterRCNN, builders, save/load), resnet, anchors
  data/        datasets (VOC, synthetic shapes), transforms and batching, presets (GluonCV's
               test-time resize/normalize), classes
  training/    step (TrainStep), targets (RPN/RCNN targets, loops in Cython), checkpoint
               (crash-safe files)
  evaluation/  metrics (VOC07MApMetric, matching in Cython), evaluate (mAP of a network)
  cli/         the command-line tools: train, eval, detect, launch

The names below load on first use, so that the command-line tools (frcnn-train, frcnn-eval,
frcnn-detect) can set MXNet's thread count before MXNet is imported.
"""
import importlib

_EXPORTS = {"FasterRCNN": "modeling.faster_rcnn",
            "faster_rcnn_resnet50_v1b_voc": "modeling.faster_rcnn",
            "faster_rcnn": "modeling.faster_rcnn", "load_model": "modeling.faster_rcnn",
            "save_model": "modeling.faster_rcnn", "VOC_CLASSES": "data.classes",
            "DEFAULTS": "modeling.faster_rcnn", "detect": "modeling.faster_rcnn",
            "model_spec": "modeling.faster_rcnn", "MODELS": "modeling.faster_rcnn",
            "FasterRCNNFPN": "modeling.fpn", "faster_rcnn_fpn": "modeling.fpn",
            "faster_rcnn_fpn_resnet50_v1b_coco": "modeling.fpn", "FPN_DEFAULTS": "modeling.fpn",
            "COCO_CLASSES": "data.classes"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module("." + _EXPORTS[name], __name__), name)
    raise AttributeError("module 'frcnn_model' has no attribute %r" % name)


def __dir__():
    return sorted(list(globals()) + __all__)
