"""What frcnn-bench compares: every op at the seed's shapes against each reference available on
this machine, with the agreement check that comes before the timing.

A Comparison is one table row: our op against one reference. Its ``setup()`` builds the inputs
and returns a Pair: two callables that return when their result is ready, and the check that
holds ours to the reference. "Ours" is always called the way the reference is (MXNet NDArrays
against MXNet and GluonCV, NumPy arrays against the NumPy reference and torchvision on the CPU,
CuPy arrays against torchvision on the GPU).
"""
import os
import tempfile
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import shapes as S
from .timing import mx_sync

GROUPS = ("box_decode", "clip_boxes", "proposal", "nms", "roi_align", "model")
DECODE_STDS = (0.1, 0.1, 0.2, 0.2)
NMS_RPN = dict(overlap_thresh=0.7, coord_start=1, score_index=0, id_index=-1,
               force_suppress=True)
NMS_CLASS = dict(overlap_thresh=0.3, topk=400, valid_thresh=0.0001, id_index=0, score_index=1,
                 coord_start=2, force_suppress=False)
PROPOSALS = ((6000, 300), (12000, 2000))
MODEL_INPUT = (1, 3) + S.IMAGE_HW
MODEL_NAME = "faster_rcnn_resnet50_v1b_voc"


# ---- results and checks -------------------------------------------------------------------

@dataclass
class Agreement:
    status: str   # "ok", "timing-only" or "mismatch"
    detail: str


@dataclass
class Pair:
    ours: object   # () -> result, returns when the result is ready
    ref: object
    check: object  # (ours result, reference result) -> Agreement


@dataclass
class Comparison:
    group: str      # the --cases key
    op: str
    shape: str
    reference: str
    setup: object   # () -> Pair
    slow: bool = False
    notes: list = field(default_factory=list)


def to_numpy(x):
    """NumPy copies of an MXNet NDArray, CuPy array, torch tensor or a list/tuple of them."""
    if isinstance(x, (list, tuple)):
        return [to_numpy(v) for v in x]
    if hasattr(x, "asnumpy"):
        return x.asnumpy()
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    return np.array(x, copy=True)


def _pairs(ours, ref):
    ours = ours if isinstance(ours, list) else [ours]
    ref = ref if isinstance(ref, list) else [ref]
    if len(ours) != len(ref):
        return None, "%d outputs vs %d" % (len(ours), len(ref))
    for o, r in zip(ours, ref):
        if o.shape != r.shape:
            return None, "shape %s vs %s" % (o.shape, r.shape)
    return list(zip(ours, ref)), ""


def bitwise(ours, ref):
    pairs, why = _pairs(ours, ref)
    if pairs is None:
        return Agreement("mismatch", why)
    for o, r in pairs:
        if not np.array_equal(o, r, equal_nan=True):
            bad = ~((o == r) | (np.isnan(o) & np.isnan(r)))
            diff = np.nanmax(np.abs(o.astype(np.float64) - r))
            return Agreement("mismatch", "%d of %d values differ (max abs diff %.3g)"
                             % (bad.sum(), bad.size, diff))
    return Agreement("ok", "bitwise equal")


def close(rtol, atol, scale_atol=False):
    """np.allclose(ours, ref, rtol, atol); with scale_atol the atol is relative to the largest
    |reference value| of each output (for sums such as gradients, whose rounding grows with
    the terms summed, not with the result)."""
    def check(ours, ref):
        pairs, why = _pairs(ours, ref)
        if pairs is None:
            return Agreement("mismatch", why)
        worst = 0.0
        tol = "rtol %g, atol %g%s" % (rtol, atol, " x max|ref|" if scale_atol else "")
        for o, r in pairs:
            o, r = o.astype(np.float64), r.astype(np.float64)
            a = atol * (float(np.nanmax(np.abs(r), initial=0)) if scale_atol else 1.0)
            if not np.allclose(o, r, rtol=rtol, atol=a, equal_nan=True):
                bad = ~np.isclose(o, r, rtol=rtol, atol=a, equal_nan=True)
                return Agreement("mismatch", "%d of %d values beyond %s (max abs diff %.3g)"
                                 % (bad.sum(), bad.size, tol, np.nanmax(np.abs(o - r))))
            if o.size:
                worst = max(worst, float(np.nanmax(np.abs(o - r))))
        return Agreement("ok", "%s (max abs diff %.1e)" % (tol, worst))
    return check


