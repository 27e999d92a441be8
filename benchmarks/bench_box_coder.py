"""box_decode and clip_boxes at the seed's size (28500 anchors), batch 1 and 8, against
mx.nd.contrib.box_decode, GluonCV's composite (minimal_opset decoder, BBoxClipToImage) and
the NumPy reference."""
import numpy as np
import pytest

import frcnn_ops
from frcnn_ops import reference as ref
from benchutil import mx_sync
from shapes import IMAGE_HW, rpn_anchors, rpn_deltas

BATCHES = [1, 8]


@pytest.fixture(scope="module", params=BATCHES, ids=lambda b: "B%d" % b)
def decode_inputs(request):
    b = request.param
    return b, rpn_deltas(b), rpn_anchors()


@pytest.mark.parametrize("impl", ["frcnn_ops", "mx.contrib", "gluoncv", "numpy_ref"])
def test_box_decode(benchmark, mx, decode_inputs, impl):
    b, deltas, anchors = decode_inputs
    benchmark.group = "box_decode 28500 anchors B=%d" % b
    d, a = mx.nd.array(deltas), mx.nd.array(anchors)
    stds = (0.1, 0.1, 0.2, 0.2)
    kw = dict(std0=0.1, std1=0.1, std2=0.2, std3=0.2, format="corner")
    if impl == "frcnn_ops":
        fn = mx_sync(lambda: mx.nd.frcnn_box_decode(d, a, **kw))
    elif impl == "mx.contrib":
        fn = mx_sync(lambda: mx.nd.contrib.box_decode(d, a, **kw))
    elif impl == "gluoncv":
        pytest.importorskip("gluoncv")
        from gluoncv.nn.coder import NormalizedBoxCenterDecoder
        dec = NormalizedBoxCenterDecoder(stds=stds, convert_anchor=True, minimal_opset=True)
        fn = mx_sync(lambda: dec(d, a))
    else:
        fn = lambda: ref.box_decode(deltas, anchors, *stds, format="corner")  # noqa: E731
    benchmark(fn)


@pytest.mark.parametrize("impl", ["frcnn_ops", "gluoncv", "numpy_ref"])
def test_clip_boxes(benchmark, mx, decode_inputs, impl):
    b, deltas, anchors = decode_inputs
    benchmark.group = "clip_boxes 28500 boxes B=%d" % b
    boxes = ref.box_decode(deltas, anchors, format="corner")
    info = np.array([[IMAGE_HW[0], IMAGE_HW[1], 1.0]] * b, np.float32)
    x, i = mx.nd.array(boxes), mx.nd.array(info)
    if impl == "frcnn_ops":
        fn = mx_sync(lambda: frcnn_ops.clip_boxes(x, i))
    elif impl == "gluoncv":
        pytest.importorskip("gluoncv")
        from gluoncv.nn.bbox import BBoxClipToImage
        clip = BBoxClipToImage()
        img = mx.nd.zeros((b, 3) + IMAGE_HW)
        fn = mx_sync(lambda: clip(x, img))
    else:
        fn = lambda: ref.clip_boxes(boxes, info)  # noqa: E731
    benchmark(fn)
