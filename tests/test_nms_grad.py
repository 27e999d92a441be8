"""frcnn_nms's gradient is box_nms's: the gradient of output row k goes, all columns and
unchanged, to the input row the k-th kept row came from; every other input row gets 0
(bounding_box-inl.h: nms_backward over the forward's record). Compared bitwise with
box_nms's gradient through mx.autograd, and with the NumPy nms_backward."""
import numpy as np
import pytest

import frcnn_ops

f32, f64 = np.float32, np.float64


def random_data(rng, shape, ids=3, tied=False):
    d = np.zeros(shape + (6,), f32)
    d[..., 0] = rng.integers(0, ids, size=shape)
    d[..., 1] = rng.integers(0, 5, size=shape) / 5.0 if tied else rng.uniform(0, 1, size=shape)
    xy = rng.uniform(0, 100, size=shape + (2,))
    if tied:
        xy = np.round(xy / 20) * 20  # identical boxes
    d[..., 2:4] = xy
    d[..., 4:6] = xy + rng.uniform(10, 50, size=shape + (2,)) * (0 if tied else 1) + (30 if tied else 0)
    return d


def grads(mx, fn, d, g, dtype, **kw):
    x = mx.nd.array(d, dtype=dtype)
    x.attach_grad()
    with mx.autograd.record():
        y = fn(x, **kw)
    y.backward(mx.nd.array(g, dtype=dtype))
    return y.asnumpy(), x.grad.asnumpy()


CASES = [dict(overlap_thresh=0.5),
         dict(overlap_thresh=0.3, topk=20),
         dict(overlap_thresh=0.5, id_index=0),
         dict(overlap_thresh=0.5, id_index=0, force_suppress=True),
         dict(overlap_thresh=0.4, id_index=0, background_id=1, topk=15),
         dict(overlap_thresh=0.5, valid_thresh=0.3),
         dict(overlap_thresh=0.5, out_format="center"),
         dict(overlap_thresh=0.5, in_format="center", out_format="corner"),
         dict(overlap_thresh=0.5, topk=0),
         dict(overlap_thresh=0.5, valid_thresh=2.0)]  # nothing valid: all zero


@pytest.mark.parametrize("shape", [(40,), (3, 40), (2, 3, 30)])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("kw", CASES, ids=lambda kw: ",".join("%s=%s" % i for i in kw.items()))
@pytest.mark.parametrize("dtype", [f32, f64])
def test_gradient_is_box_nms(mx, rng, shape, tied, kw, dtype):
    d = random_data(rng, shape, tied=tied).astype(dtype)
    g = rng.normal(size=d.shape).astype(dtype)
    out, ours = grads(mx, frcnn_ops.nms, d, g, dtype, **kw)
    out_t, theirs = grads(mx, mx.nd.contrib.box_nms, d, g, dtype, **kw)
    if kw.get("in_format", "corner") == kw.get("out_format", "corner"):
        np.testing.assert_array_equal(out, out_t)  # the same rows kept
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(frcnn_ops.nms_backward(g, d, **kw), theirs)
    if kw.get("valid_thresh") == 2.0:
        assert not ours.any()
    elif kw.get("topk") == 0:
        np.testing.assert_array_equal(ours, g)
    else:
        assert ours.any()


def test_gradient_routes_rows(mx):
    """Row by row: kept rows get their output row's gradient, suppressed and invalid rows 0."""
    d = np.array([[0, 0.5, 0, 0, 10, 10],     # suppressed by row 2
                  [0, 0.9, 50, 50, 60, 60],   # kept 1st
                  [0, 0.7, 1, 1, 10, 10],     # kept 2nd
                  [0, -1, 0, 0, 1, 1]], f32)  # invalid score
    g = np.arange(24, dtype=f32).reshape(4, 6)
    _, ours = grads(mx, frcnn_ops.nms, d, g, f32, overlap_thresh=0.5)
    want = np.zeros_like(g)
    want[1], want[2] = g[0], g[1]
    np.testing.assert_array_equal(ours, want)


def test_backward_shape_and_dtype_checks():
    d = random_data(np.random.default_rng(0), (5,))
    with pytest.raises(ValueError,
                       match=r"frcnn_nms: grad must have the output's shape \(5, 6\), got \(4, 6"):
        frcnn_ops.nms_backward(np.zeros((4, 6), f32), d)
    with pytest.raises(TypeError, match="frcnn_nms: grad must have the dtype of data"):
        frcnn_ops.nms_backward(np.zeros((5, 6), f64), d)
