"""Training targets of Faster R-CNN: RPN anchor targets, RCNN proposal sampling and targets.

NumPy in, NumPy out (MXNet NDArrays are accepted and converted); the matching and sampling loops
run in Cython (``frcnn_model.training._targets``). Boxes are corners
``(xmin, ymin, xmax, ymax)`` in pixels, float32, **without** the +1 convention
(width = xmax - xmin), as GluonCV's box_iou and box encoders. Results equal GluonCV 0.10's
RPNTargetGenerator / RCNNTargetSampler / RCNNTargetGenerator bitwise, except for the random
draws (see each function).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence, Tuple, Union

import numpy as np

from . import _targets

if TYPE_CHECKING:
    import mxnet as mx

# NumPy arrays, or MXNet NDArrays (converted); the random draws from a Generator, or a seed
ArrayLike = Union[np.ndarray, "mx.nd.NDArray"]
Seed = Union[None, int, np.random.Generator]

__all__ = ["RPNTargetGenerator", "rpn_targets", "rcnn_sample", "rcnn_targets",
           "RCNNTargetSampler", "RCNNTargetGenerator"]


def _f32(fn, name, x, shape):
    """x as a C-contiguous float32 array whose shape matches ``shape`` (None = any size)."""
    if hasattr(x, "asnumpy"):
        x = x.asnumpy()
    a = np.ascontiguousarray(x, dtype=np.float32)
    want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
    if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
        raise ValueError("%s: %s must have shape %s, got %s" % (fn, name, want, a.shape))
    return a


def _check_batch(fn, pairs):
    (n0, b0), rest = pairs[0], pairs[1:]
    for name, b in rest:
        if b != b0:
            raise ValueError("%s: batch size of %s (%d) does not match %s (%d)"
                             % (fn, name, b, n0, b0))


def _rng(rng):
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    return rng


def rpn_match(bbox: ArrayLike, anchor: ArrayLike, width: float, height: float,
              pos_iou_thresh: float = 0.7, neg_iou_thresh: float = 0.3,
              allowed_border: float = 0) -> Tuple[np.ndarray, np.ndarray]:
    """RPN anchor labels before subsampling (GluonCV's RPNTargetSampler up to its choice()).

    Args:
        bbox (ndarray[M, 4]): ground-truth corner boxes; M may be 0.
        anchor (ndarray[N, 4]): corner anchors.
        width, height (int): image size. Anchors with xmin < -allowed_border,
            ymin < -allowed_border, xmax >= width + allowed_border or
            ymax >= height + allowed_border are invalid: IoU -1 with every gt, never negative.

    Returns:
        samples (ndarray[N] float32): 1 positive, -1 negative, 0 ignore.
        matches (ndarray[N] int32): index of the best gt (first maximum); 0 for invalid anchors.

    Marking, in GluonCV's order: 1 where ``iou + eps > max over anchors of that gt's iou`` (each
    gt's best anchors, eps = float32 spacing(1)), 1 where max iou >= pos_iou_thresh, then -1
    where 0 <= max iou < neg_iou_thresh -- the last step overrides the first, so a gt's best
    anchor with IoU < neg_iou_thresh ends up negative. Thresholds are compared in float32.
    """
    fn = "rpn_match"
    anchor = _f32(fn, "anchor", anchor, (None, 4))
    bbox = _f32(fn, "bbox", bbox, (None, 4))
    b = float(allowed_border)
    f = np.float32
    return _targets.rpn_match(anchor, bbox, f(-b), f(-b), f(width + b), f(height + b),
                              f(pos_iou_thresh), f(neg_iou_thresh),
                              np.spacing(np.float32(1.0)))


def _encode_center(anchors, refs, stds, means=(0., 0., 0., 0.)):
    """GluonCV's NumPyNormalizedBoxCenterEncoder arithmetic (float32 NumPy, same op order)."""
    def c2c(x):
        xmin, ymin, xmax, ymax = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
        w = xmax - xmin
        h = ymax - ymin
        return xmin + w * 0.5, ymin + h * 0.5, w, h
    g, a = c2c(refs), c2c(anchors)
    t0 = ((g[0] - a[0]) / a[2] - means[0]) / stds[0]
    t1 = ((g[1] - a[1]) / a[3] - means[1]) / stds[1]
    t2 = (np.log(g[2] / a[2]) - means[2]) / stds[2]
    t3 = (np.log(g[3] / a[3]) - means[3]) / stds[3]
    return np.stack((t0, t1, t2, t3), axis=1)


def rpn_targets(bbox: ArrayLike, anchor: ArrayLike, width: float, height: float,
                num_sample: int = 256, pos_iou_thresh: float = 0.7, neg_iou_thresh: float = 0.3,
                pos_ratio: float = 0.5, stds: Sequence[float] = (1., 1., 1., 1.),
                allowed_border: float = 0, rng: Seed = None
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RPN training targets of one image (see RPNTargetGenerator).

    Returns:
        cls_target (ndarray[N] float32): 1 positive, 0 negative, -1 ignore.
        box_target (ndarray[N, 4] float32): encoded (dx, dy, dw, dh) / stds on positives, else 0.
        box_mask (ndarray[N, 4] float32): 1 on positives, else 0.
    """
    samples, matches = rpn_match(bbox, anchor, width, height, pos_iou_thresh, neg_iou_thresh,
                                 allowed_border)
    rng = _rng(rng)
    max_pos = int(round(num_sample * pos_ratio))
    pos = np.flatnonzero(samples > 0)
    num_pos = pos.size
    if num_pos > max_pos:
        keep = rng.choice(num_pos, size=max_pos, replace=False)
        samples[pos] = 0
        pos = np.sort(pos[keep])
        samples[pos] = 1
    neg = np.flatnonzero(samples < 0)
    max_neg = num_sample - min(num_pos, max_pos)
    if neg.size > max_neg:
        keep = rng.choice(neg.size, size=max_neg, replace=False)
        samples[neg] = 0
        samples[neg[keep]] = -1
    # SigmoidClassEncoder: 1 pos, 0 neg, -1 ignore
    cls_target = np.where(samples == 0, np.float32(-1), (samples + 1) / 2).astype(np.float32)
    n = samples.shape[0]
    box_target = np.zeros((n, 4), dtype=np.float32)
    box_mask = np.zeros((n, 4), dtype=np.float32)
    if pos.size:
        a = np.ascontiguousarray(anchor.asnumpy() if hasattr(anchor, "asnumpy") else anchor,
                                 dtype=np.float32)[pos]
        g = np.ascontiguousarray(bbox.asnumpy() if hasattr(bbox, "asnumpy") else bbox,
                                 dtype=np.float32)[matches[pos]]
        box_target[pos] = _encode_center(a, g, stds)
        box_mask[pos] = 1
    return cls_target, box_target, box_mask


class RPNTargetGenerator(object):
    """RPN targets of one image, as GluonCV's ``RPNTargetGenerator`` (data-transform side).

    Args:
        num_sample (int): anchors sampled per image (positives + negatives).
        pos_iou_thresh (float): anchors with max IoU >= this are positive.
        neg_iou_thresh (float): valid anchors with max IoU < this are negative.
        pos_ratio (float): at most ``round(num_sample * pos_ratio)`` positives.
        stds (tuple of 4 floats): divide the encoded targets by these.
        allowed_border (float): anchors crossing the image border by more than this are ignored
            (GluonCV stores this argument but never uses it: its rule is allowed_border = 0).

    Call ``gen(bbox, anchor, width, height, rng=None)``:

    Args:
        bbox (ndarray[M, 4] float32): ground-truth corner boxes, M >= 0 (M = 0: all valid
            anchors are negatives, then subsampled; GluonCV cannot take M = 0).
        anchor (ndarray[N, 4] float32): corner anchors, e.g. ``anchors.feature_anchors``.
        width, height (int): image size.
        rng (numpy.random.Generator or int, optional): source of the subsampling draws.

    Returns:
        cls_target (ndarray[N] float32): 1 positive, 0 negative, -1 ignore.
        box_target (ndarray[N, 4] float32): ``((gx - ax) / aw, (gy - ay) / ah, log(gw / aw),
            log(gh / ah)) / stds`` on positives (centres and sizes without +1), else 0.
        box_mask (ndarray[N, 4] float32): 1 on positives, else 0.

    Equal to GluonCV except which positives / negatives the random subsampling keeps: the kept
    ones are drawn uniformly without replacement from the same candidates, in the same numbers.
    """

    def __init__(self, num_sample: int = 256, pos_iou_thresh: float = 0.7,
                 neg_iou_thresh: float = 0.3, pos_ratio: float = 0.5,
                 stds: Sequence[float] = (1., 1., 1., 1.), allowed_border: float = 0) -> None:
        if len(stds) != 4:
            raise ValueError("RPNTargetGenerator: stds must have 4 values, got %d" % len(stds))
        self._kw = dict(num_sample=num_sample, pos_iou_thresh=pos_iou_thresh,
                        neg_iou_thresh=neg_iou_thresh, pos_ratio=pos_ratio, stds=tuple(stds),
                        allowed_border=allowed_border)

    def __call__(self, bbox: ArrayLike, anchor: ArrayLike, width: float, height: float,
                 rng: Seed = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        return rpn_targets(bbox, anchor, width, height, rng=rng, **self._kw)


def rcnn_sample(rois: ArrayLike, scores: ArrayLike, gt_boxes: ArrayLike, num_sample: int = 128,
                pos_iou_thresh: float = 0.5, pos_ratio: float = 0.25, rng: Seed = None,
                rand: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample RCNN training proposals, as GluonCV's ``RCNNTargetSampler``.

    Args:
        rois (ndarray[B, R, 4] float32): proposals; padding rows are all -1.
        scores (ndarray[B, R, 1] or [B, R] float32): proposal scores; < 0 marks padding / ignore.
        gt_boxes (ndarray[B, M, 4] float32): ground truth, padded with rows of -1.
        num_sample (int): S, samples per image.
        pos_iou_thresh (float): proposals with max IoU >= this are positive (float32 compare).
        pos_ratio (float): at most ``max_pos = round(S * pos_ratio)`` positives.
        rng (numpy.random.Generator or int, optional): source of the shuffle.
        rand (ndarray[B, >= R + M], optional): GluonCV's uniform shuffle keys instead of rng
            (for exact comparisons with GluonCV).

    Returns:
        sampled_rois (ndarray[B, S, 4] float32), samples (ndarray[B, S] float32: +1 positive,
        -1 negative, 0 ignore), matches (ndarray[B, S] int32: index into the M gts).

    GluonCV's procedure, kept exactly (ties broken by MXNet's std::sort like GluonCV): the gts
    are appended to the proposals (gt score = sign(sum of coords + 1), so padding gts are
    ignored), marked 3 positive / 2 negative / 0 ignore (a proposal with score < 0 but IoU >=
    thresh is still positive), shuffled; the first max_pos of a descending sort are taken (the
    positives, topped up with negatives / ignores when there are fewer), then the first
    S - max_pos negatives are taken from shuffled positions max_pos.. -- which may repeat a
    negative already taken, and may bring in left-over positives as +1 when negatives run out.
    The S samples are ordered by roi area ascending. When R + M is too small to fill S slots
    (GluonCV fails) the remaining slots are ignores (roi -1, sample 0, match 0) at the end.
    """
    fn = "rcnn_sample"
    rois = _f32(fn, "rois", rois, (None, None, 4))
    B, R = rois.shape[:2]
    if hasattr(scores, "asnumpy"):
        scores = scores.asnumpy()
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim == 3:
        scores = _f32(fn, "scores", scores, (B, R, 1))[:, :, 0]
    scores = _f32(fn, "scores", scores, (B, R))
    gt_boxes = _f32(fn, "gt_boxes", gt_boxes, (None, None, 4))
    _check_batch(fn, [("rois", B), ("gt_boxes", gt_boxes.shape[0])])
    M = gt_boxes.shape[1]
    num_sample = int(num_sample)
    max_pos = int(round(num_sample * pos_ratio))
    if num_sample < 0 or not 0 <= max_pos <= num_sample:
        raise ValueError("%s: need 0 <= round(num_sample * pos_ratio) <= num_sample, got "
                         "num_sample=%r pos_ratio=%r" % (fn, num_sample, pos_ratio))
    if rand is None:
        rand = _rng(rng).random((B, R + M), dtype=np.float32)
    else:
        rand = _f32(fn, "rand", rand, (B, None))
        if rand.shape[1] < R + M:
            raise ValueError("%s: rand must have shape (%d, >= %d), got %s"
                             % (fn, B, R + M, rand.shape))
    return _targets.rcnn_sample(rois, scores, gt_boxes, rand, num_sample, max_pos,
                                np.float32(pos_iou_thresh))


def rcnn_targets(rois: ArrayLike, samples: ArrayLike, matches: ArrayLike, gt_labels: ArrayLike,
                 gt_boxes: ArrayLike, num_class: int, max_pos: int,
                 stds: Sequence[float] = (.1, .1, .2, .2), means: Sequence[float] = (0., 0., 0., 0.)
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """RCNN classification and per-class box targets, as GluonCV's ``RCNNTargetGenerator``.

    Args:
        rois (ndarray[B, S, 4] float32): sampled rois (from rcnn_sample).
        samples (ndarray[B, S]): +1 positive, -1 negative, 0 ignore.
        matches (ndarray[B, S] int): index into the M gts (clipped to [0, M) as MXNet's pick).
        gt_labels (ndarray[B, M] or [B, M, 1]): class ids in [0, num_class), padding -1.
        gt_boxes (ndarray[B, M, 4] float32): ground-truth corner boxes.
        num_class (int): C, foreground classes.
        max_pos (int): P <= S, rows of the box targets (GluonCV: round(S * pos_ratio)).
        stds, means (4 floats): target normalisation.

    Returns:
        cls_targets (ndarray[B, S] float32): gt label + 1 on positives, 0 on negatives, -1 ignore.
        box_targets (ndarray[B, P, C, 4] float32): MXNet box_encode of the P first samples of a
            descending (std::sort) argsort of the positive flags -- the same (dx, dy, dw, dh)
            repeated for every class, 0 for non-positives (as GluonCV: not only the gt class).
        box_masks (ndarray[B, P, C, 4] float32): 1 for the matched gt's class of a positive.
        indices (ndarray[B, P] int32): which of the S samples each row is (for the box head).
    """
    fn = "rcnn_targets"
    rois = _f32(fn, "rois", rois, (None, None, 4))
    B, S = rois.shape[:2]
    samples = _f32(fn, "samples", samples, (B, S))
    if hasattr(matches, "asnumpy"):
        matches = matches.asnumpy()
    matches = np.asarray(matches)
    if matches.shape != (B, S):
        raise ValueError("%s: matches must have shape (%d, %d), got %s"
                         % (fn, B, S, matches.shape))
    matches = np.ascontiguousarray(matches, dtype=np.int32)
    gt_boxes = _f32(fn, "gt_boxes", gt_boxes, (None, None, 4))
    _check_batch(fn, [("rois", B), ("gt_boxes", gt_boxes.shape[0])])
    M = gt_boxes.shape[1]
    if hasattr(gt_labels, "asnumpy"):
        gt_labels = gt_labels.asnumpy()
    gt_labels = np.asarray(gt_labels, dtype=np.float32)
    if gt_labels.ndim == 3 and gt_labels.shape[2] == 1:
        gt_labels = gt_labels[:, :, 0]
    gt_labels = _f32(fn, "gt_labels", gt_labels, (B, M))
    if int(num_class) < 1:
        raise ValueError("%s: num_class must be >= 1, got %r" % (fn, num_class))
    if not 0 <= int(max_pos) <= S:
        raise ValueError("%s: max_pos must be in [0, S=%d], got %r" % (fn, S, max_pos))
    if len(stds) != 4 or len(means) != 4:
        raise ValueError("%s: stds and means must have 4 values" % fn)
    return _targets.rcnn_targets(rois, samples, matches, gt_labels, gt_boxes, int(num_class),
                                 int(max_pos), np.asarray(means, dtype=np.float32),
                                 np.asarray(stds, dtype=np.float32))


class RCNNTargetSampler(object):
    """``rcnn_sample`` with fixed settings, named after GluonCV's block.

    Args:
        num_sample (int), pos_iou_thresh (float), pos_ratio (float): see rcnn_sample.

    ``sampler(rois, scores, gt_boxes, rng=None)`` -> (sampled_rois, samples, matches).
    """

    def __init__(self, num_sample: int = 128, pos_iou_thresh: float = 0.5,
                 pos_ratio: float = 0.25) -> None:
        self.num_sample, self.pos_iou_thresh, self.pos_ratio = num_sample, pos_iou_thresh, \
            pos_ratio
        self.max_pos = int(round(num_sample * pos_ratio))

    def __call__(self, rois: ArrayLike, scores: ArrayLike, gt_boxes: ArrayLike, rng: Seed = None
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        return rcnn_sample(rois, scores, gt_boxes, self.num_sample, self.pos_iou_thresh,
                           self.pos_ratio, rng=rng)


class RCNNTargetGenerator(object):
    """``rcnn_targets`` with fixed settings, named after GluonCV's block.

    Args:
        num_class (int), max_pos (int), stds, means: see rcnn_targets.

    ``gen(rois, samples, matches, gt_labels, gt_boxes)`` -> (cls_targets, box_targets,
    box_masks, indices).
    """

    def __init__(self, num_class: int, max_pos: int = 128, stds: Sequence[float] = (.1, .1, .2, .2),
                 means: Sequence[float] = (0., 0., 0., 0.)) -> None:
        self.num_class, self.max_pos, self.stds, self.means = num_class, max_pos, stds, means

    def __call__(self, rois: ArrayLike, samples: ArrayLike, matches: ArrayLike,
                 gt_labels: ArrayLike, gt_boxes: ArrayLike
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return rcnn_targets(rois, samples, matches, gt_labels, gt_boxes, self.num_class,
                            self.max_pos, self.stds, self.means)
