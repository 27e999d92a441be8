"""Datasets (VOC folders, the synthetic shapes), the training/validation transforms and
batching, and GluonCV's test-time presets.

Nothing is imported here: the datasets and transforms are NumPy/OpenCV only and load without
MXNet.
"""
