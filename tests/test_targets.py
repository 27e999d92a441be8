"""frcnn_model.training.targets against GluonCV 0.10's RPN/RCNN target blocks (bitwise where not
random).

The comparisons with GluonCV skip without MXNet and GluonCV; the other tests need NumPy only.
"""
import types

import numpy as np
import pytest

from frcnn_model.training import targets as T
from frcnn_model.modeling.anchors import feature_anchors


@pytest.fixture(scope="module")
def G():
    """MXNet and GluonCV's target blocks: the reference."""
    mx = pytest.importorskip("mxnet")
    pytest.importorskip("gluoncv")
    from gluoncv.model_zoo.rcnn.faster_rcnn.rcnn_target import (
        RCNNTargetGenerator, RCNNTargetSampler)
    from gluoncv.model_zoo.rcnn.rpn.rpn_target import RPNTargetGenerator, RPNTargetSampler
    return types.SimpleNamespace(mx=mx, RCNNTargetGenerator=RCNNTargetGenerator,
                                 RCNNTargetSampler=RCNNTargetSampler,
                                 RPNTargetGenerator=RPNTargetGenerator,
                                 RPNTargetSampler=RPNTargetSampler)

HUGE = 10 ** 9  # num_sample so large that GluonCV does not subsample


def _anchors(feat_hw):
    a = np.asarray(feature_anchors(feat_hw), dtype=np.float32).reshape(-1, 4)
    return np.ascontiguousarray(a)


def _gts(rng, m, w, h, anchors=None, integer=False):
    """m random gt boxes in a w x h image; a few copies of anchors (IoU ties, exact best)."""
    xy = rng.uniform(0, [w * 0.8, h * 0.8], (m, 2))
    wh = rng.uniform(8, [w * 0.6, h * 0.6], (m, 2))
    b = np.concatenate([xy, np.minimum(xy + wh, [w - 1, h - 1])], 1)
    if integer:
        b = np.round(b)
    if anchors is not None and m >= 2:
        ok = np.flatnonzero((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) &
                            (anchors[:, 2] < w) & (anchors[:, 3] < h))
        if ok.size:
            b[0] = anchors[rng.choice(ok)]
    return b.astype(np.float32)


def _gluoncv_presample(G_, bbox, anchor, width, height, pos=0.7, neg=0.3):
    """GluonCV RPNTargetGenerator.forward's sampler input and output, without subsampling."""
    mx = G_.mx
    A, G = mx.nd.array(anchor), mx.nd.array(bbox)
    ious = mx.nd.contrib.box_iou(A, G, format='corner').asnumpy()
    a_xmin, a_ymin, a_xmax, a_ymax = mx.nd.split(A, 4, axis=-1)
    invalid = (a_xmin < 0) + (a_ymin < 0) + (a_xmax >= width) + (a_ymax >= height)
    ious = np.where(invalid.asnumpy(), -1.0, ious)
    return G_.RPNTargetSampler(HUGE, pos, neg, 0.5)(ious)


def _cases(n=40, seed=0):
    rng = np.random.default_rng(seed)
    for k in range(n):
        fh, fw = rng.integers(3, 12, 2)
        anchors = _anchors((int(fh), int(fw)))
        h, w = int(fh) * 16, int(fw) * 16
        m = int(rng.integers(1, 8))
        yield rng, anchors, _gts(rng, m, w, h, anchors, integer=bool(k % 2)), w, h


def test_rpn_match_equals_gluoncv_before_subsampling(G):
    for rng, anchors, gts, w, h in _cases():
        for pos, neg in ((0.7, 0.3), (0.5, 0.4)):
            ours_s, ours_m = T.rpn_match(gts, anchors, w, h, pos, neg)
            ref_s, ref_m = _gluoncv_presample(G, gts, anchors, w, h, pos, neg)
            np.testing.assert_array_equal(ours_s, ref_s)
            assert ours_s.dtype == np.float32
            # matches matter where an anchor is valid (invalid rows are all -1: argmax 0 both)
            np.testing.assert_array_equal(ours_m, ref_m)


