"""PASCAL VOC07 detection metric (11-point mAP), GluonCV's interface and numbers.

The per-image matching (sort by score, IoU against the gts of the class, tp / fp / difficult
marks) runs in Cython (``frcnn_model.evaluation._metrics``); the precision/recall curves and
the 11-point AP are computed as GluonCV does, once per ``get()``.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

try:
    from mxnet.metric import EvalMetric
except ImportError:  # pragma: no cover - MXNet 2, or no MXNet
    try:
        from mxnet.gluon.metric import EvalMetric
    except ImportError:
        class EvalMetric(object):
            """The part of MXNet's EvalMetric interface VOC07MApMetric relies on, for use
            without MXNet (the metric itself is NumPy + Cython)."""

            def __init__(self, name, output_names=None, label_names=None, **kwargs):
                self.name = str(name)
                self.output_names = output_names
                self.label_names = label_names
                self._kwargs = kwargs
                self.reset()

            def __str__(self):
                return "EvalMetric: {}".format(dict(self.get_name_value()))

            def get_name_value(self):
                name, value = self.get()
                if not isinstance(name, list):
                    name = [name]
                if not isinstance(value, list):
                    value = [value]
                return list(zip(name, value))

from . import _metrics

__all__ = ["VOC07MApMetric"]


def _as_numpy(a):
    """A (list of) NDArray / array -> one numpy array (lists concatenated on axis 0)."""
    if isinstance(a, (list, tuple)):
        out = [x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x) for x in a]
        try:
            return np.concatenate(out, axis=0)
        except ValueError:
            return np.array(out)
    if hasattr(a, "asnumpy"):
        return a.asnumpy()
    return np.asarray(a)


class VOC07MApMetric(EvalMetric):
    """Mean average precision of PASCAL VOC 2007 (11-point interpolation).

    Same numbers as ``gluoncv.utils.metrics.voc_detection.VOC07MApMetric``: boxes get +1 on
    (xmax, ymax) before the IoU (integer pixel boxes), a detection matching a difficult gt is
    neither tp nor fp, a second detection of a gt is a fp, classes without non-difficult gts
    have AP nan and are left out of the mean.

    Args:
        iou_thresh (float): IoU (>=) for a true positive.
        class_names (list of str, optional): then ``get()`` returns the per-class APs too.

    ``update(pred_bboxes, pred_labels, pred_scores, gt_bboxes, gt_labels, gt_difficults=None)``
    takes NDArrays or numpy arrays (or lists of them, concatenated on the batch axis):

    - pred_bboxes (B, N, 4) corners, pred_labels (B, N) or (B, N, 1), pred_scores (B, N[, 1]);
    - gt_bboxes (B, M, 4), gt_labels (B, M[, 1]), gt_difficults (B, M[, 1]) nonzero = difficult;
    - rows whose label is < 0 are padding.

    ``get()`` -> ``(names, values)``: with class_names, ``names`` are the class names then
    ``'mAP'`` and ``values`` their APs (nan where undefined); without, ``('VOCMeanAP', mAP)``.
    """

    def __init__(self, iou_thresh: float = 0.5,
                 class_names: Optional[Sequence[str]] = None) -> None:
        super(VOC07MApMetric, self).__init__('VOCMeanAP')
        if class_names is None:
            self.num = None
        else:
            if not isinstance(class_names, (list, tuple)) or \
                    not all(isinstance(n, str) for n in class_names):
                raise ValueError("VOC07MApMetric: class_names must be a list of str, got %r"
                                 % (class_names,))
            self.name = list(class_names) + ['mAP']
            self.num = len(class_names) + 1
        self.reset()
        self.iou_thresh = iou_thresh
        self.class_names = class_names

    def reset(self) -> None:
        """Clear the internal statistics to initial state."""
        if getattr(self, 'num', None) is None:
            self.num_inst = 0
            self.sum_metric = 0.0
        else:
            self.num_inst = [0] * self.num
            self.sum_metric = [0.0] * self.num
        self._n_pos = defaultdict(int)
        self._chunks = []  # (labels, scores, marks) per image, in GluonCV's extend order

    def update(self, pred_bboxes: Any, pred_labels: Any, pred_scores: Any, gt_bboxes: Any,
               gt_labels: Any, gt_difficults: Any = None) -> None:
        """Match one batch of detections against its ground truth (see the class doc)."""
        pb, pl, ps, gb, gl = (_as_numpy(x) for x in (pred_bboxes, pred_labels, pred_scores,
                                                     gt_bboxes, gt_labels))
        gd = None if gt_difficults is None else _as_numpy(gt_difficults)
        if pb.ndim != 3 or pb.shape[-1] != 4 or gb.ndim != 3 or gb.shape[-1] != 4:
            raise ValueError("VOC07MApMetric.update: pred_bboxes and gt_bboxes must have shape "
                             "(B, N, 4), got %s and %s" % (pb.shape, gb.shape))
        B, N, M = pb.shape[0], pb.shape[1], gb.shape[1]
        pl, ps, gl = pl.reshape(B, -1), ps.reshape(B, -1), gl.reshape(B, -1)
        if pl.shape[1] != N or ps.shape[1] != N or gl.shape[1] != M:
            raise ValueError("VOC07MApMetric.update: labels/scores do not match the boxes: "
                             "pred %s %s %s, gt %s %s" % (pb.shape, pl.shape, ps.shape,
                                                          gb.shape, gl.shape))
        if gd is None:
            gd = np.zeros((B, M), np.uint8)
        else:
            gd = gd.reshape(B, -1)
            if gd.shape[1] != M:
                raise ValueError("VOC07MApMetric.update: gt_difficults must have shape %s, "
                                 "got %s" % ((B, M), gd.shape))
            gd = (gd != 0).view(np.uint8)
        # the IoU in float32 only when both box arrays are float32 (NumPy's promotion)
        dt = np.float32 if pb.dtype == np.float32 and gb.dtype == np.float32 else np.float64
        pb = np.ascontiguousarray(pb, dtype=dt)
        gb = np.ascontiguousarray(gb, dtype=dt)
        pl64, ps64, gl64 = (np.ascontiguousarray(x, dtype=np.float64) for x in (pl, ps, gl))
        gd = np.ascontiguousarray(gd)
        thr = float(self.iou_thresh)
        for b in range(B):
            order, labels, marks, classes, npos = _metrics.match_image(
                pb[b], pl64[b], ps64[b], gb[b], gl64[b], gd[b], thr, ps[b])
            for c, k in zip(classes.tolist(), npos.tolist()):
                self._n_pos[c] += k
            if order.size:
                self._chunks.append((labels, ps[b][order], marks))

    def get(self) -> Tuple[Union[str, List[str]], Union[float, List[float]]]:
        """(names, values) -- see the class doc."""
        self._update()
        if self.num is None:
            if self.num_inst == 0:
                return (self.name, float('nan'))
            return (self.name, self.sum_metric / self.num_inst)
        names = ['%s' % (self.name[i]) for i in range(self.num)]
        values = [x / y if y != 0 else float('nan')
                  for x, y in zip(self.sum_metric, self.num_inst)]
        return (names, values)

    def _update(self):
        aps = []
        recall, precs = self._recall_prec()
        for l, rec, prec in zip(range(len(precs)), recall, precs):
            ap = self._average_precision(rec, prec)
            aps.append(ap)
            if self.num is not None and l < (self.num - 1):
                self.sum_metric[l] = ap
                self.num_inst[l] = 1
        mean = np.nanmean(aps) if aps and not np.isnan(aps).all() else float('nan')
        if self.num is None:
            self.num_inst = 1
            self.sum_metric = mean
        else:
            self.num_inst[-1] = 1
            self.sum_metric[-1] = mean

    def _recall_prec(self):
        if not self._n_pos:
            return [], []
        n_fg_class = max(self._n_pos.keys()) + 1
        prec = [None] * n_fg_class
        rec = [None] * n_fg_class
        if self._chunks:
            labels = np.concatenate([c[0] for c in self._chunks])
            scores = np.concatenate([c[1] for c in self._chunks])
            marks = np.concatenate([c[2] for c in self._chunks])
            by_class = np.argsort(labels, kind='stable')  # keeps the image / score order
            labels, scores, marks = labels[by_class], scores[by_class], marks[by_class]
            bounds = np.searchsorted(labels, np.arange(n_fg_class + 1))
        for l in self._n_pos.keys():
            if self._chunks:
                score_l = scores[bounds[l]:bounds[l + 1]]
                match_l = marks[bounds[l]:bounds[l + 1]]
            else:
                score_l, match_l = np.array([]), np.array([], dtype=np.int32)
            order = score_l.argsort()[::-1]
            match_l = match_l[order]
            tp = np.cumsum(match_l == 1)
            fp = np.cumsum(match_l == 0)
            with np.errstate(divide='ignore', invalid='ignore'):
                prec[l] = tp / (fp + tp)
            if self._n_pos[l] > 0:
                rec[l] = tp / self._n_pos[l]
        return rec, prec

    @staticmethod
    def _average_precision(rec, prec):
        """11-point interpolated AP (VOC07)."""
        if rec is None or prec is None:
            return np.nan
        ap = 0.
        for t in np.arange(0., 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(np.nan_to_num(prec)[rec >= t])
            ap += p / 11.
        return ap
