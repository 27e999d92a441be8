"""Helpers shared by the test modules (conftest.py holds only fixtures and hooks)."""
import numpy as np


def corner_anchors(rng, n, scale=100.0, dtype=np.float32):
    """n random corner boxes with positive size."""
    xy = rng.uniform(-scale / 4, scale, size=(n, 2))
    wh = rng.uniform(1.0, scale / 2, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)


class _Unmasked:
    """F for GluonCV's FasterRCNN._pyramid_roi_feats that takes its other align branch
    (ROIAlign on every roi, then where): the masked branch leaves the rows of other levels
    unwritten (MXNet skips batch index -1) and sums them, so a reference through it reads
    stale memory. (The idea of tests/test_gluoncv_fpn.py, shared here.)"""

    class _Contrib:
        def __init__(self, contrib):
            self._contrib = contrib

        def __getattr__(self, name):
            return getattr(self._contrib, name)

    def __init__(self, F):
        self._F = F
        self.contrib = self._Contrib(F.contrib)  # its __dict__ has no box_encode

    def __getattr__(self, name):
        return getattr(self._F, name)


def gluoncv_unmasked_reference(net):
    """A GluonCV FPN net whose pyramid pooling writes every row (see _Unmasked)."""
    import types
    pyramid = type(net)._pyramid_roi_feats
    net._pyramid_roi_feats = types.MethodType(
        lambda self, F, *a, **k: pyramid(self, _Unmasked(F), *a, **k), net)
    return net
