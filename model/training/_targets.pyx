# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
# distutils: language = c++
"""Matching and sampling loops of the Faster R-CNN training targets (see targets.py).

Every comparison, IoU and box encoding follows the float32 arithmetic of the MXNet/GluonCV code
it replaces, operation by operation, so that the results are bitwise equal:

- IoU is MXNet's ``contrib.box_iou`` (corner, no +1): intersection 0 when <= 0, negative widths
  give area 0.
- Sorting is MXNet's CPU ``argsort``: ``std::sort`` (not stable) of the indices 0..n-1 with the
  comparator ``v[i] < v[j]`` (ascending) or ``v[i] > v[j]`` (descending). Ties therefore come out
  in the same (implementation-defined but deterministic) order as in GluonCV.
- argmax is the first maximum; thresholds are float32, as MXNet and NumPy cast Python scalars.
"""
import numpy as np

from libc.math cimport log

# Typed memoryviews only, no `cimport numpy`: the compiled module uses NumPy through its
# Python API and the buffer protocol, never NumPy's C API, so one build imports under
# NumPy 1.x and 2.x alike (tests/test_abi.py checks it).

cdef extern from * nogil:
    """
    #include <algorithm>
    struct FrcnnAsc {
      const float* v;
      bool operator()(const int& a, const int& b) const { return v[a] < v[b]; }
    };
    struct FrcnnDesc {
      const float* v;
      bool operator()(const int& a, const int& b) const { return v[a] > v[b]; }
    };
    /* MXNet 1.x CPU argsort: std::sort of 0..n-1 with a lambda comparing values. */
    static inline void frcnn_argsort(int* idx, int n, const float* v, int ascending) {
      for (int i = 0; i < n; ++i) idx[i] = i;
      if (ascending) { FrcnnAsc c; c.v = v; std::sort(idx, idx + n, c); }
      else { FrcnnDesc c; c.v = v; std::sort(idx, idx + n, c); }
    }
    """
    void frcnn_argsort(int* idx, int n, const float* v, int ascending)


cdef inline float _box_iou(const float* a, const float* b) noexcept nogil:
    """MXNet contrib.box_iou, corner format, float32."""
    cdef float left, right, w, h, inter, aw, ah, bw, bh, la, lb
    left = a[0] if a[0] > b[0] else b[0]
    right = a[2] if a[2] < b[2] else b[2]
    w = right - left
    w = w if w > 0 else <float>0
    left = a[1] if a[1] > b[1] else b[1]
    right = a[3] if a[3] < b[3] else b[3]
    h = right - left
    h = h if h > 0 else <float>0
    inter = w * h
    if inter <= 0:
        return 0
    aw = a[2] - a[0]
    ah = a[3] - a[1]
    la = 0 if (aw < 0 or ah < 0) else aw * ah
    bw = b[2] - b[0]
    bh = b[3] - b[1]
    lb = 0 if (bw < 0 or bh < 0) else bw * bh
    return inter / (la + lb - inter)


def argsort_mx(const float[::1] values, bint ascending=True):
    """MXNet's CPU argsort (std::sort, unstable) of a float32 vector -> int32 indices."""
    cdef int n = values.shape[0]
    out = np.empty(n, dtype=np.int32)
    cdef int[::1] o = out
    if n:
        with nogil:
            frcnn_argsort(&o[0], n, &values[0], 1 if ascending else 0)
    return out


def box_iou_mx(const float[:, ::1] a, const float[:, ::1] b):
    """MXNet contrib.box_iou (corner) of (N, 4) and (M, 4) float32 boxes -> (N, M) float32."""
    cdef Py_ssize_t n = a.shape[0], m = b.shape[0], i, j
    out = np.zeros((n, m), dtype=np.float32)
    cdef float[:, ::1] o = out
    with nogil:
        for i in range(n):
            for j in range(m):
                o[i, j] = _box_iou(&a[i, 0], &b[j, 0])
    return out