def test_rpn_targets_vs_gluoncv_generator(G):
    mx, GRPNTargetGenerator = G.mx, G.RPNTargetGenerator
    for i, (rng, anchors, gts, w, h) in enumerate(_cases(30, seed=1)):
        A, Gt = mx.nd.array(anchors), mx.nd.array(gts)
        ref_cls, ref_box, ref_mask = GRPNTargetGenerator(num_sample=HUGE)(Gt, A, w, h)
        ref_cls = np.asarray(ref_cls)
        num_sample = 64 if i % 2 else 256
        cls, box, mask = T.RPNTargetGenerator(num_sample=num_sample)(gts, anchors, w, h,
                                                                     rng=rng)
        assert cls.dtype == box.dtype == mask.dtype == np.float32
        assert cls.shape == (anchors.shape[0],) and box.shape == mask.shape == anchors.shape
        cand_pos, cand_neg = ref_cls == 1, ref_cls == 0
        max_pos = int(round(num_sample * 0.5))
        n_pos = min(cand_pos.sum(), max_pos)
        n_neg = min(cand_neg.sum(), num_sample - n_pos)
        assert (cls == 1).sum() == n_pos and (cls == 0).sum() == n_neg
        assert cand_pos[cls == 1].all() and cand_neg[cls == 0].all()
        p = cls == 1
        # box targets bitwise equal GluonCV's NumPy float32 encoder on the kept positives
        np.testing.assert_array_equal(box[p], ref_box[p])
        np.testing.assert_array_equal(mask[p], 1)
        assert not box[~p].any() and not mask[~p].any()


def test_rpn_seed_shape_and_edge_cases():
    anchors = _anchors((38, 50))
    assert anchors.shape == (28500, 4)
    rng = np.random.default_rng(3)
    gts = _gts(rng, 5, 800, 600, anchors)
    cls, box, mask = T.rpn_targets(gts, anchors, 800, 600, rng=rng)
    assert (cls == 1).sum() <= 128 and (cls >= 0).sum() == 256
    # no gt: all valid anchors are candidates for the 256 negatives
    cls, box, mask = T.rpn_targets(np.zeros((0, 4), np.float32), anchors, 800, 600, rng=0)
    assert (cls == 0).sum() == 256 and (cls == 1).sum() == 0 and not mask.any()
    s, m = T.rpn_match(np.zeros((0, 4)), anchors, 800, 600)
    valid = ((anchors[:, :2] >= 0).all(1) & (anchors[:, 2] < 800) & (anchors[:, 3] < 600))
    np.testing.assert_array_equal(s, np.where(valid, -1, 0))
    # zero-area gt: IoU 0 everywhere -> its best anchors are overridden to negative
    s0, _ = T.rpn_match(np.array([[100, 100, 100, 150]], np.float32), anchors, 800, 600)
    np.testing.assert_array_equal(s0, np.where(valid, -1, 0))
    # no anchors
    s, m = T.rpn_match(gts, np.zeros((0, 4), np.float32), 800, 600)
    assert s.shape == (0,) and m.shape == (0,)
    # allowed_border widens the valid region
    s_0, _ = T.rpn_match(gts, anchors, 800, 600)
    s_b, _ = T.rpn_match(gts, anchors, 800, 600, allowed_border=1e6)
    assert (s_0[~valid] == 0).all() and (s_b[~valid] != 0).any()


def test_rpn_input_validation():
    with pytest.raises(ValueError, match=r"rpn_match: anchor must have shape \(\?, 4\)"):
        T.rpn_targets(np.zeros((1, 4)), np.zeros((3, 5)), 10, 10)
    with pytest.raises(ValueError, match="bbox"):
        T.RPNTargetGenerator()(np.zeros((4,)), np.zeros((3, 4)), 10, 10)


def test_rpn_input_ndarray_and_float64_are_converted(G):
    a = _anchors((3, 3))
    c1 = T.rpn_match(G.mx.nd.array([[0, 0, 30, 30]]), a.astype(np.float64), 48, 48)[0]
    c2 = T.rpn_match(np.array([[0, 0, 30, 30]], np.float32), a, 48, 48)[0]
    np.testing.assert_array_equal(c1, c2)


# ---------------------------------------------------------------- RCNN