def per_output(names, checks):
    """One check per output (e.g. the forward output and the data gradient)."""
    def check(ours, ref):
        ours = ours if isinstance(ours, list) else [ours]
        ref = ref if isinstance(ref, list) else [ref]
        if len(ours) != len(names) or len(ref) != len(names):
            return Agreement("mismatch", "%d/%d outputs, expected %d"
                             % (len(ours), len(ref), len(names)))
        parts = []
        for name, c, o, r in zip(names, checks, ours, ref):
            a = c(o, r)
            if a.status != "ok":
                return Agreement(a.status, "%s: %s" % (name, a.detail))
            parts.append("%s %s" % (name, a.detail))
        return Agreement("ok", "; ".join(parts))
    return check


ROI_FWD_CHECK = close(1e-5, 1e-5)
# the data gradient of a pixel sums the samples of every roi bin that reads it, in another
# order than contrib's: its atol is relative to the gradient's largest value
ROI_FWD_BWD_CHECK = per_output(("out", "grad"), (close(1e-5, 1e-5),
                                                close(1e-5, 1e-5, scale_atol=True)))
# GluonCV's minimal_opset decoder computes ox - w/2 from its own intermediates: a few
# coordinates near 0 differ by one float32 step of the image-scale values (6.1e-5 at 512)
DECODE_COMPOSITE_CHECK = close(0, 1.25e-4)


def timing_only(reason):
    def check(ours, ref):
        return Agreement("timing-only", "timing only: " + reason)
    return check


def _sorted_rows(rows):
    rows = np.asarray(rows, np.float64)
    return rows[np.lexsort(rows.T[::-1])] if len(rows) else rows


def same_rows(ours_rows, ref_rows, what):
    """The kept rows as sets (row order of equal scores may differ between libraries)."""
    a, b = _sorted_rows(ours_rows), _sorted_rows(ref_rows)
    if a.shape != b.shape:
        return Agreement("mismatch", "%d kept %s vs %d" % (len(a), what, len(b)))
    if not np.array_equal(a, b):
        return Agreement("mismatch", "kept %s differ" % what)
    return Agreement("ok", "same %d kept %s" % (len(a), what))


def match_detections(ours, ref, score_atol=1e-4, box_atol=1e-2, need=0.99):
    """Each valid detection (score > 0) of one model has a partner in the other: same class,
    score within score_atol, every box coordinate within box_atol; both ways, >= need."""
    def valid(out):
        ids, scores, boxes = (np.asarray(v)[0] for v in out)
        keep = scores[:, 0] > 0
        return ids[keep, 0], scores[keep, 0], boxes[keep]

    def matched(a, b):
        hits = 0
        for c in np.unique(a[0]):
            sa, ba = a[1][a[0] == c], a[2][a[0] == c]
            sb, bb = b[1][b[0] == c], b[2][b[0] == c]
            if len(sb) == 0:
                continue
            near = np.abs(sa[:, None] - sb[None, :]) <= score_atol
            near &= (np.abs(ba[:, None, :] - bb[None, :, :]) <= box_atol).all(-1)
            hits += int(near.any(1).sum())
        return hits

    a, b = valid(ours), valid(ref)
    if len(a[0]) == 0 and len(b[0]) == 0:
        return Agreement("mismatch", "no detections on either side (nothing compared)")
    fa = matched(a, b) / max(len(a[0]), 1)
    fb = matched(b, a) / max(len(b[0]), 1)
    status = "ok" if min(fa, fb) >= need else "mismatch"
    return Agreement(status, "%.1f%% of %d detections matched (%d theirs)"
                     % (100 * min(fa, fb), len(a[0]), len(b[0])))


# ---- what is available here ---------------------------------------------------------------

