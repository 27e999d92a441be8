"""The CPU comparisons: every op at the seed's shapes against each reference, in table order.

"Ours" is called the way the reference is: MXNet NDArrays against MXNet and GluonCV, NumPy
arrays against the NumPy reference and torchvision. Cases marked extra (other batch sizes,
larger counts, the FPN op) are timed only by the pytest-benchmark suites.
"""
import numpy as np

from ..timing import mx_sync
from . import shapes as S
from .checks import (DECODE_COMPOSITE_CHECK, ROI_FWD_BWD_CHECK, ROI_FWD_CHECK, bitwise,
                     timing_only, tv_nms_check)
from .core import Comparison, Pair
from .refs import (TV_PROPOSAL_NOTE, contrib_proposal_fns, fpn_proposal_fns,
                   gluoncv_proposal_block, multilevel_fns, mx_roi_align_fns,
                   numpy_roi_align_fns, torchvision_proposal)

MX, GLUONCV, TV = ("mxnet",), ("mxnet", "gluoncv"), ("torchvision",)
DECODE_KW = dict(std0=S.DECODE_STDS[0], std1=S.DECODE_STDS[1], std2=S.DECODE_STDS[2],
                 std3=S.DECODE_STDS[3], format="corner")


def box_decode(batch=1):
    import frcnn_ops
    from frcnn_ops import reference as ref
    shape = "B=%d, %d anchors" % (batch, S.NUM_ANCHORS)
    kw = DECODE_KW

    def mx_inputs(env):
        return env.mx, env.mx.nd.array(S.rpn_deltas(batch)), env.mx.nd.array(S.rpn_anchors())

    def contrib(env):
        mx, d, a = mx_inputs(env)
        return Pair(mx_sync(lambda: mx.nd.frcnn_box_decode(d, a, **kw)),
                    mx_sync(lambda: mx.nd.contrib.box_decode(d, a, **kw)), bitwise)

    def gluoncv(env):
        from gluoncv.nn.coder import NormalizedBoxCenterDecoder
        mx, d, a = mx_inputs(env)
        dec = NormalizedBoxCenterDecoder(stds=S.DECODE_STDS, convert_anchor=True,
                                         minimal_opset=True)
        dec.hybridize(static_alloc=True, static_shape=True)
        # the minimal_opset composite (without it the decoder calls contrib.box_decode)
        return Pair(mx_sync(lambda: mx.nd.frcnn_box_decode(d, a, **kw)),
                    mx_sync(lambda: dec(d, a)), DECODE_COMPOSITE_CHECK)

    def numpy_ref(env):
        d, a = S.rpn_deltas(batch), S.rpn_anchors()
        return Pair(lambda: frcnn_ops.box_decode(d, a, **kw),
                    lambda: ref.box_decode(d, a, **kw), bitwise)
    extra = batch != 1
    return [Comparison("box_decode", "box_decode", shape, "mx.nd.contrib.box_decode", contrib,
                       MX, extra=extra),
            Comparison("box_decode", "box_decode", shape,
                       "GluonCV NormalizedBoxCenterDecoder (minimal_opset)", gluoncv, GLUONCV,
                       extra=extra),
            Comparison("box_decode", "box_decode", shape, "NumPy reference", numpy_ref,
                       extra=extra)]


def clip_boxes(batch=1):
    import frcnn_ops
    from frcnn_ops import reference as ref
    shape = "B=%d, %d boxes" % (batch, S.NUM_ANCHORS)

    def inputs():
        boxes = ref.box_decode(S.rpn_deltas(batch), S.rpn_anchors(), format="corner")
        return boxes, S.im_info(batch)

    def gluoncv(env):
        from gluoncv.nn.bbox import BBoxClipToImage
        mx = env.mx
        boxes, info = inputs()
        x, i = mx.nd.array(boxes), mx.nd.array(info)
        img = mx.nd.zeros((batch, 3) + S.IMAGE_HW)
        clip = BBoxClipToImage()
        clip.hybridize(static_alloc=True, static_shape=True)
        return Pair(mx_sync(lambda: mx.nd.frcnn_clip_boxes(x, i)),
                    mx_sync(lambda: clip(x, img)), bitwise)

    def numpy_ref(env):
        boxes, info = inputs()
        return Pair(lambda: frcnn_ops.clip_boxes(boxes, info),
                    lambda: ref.clip_boxes(boxes, info), bitwise)
    extra = batch != 1
    return [Comparison("clip_boxes", "clip_boxes", shape, "GluonCV BBoxClipToImage", gluoncv,
                       GLUONCV, extra=extra),
            Comparison("clip_boxes", "clip_boxes", shape, "NumPy reference", numpy_ref,
                       extra=extra)]


