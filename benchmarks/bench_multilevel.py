"""multilevel_roi_align at issue 17's shape (1000 rois over P2-P5 of an 800x1216 image, 256
channels, pooled 7x7, sample_ratio 2; GluonCV's FPN Faster R-CNN head) against GluonCV's own
FasterRCNN._pyramid_roi_feats (contrib.ROIAlign per level, masked rois, ElementWiseSum), forward
and forward+backward (autograd with a head gradient into every level).

    pytest benchmarks/bench_multilevel.py --benchmark-only --benchmark-group-by=group

GluonCV's forward+backward is slow (single-threaded contrib backward on 4 levels): it runs a
fixed 2 rounds.
"""
import types

import numpy as np
import pytest

from benchutil import mx_sync

IMAGE_HW = (800, 1216)
STRIDES = (4, 8, 16, 32)
CHANNELS = 256
NUM_ROIS = 1000
POOLED = (7, 7)
IMPLS = ["frcnn_ops", "gluoncv"]


def fpn_features(channels=CHANNELS, seed=0):
    """P2..P5 (1, C, H / s, W / s), float32."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(1, channels, IMAGE_HW[0] // s, IMAGE_HW[1] // s)).astype(np.float32)
            for s in STRIDES]


def fpn_rois(n=NUM_ROIS, seed=1):
    """n rois over the image, square roots of areas log-uniform over 16 .. 800 pixels (every
    level: about half at P2 as in RPN output), aspect 1:3 .. 3:1, inside the image."""
    rng = np.random.default_rng(seed)
    side = np.exp(rng.uniform(np.log(16), np.log(800), size=n))
    aspect = np.exp(rng.uniform(-0.55, 0.55, size=n))
    wh = np.minimum(np.stack([side * aspect, side / aspect], 1), [IMAGE_HW[1], IMAGE_HW[0]])
    xy = rng.uniform(size=(n, 2)) * ([IMAGE_HW[1], IMAGE_HW[0]] - wh)
    return np.concatenate([np.zeros((n, 1)), xy, xy + wh], 1).astype(np.float32)


def gluoncv_pyramid(mx, feats, rois):
    """GluonCV's FasterRCNN._pyramid_roi_feats (its FPN models: stages 2..6, P6 unused)."""
    from gluoncv.model_zoo.rcnn.faster_rcnn.faster_rcnn import FasterRCNN
    fake = types.SimpleNamespace(_max_stage=6, _min_stage=2)
    return FasterRCNN._pyramid_roi_feats(fake, mx.nd, feats, rois, POOLED, STRIDES + (64,),
                                         roi_mode="align")


def op_fn(mx, impl):
    if impl == "gluoncv":
        pytest.importorskip("gluoncv")
        return lambda feats, rois: gluoncv_pyramid(mx, feats, rois)
    import frcnn_ops
    return lambda feats, rois: frcnn_ops.multilevel_roi_align(
        rois, feats, POOLED, spatial_scales=[1.0 / s for s in STRIDES], sample_ratio=2)


def forward_fn(mx, impl):
    xs = [mx.nd.array(f) for f in fpn_features()]
    r = mx.nd.array(fpn_rois())
    op = op_fn(mx, impl)
    return mx_sync(lambda: op(xs, r))


def fwd_bwd_fn(mx, impl):
    xs = [mx.nd.array(f) for f in fpn_features()]
    for x in xs:
        x.attach_grad()
    r = mx.nd.array(fpn_rois())
    op = op_fn(mx, impl)
    head = mx.nd.array(np.random.default_rng(2).normal(
        size=(NUM_ROIS, CHANNELS) + POOLED).astype(np.float32))

    def step():
        with mx.autograd.record():
            y = op(xs, r)
        y.backward(head)
        return [x.grad for x in xs]
    return mx_sync(step)


@pytest.mark.parametrize("impl", IMPLS)
def test_fpn_forward(benchmark, mx, impl):
    benchmark.group = "multilevel_roi_align fwd: 1000 rois P2-P5 of 800x1216 C256 7x7 s2"
    benchmark(forward_fn(mx, impl))


@pytest.mark.parametrize("impl", IMPLS)
def test_fpn_forward_backward(benchmark, mx, impl):
    benchmark.group = "multilevel_roi_align fwd+bwd: 1000 rois P2-P5 of 800x1216 C256 7x7 s2"
    fn = fwd_bwd_fn(mx, impl)
    if impl == "gluoncv":
        benchmark.pedantic(fn, rounds=2, iterations=1, warmup_rounds=1)
    else:
        benchmark(fn)