def rpn_match(const float[:, ::1] anchor, const float[:, ::1] bbox,
              float xmin_lim, float ymin_lim, float xmax_lim, float ymax_lim,
              float pos_thresh, float neg_thresh, float eps):
    """GluonCV RPNTargetSampler before subsampling.

    Returns samples (N,) float32 (1 pos, -1 neg, 0 ignore) and matches (N,) int32.
    An anchor is valid when xmin >= xmin_lim, ymin >= ymin_lim, xmax < xmax_lim,
    ymax < ymax_lim; invalid anchors have IoU -1 with every gt.
    """
    cdef Py_ssize_t n = anchor.shape[0], m = bbox.shape[0], i, j
    samples_np = np.zeros(n, dtype=np.float32)
    matches_np = np.zeros(n, dtype=np.int32)
    if n == 0:
        return samples_np, matches_np
    cdef float[::1] samples = samples_np
    cdef int[::1] matches = matches_np
    cdef float[::1] amax = np.empty(n, dtype=np.float32)
    cdef float[::1] gmax = np.empty(max(m, 1), dtype=np.float32)
    cdef float[:, ::1] ious = np.empty((n, max(m, 1)), dtype=np.float32)
    cdef float v, best = 0, s
    cdef int arg = 0
    cdef bint valid
    with nogil:
        if m == 0:
            # no ground truth: every valid anchor is a negative (GluonCV cannot take M = 0)
            for i in range(n):
                valid = not (anchor[i, 0] < xmin_lim or anchor[i, 1] < ymin_lim or
                             anchor[i, 2] >= xmax_lim or anchor[i, 3] >= ymax_lim)
                samples[i] = -1 if valid else 0
        else:
            # pass 1: IoU matrix (invalid anchor rows are -1), max/argmax per anchor, max per gt
            for i in range(n):
                valid = not (anchor[i, 0] < xmin_lim or anchor[i, 1] < ymin_lim or
                             anchor[i, 2] >= xmax_lim or anchor[i, 3] >= ymax_lim)
                for j in range(m):
                    v = _box_iou(&anchor[i, 0], &bbox[j, 0]) if valid else <float>-1
                    ious[i, j] = v
                    if j == 0 or v > best:
                        best = v
                        arg = <int>j
                    if i == 0 or v > gmax[j]:
                        gmax[j] = v
                amax[i] = best
                matches[i] = arg
            # pass 2: the markers, in GluonCV's order of np.where
            for i in range(n):
                s = 0
                for j in range(m):
                    v = ious[i, j] + eps
                    if v > gmax[j]:
                        s = 1
                        break
                if amax[i] >= pos_thresh:
                    s = 1
                if amax[i] < neg_thresh and amax[i] >= 0:
                    s = -1
                samples[i] = s
    return samples_np, matches_np