class Env:
    """Optional libraries, imported on demand; a missing one becomes a note, not an error."""

    def __init__(self):
        self.notes = []
        self._mods = {}

    def _try(self, name, importer, missing_note):
        if name not in self._mods:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._mods[name] = importer()
            except Exception as e:  # noqa: BLE001 - ImportError, or a broken install
                self._mods[name] = None
                self.notes.append("%s (%s: %s)" % (missing_note, type(e).__name__,
                                                   str(e).splitlines()[0] if str(e) else ""))
        return self._mods[name]

    @property
    def mx(self):
        def imp():
            import frcnn_ops
            if not frcnn_ops.mxnet_available:
                raise ImportError("mxnet is not importable")
            import mxnet
            return mxnet
        return self._try("mxnet", imp, "MXNet not available: the mx.nd.contrib, GluonCV and "
                         "model rows are skipped")

    @property
    def gluoncv(self):
        if self.mx is None:
            return None

        def imp():
            import gluoncv
            return gluoncv
        return self._try("gluoncv", imp, "GluonCV not importable: its rows (box_decode, "
                         "clip_boxes, proposal, model) are skipped")

    @property
    def torchvision(self):
        def imp():
            import torch
            import torchvision
            return torch, torchvision
        return self._try("torchvision", imp, "torchvision not importable: its rows are skipped")

    @property
    def frcnn_model(self):
        if self.mx is None:
            return None

        def imp():
            import frcnn_model
            return frcnn_model
        return self._try("frcnn_model", imp, "frcnn_model not importable: the model row is "
                         "skipped")


# ---- the CPU comparisons ------------------------------------------------------------------

def _box_decode(env):
    import frcnn_ops
    from frcnn_ops import reference as ref
    shape = "B=1, %d anchors" % S.NUM_ANCHORS
    kw = dict(std0=DECODE_STDS[0], std1=DECODE_STDS[1], std2=DECODE_STDS[2],
              std3=DECODE_STDS[3], format="corner")
    out = []

    def mx_inputs():
        mx = env.mx
        return mx, mx.nd.array(S.rpn_deltas(1)), mx.nd.array(S.rpn_anchors())

    if env.mx is not None:
        def contrib():
            mx, d, a = mx_inputs()
            return Pair(mx_sync(lambda: mx.nd.frcnn_box_decode(d, a, **kw)),
                        mx_sync(lambda: mx.nd.contrib.box_decode(d, a, **kw)), bitwise)
        out.append(Comparison("box_decode", "box_decode", shape, "mx.nd.contrib.box_decode",
                              contrib))
    if env.gluoncv is not None:
        def gluoncv():
            from gluoncv.nn.coder import NormalizedBoxCenterDecoder
            mx, d, a = mx_inputs()
            dec = NormalizedBoxCenterDecoder(stds=DECODE_STDS, convert_anchor=True,
                                             minimal_opset=True)
            dec.hybridize(static_alloc=True, static_shape=True)
            # the minimal_opset composite (without it the decoder calls contrib.box_decode)
            return Pair(mx_sync(lambda: mx.nd.frcnn_box_decode(d, a, **kw)),
                        mx_sync(lambda: dec(d, a)), DECODE_COMPOSITE_CHECK)
        out.append(Comparison("box_decode", "box_decode", shape,
                              "GluonCV NormalizedBoxCenterDecoder (minimal_opset)", gluoncv))

    def numpy_ref():
        d, a = S.rpn_deltas(1), S.rpn_anchors()
        return Pair(lambda: frcnn_ops.box_decode(d, a, **kw),
                    lambda: ref.box_decode(d, a, **kw), bitwise)
    out.append(Comparison("box_decode", "box_decode", shape, "NumPy reference", numpy_ref))
    return out


def _clip_boxes(env):
    import frcnn_ops
    from frcnn_ops import reference as ref
    shape = "B=1, %d boxes" % S.NUM_ANCHORS
    out = []

    def inputs():
        boxes = ref.box_decode(S.rpn_deltas(1), S.rpn_anchors(), format="corner")
        return boxes, S.im_info(1)

    if env.gluoncv is not None:
        def gluoncv():
            from gluoncv.nn.bbox import BBoxClipToImage
            mx = env.mx
            boxes, info = inputs()
            x, i = mx.nd.array(boxes), mx.nd.array(info)
            img = mx.nd.zeros((1, 3) + S.IMAGE_HW)
            clip = BBoxClipToImage()
            clip.hybridize(static_alloc=True, static_shape=True)
            return Pair(mx_sync(lambda: mx.nd.frcnn_clip_boxes(x, i)),
                        mx_sync(lambda: clip(x, img)), bitwise)
        out.append(Comparison("clip_boxes", "clip_boxes", shape, "GluonCV BBoxClipToImage",
                              gluoncv))

    def numpy_ref():
        boxes, info = inputs()
        return Pair(lambda: frcnn_ops.clip_boxes(boxes, info),
                    lambda: ref.clip_boxes(boxes, info), bitwise)
    out.append(Comparison("clip_boxes", "clip_boxes", shape, "NumPy reference", numpy_ref))
    return out


