"""Helpers shared by the test modules (conftest.py holds only fixtures and hooks)."""
import numpy as np


def corner_anchors(rng, n, scale=100.0, dtype=np.float32):
    """n random corner boxes with positive size."""
    xy = rng.uniform(-scale / 4, scale, size=(n, 2))
    wh = rng.uniform(1.0, scale / 2, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)