def _rcnn_inputs(rng, B, R, M, n_pad_roi=5, integer=True, w=320, h=240):
    gts = np.full((B, M, 4), -1, np.float32)
    labels = np.full((B, M), -1, np.float32)
    rois = np.empty((B, R, 4), np.float32)
    scores = rng.uniform(0, 1, (B, R, 1)).astype(np.float32)
    for b in range(B):
        m = int(rng.integers(0, M + 1)) if b else M - 1  # image 0 has padding, others random
        g = _gts(rng, m, w, h, integer=integer)
        gts[b, :m] = g
        labels[b, :m] = rng.integers(0, 5, m)
        # proposals: jittered gts (positives) and random boxes
        src = g[rng.integers(0, m, R)] if m else _gts(rng, R, w, h)
        jit = rng.normal(0, 6, (R, 4))
        r = np.where(rng.uniform(size=(R, 1)) < 0.3, src + jit, _gts(rng, R, w, h))
        r[:, 2:] = np.maximum(r[:, 2:], r[:, :2])
        rois[b] = np.round(r) if integer else r
        rois[b, R - n_pad_roi:] = -1
        scores[b, R - n_pad_roi:] = -1
    return rois, scores, gts, labels


def _gluoncv_rcnn(G, monkeypatch, rois, scores, gts, labels, rand, num_sample, thresh,
                  pos_ratio, num_class):
    mx = G.mx
    B, R = rois.shape[:2]
    M = gts.shape[1]
    draws = [mx.nd.array(rand[b]) for b in range(B)]
    monkeypatch.setattr(mx.nd.random, "uniform", lambda *a, **k: draws.pop(0))
    sampler = G.RCNNTargetSampler(B, R, num_sample, thresh, pos_ratio, M)
    r, s, m = sampler(mx.nd.array(rois), mx.nd.array(scores), mx.nd.array(gts))
    max_pos = int(round(num_sample * pos_ratio))
    gen = G.RCNNTargetGenerator(num_class, max_pos=max_pos, per_device_batch_size=B)
    gen.initialize()
    out = gen(r, s, m, mx.nd.array(labels), mx.nd.array(gts))
    return [x.asnumpy() for x in (r, s, m)], [x.asnumpy() for x in out]


@pytest.mark.parametrize("B,R,M,num_sample,thresh,pos_ratio", [
    (1, 300, 6, 128, 0.5, 0.25), (2, 200, 8, 128, 0.5, 0.25), (2, 150, 3, 64, 0.55, 0.5),
    (1, 60, 4, 64, 0.3, 0.25)])
def test_rcnn_sample_and_targets_equal_gluoncv(G, monkeypatch, B, R, M, num_sample, thresh,
                                               pos_ratio):
    rng = np.random.default_rng(B * 1000 + R + M)
    num_class = 5
    for trial in range(6):
        rois, scores, gts, labels = _rcnn_inputs(rng, B, R, M, integer=trial % 3 != 2)
        rand = rng.uniform(0, 1, (B, R + M)).astype(np.float32)
        (gr, gs, gm), (gcls, gbox, gmask, gind) = _gluoncv_rcnn(
            G, monkeypatch, rois, scores, gts, labels, rand, num_sample, thresh, pos_ratio,
            num_class)
        r, s, m = T.rcnn_sample(rois, scores, gts, num_sample, thresh, pos_ratio, rand=rand)
        np.testing.assert_array_equal(r, gr)
        np.testing.assert_array_equal(s, gs)
        np.testing.assert_array_equal(m, gm.astype(np.int32))
        assert r.dtype == s.dtype == np.float32 and m.dtype == np.int32
        max_pos = int(round(num_sample * pos_ratio))
        cls, box, mask, ind = T.rcnn_targets(r, s, m, labels, gts, num_class, max_pos)
        np.testing.assert_array_equal(cls, gcls)
        np.testing.assert_array_equal(ind, gind.astype(np.int32))
        np.testing.assert_array_equal(mask, gmask)
        np.testing.assert_array_equal(box, gbox)  # bitwise, incl. MXNet's double log
        assert box.shape == (B, max_pos, num_class, 4) and ind.dtype == np.int32