def gluoncv_proposal_block(mx, pre, post):
    """GluonCV's RPN path at test time: RPNProposal + box_nms + slice, hybridized."""
    from gluoncv.model_zoo.rcnn.rpn.proposal import RPNProposal

    class GluonCVProposal(mx.gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            self.prop = RPNProposal(clip=None, min_size=16, stds=(1.0, 1.0, 1.0, 1.0))

        def hybrid_forward(self, F, anchors, scores, deltas, img):
            pre_t = self.prop(anchors, scores, deltas, img)
            tmp = F.contrib.box_nms(pre_t, overlap_thresh=0.7, topk=pre, coord_start=1,
                                    score_index=0, id_index=-1, force_suppress=True)
            return F.slice_axis(tmp, axis=1, begin=0, end=post)

    net = GluonCVProposal()
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def proposal_inputs(feat_hw=S.FEAT_HW):
    """scores, deltas, anchors, im_info and the image size for a feature map (the seed's
    600x800 image, or for a sweep the image this feature map comes from)."""
    anchors = S.rpn_anchors(feat_hw)
    n = anchors.shape[1]
    img_hw = S.IMAGE_HW if tuple(feat_hw) == S.FEAT_HW else (feat_hw[0] * 16, feat_hw[1] * 16)
    return S.rpn_scores(1, n), S.rpn_deltas(1, n), anchors, S.im_info(1, img_hw), img_hw


def contrib_proposal_fns(mx, feat_hw, pre, post):
    """(ours through MXNet, mx.nd.contrib.Proposal) on the same scores and deltas."""
    scores, deltas, anchors, info, _ = proposal_inputs(feat_hw)
    Sx, D, A, I = (mx.nd.array(x) for x in (scores, deltas, anchors, info))
    h, w = feat_hw
    # (1, H*W*A, 1) -> (1, 2A, H, W) with background = 1 - fg, as contrib.Proposal wants
    fg = scores.reshape(1, h, w, 15).transpose(0, 3, 1, 2)
    cls_prob = mx.nd.array(np.concatenate([1 - fg, fg], axis=1))
    bbox = mx.nd.array(deltas.reshape(1, h, w, 60).transpose(0, 3, 1, 2))
    ours = mx_sync(lambda: mx.nd.frcnn_proposal(Sx, D, A, I, rpn_pre_nms_top_n=pre,
                                                rpn_post_nms_top_n=post))
    ref = mx_sync(lambda: mx.nd.contrib.Proposal(
        cls_prob, bbox, I, rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post, threshold=0.7,
        rpn_min_size=16, scales=(2, 4, 8, 16, 32), ratios=(0.5, 1, 2), feature_stride=16))
    return ours, ref


def torchvision_proposal(torch, tv, scores, deltas, anchors, hw, pre, post):
    """torchvision's RPN post-processing: topk, decode, clip, remove_small_boxes, nms, top post
    (scores (N,), deltas and anchors (N, 4), on any device)."""
    s, idx = scores.topk(pre)
    d, a = deltas[idx], anchors[idx]
    wa, ha = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    xa, ya = a[:, 0] + 0.5 * wa, a[:, 1] + 0.5 * ha
    cx, cy = d[:, 0] * wa + xa, d[:, 1] * ha + ya
    w, h = torch.exp(d[:, 2]) * wa, torch.exp(d[:, 3]) * ha
    boxes = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=1)
    boxes = tv.ops.clip_boxes_to_image(boxes, hw)
    keep = tv.ops.remove_small_boxes(boxes, 16.0)
    boxes, s = boxes[keep], s[keep]
    keep = tv.ops.nms(boxes, s, 0.7)[:post]
    return boxes[keep], s[keep]


TV_PROPOSAL_NOTE = "different conventions (topk before the min-size filter, no +1)"