def rcnn_sample(const float[:, :, ::1] rois, const float[:, ::1] scores,
                const float[:, :, ::1] gt_boxes, const float[:, ::1] rand,
                int num_sample, int max_pos, float pos_thresh):
    """GluonCV RCNNTargetSampler.hybrid_forward on the CPU, image by image.

    rois (B, R, 4), scores (B, R), gt_boxes (B, M, 4), rand (B, >= R + M) uniform randoms
    (GluonCV's shuffle keys). Returns sampled rois (B, S, 4) float32, samples (B, S) float32,
    matches (B, S) int32 with S = num_sample. Slots that GluonCV could not fill (R + M too
    small, where GluonCV fails) are ignore entries (roi -1, sample 0, match 0) at the end.
    """
    cdef Py_ssize_t B = rois.shape[0], R = rois.shape[1], M = gt_boxes.shape[1]
    cdef Py_ssize_t n = R + M
    cdef int S = num_sample
    out_rois_np = np.full((B, S, 4), -1, dtype=np.float32)
    out_samples_np = np.zeros((B, S), dtype=np.float32)
    out_matches_np = np.zeros((B, S), dtype=np.int32)
    cdef float[:, :, ::1] out_rois = out_rois_np
    cdef float[:, ::1] out_samples = out_samples_np
    cdef int[:, ::1] out_matches = out_matches_np
    cdef Py_ssize_t nb = max(n, 1)
    cdef float[::1] mask = np.empty(nb, dtype=np.float32)
    cdef int[::1] amax = np.empty(nb, dtype=np.int32)
    cdef int[::1] index = np.empty(nb, dtype=np.int32)
    cdef float[::1] mask_p = np.empty(nb, dtype=np.float32)
    cdef int[::1] order = np.empty(nb, dtype=np.int32)
    cdef int[::1] sel_idx = np.empty(S, dtype=np.int32)
    cdef float[::1] sel_samp = np.empty(S, dtype=np.float32)
    cdef int[::1] sel_match = np.empty(S, dtype=np.int32)
    cdef float[::1] area = np.empty(max(S, 1), dtype=np.float32)
    cdef int[::1] ind = np.empty(max(S, 1), dtype=np.int32)
    cdef Py_ssize_t b, i, j, k, t, p, rem
    cdef int ktop, kb, count, arg
    cdef float best, v, score, msk
    cdef double gsum
    cdef const float* box
    with nogil:
        for b in range(B):
            # 1. markers: 2 negative, 0 ignore (score < 0), 3 positive (max IoU >= thresh)
            for i in range(n):
                if i < R:
                    box = &rois[b, i, 0]
                    score = scores[b, i]
                else:
                    box = &gt_boxes[b, i - R, 0]
                    gsum = <double>box[0] + box[1] + box[2] + box[3] + 1.0
                    score = 1 if gsum > 0 else (-1 if gsum < 0 else 0)
                best = 0
                arg = 0
                for j in range(M):
                    v = _box_iou(box, &gt_boxes[b, j, 0])
                    if j == 0 or v > best:
                        best = v
                        arg = <int>j
                msk = 2
                if score < 0:
                    msk = 0
                if M > 0 and best >= pos_thresh:
                    msk = 3
                mask[i] = msk
                amax[i] = arg
            # 2. shuffle: argsort of the uniform keys
            if n:
                frcnn_argsort(&index[0], <int>n, &rand[b, 0], 1)
            for k in range(n):
                mask_p[k] = mask[index[k]]
            # 3. positives: the first max_pos of argsort(mask, descending)
            if n:
                frcnn_argsort(&order[0], <int>n, &mask_p[0], 0)
            ktop = <int>min(<Py_ssize_t>max_pos, n)
            for t in range(ktop):
                p = order[t]
                sel_idx[t] = index[p]
                msk = mask_p[p]
                sel_samp[t] = 1 if msk == 3 else (-1 if msk == 2 else msk)
                sel_match[t] = amax[index[p]]
            # 4. negatives: positions max_pos.. of the *shuffled* arrays (not the complement of
            #    the positives, as in GluonCV), 2 -> 4, first S - max_pos of argsort descending
            rem = n - max_pos
            kb = 0
            if rem > 0:
                for k in range(rem):
                    msk = mask_p[max_pos + k]
                    mask_p[k] = 4 if msk == 2 else msk  # reuse the front as scratch
                frcnn_argsort(&order[0], <int>rem, &mask_p[0], 0)
                kb = <int>min(<Py_ssize_t>(S - max_pos), rem)
                for t in range(kb):
                    p = max_pos + order[t]
                    sel_idx[ktop + t] = index[p]
                    msk = mask_p[order[t]]
                    sel_samp[ktop + t] = -1 if msk == 4 else (1 if msk == 3 else msk)
                    sel_match[ktop + t] = amax[index[p]]
            count = ktop + kb
            # 5. order by roi area ascending
            for t in range(count):
                i = sel_idx[t]
                box = &rois[b, i, 0] if i < R else &gt_boxes[b, i - R, 0]
                area[t] = (box[2] - box[0]) * (box[3] - box[1])
            if count:
                frcnn_argsort(&ind[0], count, &area[0], 1)
            for t in range(count):
                p = ind[t]
                i = sel_idx[p]
                box = &rois[b, i, 0] if i < R else &gt_boxes[b, i - R, 0]
                for k in range(4):
                    out_rois[b, t, k] = box[k]
                out_samples[b, t] = sel_samp[p]
                out_matches[b, t] = sel_match[p]
    return out_rois_np, out_samples_np, out_matches_np


