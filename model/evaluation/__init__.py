"""Evaluation: the VOC07 mAP metric (:mod:`.metrics`, matching in Cython) and the evaluation
of a network on a dataset (:mod:`.evaluate`).

Nothing is imported here: the metric loads without MXNet.
"""
