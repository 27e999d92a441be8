"""The scaling sweeps' points: time against the number of rois (roi_align forward, C=1024, ours
vs mx.nd.contrib.ROIAlign) and against the number of anchors (proposal 6000->300, ours vs
mx.nd.contrib.Proposal); frcnn-bench runs them with --sweeps or --plot (frcnn_ops.bench.sweeps).
The extra points (pre-NMS count, channels, forward+backward) are the suites' alone.

Where contrib would take too long, a point leaves the reference out: its Pair's ref is None.
"""
from . import shapes as S
from .core import Comparison, Pair
from .refs import contrib_proposal_fns, mx_roi_align_fns

SIZES = {
    # contrib's ROIAlign forward takes ~2 ms a roi at C=1024 on 2 cores: it stops at 1000 rois
    "full": dict(rois=(64, 128, 256, 512, 1000, 2000), rois_ref_max=1000,
                 anchors=(10000, 30000, 60000, 120000, 200000)),
    "small": dict(rois=(8, 32), rois_ref_max=32, anchors=(2000, 6000)),
}
MX = ("mxnet",)


def roi_point(n, channels=S.FEAT_C, backward=False, with_ref=True, sweep="rois", extra=False):
    slow = with_ref and (backward or n > S.NUM_ROIS)  # contrib: ~2 ms a roi forward

    def setup(env):
        ours, ref = mx_roi_align_fns(env.mx, n_rois=n, channels=channels, backward=backward)
        return Pair(ours, ref if with_ref else None)
    return Comparison("sweep", "roi_align fwd+bwd" if backward else "roi_align fwd",
                      "%d rois, C=%d" % (n, channels), "mx.nd.contrib.ROIAlign", setup, MX,
                      slow="ref" if slow else False, extra=extra, sweep=sweep,
                      x=n if sweep == "rois" else channels)


def proposal_point(feat_hw, pre=6000, post=300, sweep="anchors", extra=False):
    total = feat_hw[0] * feat_hw[1] * 15
    pre = min(pre, total)
    post = min(post, pre)

    def setup(env):
        return Pair(*contrib_proposal_fns(env.mx, feat_hw, pre, post))
    return Comparison("sweep", "proposal", "%d anchors (%dx%d), %d->%d"
                      % (total, feat_hw[0], feat_hw[1], pre, post), "mx.nd.contrib.Proposal",
                      setup, MX, extra=extra, sweep=sweep, x=total if sweep == "anchors" else pre)


def sweep_cases(size="full"):
    """frcnn-bench's sweep points in run order (rois, then anchors)."""
    cfg = SIZES[size]
    return ([roi_point(n, with_ref=n <= cfg["rois_ref_max"]) for n in cfg["rois"]]
            + [proposal_point(S.feature_for_anchors(n)) for n in cfg["anchors"]])


def extra_sweep_cases():
    """The suites' other sweeps; contrib's single-threaded backward (~4 s at the seed shape on 2
    cores) only at the small points."""
    return ([proposal_point(S.FEAT_HW, pre, 300, sweep="pre_nms", extra=True)
             for pre in (1000, 3000, 12000)]
            + [roi_point(n, backward=True, with_ref=n <= 64, extra=True) for n in (64, 1000, 2000)]
            + [roi_point(S.NUM_ROIS, c, backward=b, with_ref=not (b and c > 256),
                         sweep="channels", extra=True)
               for c in (256, 512) for b in (False, True)])
