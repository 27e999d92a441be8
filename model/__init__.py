"""frcnn_model: the Gluon Faster R-CNN running on frcnn_ops, and its training: ResNet v1b C4
(GluonCV's faster_rcnn_resnet50_v1b_voc: faster_rcnn_resnet50_v1b_voc, faster_rcnn) and FPN
(GluonCV's faster_rcnn_fpn_resnet50_v1b_coco: faster_rcnn_fpn_resnet50_v1b_coco,
faster_rcnn_fpn). Both load GluonCV's parameter files unchanged; save_model writes the
architecture beside the weights and load_model / model_spec read it (for a bare GluonCV file,
from its parameter names).

The package is organised by role:

  modeling/    the network: faster_rcnn (FasterRCNN, the C4 builders, save/load, the shared
               decode), fpn (FasterRCNNFPN, FPNFeatures with GluonCV's parameter names, the
               multi-level RPN), resnet, anchors
  data/        datasets (VOC, synthetic shapes), transforms and batching, presets (GluonCV's
               test-time resize/normalize), classes
  training/    step (TrainStep), targets (RPN/RCNN targets, loops in Cython), checkpoint
               (crash-safe files)
  evaluation/  metrics (VOC07MApMetric, matching in Cython), evaluate (mAP of a network)
  cli/         the command-line tools: train, eval, detect (--model C4 or FPN; --gluoncv for a
               GluonCV Faster/Mask R-CNN, masks drawn), launch

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
