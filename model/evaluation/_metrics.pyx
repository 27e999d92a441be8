# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
# distutils: language = c++
"""Per-image matching loop of the VOC detection metric (see metrics.py).

Follows GluonCV's VOCMApMetric.update operation by operation: padding rows (label < 0) dropped,
labels truncated to int, per class (ascending) the predictions sorted by score descending,
boxes shifted by +1 on (xmax, ymax), NumPy's bbox_iou in the boxes' dtype (float32 when both are
float32, float64 otherwise), argmax with NumPy's NaN rule, iou_thresh cast to that dtype, then
the tp (1) / fp (0) / difficult (-1) marks.
"""
import numpy as np

from libc.math cimport isnan

# Typed memoryviews only, no `cimport numpy`: the compiled module uses NumPy through its
# Python API and the buffer protocol, never NumPy's C API, so one build imports under
# NumPy 1.x and 2.x alike (tests/test_abi.py checks it).

ctypedef fused real:
    float
    double

cdef extern from * nogil:
    """
    #include <algorithm>
    struct FrcnnScoreDesc {
      const double* s;
      /* score descending, ties: larger index first (= argsort()[::-1] of a stable sort) */
      bool operator()(const long a, const long b) const {
        return s[a] > s[b] || (s[a] == s[b] && a > b);
      }
    };
    static inline void frcnn_sort_desc(long* idx, long n, const double* s) {
      FrcnnScoreDesc c; c.s = s; std::sort(idx, idx + n, c);
    }
    """
    void frcnn_sort_desc(long* idx, long n, const double* s)


cdef inline real _iou_p1(const real* p, const real* g) noexcept nogil:
    """gluoncv.utils.bbox.bbox_iou(offset=0) of two boxes whose (xmax, ymax) got +1."""
    cdef real p2 = p[2] + 1, p3 = p[3] + 1, g2 = g[2] + 1, g3 = g[3] + 1
    cdef real tx = p[0] if p[0] > g[0] else g[0]
    cdef real ty = p[1] if p[1] > g[1] else g[1]
    cdef real bx = p2 if p2 < g2 else g2
    cdef real by = p3 if p3 < g3 else g3
    cdef real ai = (bx - tx) * (by - ty)
    if not (tx < bx and ty < by):
        ai = ai * 0
    cdef real aa = (p2 - p[0]) * (p3 - p[1])
    cdef real ab = (g2 - g[0]) * (g3 - g[1])
    return ai / (aa + ab - ai)


def match_image(const real[:, ::1] pred_bbox, const double[::1] pred_label,
                const double[::1] pred_score, const real[:, ::1] gt_bbox,
                const double[::1] gt_label, const unsigned char[::1] gt_difficult,
                double iou_thresh, object raw_score):
    """One image of VOCMApMetric.update.

    Returns (order, labels, match, classes, npos): the prediction indices in GluonCV's processing
    order (class ascending, score descending), their int labels and marks (1 tp, 0 fp,
    -1 difficult) as int32, the classes met (unique labels of valid predictions and gts) and the
    number of non-difficult gts of each. ``raw_score`` is the score vector in its own dtype, used
    only where NumPy's (unstable) sort order of tied scores must be reproduced.
    """
    cdef long n = pred_bbox.shape[0], m = gt_bbox.shape[0]
    cdef long i, j, k, c, np_, ng, start, cnt, nc
    cdef real thr = <real>iou_thresh
    cdef real v, best
    cdef long arg
    cdef bint tie
    # valid predictions / gts and their int labels
    cdef long[::1] plab = np.empty(max(n, 1), dtype=np.int_)
    cdef long[::1] pidx = np.empty(max(n, 1), dtype=np.int_)
    cdef long[::1] glab = np.empty(max(m, 1), dtype=np.int_)
    cdef long[::1] gidx = np.empty(max(m, 1), dtype=np.int_)
    np_ = 0
    for i in range(n):
        if pred_label[i] >= 0:
            plab[np_] = <long>pred_label[i]
            pidx[np_] = i
            np_ += 1
    ng = 0
    for j in range(m):
        if gt_label[j] >= 0:
            glab[ng] = <long>gt_label[j]
            gidx[ng] = j
            ng += 1
    # classes met, ascending
    classes_np = np.unique(np.concatenate((np.asarray(plab[:np_]), np.asarray(glab[:ng]))))
    cdef long[::1] classes = classes_np
    nc = classes.shape[0]
    npos_np = np.zeros(nc, dtype=np.int64)
    order_np = np.empty(np_, dtype=np.int_)
    labels_np = np.empty(np_, dtype=np.int32)
    match_np = np.empty(np_, dtype=np.int32)
    cdef long[::1] npos = npos_np
    cdef long[::1] order = order_np
    cdef int[::1] labels = labels_np
    cdef int[::1] match = match_np
    cdef long[::1] gsel = np.empty(max(ng, 1), dtype=np.int_)
    cdef unsigned char[::1] selec = np.empty(max(ng, 1), dtype=np.uint8)
    cdef long ngc
    start = 0
    for k in range(nc):
        c = classes[k]
        # predictions of class c, in their original order
        cnt = 0
        for i in range(np_):
            if plab[i] == c:
                order[start + cnt] = pidx[i]
                cnt += 1
        if cnt > 1:
            frcnn_sort_desc(&order[start], cnt, &pred_score[0])
            if cnt > 16:
                # NumPy's introsort is not stable beyond 16 elements: on ties use NumPy itself
                tie = False
                for i in range(start + 1, start + cnt):
                    if pred_score[order[i]] == pred_score[order[i - 1]]:
                        tie = True
                        break
                if tie:
                    members = np.sort(np.asarray(order[start:start + cnt]))
                    o = np.asarray(raw_score)[members].argsort()[::-1]
                    for i in range(cnt):
                        order[start + i] = members[o[i]]
        # gts of class c
        ngc = 0
        for j in range(ng):
            if glab[j] == c:
                gsel[ngc] = gidx[j]
                ngc += 1
                if not gt_difficult[gidx[j]]:
                    npos[k] += 1
        for i in range(cnt):
            labels[start + i] = <int>c
        if ngc == 0:
            for i in range(cnt):
                match[start + i] = 0
            start += cnt
            continue
        for j in range(ngc):
            selec[j] = 0
        for i in range(cnt):
            # argmax over the class's gts, NumPy rule: the first NaN wins, else the first max
            best = _iou_p1(&pred_bbox[order[start + i], 0], &gt_bbox[gsel[0], 0])
            arg = 0
            if not isnan(best):
                for j in range(1, ngc):
                    v = _iou_p1(&pred_bbox[order[start + i], 0], &gt_bbox[gsel[j], 0])
                    if isnan(v):
                        best = v
                        arg = j
                        break
                    if v > best:
                        best = v
                        arg = j
            if best < thr:
                match[start + i] = 0
            elif gt_difficult[gsel[arg]]:
                match[start + i] = -1
                selec[arg] = 1
            else:
                match[start + i] = 0 if selec[arg] else 1
                selec[arg] = 1
        start += cnt
    return order_np, labels_np, match_np, classes_np, npos_np
