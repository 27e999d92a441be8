"""GPU suites (CuPy path) against torchvision's CUDA ops; skipped without a GPU, CuPy and torch.

Each callable ends with a device synchronize so that the time covers the GPU work."""
import numpy as np
import pytest

import frcnn_ops
from frcnn_ops.bench.cases import roi_kw, torchvision_proposal
from shapes import (detections, feature_map, im_info, pre_nms_boxes, rpn_anchors, rpn_deltas,
                    rpn_scores, seed_rois)

cp = pytest.importorskip("cupy")
try:
    if cp.cuda.runtime.getDeviceCount() < 1:
        pytest.skip("no CUDA device", allow_module_level=True)
except Exception:  # noqa: BLE001 - no driver
    pytest.skip("no CUDA device", allow_module_level=True)


def _sync(fn):
    def run():
        out = fn()
        cp.cuda.get_current_stream().synchronize()
        return out
    return run


def _torch():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    return torch, tv


@pytest.mark.parametrize("impl", ["frcnn_ops", "torchvision"])
@pytest.mark.parametrize("pre,post", [(6000, 300), (12000, 2000)], ids=["test", "train"])
def test_gpu_proposal(benchmark, impl, pre, post):
    benchmark.group = "gpu proposal 28500 anchors %d->%d" % (pre, post)
    scores, deltas, anchors, info = rpn_scores(), rpn_deltas(), rpn_anchors(), im_info()
    if impl == "frcnn_ops":
        S, D, A, I = (cp.asarray(x) for x in (scores, deltas, anchors, info))
        fn = _sync(lambda: frcnn_ops.proposal(S, D, A, I, pre, post))
    else:
        torch, tv = _torch()
        S = torch.as_tensor(scores[0, :, 0], device="cuda")
        D = torch.as_tensor(deltas[0], device="cuda")
        A = torch.as_tensor(anchors[0], device="cuda")
        fn = _sync(lambda: (torchvision_proposal(torch, tv, S, D, A, (600, 800), pre, post),
                            torch.cuda.synchronize()))
    benchmark(fn)


@pytest.mark.parametrize("impl", ["frcnn_ops", "torchvision"])
@pytest.mark.parametrize("n", [6000, 12000])
def test_gpu_nms(benchmark, impl, n):
    benchmark.group = "gpu nms %d boxes (rpn, 0.7)" % n
    data = pre_nms_boxes(n)
    if impl == "frcnn_ops":
        X = cp.asarray(data)
        fn = _sync(lambda: frcnn_ops.nms(X, overlap_thresh=0.7, coord_start=1, score_index=0,
                                         force_suppress=True))
    else:
        torch, tv = _torch()
        B = torch.as_tensor(data[0, :, 1:], device="cuda")
        S = torch.as_tensor(data[0, :, 0], device="cuda")
        fn = _sync(lambda: (tv.ops.nms(B, S, 0.7), torch.cuda.synchronize()))
    benchmark(fn)


@pytest.mark.parametrize("impl", ["frcnn_ops", "torchvision"])
def test_gpu_nms_per_class(benchmark, impl):
    benchmark.group = "gpu nms per class 20x300 (0.3)"
    data = detections()
    if impl == "frcnn_ops":
        X = cp.asarray(data)
        fn = _sync(lambda: frcnn_ops.nms(X, overlap_thresh=0.3, topk=400, valid_thresh=0.0001,
                                         id_index=0))
    else:
        torch, tv = _torch()
        flat = data.reshape(-1, 6)
        B = torch.as_tensor(flat[:, 2:], device="cuda")
        S = torch.as_tensor(flat[:, 1], device="cuda")
        I = torch.as_tensor(flat[:, 0], device="cuda").long()
        fn = _sync(lambda: (tv.ops.batched_nms(B, S, I, 0.3), torch.cuda.synchronize()))
    benchmark(fn)


@pytest.mark.parametrize("impl", ["frcnn_ops", "cupy_elementwise"])
def test_gpu_box_decode(benchmark, impl):
    benchmark.group = "gpu box_decode 28500 anchors B=8"
    D, A = cp.asarray(rpn_deltas(8)), cp.asarray(rpn_anchors())
    if impl == "frcnn_ops":
        fn = _sync(lambda: frcnn_ops.box_decode(D, A, 0.1, 0.1, 0.2, 0.2, format="corner"))
    else:
        def composite():
            wa, ha = A[..., 2] - A[..., 0], A[..., 3] - A[..., 1]
            xa, ya = A[..., 0] + wa / 2, A[..., 1] + ha / 2
            ox, oy = D[..., 0] * 0.1 * wa + xa, D[..., 1] * 0.1 * ha + ya
            w, h = cp.exp(D[..., 2] * 0.2) * wa / 2, cp.exp(D[..., 3] * 0.2) * ha / 2
            return cp.stack([ox - w, oy - h, ox + w, oy + h], axis=-1)
        fn = _sync(composite)
    benchmark(fn)


@pytest.mark.parametrize("impl", ["frcnn_ops", "torchvision"])
def test_gpu_roi_align(benchmark, impl):
    benchmark.group = "gpu roi_align fwd: 300 rois 1x1024x38x50 14x14 s2"
    feat, rois, kw = feature_map(), seed_rois(), roi_kw()
    if impl == "frcnn_ops":
        X, R = cp.asarray(feat), cp.asarray(rois)
        fn = _sync(lambda: frcnn_ops.roi_align(X, R, **kw))
    else:
        torch, tv = _torch()
        X = torch.as_tensor(feat, device="cuda")
        R = torch.as_tensor(rois, device="cuda")
        fn = _sync(lambda: (tv.ops.roi_align(X, R, kw["pooled_size"], kw["spatial_scale"],
                                             kw["sample_ratio"], aligned=False),
                            torch.cuda.synchronize()))
    benchmark(fn)
