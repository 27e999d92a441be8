"""frcnn_model.evaluation.metrics.VOC07MApMetric against GluonCV's VOC07MApMetric."""
import numpy as np
import pytest

from frcnn_model.evaluation.metrics import VOC07MApMetric


@pytest.fixture(scope="module")
def GVOC07():
    """GluonCV's metric, the reference (the tests that compare with it skip without it)."""
    pytest.importorskip("mxnet")
    pytest.importorskip("gluoncv")
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric
    return VOC07MApMetric


def _batch(rng, B, N, M, C, integer, tie_scores, dtype=np.float32):
    gb = np.full((B, M, 4), -1, np.float64)
    gl = np.full((B, M), -1, np.float64)
    gd = np.zeros((B, M), np.float64)
    pb = np.full((B, N, 4), -1, np.float64)
    pl = np.full((B, N), -1, np.float64)
    ps = np.full((B, N), -1, np.float64)
    for b in range(B):
        m = int(rng.integers(0, M + 1))  # m = 0: an image without gts
        xy = rng.uniform(0, 400, (m, 2))
        g = np.concatenate([xy, xy + rng.uniform(5, 120, (m, 2))], 1)
        gb[b, :m] = np.round(g) if integer else g
        gl[b, :m] = rng.integers(0, C - 1, m)  # class C - 1 never in the gts
        gd[b, :m] = rng.uniform(size=m) < 0.15
        n = int(rng.integers(0, N + 1))
        src = rng.integers(0, max(m, 1), n)
        near = rng.uniform(size=n) < 0.6
        p = np.where(near[:, None] & (m > 0), (g[src] if m else 0) + rng.normal(0, 8, (n, 4)),
                     np.concatenate([rng.uniform(0, 400, (n, 2))] * 2, 1)
                     + np.concatenate([np.zeros((n, 2)), rng.uniform(5, 100, (n, 2))], 1))
        pb[b, :n] = np.round(p) if integer else p
        pl[b, :n] = np.where(near & (m > 0), gl[b, src] if m else 0, rng.integers(0, C, n))
        s = rng.uniform(size=n)
        ps[b, :n] = np.round(s, 1) if tie_scores else s
    return [x.astype(dtype) for x in (pb, pl, ps, gb, gl, gd)]


def _assert_same(ours, ref):
    names, values = ours.get()
    rnames, rvalues = ref.get()
    assert names == rnames
    np.testing.assert_allclose(np.asarray(values, float), np.asarray(rvalues, float),
                               rtol=0, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("integer,tie_scores,names,dtype,nd", [
    (True, False, True, np.float32, True), (False, False, False, np.float32, False),
    (True, True, True, np.float32, False), (False, True, True, np.float64, False),
    (True, False, True, np.float64, True)])
def test_voc07_equals_gluoncv(integer, tie_scores, names, dtype, nd, GVOC07, mx):
    rng = np.random.default_rng(int(integer) * 10 + int(tie_scores) * 3 + int(names))
    C = 6
    cls = ["c%d" % i for i in range(C)] if names else None
    ours, ref = VOC07MApMetric(0.5, cls), GVOC07(0.5, cls)
    for _ in range(15):
        batch = _batch(rng, 4, int(rng.integers(1, 40)), 8, C, integer, tie_scores, dtype)
        if nd:
            batch = [mx.nd.array(x, dtype=dtype) for x in batch]
        ours.update(*batch)
        ref.update(*batch)
    _assert_same(ours, ref)
    # and without difficult flags, other threshold
    ours, ref = VOC07MApMetric(0.7, cls), GVOC07(0.7, cls)
    for _ in range(5):
        batch = _batch(rng, 2, 30, 6, C, integer, tie_scores, dtype)[:5]
        ours.update(*batch)
        ref.update(*batch)
    _assert_same(ours, ref)
    ours.reset()
    ref.reset()
    batch = _batch(rng, 2, 30, 6, C, integer, tie_scores, dtype)
    ours.update(*batch)
    ref.update(*batch)
    _assert_same(ours, ref)


def test_voc07_many_ties_per_class(GVOC07):
    """> 16 detections of one class with tied scores in one image: NumPy's unstable order."""
    rng = np.random.default_rng(5)
    ours, ref = VOC07MApMetric(0.5), GVOC07(0.5)
    for _ in range(10):
        g = np.round(rng.uniform(0, 200, (1, 5, 2)))
        gb = np.concatenate([g, g + 40], -1).astype(np.float32)
        gl = np.zeros((1, 5), np.float32)
        pb = (gb[:, rng.integers(0, 5, 60)] + np.round(rng.normal(0, 6, (1, 60, 4)))).astype(
            np.float32)
        pl = np.zeros((1, 60), np.float32)
        ps = np.round(rng.uniform(size=(1, 60)), 1).astype(np.float32)
        ours.update(pb, pl, ps, gb, gl)
        ref.update(pb, pl, ps, gb, gl)
    _assert_same(ours, ref)


def test_voc07_hand_checked():
    # class 0: gts A, B; detections: A (tp), A again (fp), elsewhere (fp), B (tp)
    # -> precision 1, 1/2, 1/3, 1/2 at recall 1/2, 1/2, 1/2, 1:
    #    AP = (6 * 1 + 5 * 1/2) / 11 (recall thresholds 0..0.5 and 0.6..1.0)
    # class 1: only a difficult gt, matched -> ignored, no positives -> AP nan
    gb = np.array([[[0, 0, 9, 9], [20, 20, 29, 29], [60, 60, 80, 80]]], np.float32)
    gl = np.array([[0, 0, 1]], np.float32)
    gd = np.array([[0, 0, 1]], np.float32)
    pb = np.array([[[0, 0, 9, 9], [0, 0, 9, 9], [50, 50, 59, 59], [20, 20, 29, 29],
                    [60, 60, 80, 80], [-1, -1, -1, -1]]], np.float32)
    pl = np.array([[0, 0, 0, 0, 1, -1]], np.float32)
    ps = np.array([[.9, .8, .7, .6, .95, -1]], np.float32)
    m = VOC07MApMetric(class_names=["a", "b"])
    m.update(pb, pl, ps, gb, gl, gd)
    names, values = m.get()
    assert names == ["a", "b", "mAP"]
    assert values[0] == pytest.approx(8.5 / 11, abs=1e-15)
    assert np.isnan(values[1])
    assert values[2] == pytest.approx(8.5 / 11, abs=1e-15)
    # (B, N, 1) labels / scores are accepted too
    m2 = VOC07MApMetric()
    m2.update(pb, pl[..., None], ps[..., None], gb, gl[..., None], gd[..., None])
    assert m2.get() == ("VOCMeanAP", pytest.approx(8.5 / 11, abs=1e-15))


def test_voc07_validation():
    m = VOC07MApMetric()
    with pytest.raises(ValueError, match="pred_bboxes and gt_bboxes must have shape"):
        m.update(np.zeros((2, 4)), np.zeros((2,)), np.zeros((2,)), np.zeros((1, 1, 4)),
                 np.zeros((1, 1)))
    with pytest.raises(ValueError, match="labels/scores do not match"):
        m.update(np.zeros((1, 2, 4)), np.zeros((1, 3)), np.zeros((1, 2)), np.zeros((1, 1, 4)),
                 np.zeros((1, 1)))
    with pytest.raises(ValueError, match="class_names"):
        VOC07MApMetric(class_names=[1, 2])