def _proposal(env):
    import frcnn_ops
    from frcnn_ops import reference as ref
    out = []
    for pre, post in PROPOSALS:
        shape = "%d anchors, %d->%d" % (S.NUM_ANCHORS, pre, post)
        if env.gluoncv is not None:
            def gluoncv(pre=pre, post=post):
                mx = env.mx
                scores, deltas, anchors, info, img_hw = proposal_inputs()
                Sx, D, A, I = (mx.nd.array(x) for x in (scores, deltas, anchors, info))
                net = gluoncv_proposal_block(mx, pre, post)
                img = mx.nd.zeros((1, 3) + tuple(img_hw))
                return Pair(mx_sync(lambda: mx.nd.frcnn_proposal(
                    Sx, D, A, I, rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post)),
                    mx_sync(lambda: net(A, Sx, D, img)), bitwise)
            out.append(Comparison("proposal", "proposal", shape,
                                  "GluonCV RPNProposal+box_nms", gluoncv))
        if env.mx is not None:
            def contrib(pre=pre, post=post):
                ours, theirs = contrib_proposal_fns(env.mx, S.FEAT_HW, pre, post)
                return Pair(ours, theirs, timing_only("different conventions (+1)"))
            out.append(Comparison("proposal", "proposal", shape, "mx.nd.contrib.Proposal",
                                  contrib))

        def numpy_ref(pre=pre, post=post):
            scores, deltas, anchors, info, _ = proposal_inputs()
            return Pair(lambda: frcnn_ops.proposal(scores, deltas, anchors, info, pre, post),
                        lambda: ref.proposal(scores, deltas, anchors, info, pre, post), bitwise)
        out.append(Comparison("proposal", "proposal", shape, "NumPy reference", numpy_ref,
                              slow=True))
        if env.torchvision is not None:
            def tv_cpu(pre=pre, post=post):
                torch, tv = env.torchvision
                scores, deltas, anchors, info, img_hw = proposal_inputs()
                Sx, D, A = (torch.from_numpy(x) for x in (scores[0, :, 0], deltas[0],
                                                          anchors[0]))
                return Pair(lambda: frcnn_ops.proposal(scores, deltas, anchors, info, pre, post),
                            lambda: torchvision_proposal(torch, tv, Sx, D, A, img_hw, pre, post),
                            timing_only(TV_PROPOSAL_NOTE))
            out.append(Comparison("proposal", "proposal", shape, "torchvision.ops composite",
                                  tv_cpu))
    return out


def nms_kept_rows(out, score_col):
    """The kept rows of a box_nms-style output (every dropped row is all -1)."""
    out = np.asarray(out).reshape(-1, out.shape[-1])
    return out[out[:, score_col] != -1]


def tv_nms_check(data, score_col, what):
    """Ours (box_nms rows) against torchvision's kept indices into data's rows."""
    flat = data.reshape(-1, data.shape[-1])

    def check(ours, keep):
        return same_rows(nms_kept_rows(ours, score_col), flat[np.asarray(keep)], what)
    return check


def _nms(env):
    import frcnn_ops
    out = []
    n = 6000
    rpn_shape, cls_shape = "%d boxes (rpn, 0.7)" % n, "20x300 per class (topk 400, 0.3)"
    if env.mx is not None:
        def contrib_rpn():
            mx = env.mx
            x = mx.nd.array(S.pre_nms_boxes(n))
            return Pair(mx_sync(lambda: mx.nd.frcnn_nms(x, **NMS_RPN)),
                        mx_sync(lambda: mx.nd.contrib.box_nms(x, **NMS_RPN)), bitwise)
        out.append(Comparison("nms", "nms", rpn_shape, "mx.nd.contrib.box_nms", contrib_rpn))
    if env.torchvision is not None:
        def tv_rpn():
            torch, tv = env.torchvision
            data = S.pre_nms_boxes(n)
            B, Sc = torch.from_numpy(data[0, :, 1:].copy()), torch.from_numpy(data[0, :, 0].copy())
            return Pair(lambda: frcnn_ops.nms(data, **NMS_RPN),
                        lambda: tv.ops.nms(B, Sc, 0.7), tv_nms_check(data, 0, "boxes"))
        out.append(Comparison("nms", "nms", rpn_shape, "torchvision.ops.nms", tv_rpn))
    if env.mx is not None:
        def contrib_cls():
            mx = env.mx
            x = mx.nd.array(S.detections())
            return Pair(mx_sync(lambda: mx.nd.frcnn_nms(x, **NMS_CLASS)),
                        mx_sync(lambda: mx.nd.contrib.box_nms(x, **NMS_CLASS)), bitwise)
        out.append(Comparison("nms", "nms", cls_shape, "mx.nd.contrib.box_nms", contrib_cls))
    if env.torchvision is not None:
        def tv_cls():
            torch, tv = env.torchvision
            data = S.detections()
            flat = data.reshape(-1, 6)
            # box_nms's valid_thresh: only rows with score > 0.0001 are candidates (topk 400
            # per class cuts nothing at 300 rows a class)
            valid = np.nonzero(flat[:, 1] > NMS_CLASS["valid_thresh"])[0]
            B = torch.from_numpy(flat[valid, 2:].copy())
            Sc = torch.from_numpy(flat[valid, 1].copy())
            Id = torch.from_numpy(flat[valid, 0].astype(np.int64))
            V = torch.from_numpy(valid)

            def theirs():
                return V[tv.ops.batched_nms(B, Sc, Id, 0.3)]
            return Pair(lambda: frcnn_ops.nms(data, **NMS_CLASS), theirs,
                        tv_nms_check(data, 1, "detections"))
        out.append(Comparison("nms", "nms", cls_shape, "torchvision.ops.batched_nms", tv_cls))
    return out


