"""Scaling sweeps (run with --plot or --sweeps): time against the number of rois (roi_align
forward, C=1024, ours vs mx.nd.contrib.ROIAlign) and against the number of anchors (proposal
6000->300, ours vs mx.nd.contrib.Proposal)."""
from . import shapes as S
from .cases import contrib_proposal_fns, mx_roi_align_fns
from .timing import time_one, time_pair

SIZES = {
    # contrib's ROIAlign forward takes ~2 ms a roi at C=1024 on 2 cores: it stops at 1000 rois
    "full": dict(rois=(64, 128, 256, 512, 1000, 2000), rois_ref_max=1000,
                 anchors=(10000, 30000, 60000, 120000, 200000)),
    "small": dict(rois=(8, 32), rois_ref_max=32, anchors=(2000, 6000)),
}


def points(size):
    """(sweep name, requested size) in run order."""
    cfg = SIZES[size]
    return [("rois", n) for n in cfg["rois"]] + [("anchors", n) for n in cfg["anchors"]]


def run_point(mx, size, sweep, n, budget):
    """One sweep point: a dict with sweep, x (the real size), ours_ms, ref_ms (None where the
    reference is left out), reference, speedup, pairs."""
    cfg = SIZES[size]
    if sweep == "rois":
        ours, ref = mx_roi_align_fns(mx, n_rois=n)
        row = dict(sweep="rois", x=n, label="roi_align fwd, %d rois, C=%d" % (n, S.FEAT_C),
                   reference="mx.nd.contrib.ROIAlign")
        with_ref = n <= cfg["rois_ref_max"]
    else:
        hw = S.feature_for_anchors(n)
        total = hw[0] * hw[1] * 15
        pre = min(6000, total)
        post = min(300, pre)
        ours, ref = contrib_proposal_fns(mx, hw, pre, post)
        row = dict(sweep="anchors", x=total, label="proposal, %d anchors (%dx%d), %d->%d"
                   % (total, hw[0], hw[1], pre, post), reference="mx.nd.contrib.Proposal")
        with_ref = True
    if with_ref:
        t = time_pair(ours, ref, budget)
        row.update(ours_ms=t.ours_ms, ref_ms=t.ref_ms, speedup=t.speedup, pairs=t.pairs)
    else:
        ms, pairs = time_one(ours, budget)
        row.update(ours_ms=ms, ref_ms=None, speedup=None, pairs=pairs)
    return row