def _gluoncv_proposal(pre, post, batch=1):
    def setup(env):
        mx = env.mx
        scores, deltas, anchors, info, img_hw = S.proposal_inputs(batch=batch)
        Sx, D, A, I = (mx.nd.array(x) for x in (scores, deltas, anchors, info))
        net = gluoncv_proposal_block(mx, pre, post)
        img = mx.nd.zeros((batch, 3) + tuple(img_hw))
        return Pair(mx_sync(lambda: mx.nd.frcnn_proposal(
            Sx, D, A, I, rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post)),
            mx_sync(lambda: net(A, Sx, D, img)), bitwise)
    return setup


def proposal(pre, post):
    import frcnn_ops
    from frcnn_ops import reference as ref
    shape = "%d anchors, %d->%d" % (S.NUM_ANCHORS, pre, post)

    def contrib(env):
        ours, theirs = contrib_proposal_fns(env.mx, S.FEAT_HW, pre, post)
        return Pair(ours, theirs, timing_only("different conventions (+1)"))

    def numpy_ref(env):
        scores, deltas, anchors, info, _ = S.proposal_inputs()
        return Pair(lambda: frcnn_ops.proposal(scores, deltas, anchors, info, pre, post),
                    lambda: ref.proposal(scores, deltas, anchors, info, pre, post), bitwise)

    def tv_cpu(env):
        torch, tv = env.torchvision
        scores, deltas, anchors, info, img_hw = S.proposal_inputs()
        Sx, D, A = (torch.from_numpy(x) for x in (scores[0, :, 0], deltas[0], anchors[0]))
        return Pair(lambda: frcnn_ops.proposal(scores, deltas, anchors, info, pre, post),
                    lambda: torchvision_proposal(torch, tv, Sx, D, A, img_hw, pre, post),
                    timing_only(TV_PROPOSAL_NOTE))
    return [Comparison("proposal", "proposal", shape, "GluonCV RPNProposal+box_nms",
                       _gluoncv_proposal(pre, post), GLUONCV),
            Comparison("proposal", "proposal", shape, "mx.nd.contrib.Proposal", contrib, MX),
            Comparison("proposal", "proposal", shape, "NumPy reference", numpy_ref,
                       slow="ref"),
            Comparison("proposal", "proposal", shape, "torchvision.ops composite", tv_cpu, TV)]


def nms_rpn(n=6000):
    import frcnn_ops
    shape = "%d boxes (rpn, 0.7)" % n

    def contrib(env):
        mx = env.mx
        x = mx.nd.array(S.pre_nms_boxes(n))
        return Pair(mx_sync(lambda: mx.nd.frcnn_nms(x, **S.NMS_RPN)),
                    mx_sync(lambda: mx.nd.contrib.box_nms(x, **S.NMS_RPN)), bitwise)

    def tv_rpn(env):
        torch, tv = env.torchvision
        data = S.pre_nms_boxes(n)
        B, Sc = torch.from_numpy(data[0, :, 1:].copy()), torch.from_numpy(data[0, :, 0].copy())
        return Pair(lambda: frcnn_ops.nms(data, **S.NMS_RPN),
                    lambda: tv.ops.nms(B, Sc, 0.7), tv_nms_check(data, 0, "boxes"))
    extra = n != 6000
    return [Comparison("nms", "nms", shape, "mx.nd.contrib.box_nms", contrib, MX, extra=extra),
            Comparison("nms", "nms", shape, "torchvision.ops.nms", tv_rpn, TV, extra=extra)]


