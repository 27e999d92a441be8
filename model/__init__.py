"""frcnn_model: the Gluon Faster R-CNN (ResNet v1b C4; GluonCV's faster_rcnn_resnet50_v1b_voc)
running on frcnn_ops, and its training.

The names below load on first use, so that the command-line tools (frcnn-train, frcnn-eval,
frcnn-detect) can set MXNet's thread count before MXNet is imported.
"""
import importlib

_EXPORTS = {"FasterRCNN": "faster_rcnn", "faster_rcnn_resnet50_v1b_voc": "faster_rcnn",
            "faster_rcnn": "faster_rcnn", "load_model": "faster_rcnn",
            "save_model": "faster_rcnn", "VOC_CLASSES": "classes", "DEFAULTS": "faster_rcnn",
            "detect": "faster_rcnn"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module("." + _EXPORTS[name], __name__), name)
    raise AttributeError("module 'frcnn_model' has no attribute %r" % name)


def __dir__():
    return sorted(list(globals()) + __all__)