def rcnn_targets(const float[:, :, ::1] rois, const float[:, ::1] samples,
                 const int[:, ::1] matches, const float[:, ::1] gt_labels,
                 const float[:, :, ::1] gt_boxes, int num_class, int max_pos,
                 const float[::1] means, const float[::1] stds):
    """GluonCV RCNNTargetGenerator (MultiClassEncoder + NormalizedPerClassBoxCenterEncoder with
    MXNet's contrib.box_encode). Returns cls_targets (B, S), box_targets and box_masks
    (B, max_pos, C, 4) float32, indices (B, max_pos) int32."""
    cdef Py_ssize_t B = rois.shape[0], S = rois.shape[1], M = gt_boxes.shape[1]
    cls_np = np.empty((B, S), dtype=np.float32)
    tgt_np = np.zeros((B, max_pos, num_class, 4), dtype=np.float32)
    msk_np = np.zeros((B, max_pos, num_class, 4), dtype=np.float32)
    ind_np = np.zeros((B, max_pos), dtype=np.int32)
    cdef float[:, ::1] cls = cls_np
    cdef float[:, :, :, ::1] tgt = tgt_np
    cdef float[:, :, :, ::1] bmask = msk_np
    cdef int[:, ::1] indices = ind_np
    cdef float[::1] pos = np.empty(max(S, 1), dtype=np.float32)
    cdef int[::1] order = np.empty(max(S, 1), dtype=np.int32)
    cdef Py_ssize_t b, i, c, k, q, mt
    cdef float label, t0, t1, t2, t3, valid
    cdef float rxmin, rymin, rw, rh, rx, ry, axmin, aymin, aw, ah, ax, ay
    cdef const float* a
    cdef const float* r
    with nogil:
        for b in range(B):
            for i in range(S):
                mt = matches[b, i]
                mt = 0 if mt < 0 else (M - 1 if mt >= M else mt)  # MXNet pick, mode 'clip'
                label = gt_labels[b, mt] if M > 0 else <float>-1
                if samples[b, i] > 0.5:
                    cls[b, i] = label + 1
                elif samples[b, i] < -0.5:
                    cls[b, i] = 0
                else:
                    cls[b, i] = -1
                pos[i] = 1 if samples[b, i] > 0.5 else 0
            if S:
                frcnn_argsort(&order[0], <int>S, &pos[0], 0)
            for q in range(max_pos):
                i = order[q]
                indices[b, q] = <int>i
                valid = pos[i]
                if valid == 0:
                    continue  # targets and masks stay 0
                mt = matches[b, i]
                mt = 0 if mt < 0 else (M - 1 if mt >= M else mt)
                if M == 0:
                    continue
                r = &gt_boxes[b, mt, 0]
                a = &rois[b, i, 0]
                # MXNet contrib.box_encode, float32 (the 0.5 is a double literal there too)
                rxmin = r[0]
                rymin = r[1]
                rw = r[2] - rxmin
                rh = r[3] - rymin
                rx = rxmin + rw * 0.5
                ry = rymin + rh * 0.5
                axmin = a[0]
                aymin = a[1]
                aw = a[2] - axmin
                ah = a[3] - aymin
                ax = axmin + aw * 0.5
                ay = aymin + ah * 0.5
                t0 = ((rx - ax) / aw - means[0]) / stds[0]
                t1 = ((ry - ay) / ah - means[1]) / stds[1]
                # MXNet's log(float) is the double ::log: the rest of the expression is double
                t2 = <float>((log(<double>(rw / aw)) - <double>means[2]) / <double>stds[2])
                t3 = <float>((log(<double>(rh / ah)) - <double>means[3]) / <double>stds[3])
                label = gt_labels[b, mt]
                for c in range(num_class):
                    tgt[b, q, c, 0] = t0
                    tgt[b, q, c, 1] = t1
                    tgt[b, q, c, 2] = t2
                    tgt[b, q, c, 3] = t3
                    if label == <float>c:
                        for k in range(4):
                            bmask[b, q, c, k] = 1
    return cls_np, tgt_np, msk_np, ind_np
