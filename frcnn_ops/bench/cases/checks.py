"""Agreement checks: how frcnn-bench holds our result to a reference's before timing the two.

A check takes (ours, reference) as NumPy arrays or lists of them (``to_numpy``) and returns an
Agreement; "timing-only" where the reference follows other conventions.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class Agreement:
    status: str   # "ok", "timing-only" or "mismatch"
    detail: str


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


def match_bf16(ours, ref, need=0.8):
    """bf16 against float32: the share of float32 detections bf16 has too (same class, IoU >=
    0.9, score within 0.02); 'ok' from ``need`` on (random weights: scores crowd the 0.01
    threshold, measured 0.93 at 300x400)."""
    from ...bf16 import matched_share
    share, n = matched_share([np.asarray(to_numpy(v)) for v in ref],
                             [np.asarray(to_numpy(v)) for v in ours])
    return Agreement("ok" if share >= need else "mismatch",
                     "%.1f%% of %d float32 detections matched (IoU>=0.9, score+-0.02)"
                     % (100 * share, n))
