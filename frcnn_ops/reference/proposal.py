"""NumPy references of proposal (GluonCV RPNProposal + box_nms + slice) and nms (box_nms).

Quadratic greedy NMS in plain loops; computed in the input dtype like the kernels.
"""
import numpy as np

from .box_coder import box_decode, clip_boxes


def _area(c, center):
    w = c[..., 2] if center else c[..., 2] - c[..., 0]
    h = c[..., 3] if center else c[..., 3] - c[..., 1]
    return np.where((w < 0) | (h < 0), np.zeros_like(w), w * h)


def _overlap(a1, a2, b1, b2, center):
    if center:
        two = a1.dtype.type(2)
        aw, bw = a2 / two, b2 / two
        a1, a2, b1, b2 = a1 - aw, a1 + aw, b1 - bw, b1 + bw
    w = np.minimum(a2, b2) - np.maximum(a1, b1)
    return np.where(w > 0, w, np.zeros_like(w))


def iou(ref, boxes, center=False):
    """IoU of one box (the kept, higher-score one) with each of boxes, as box_nms computes it."""
    inter = _overlap(ref[0], ref[2], boxes[:, 0], boxes[:, 2], center)
    inter = inter * _overlap(ref[1], ref[3], boxes[:, 1], boxes[:, 3], center)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (_area(ref, center) + _area(boxes, center) - inter)


def _greedy(boxes, thresh, classes=None, center=False, max_keep=None):
    keep = []
    suppressed = np.zeros(len(boxes), bool)
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) == max_keep:
            break
        rest = np.arange(i + 1, len(boxes))
        over = iou(boxes[i], boxes[rest], center) > thresh
        if classes is not None:
            over &= classes[rest] == classes[i]
        suppressed[rest[over]] = True
    return keep


def _descending(scores, candidates):
    idx = np.nonzero(candidates)[0]
    return idx[np.argsort(-scores[idx], kind="stable")]


def nms(data, overlap_thresh=0.5, valid_thresh=0.0, topk=-1, coord_start=2, score_index=1,
        id_index=-1, background_id=-1, force_suppress=False, in_format="corner",
        out_format="corner"):
    data = np.asarray(data)
    if topk == 0:
        return data.copy()
    t = data.dtype.type
    flat = data.reshape(int(np.prod(data.shape[:-2])), data.shape[-2], data.shape[-1])
    out = np.full_like(flat, -1)
    center = in_format == "center"
    for b, rows in enumerate(flat):
        scores = rows[:, score_index]
        cand = scores > t(np.float32(valid_thresh))
        if id_index >= 0:
            cand &= rows[:, id_index] != t(background_id)
        order = _descending(scores, cand)
        if topk > 0:
            order = order[:topk]
        boxes = rows[order, coord_start:coord_start + 4]
        classes = None
        if id_index >= 0 and not force_suppress:
            classes = rows[order, id_index].astype(np.int64)
        keep = order[_greedy(boxes, t(np.float32(overlap_thresh)), classes, center)]
        out[b, :len(keep)] = rows[keep]
        if in_format != out_format:
            c = out[b, :len(keep), coord_start:coord_start + 4].copy()
            two = t(2)
            if out_format == "center":
                conv = [(c[:, 0] + c[:, 2]) / two, (c[:, 1] + c[:, 3]) / two,
                        c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]]
            else:
                conv = [c[:, 0] - c[:, 2] / two, c[:, 1] - c[:, 3] / two,
                        c[:, 0] + c[:, 2] / two, c[:, 1] + c[:, 3] / two]
            out[b, :len(keep), coord_start:coord_start + 4] = np.stack(conv, axis=1)
    return out.reshape(data.shape)


def proposal(scores, deltas, anchors, im_info, rpn_pre_nms_top_n=6000, rpn_post_nms_top_n=300,
             threshold=0.7, rpn_min_size=16, std0=1.0, std1=1.0, std2=1.0, std3=1.0, clip=-1.0):
    deltas = np.asarray(deltas)
    t = deltas.dtype.type
    scores = np.asarray(scores, dtype=deltas.dtype).reshape(deltas.shape[:2])
    boxes = box_decode(deltas, anchors, std0, std1, std2, std3, clip=clip, format="corner")
    boxes = clip_boxes(boxes, im_info)
    out = np.full((deltas.shape[0], rpn_post_nms_top_n, 5), -1, deltas.dtype)
    for b in range(deltas.shape[0]):
        w = boxes[b, :, 2] - boxes[b, :, 0] + t(1)
        h = boxes[b, :, 3] - boxes[b, :, 1] + t(1)
        # under the min size (or NaN): score -1 in GluonCV, so never a candidate
        valid = (w >= t(rpn_min_size)) & (h >= t(rpn_min_size))
        order = _descending(scores[b], valid & (scores[b] > 0))[:rpn_pre_nms_top_n]
        keep = order[_greedy(boxes[b, order], t(np.float32(threshold)),
                             max_keep=rpn_post_nms_top_n)]
        out[b, :len(keep), 0] = scores[b, keep]
        out[b, :len(keep), 1:] = boxes[b, keep]
    return out
