"""Training targets and the VOC07 metric: frcnn_model (Cython) against GluonCV 0.10.

RPN targets at the seed's shape (600x800 image, 28500 anchors of a 38x50 feature map, 5 and 20
gts); RCNN sampling + targets (2000 proposals, 128 samples, 20 classes, B = 1 and 2); the VOC07
metric's update() over 500 images x 100 detections."""
import numpy as np
import pytest

from benchutil import mx_sync
from frcnn_model.training import targets as T
from frcnn_model.modeling.anchors import feature_anchors
from frcnn_model.evaluation.metrics import VOC07MApMetric

IMG_H, IMG_W = 600, 800


def _gts(rng, m, w=IMG_W, h=IMG_H):
    xy = rng.uniform(0, [w * 0.7, h * 0.7], (m, 2))
    wh = rng.uniform(20, [w * 0.5, h * 0.5], (m, 2))
    return np.concatenate([xy, np.minimum(xy + wh, [w - 1, h - 1])], 1).astype(np.float32)


@pytest.mark.parametrize("impl", ["frcnn_model", "gluoncv"])
@pytest.mark.parametrize("num_gt", [5, 20])
def test_rpn_targets(benchmark, request, impl, num_gt):
    benchmark.group = "rpn targets 28500 anchors %d gts" % num_gt
    anchors = np.ascontiguousarray(feature_anchors((38, 50)).reshape(-1, 4), dtype=np.float32)
    gts = _gts(np.random.default_rng(0), num_gt)
    if impl == "frcnn_model":
        gen, rng = T.RPNTargetGenerator(), np.random.default_rng(0)
        benchmark(lambda: gen(gts, anchors, IMG_W, IMG_H, rng=rng))
    else:
        mx = request.getfixturevalue("mx")  # the frcnn_model side runs without MXNet
        pytest.importorskip("gluoncv")
        from gluoncv.model_zoo.rcnn.rpn.rpn_target import RPNTargetGenerator
        gen = RPNTargetGenerator()
        A, G = mx.nd.array(anchors), mx.nd.array(gts)
        benchmark(lambda: gen(G, A, IMG_W, IMG_H))  # returns NumPy: synchronous


def _rcnn_inputs(B, R=2000, M=20, seed=0):
    rng = np.random.default_rng(seed)
    gts = np.stack([_gts(rng, M) for _ in range(B)])
    labels = rng.integers(0, 20, (B, M)).astype(np.float32)
    rois = np.empty((B, R, 4), np.float32)
    for b in range(B):
        near = gts[b, rng.integers(0, M, R)] + rng.normal(0, 15, (R, 4)).astype(np.float32)
        rois[b] = np.where(rng.uniform(size=(R, 1)) < 0.3, near, _gts(rng, R))
        rois[b, :, 2:] = np.maximum(rois[b, :, 2:], rois[b, :, :2])
    scores = rng.uniform(0, 1, (B, R, 1)).astype(np.float32)
    return rois, scores, gts, labels


@pytest.mark.parametrize("impl", ["frcnn_model", "gluoncv"])
@pytest.mark.parametrize("B", [1, 2])
def test_rcnn_sample_targets(benchmark, request, impl, B):
    benchmark.group = "rcnn sample+targets B=%d 2000 rois 128 samples 20 classes" % B
    rois, scores, gts, labels = _rcnn_inputs(B)
    if impl == "frcnn_model":
        smp, gen = T.RCNNTargetSampler(128, 0.5, 0.25), T.RCNNTargetGenerator(20, max_pos=32)
        rng = np.random.default_rng(0)

        def run():
            r, s, m = smp(rois, scores, gts, rng=rng)
            return gen(r, s, m, labels, gts)
        benchmark(run)
    else:
        mx = request.getfixturevalue("mx")
        pytest.importorskip("gluoncv")
        from gluoncv.model_zoo.rcnn.faster_rcnn.rcnn_target import (RCNNTargetGenerator,
                                                                    RCNNTargetSampler)
        smp = RCNNTargetSampler(B, 2000, 128, 0.5, 0.25, 20)
        gen = RCNNTargetGenerator(20, max_pos=32, per_device_batch_size=B)
        gen.initialize()
        R, S, G, L = (mx.nd.array(x) for x in (rois, scores, gts, labels))

        def run():
            r, s, m = smp(R, S, G)
            return gen(r, s, m, L, G)
        benchmark(mx_sync(run))


def _voc_batches(n_img=500, N=100, M=10, C=20, per_batch=10, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_img // per_batch):
        gb = np.stack([_gts(rng, M) for _ in range(per_batch)])
        gl = rng.integers(0, C, (per_batch, M)).astype(np.float32)
        gd = (rng.uniform(size=(per_batch, M)) < 0.1).astype(np.float32)
        src = rng.integers(0, M, (per_batch, N))
        pb = np.take_along_axis(gb, src[..., None], 1) + rng.normal(0, 20, (per_batch, N, 4))
        pl = np.where(rng.uniform(size=(per_batch, N)) < 0.7,
                      np.take_along_axis(gl, src, 1), rng.integers(0, C, (per_batch, N)))
        ps = rng.uniform(size=(per_batch, N))
        out.append([x.astype(np.float32) for x in (pb, pl, ps, gb, gl, gd)])
    return out


@pytest.mark.parametrize("impl", ["frcnn_model", "gluoncv"])
def test_voc07_update(benchmark, impl):
    benchmark.group = "VOC07 update 500 images x 100 detections"
    batches = _voc_batches()
    if impl == "frcnn_model":
        metric = VOC07MApMetric()
    else:
        pytest.importorskip("gluoncv")
        from gluoncv.utils.metrics.voc_detection import VOC07MApMetric as G
        metric = G()

    def run():
        metric.reset()
        for b in batches:
            metric.update(*b)
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
