"""Size limits and memory: shapes past the kernels' index limits are refused with an error
naming the op, the argument and the limit, before anything is allocated (zero-stride NumPy
arrays and MXNet shape inference, no data behind them); 10,000 calls of each op do not grow
resident memory."""
import os

import numpy as np
import pytest

import frcnn_ops

GIB = 1 << 30


def huge(shape, dtype=np.float32):
    """A read-only array of `shape` backed by one element (zero strides)."""
    return np.broadcast_to(np.zeros((), dtype), shape)


def test_nms_refuses_2_31_rows_without_allocating():
    with pytest.raises(ValueError, match=r"frcnn_nms: n must be below 2\^31, got 2147483648"):
        frcnn_ops.nms(huge((1, 2 ** 31, 6)))


def test_proposal_refuses_2_32_anchors_without_allocating():
    N = 2 ** 32
    with pytest.raises(ValueError, match=r"frcnn_proposal: N must be below 2\^32, got 4294967296"):
        frcnn_ops.proposal(huge((1, N, 1)), huge((1, N, 4)), huge((1, N, 4)), huge((1, 2)))


def test_roi_align_refuses_a_map_of_2_31_pixels_without_allocating():
    with pytest.raises(ValueError, match=r"frcnn_roi_align: data H \* W must be below 2\^31, "
                                         r"got \(1, 1, 65536, 32768\)"):
        frcnn_ops.roi_align(huge((1, 1, 65536, 32768)), np.zeros((1, 5), np.float32),
                            pooled_size=2, spatial_scale=1.0)


def test_roi_align_attribute_limits():
    data, rois = np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 5), np.float32)
    with pytest.raises(ValueError, match=r"frcnn_roi_align: pooled_size must have pooled_h \* "
                                         r"pooled_w <= 65536 bins, got \(257, 256\)"):
        frcnn_ops.roi_align(data, rois, pooled_size=(257, 256), spatial_scale=1.0)
    frcnn_ops.roi_align(data, rois, pooled_size=(256, 256), spatial_scale=1.0)
    with pytest.raises(ValueError, match=r"frcnn_roi_align: sample_ratio must be <= 16384"):
        frcnn_ops.roi_align(data, rois, pooled_size=2, spatial_scale=1.0, sample_ratio=16385)


def test_large_outputs_index_in_64_bit(mx):
    """rois x channels x bins past 2^31 passes the checks (64-bit indexing): only the shape is
    inferred, nothing is allocated."""
    d, r = mx.sym.var("data"), mx.sym.var("rois")
    out = mx.sym.frcnn_roi_align(d, r, pooled_size=(14, 14), spatial_scale=1 / 16)
    _, shapes, _ = out.infer_shape(data=(2, 4096, 38, 50), rois=(3000, 5))
    assert shapes[0] == (3000, 4096, 14, 14)
    assert np.prod(shapes[0], dtype=np.int64) > 2 ** 31


def test_mxnet_shape_inference_refuses_over_limit_shapes(mx):
    d, r = mx.sym.var("data"), mx.sym.var("rois")
    out = mx.sym.frcnn_roi_align(d, r, pooled_size=2, spatial_scale=1.0)
    with pytest.raises(mx.base.MXNetError, match=r"frcnn_roi_align: data H \* W must be below"):
        out.infer_shape(data=(1, 1, 65536, 65536), rois=(1, 5))
    # (an input of 2^31 elements or more is refused by MXNet itself in this CPU wheel, built
    # without USE_INT64_TENSOR_SIZE, before any op sees it)


# ---- memory growth ----------------------------------------------------------------------

def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _calls(mx):
    rng = np.random.default_rng(0)
    n = 64
    xy = rng.uniform(0, 100, (n, 2))
    anchors = np.concatenate([xy, xy + rng.uniform(4, 50, (n, 2))], 1)[None].astype(np.float32)
    deltas = rng.normal(scale=0.3, size=(1, n, 4)).astype(np.float32)
    scores = rng.random((1, n, 1)).astype(np.float32)
    info = np.array([[120, 130]], np.float32)
    nms = np.concatenate([scores, anchors], 2)
    data = rng.normal(size=(1, 4, 8, 8)).astype(np.float32)
    rois = np.array([[0, 1, 1, 20, 30], [0, 5, 5, 9, 9], [3, 0, 0, 1, 1]], np.float32)
    grad = np.ones((3, 4, 2, 2), np.float32)
    roi_kw = dict(pooled_size=2, spatial_scale=0.25, sample_ratio=2)
    np_calls = {
        "box_decode": lambda: frcnn_ops.box_decode(deltas, anchors, format="corner"),
        "clip_boxes": lambda: frcnn_ops.clip_boxes(anchors, info),
        "proposal": lambda: frcnn_ops.proposal(scores, deltas, anchors, info,
                                               rpn_pre_nms_top_n=32, rpn_post_nms_top_n=8),
        "nms": lambda: frcnn_ops.nms(nms, coord_start=1, score_index=0),
        "roi_align": lambda: frcnn_ops.roi_align(data, rois, **roi_kw),
        "roi_align_backward": lambda: frcnn_ops.roi_align_backward(
            grad, rois, [1, 4, 8, 8], [2, 2], 0.25, 2, False, False),
    }
    nd = {k: mx.nd.array(v) for k, v in dict(anchors=anchors, deltas=deltas, scores=scores,
                                               info=info, nms=nms, data=data, rois=rois,
                                               grad=grad).items()}
    x = nd["data"]
    x.attach_grad()

    def mx_backward():
        with mx.autograd.record():
            y = mx.nd.frcnn_roi_align(x, nd["rois"], **roi_kw)
        y.backward(nd["grad"])
        return x.grad

    mx_calls = {
        "box_decode": lambda: mx.nd.frcnn_box_decode(nd["deltas"], nd["anchors"],
                                                     format="corner"),
        "clip_boxes": lambda: mx.nd.frcnn_clip_boxes(nd["anchors"], nd["info"]),
        "proposal": lambda: mx.nd.frcnn_proposal(nd["scores"], nd["deltas"], nd["anchors"],
                                                 nd["info"], rpn_pre_nms_top_n=32,
                                                 rpn_post_nms_top_n=8),
        "nms": lambda: mx.nd.frcnn_nms(nd["nms"], coord_start=1, score_index=0),
        "roi_align": lambda: mx.nd.frcnn_roi_align(nd["data"], nd["rois"], **roi_kw),
        "roi_align_backward": mx_backward,
    }
    return np_calls, mx_calls


CALLS = int(os.environ.get("FRCNN_MEMORY_CALLS", "10000"))


def test_no_memory_growth_over_10000_calls(mx):
    """Every op (and the roi_align backward) 10,000 times through the NumPy path and through
    mx.nd, resident memory measured after a warm-up of 500 calls each: growth < 16 MiB."""
    np_calls, mx_calls = _calls(mx)

    def run(count):
        for f in np_calls.values():
            for _ in range(count):
                f()
        for f in mx_calls.values():
            for i in range(count):
                out = f()
                if i % 100 == 99:
                    out.wait_to_read()  # keep MXNet's queue short
            mx.nd.waitall()

    run(500)
    before = _rss()
    run(CALLS)
    grown = _rss() - before
    print("resident memory growth over %d calls x 12: %.2f MiB" % (CALLS, grown / (1 << 20)))
    assert grown < 16 * (1 << 20), "resident memory grew by %.1f MiB" % (grown / (1 << 20))
