"""GluonCV's RPN anchors (RPNAnchorGenerator): a constant of the network, not an op."""
from __future__ import annotations

from typing import Any, Sequence, Tuple

import numpy as np


def generate_anchors(stride: int = 16, base_size: int = 16,
                     ratios: Sequence[float] = (0.5, 1, 2),
                     scales: Sequence[float] = (2, 4, 8, 16, 32),
                     alloc_size: Tuple[int, int] = (128, 128)) -> np.ndarray:
    """Anchors (1, 1, height, width, A*4) float32, A = len(ratios) * len(scales).

    Reference window (0, 0, base_size - 1, base_size - 1) with the +1 convention; per ratio then
    per scale (anchor a = ratio_i * len(scales) + scale_i), w and h rounded with np.round;
    layout (H, W, A) with A fastest, shifted by stride * (x, y).
    """
    px = py = (base_size - 1) * 0.5
    base = []
    for r in ratios:
        for s in scales:
            size = base_size * base_size / r
            ws = np.round(np.sqrt(size))
            w = (ws * s - 1) * 0.5
            h = (np.round(ws * r) * s - 1) * 0.5
            base.append([px - w, py - h, px + w, py + h])
    base = np.array(base)
    width, height = alloc_size
    ox, oy = np.meshgrid(np.arange(0, width * stride, stride), np.arange(0, height * stride, stride))
    offsets = np.stack((ox.ravel(), oy.ravel(), ox.ravel(), oy.ravel()), axis=1)
    anchors = base.reshape((1, -1, 4)) + offsets.reshape((-1, 1, 4))
    return anchors.reshape((1, 1, height, width, -1)).astype(np.float32)


def feature_anchors(feat_hw: Tuple[int, int], **kwargs: Any) -> np.ndarray:
    """The (1, H*W*A, 4) anchors of an H x W feature map."""
    h, w = feat_hw
    kwargs.setdefault("alloc_size", (max(128, w), max(128, h)))
    return generate_anchors(**kwargs)[:, :, :h, :w, :].reshape(1, -1, 4)