ROI_SHAPE = "%d rois, 1x%dx%dx%d, 14x14, s2" % ((S.NUM_ROIS, S.FEAT_C) + S.FEAT_HW)


def roi_kw():
    return dict(pooled_size=S.ROI_POOLED, spatial_scale=S.ROI_SCALE,
                sample_ratio=S.ROI_SAMPLE_RATIO)


def mx_roi_align_fns(mx, n_rois=S.NUM_ROIS, channels=S.FEAT_C, backward=False):
    """(ours, contrib) through MXNet: forward, or forward + backward with a head gradient
    (returning [output, data gradient])."""
    feat, rois = S.feature_map(channels), S.seed_rois(n_rois)

    def make(op):
        x, r = mx.nd.array(feat), mx.nd.array(rois)
        if not backward:
            return mx_sync(lambda: op(x, r, **roi_kw()))
        x.attach_grad()
        head = mx.nd.array(S.roi_head_grad(n_rois, channels))

        def step():
            with mx.autograd.record():
                y = op(x, r, **roi_kw())
            y.backward(head)
            return [y, x.grad]
        return mx_sync(step)
    return make(mx.nd.frcnn_roi_align), make(mx.nd.contrib.ROIAlign)


def numpy_roi_align_fns(torch, tv, backward=False):
    """(ours through NumPy, torchvision.ops.roi_align on CPU tensors) at the seed shape:
    forward, or forward + backward with a head gradient (returning [output, data gradient]).
    torch and tv may be None when only ours is wanted."""
    import frcnn_ops
    from frcnn_ops._lib import _C
    feat, rois, head = S.feature_map(), S.seed_rois(), S.roi_head_grad()
    kw = roi_kw()
    args = (kw["pooled_size"], kw["spatial_scale"], kw["sample_ratio"])

    def theirs():
        X, R, H = torch.from_numpy(feat), torch.from_numpy(rois), torch.from_numpy(head)
        if not backward:
            return tv.ops.roi_align(X, R, *args, aligned=False)
        x = X.clone().requires_grad_(True)
        y = tv.ops.roi_align(x, R, *args, aligned=False)
        y.backward(H)
        return [y, x.grad]

    def ours():
        y = frcnn_ops.roi_align(feat, rois, *args)
        if not backward:
            return y
        return [y, _C.roi_align_backward(head, rois, list(feat.shape), list(args[0]), args[1],
                                         args[2], False, False)]
    return ours, theirs


def _roi_align(env):
    out = []
    for backward in (False, True):
        op = "roi_align fwd+bwd" if backward else "roi_align fwd"
        if env.mx is not None:
            def contrib(backward=backward):
                ours, theirs = mx_roi_align_fns(env.mx, backward=backward)
                return Pair(ours, theirs, ROI_FWD_BWD_CHECK if backward else ROI_FWD_CHECK)
            out.append(Comparison("roi_align", op, ROI_SHAPE, "mx.nd.contrib.ROIAlign", contrib,
                                  slow=True))
        if env.torchvision is not None:
            def tv_cpu(backward=backward):
                ours, theirs = numpy_roi_align_fns(*env.torchvision, backward=backward)
                return Pair(ours, theirs, ROI_FWD_BWD_CHECK if backward else ROI_FWD_CHECK)
            out.append(Comparison("roi_align", op, ROI_SHAPE, "torchvision.ops.roi_align",
                                  tv_cpu, slow=True))
    return out


