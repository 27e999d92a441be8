"""The GPU comparisons: our CuPy path against torchvision.ops on CUDA (frcnn-bench --device gpu
and benchmarks/bench_gpu.py), and an extra one against a CuPy elementwise composite."""
import numpy as np

from ..timing import device_sync
from . import shapes as S
from .checks import ROI_FWD_CHECK, timing_only, tv_nms_check
from .core import Comparison, Pair
from .cpu import DECODE_KW, ROI_SHAPE
from .refs import TV_PROPOSAL_NOTE, torchvision_proposal

TV_GPU = ("cupy_gpu", "torchvision", "torch_cuda")


def _t(torch, x):
    return torch.as_tensor(np.ascontiguousarray(x), device="cuda")


def proposal(pre, post):
    def setup(env):
        import cupy as cp
        import frcnn_ops
        torch, tv = env.torchvision
        scores, deltas, anchors, info, img_hw = S.proposal_inputs()
        Sx, D, A, I = (cp.asarray(x) for x in (scores, deltas, anchors, info))
        St, Dt, At = (_t(torch, x) for x in (scores[0, :, 0], deltas[0], anchors[0]))
        return Pair(device_sync(lambda: frcnn_ops.proposal(Sx, D, A, I, pre, post)),
                    device_sync(lambda: torchvision_proposal(torch, tv, St, Dt, At, img_hw,
                                                             pre, post)),
                    timing_only(TV_PROPOSAL_NOTE))
    return Comparison("proposal", "proposal", "%d anchors, %d->%d" % (S.NUM_ANCHORS, pre, post),
                      "torchvision.ops composite", setup, TV_GPU)


def nms_rpn(n=6000):
    def setup(env):
        import cupy as cp
        import frcnn_ops
        torch, tv = env.torchvision
        data = S.pre_nms_boxes(n)
        X = cp.asarray(data)
        B, Sc = _t(torch, data[0, :, 1:]), _t(torch, data[0, :, 0])
        return Pair(device_sync(lambda: frcnn_ops.nms(X, **S.NMS_RPN)),
                    device_sync(lambda: tv.ops.nms(B, Sc, 0.7)), tv_nms_check(data, 0, "boxes"))
    return Comparison("nms", "nms", "%d boxes (rpn, 0.7)" % n, "torchvision.ops.nms", setup,
                      TV_GPU, extra=n != 6000)


def nms_per_class():
    def setup(env):
        import cupy as cp
        import frcnn_ops
        torch, tv = env.torchvision
        data = S.detections()
        flat = data.reshape(-1, 6)
        valid = np.nonzero(flat[:, 1] > S.NMS_CLASS["valid_thresh"])[0]
        X = cp.asarray(data)
        B, Sc = _t(torch, flat[valid, 2:]), _t(torch, flat[valid, 1])
        Id, V = _t(torch, flat[valid, 0].astype(np.int64)), _t(torch, valid)
        return Pair(device_sync(lambda: frcnn_ops.nms(X, **S.NMS_CLASS)),
                    device_sync(lambda: V[tv.ops.batched_nms(B, Sc, Id, 0.3)]),
                    tv_nms_check(data, 1, "detections"))
    return Comparison("nms", "nms", "20x300 per class (topk 400, 0.3)",
                      "torchvision.ops.batched_nms", setup, TV_GPU)


def roi_align():
    def setup(env):
        import cupy as cp
        import frcnn_ops
        torch, tv = env.torchvision
        feat, rois, kw = S.feature_map(), S.seed_rois(), S.roi_kw()
        X, R = cp.asarray(feat), cp.asarray(rois)
        Xt, Rt = _t(torch, feat), _t(torch, rois)
        return Pair(device_sync(lambda: frcnn_ops.roi_align(X, R, **kw)),
                    device_sync(lambda: tv.ops.roi_align(
                        Xt, Rt, kw["pooled_size"], kw["spatial_scale"], kw["sample_ratio"],
                        aligned=False)),
                    ROI_FWD_CHECK)
    return Comparison("roi_align", "roi_align fwd", ROI_SHAPE, "torchvision.ops.roi_align",
                      setup, TV_GPU)


def box_decode_elementwise(batch=8):
    """Ours against the same decode written as CuPy array expressions (one kernel each)."""
    def setup(env):
        import cupy as cp
        import frcnn_ops
        D, A = cp.asarray(S.rpn_deltas(batch)), cp.asarray(S.rpn_anchors())
        sx, sy, sw, sh = S.DECODE_STDS

        def composite():
            wa, ha = A[..., 2] - A[..., 0], A[..., 3] - A[..., 1]
            xa, ya = A[..., 0] + wa / 2, A[..., 1] + ha / 2
            ox, oy = D[..., 0] * sx * wa + xa, D[..., 1] * sy * ha + ya
            w, h = cp.exp(D[..., 2] * sw) * wa / 2, cp.exp(D[..., 3] * sh) * ha / 2
            return cp.stack([ox - w, oy - h, ox + w, oy + h], axis=-1)
        return Pair(device_sync(lambda: frcnn_ops.box_decode(D, A, **DECODE_KW)),
                    device_sync(composite))  # an extra case: timed only
    return Comparison("box_decode", "box_decode", "B=%d, %d anchors" % (batch, S.NUM_ANCHORS),
                      "CuPy elementwise composite", setup, ("cupy_gpu",), extra=True)


def gpu_cases():
    """Every GPU comparison: frcnn-bench's rows in its table order, then the extra cases."""
    return ([proposal(pre, post) for pre, post in S.PROPOSALS]
            + [nms_rpn(), nms_per_class(), roi_align(), box_decode_elementwise(),
               nms_rpn(12000)])