def test_rcnn_random_path_and_classes():
    rng = np.random.default_rng(7)
    rois, scores, gts, labels = _rcnn_inputs(rng, 2, 2000, 20, integer=False, w=800, h=600)
    smp = T.RCNNTargetSampler(128, 0.5, 0.25)
    r, s, m = smp(rois, scores, gts, rng=1)
    r2, s2, m2 = smp(rois, scores, gts, rng=1)
    np.testing.assert_array_equal(r, r2)
    assert r.shape == (2, 128, 4) and s.shape == m.shape == (2, 128)
    assert ((s == 1).sum(1) <= 32).all()  # top part is at most max_pos positives ...
    area = (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])
    assert (np.diff(area, axis=1) >= 0).all()
    cls, box, mask, ind = T.RCNNTargetGenerator(20, max_pos=32)(r, s, m, labels, gts)
    assert cls.shape == (2, 128) and box.shape == (2, 32, 20, 4)
    np.testing.assert_array_equal(cls > 0, s > 0.5)


def test_rcnn_edge_cases():
    rng = np.random.default_rng(11)
    # R = 0: only the gts are candidates; too few to fill -> ignores appended
    gts = _gts(rng, 3, 320, 240)[None]
    r, s, m = T.rcnn_sample(np.zeros((1, 0, 4)), np.zeros((1, 0, 1)), gts, 16, 0.5, 0.25,
                            rng=0)
    assert (s[0, :3] != 0).all() and (s[0, 3:] == 0).all() and (r[0, 3:] == -1).all()
    assert set(s[0, :3]) == {1.0}
    # M = 0: no positives
    rois = _gts(rng, 50, 320, 240)[None]
    r, s, m = T.rcnn_sample(rois, np.ones((1, 50, 1)), np.zeros((1, 0, 4)), 32, rng=0)
    assert (s == -1).sum() == 32 and not (s == 1).any()
    cls, box, mask, ind = T.rcnn_targets(r, s, m, np.zeros((1, 0)), np.zeros((1, 0, 4)), 3, 8)
    assert (cls == 0).all() and not box.any() and not mask.any()
    # zero-area rois and gts
    z = np.array([[[10, 10, 10, 50], [5, 5, 40, 40]]], np.float32)
    r, s, m = T.rcnn_sample(z, np.ones((1, 2)), z, 4, 0.5, 0.5, rng=0)
    assert np.isfinite(r).all()


def test_rcnn_input_validation():
    with pytest.raises(ValueError, match=r"rcnn_sample: rois must have shape \(\?, \?, 4\)"):
        T.rcnn_sample(np.zeros((10, 4)), np.zeros((1, 10)), np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match=r"rcnn_sample: scores must have shape \(1, 10\)"):
        T.rcnn_sample(np.zeros((1, 10, 4)), np.zeros((1, 9)), np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="batch size of gt_boxes"):
        T.rcnn_sample(np.zeros((1, 10, 4)), np.zeros((1, 10, 1)), np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="rand must have shape"):
        T.rcnn_sample(np.zeros((1, 10, 4)), np.zeros((1, 10, 1)), np.zeros((1, 2, 4)),
                      rand=np.zeros((1, 5)))
    with pytest.raises(ValueError, match=r"rcnn_targets: matches must have shape \(1, 4\)"):
        T.rcnn_targets(np.zeros((1, 4, 4)), np.zeros((1, 4)), np.zeros((1, 3)), np.zeros((1, 2)),
                       np.zeros((1, 2, 4)), 3, 2)
    with pytest.raises(ValueError, match="max_pos"):
        T.rcnn_targets(np.zeros((1, 4, 4)), np.zeros((1, 4)), np.zeros((1, 4)), np.zeros((1, 2)),
                       np.zeros((1, 2, 4)), 3, 5)
    with pytest.raises(ValueError, match=r"gt_labels must have shape \(1, 2\)"):
        T.rcnn_targets(np.zeros((1, 4, 4)), np.zeros((1, 4)), np.zeros((1, 4)), np.zeros((1, 3)),
                       np.zeros((1, 2, 4)), 3, 2)