def build_models(env, x, seed=0):
    """(ours, GluonCV's) faster_rcnn_resnet50_v1b_voc with the same random weights: GluonCV's
    initialisation (completed by one forward on x: its shapes are deferred), saved and loaded
    into ours; both hybridized with static_alloc and static_shape."""
    mx, gluoncv, frcnn_model = env.mx, env.gluoncv, env.frcnn_model
    mx.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = gluoncv.model_zoo.get_model(MODEL_NAME, pretrained=False,
                                             pretrained_base=False)
        theirs.initialize()
        theirs.hybridize(static_alloc=True, static_shape=True)
        for o in theirs(x):
            o.wait_to_read()
        fd, path = tempfile.mkstemp(suffix=".params", prefix="frcnn_bench_")
        os.close(fd)
        try:
            theirs.save_parameters(path)
            ours = frcnn_model.faster_rcnn_resnet50_v1b_voc()
            ours.load_parameters(path)
        finally:
            os.remove(path)
    ours.hybridize(static_alloc=True, static_shape=True)
    return ours, theirs


def _model(env):
    if env.gluoncv is None or env.frcnn_model is None:
        return []

    def setup():
        mx = env.mx
        x = mx.nd.array(np.random.default_rng(0).normal(size=MODEL_INPUT).astype(np.float32))
        ours, theirs = build_models(env, x)
        return Pair(mx_sync(lambda: ours(x)), mx_sync(lambda: theirs(x)), match_detections)
    shape = "%dx%dx%dx%d image, random weights" % MODEL_INPUT
    rows = [Comparison("model", "model (end to end)", shape, "GluonCV " + MODEL_NAME, setup,
                       slow=True)]
    from .. import bf16
    if not bf16.bf16_supported():
        env.notes.append("this CPU has no AVX512-BF16 (avx512_bf16): the bf16 model row is "
                         "skipped")
        return rows

    def setup_bf16():
        mx = env.mx
        x = mx.nd.array(np.random.default_rng(0).normal(size=MODEL_INPUT).astype(np.float32))
        fp32, _ = build_models(env, x)
        fd, path = tempfile.mkstemp(suffix=".params", prefix="frcnn_bench_")
        os.close(fd)
        try:
            fp32.save_parameters(path)
            ours = env.frcnn_model.faster_rcnn_resnet50_v1b_voc(precision="bf16")
            ours.load_parameters(path)
        finally:
            os.remove(path)
        ours.hybridize(static_alloc=True, static_shape=True)
        return Pair(mx_sync(lambda: ours(x)), mx_sync(lambda: fp32(x)), match_bf16)
    rows.append(Comparison("model", "model bf16 (end to end)", shape, "ours, float32", setup_bf16,
                           slow=True))
    return rows


def match_bf16(ours, ref, need=0.8):
    """bf16 against float32: the share of float32 detections bf16 has too (same class, IoU >=
    0.9, score within 0.02); 'ok' from ``need`` on (random weights: scores crowd the 0.01
    threshold, measured 0.93 at 300x400)."""
    from ..bf16 import matched_share
    share, n = matched_share([np.asarray(to_numpy(v)) for v in ref],
                             [np.asarray(to_numpy(v)) for v in ours])
    return Agreement("ok" if share >= need else "mismatch",
                     "%.1f%% of %d float32 detections matched (IoU>=0.9, score+-0.02)"
                     % (100 * share, n))


def cpu_comparisons(env, groups=GROUPS):
    builders = dict(box_decode=_box_decode, clip_boxes=_clip_boxes, proposal=_proposal,
                    nms=_nms, roi_align=_roi_align, model=_model)
    out = []
    for g in GROUPS:
        if g in groups:
            out.extend(builders[g](env))
    return out


# ---- the GPU comparisons (CuPy path against torchvision.ops CUDA) --------------------------

