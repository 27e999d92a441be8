"""Scaling sweeps (run with --plot or --sweeps): time against the number of rois (roi_align
forward, C=1024, ours vs mx.nd.contrib.ROIAlign) and against the number of anchors (proposal
6000->300, ours vs mx.nd.contrib.Proposal).

Unlike the table's rows, a sweep point times each side in its own block (ours, ours, ...,
then the reference, ...): these are curves of time against size, steady-state ("hot") times.
A call that follows other work runs slower than back to back (on the 2-core VM of
docs/BENCHMARKS.md: ~2x for a 1 ms proposal, up to 2x for roi_align after a 2 s contrib call),
so the table's interleaved times are higher for our fast ops, and interleaving bent the
curve where contrib is left out. The speedup of a point is the ratio of the two medians."""
from . import shapes as S
from .cases import contrib_proposal_fns, mx_roi_align_fns
from .timing import time_one

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
    reference is left out), reference, speedup, runs (timed calls of each side, the fewer)."""
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
    ours_ms, runs = time_one(ours, budget)
    row.update(ours_ms=ours_ms, ref_ms=None, speedup=None, runs=runs)
    if with_ref:
        ref_ms, ref_runs = time_one(ref, budget)
        row.update(ref_ms=ref_ms, speedup=ref_ms / ours_ms, runs=min(runs, ref_runs))
    return row