def nms_per_class():
    import frcnn_ops
    shape = "20x300 per class (topk 400, 0.3)"

    def contrib(env):
        mx = env.mx
        x = mx.nd.array(S.detections())
        return Pair(mx_sync(lambda: mx.nd.frcnn_nms(x, **S.NMS_CLASS)),
                    mx_sync(lambda: mx.nd.contrib.box_nms(x, **S.NMS_CLASS)), bitwise)

    def tv_cls(env):
        torch, tv = env.torchvision
        data = S.detections()
        flat = data.reshape(-1, 6)
        # box_nms's valid_thresh: only rows with score > 0.0001 are candidates (topk 400
        # per class cuts nothing at 300 rows a class)
        valid = np.nonzero(flat[:, 1] > S.NMS_CLASS["valid_thresh"])[0]
        B = torch.from_numpy(flat[valid, 2:].copy())
        Sc = torch.from_numpy(flat[valid, 1].copy())
        Id = torch.from_numpy(flat[valid, 0].astype(np.int64))
        V = torch.from_numpy(valid)
        return Pair(lambda: frcnn_ops.nms(data, **S.NMS_CLASS),
                    lambda: V[tv.ops.batched_nms(B, Sc, Id, 0.3)],
                    tv_nms_check(data, 1, "detections"))
    return [Comparison("nms", "nms", shape, "mx.nd.contrib.box_nms", contrib, MX),
            Comparison("nms", "nms", shape, "torchvision.ops.batched_nms", tv_cls, TV)]


ROI_SHAPE = "%d rois, 1x%dx%dx%d, 14x14, s2" % ((S.NUM_ROIS, S.FEAT_C) + S.FEAT_HW)


def roi_align(backward):
    op = "roi_align fwd+bwd" if backward else "roi_align fwd"
    check = ROI_FWD_BWD_CHECK if backward else ROI_FWD_CHECK

    def contrib(env):
        return Pair(*mx_roi_align_fns(env.mx, backward=backward), check)

    def tv_cpu(env):
        return Pair(*numpy_roi_align_fns(*env.torchvision, backward=backward), check)
    return [Comparison("roi_align", op, ROI_SHAPE, "mx.nd.contrib.ROIAlign", contrib, MX,
                       slow="ref"),
            Comparison("roi_align", op, ROI_SHAPE, "torchvision.ops.roi_align", tv_cpu, TV,
                       slow="ref")]


def multilevel(backward):
    op = "multilevel_roi_align fwd+bwd" if backward else "multilevel_roi_align fwd"
    shape = "%d rois, P2-P5 of %dx%d, C%d, 7x7, s2" % ((S.FPN_ROIS,) + S.FPN_IMAGE_HW
                                                      + (S.FPN_C,))

    def setup(env):
        # timed only: GluonCV's pyramid sums contrib.ROIAlign rows MXNet leaves unwritten
        # (tests/test_multilevel_roi_align.py holds ours to its other, unmasked branch)
        return Pair(*multilevel_fns(env.mx, backward=backward),
                    timing_only("GluonCV's masked rows are unwritten memory"))
    return [Comparison("multilevel_roi_align", op, shape,
                       "GluonCV FasterRCNN._pyramid_roi_feats", setup, GLUONCV,
                       slow="ref" if backward else False)]


def fpn_proposal(pre, post):
    n = sum(h * w * 3 for h, w in S.fpn_rpn_level_hw())  # 3 ratios a position
    shape = "FPN P2-P6 of %dx%d, %d anchors, %d->%d" % (S.FPN_IMAGE_HW + (n, pre, post))

    def setup(env):
        ours, theirs = fpn_proposal_fns(env.mx, pre, post)
        return Pair(ours, theirs, bitwise)
    return [Comparison("proposal", "proposal (FPN)", shape,
                       "GluonCV multi-level RPN (RPNProposal per level + box_nms)", setup,
                       GLUONCV)]


def proposal_batch4():
    shape = "B=4, %d anchors, 6000->300" % S.NUM_ANCHORS
    return [Comparison("proposal", "proposal", shape, "GluonCV RPNProposal+box_nms",
                       _gluoncv_proposal(6000, 300, batch=4), GLUONCV, extra=True)]


def cpu_cases():
    """Every CPU comparison: frcnn-bench's rows in its table order, then the extra cases."""
    seed = (box_decode() + clip_boxes()
            + [c for pre, post in S.PROPOSALS for c in proposal(pre, post)]
            + [c for pre, post in S.FPN_PROPOSALS for c in fpn_proposal(pre, post)]
            + nms_rpn() + nms_per_class() + roi_align(False) + roi_align(True)
            + multilevel(False) + multilevel(True))
    extra = box_decode(8) + clip_boxes(8) + proposal_batch4() + nms_rpn(12000)
    return seed + extra
