"""The seed model's real shapes (GluonCV faster_rcnn_resnet50_v1b_voc at 600x800) and the
inputs built from them, shared by the benchmark suites and frcnn-bench."""
import numpy as np

IMAGE_HW = (600, 800)
FEAT_HW = (38, 50)          # stride 16
NUM_ANCHORS = 38 * 50 * 15  # 28500
FEAT_C = 1024


def rpn_anchors(feat_hw=FEAT_HW):
    """GluonCV RPNAnchorGenerator's anchors, (1, H*W*15, 4) corner, float32."""
    from frcnn_model.anchors import feature_anchors
    return feature_anchors(feat_hw)


def rpn_deltas(batch=1, n=NUM_ANCHORS, seed=0, scale=0.2):
    return np.random.default_rng(seed).normal(0, scale, size=(batch, n, 4)).astype(np.float32)


def rpn_scores(batch=1, n=NUM_ANCHORS, seed=1):
    return np.random.default_rng(seed).uniform(size=(batch, n, 1)).astype(np.float32)


def im_info(batch=1, hw=IMAGE_HW):
    return np.array([[hw[0], hw[1], 1.0]] * batch, np.float32)


def feature_for_anchors(n_anchors):
    """A feature map (H, W) with about n_anchors anchors (15 a position), aspect 3:4."""
    positions = n_anchors / 15.0
    h = max(1, int(round(np.sqrt(positions * 0.75))))
    w = max(1, int(round(positions / h)))
    return h, w


def pre_nms_boxes(n, seed=2):
    """(1, n, 5) [score, x1, y1, x2, y2]: the top-n RPN boxes of the seed's shape before NMS,
    in score order (what box_nms sees in the proposal step)."""
    from frcnn_ops import reference as ref
    anchors = rpn_anchors(feature_for_anchors(max(n, NUM_ANCHORS)))
    total = anchors.shape[1]
    deltas = rpn_deltas(1, total, seed)
    scores = rpn_scores(1, total, seed)[0, :, 0]
    boxes = ref.clip_boxes(ref.box_decode(deltas, anchors, format="corner"),
                           np.array([[IMAGE_HW[0], IMAGE_HW[1]]], np.float32))[0]
    top = np.argsort(-scores, kind="stable")[:n]
    return np.concatenate([scores[top, None], boxes[top]], axis=1)[None].astype(np.float32)


def detections(classes=20, rois=300, seed=3):
    """(classes, rois, 6) [id, score, x1, y1, x2, y2]: the seed's final per-class NMS input."""
    rng = np.random.default_rng(seed)
    data = np.zeros((classes, rois, 6), np.float32)
    data[..., 0] = np.arange(classes)[:, None]
    data[..., 1] = rng.dirichlet(np.ones(classes + 1), size=rois)[:, 1:].T
    xy = rng.uniform(0, 700, size=(classes, rois, 2))
    wh = rng.uniform(20, 300, size=(classes, rois, 2))
    data[..., 2:4] = xy
    data[..., 4:6] = np.minimum(xy + wh, [800, 600])
    return data