def gpu_available():
    """'' when CuPy sees a CUDA device and frcnn_ops has CUDA kernels, else why not."""
    try:
        import cupy as cp
    except Exception as e:  # noqa: BLE001
        return "CuPy is not importable (%s)" % e
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            return "CuPy sees no CUDA device"
    except Exception as e:  # noqa: BLE001 - no driver
        return "CuPy sees no CUDA device (%s)" % str(e).splitlines()[0]
    import frcnn_ops
    if not frcnn_ops.build_info()["cuda"]:
        return "this frcnn_ops build has no CUDA kernels (rebuild with nvcc, FRCNN_CUDA=1)"
    return ""


def _gpu_sync(fn):
    import cupy as cp

    def run():
        out = fn()
        cp.cuda.runtime.deviceSynchronize()  # every stream: CuPy's and torch's
        return out
    return run


def gpu_comparisons(env, groups=GROUPS):
    import cupy as cp

    import frcnn_ops
    tvm = env.torchvision
    if tvm is None:
        return []
    torch, tv = tvm
    if not torch.cuda.is_available():
        env.notes.append("torch has no CUDA: the torchvision GPU rows are skipped")
        return []
    out = []
    dev = "cuda"

    def t(x):
        return torch.as_tensor(np.ascontiguousarray(x), device=dev)

    if "proposal" in groups:
        for pre, post in PROPOSALS:
            def prop(pre=pre, post=post):
                scores, deltas, anchors, info, img_hw = proposal_inputs()
                Sx, D, A, I = (cp.asarray(x) for x in (scores, deltas, anchors, info))
                St, Dt, At = t(scores[0, :, 0]), t(deltas[0]), t(anchors[0])
                return Pair(_gpu_sync(lambda: frcnn_ops.proposal(Sx, D, A, I, pre, post)),
                            _gpu_sync(lambda: torchvision_proposal(torch, tv, St, Dt, At,
                                                                   img_hw, pre, post)),
                            timing_only(TV_PROPOSAL_NOTE))
            out.append(Comparison("proposal", "proposal", "%d anchors, %d->%d"
                                  % (S.NUM_ANCHORS, pre, post), "torchvision.ops composite",
                                  prop))
    if "nms" in groups:
        def nms_rpn(n=6000):
            data = S.pre_nms_boxes(n)
            X = cp.asarray(data)
            B, Sc = t(data[0, :, 1:]), t(data[0, :, 0])
            return Pair(_gpu_sync(lambda: frcnn_ops.nms(X, **NMS_RPN)),
                        _gpu_sync(lambda: tv.ops.nms(B, Sc, 0.7)),
                        tv_nms_check(data, 0, "boxes"))
        out.append(Comparison("nms", "nms", "6000 boxes (rpn, 0.7)", "torchvision.ops.nms",
                              nms_rpn))

        def nms_cls():
            data = S.detections()
            flat = data.reshape(-1, 6)
            valid = np.nonzero(flat[:, 1] > NMS_CLASS["valid_thresh"])[0]
            X = cp.asarray(data)
            B, Sc = t(flat[valid, 2:]), t(flat[valid, 1])
            Id, V = t(flat[valid, 0].astype(np.int64)), t(valid)
            return Pair(_gpu_sync(lambda: frcnn_ops.nms(X, **NMS_CLASS)),
                        _gpu_sync(lambda: V[tv.ops.batched_nms(B, Sc, Id, 0.3)]),
                        tv_nms_check(data, 1, "detections"))
        out.append(Comparison("nms", "nms", "20x300 per class (topk 400, 0.3)",
                              "torchvision.ops.batched_nms", nms_cls))
    if "roi_align" in groups:
        def roi():
            feat, rois = S.feature_map(), S.seed_rois()
            kw = roi_kw()
            X, R = cp.asarray(feat), cp.asarray(rois)
            Xt, Rt = t(feat), t(rois)
            return Pair(_gpu_sync(lambda: frcnn_ops.roi_align(X, R, **kw)),
                        _gpu_sync(lambda: tv.ops.roi_align(
                            Xt, Rt, kw["pooled_size"], kw["spatial_scale"], kw["sample_ratio"],
                            aligned=False)),
                        ROI_FWD_CHECK)
        out.append(Comparison("roi_align", "roi_align fwd", ROI_SHAPE,
                              "torchvision.ops.roi_align", roi))
    return out
