"""The network: Faster R-CNN (GluonCV's C4 design on frcnn_ops), its ResNet v1b backbone and
the RPN anchors.

Nothing is imported here, so that ``frcnn_model.modeling.anchors`` (NumPy only) loads without
MXNet.
"""
