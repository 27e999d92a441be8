"""Property tests (hypothesis): random shapes (0 and 1 included), degenerate and inverted
boxes, huge and tiny coordinates, NaN and inf, attributes across their ranges, each op against
its MXNet contrib twin and its NumPy reference.

A short profile runs in CI; FRCNN_HYPOTHESIS_EXAMPLES=1000 runs the long one."""
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import frcnn_ops  # noqa: E402
from frcnn_ops import reference as ref  # noqa: E402

EXAMPLES = int(os.environ.get("FRCNN_HYPOTHESIS_EXAMPLES", "40"))
PROFILE = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

COORD = st.one_of(
    st.floats(-1e3, 1e3, width=32),
    st.floats(float(np.float32(-1e30)), float(np.float32(1e30)), width=32),
    st.floats(float(np.float32(-1e-30)), float(np.float32(1e-30)), width=32),
    st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf]),
)


@st.composite
def boxes(draw, n, extra_cols=0, nan=True):
    coord = COORD if nan else st.floats(-1e3, 1e3, width=32)
    arr = np.array(draw(st.lists(coord, min_size=n * (4 + extra_cols),
                                 max_size=n * (4 + extra_cols))), np.float32)
    return arr.reshape(n, 4 + extra_cols)


@st.composite
def nms_case(draw):
    batches = draw(st.integers(1, 3))
    n = draw(st.integers(0, 40))
    use_id = draw(st.booleans())
    width = 6 if use_id else 5
    rows = []
    for _ in range(batches):
        b = draw(boxes(n, nan=draw(st.booleans())))
        score = np.array(draw(st.lists(st.sampled_from([0.0, 0.5, 0.9, -1.0, np.nan]) |
                                       st.floats(0, 1, width=32), min_size=n, max_size=n)),
                         np.float32).reshape(n, 1)
        cols = [score, b]
        if use_id:
            cols.insert(0, np.array(draw(st.lists(st.integers(-1, 2), min_size=n, max_size=n)),
                                    np.float32).reshape(n, 1))
        rows.append(np.concatenate(cols, axis=1) if n else np.zeros((0, width), np.float32))
    data = np.stack(rows)
    kw = dict(overlap_thresh=draw(st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0])),
              valid_thresh=draw(st.sampled_from([0.0, 0.01, 0.5])),
              topk=draw(st.sampled_from([-1, 1, 5, 100])),
              coord_start=2 if use_id else 1, score_index=1 if use_id else 0,
              id_index=0 if use_id else -1, force_suppress=draw(st.booleans()),
              background_id=draw(st.sampled_from([-1, 0])),
              in_format=draw(st.sampled_from(["corner", "center"])))
    kw["out_format"] = kw["in_format"]
    return data, kw


@PROFILE
@given(nms_case())
def test_nms_property(mx, case):
    data, kw = case
    ours = frcnn_ops.nms(data, **kw)
    np.testing.assert_array_equal(ours, ref.nms(data, **kw))
    if data.shape[1] > 0:  # MXNet 1.x cannot make 0-sized NDArrays without np_shape
        theirs = mx.nd.contrib.box_nms(mx.nd.array(data), **kw).asnumpy()
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(mx.nd.frcnn_nms(mx.nd.array(data), **kw).asnumpy(), ours)


@PROFILE
@given(st.integers(1, 3), st.integers(0, 30), st.data())
def test_box_decode_and_clip_property(mx, B, n, data):
    deltas = np.stack([data.draw(boxes(n)) for _ in range(B)]) if n else \
        np.zeros((B, 0, 4), np.float32)
    anchors = data.draw(boxes(n, nan=False))[None] if n else np.zeros((1, 0, 4), np.float32)
    fmt = data.draw(st.sampled_from(["center", "corner"]))
    clip = data.draw(st.sampled_from([-1.0, 0.5, 4.135]))
    stds = data.draw(st.sampled_from([(1.0, 1.0, 1.0, 1.0), (0.1, 0.1, 0.2, 0.2)]))
    with np.errstate(all="ignore"):
        ours = frcnn_ops.box_decode(deltas, anchors, *stds, clip=clip, format=fmt)
        np.testing.assert_array_equal(ours, ref.box_decode(deltas, anchors, *stds, clip=clip,
                                                           format=fmt))
        if n:
            kw = dict(std0=stds[0], std1=stds[1], std2=stds[2], std3=stds[3], clip=clip,
                      format=fmt)
            theirs = mx.nd.contrib.box_decode(mx.nd.array(deltas), mx.nd.array(anchors), **kw)
            # MXNet's kernel flushes denormal results to zero, ours keeps them: equal up to
            # the smallest normal float (NaN and inf in the same places)
            np.testing.assert_allclose(ours, theirs.asnumpy(), rtol=0,
                                       atol=np.finfo(np.float32).tiny)
        info = np.array([[data.draw(st.sampled_from([1.0, 37.0, 600.0])),
                          data.draw(st.sampled_from([1.0, 50.0, 800.0]))] for _ in range(B)],
                        np.float32)
        np.testing.assert_array_equal(frcnn_ops.clip_boxes(ours, info), ref.clip_boxes(ours, info))


@PROFILE
@given(st.integers(1, 2), st.integers(0, 60), st.data())
def test_proposal_property(B, n, data):
    scores = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.5, 0.7, np.nan, -1.0]) |
                                         st.floats(0, 1, width=32), min_size=B * n,
                                         max_size=B * n)), np.float32).reshape(B, n, 1)
    deltas = (np.stack([data.draw(boxes(n)) for _ in range(B)]) if n
              else np.zeros((B, 0, 4), np.float32))
    xy = np.array(data.draw(st.lists(st.floats(-50, 200, width=32), min_size=2 * n,
                                     max_size=2 * n)), np.float32).reshape(n, 2)
    wh = np.array(data.draw(st.lists(st.floats(0, 120, width=32), min_size=2 * n,
                                     max_size=2 * n)), np.float32).reshape(n, 2)
    anchors = np.concatenate([xy, xy + wh], axis=1)[None] if n else np.zeros((1, 0, 4),
                                                                           np.float32)
    info = np.array([[data.draw(st.sampled_from([16.0, 100.0, 300.0])),
                      data.draw(st.sampled_from([16.0, 120.0, 400.0]))] for _ in range(B)],
                    np.float32)
    post = data.draw(st.integers(1, 20))
    pre = data.draw(st.integers(post, 40))
    kw = dict(rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post,
              threshold=data.draw(st.sampled_from([0.0, 0.5, 0.7, 1.0])),
              rpn_min_size=data.draw(st.sampled_from([0.0, 1.0, 16.0])))
    with np.errstate(all="ignore"):
        ours = frcnn_ops.proposal(scores, deltas, anchors, info, **kw)
        np.testing.assert_array_equal(ours, ref.proposal(scores, deltas, anchors, info, **kw))
    assert ours.shape == (B, post, 5)
    assert not np.isnan(ours).any()  # NaN boxes and scores never come out
