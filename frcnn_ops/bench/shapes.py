"""The seed model's real shapes (GluonCV faster_rcnn_resnet50_v1b_voc at 600x800) and the
inputs built from them, shared by frcnn-bench and the pytest-benchmark suites in benchmarks/
(benchmarks/shapes.py re-exports this module)."""
import importlib.util
import os

import numpy as np

IMAGE_HW = (600, 800)
FEAT_HW = (38, 50)          # stride 16
NUM_ANCHORS = 38 * 50 * 15  # 28500
FEAT_C = 1024
# the seed's ROIAlign: pooled 14x14, spatial_scale 1/16, sample_ratio 2, 300 rois at test time
ROI_POOLED = (14, 14)
ROI_SCALE = 1.0 / 16
ROI_SAMPLE_RATIO = 2
NUM_ROIS = 300


def _feature_anchors():
    """frcnn_model.anchors.feature_anchors; frcnn_model's package import needs MXNet, so without
    MXNet (a CuPy-only install) its anchors.py is loaded on its own."""
    try:
        from frcnn_model.modeling.anchors import feature_anchors
        return feature_anchors
    except ImportError:
        spec = importlib.util.find_spec("frcnn_model")
        if spec is None or not spec.submodule_search_locations:
            raise
        path = os.path.join(list(spec.submodule_search_locations)[0], "modeling", "anchors.py")
        anchors_spec = importlib.util.spec_from_file_location("_frcnn_model_anchors", path)
        module = importlib.util.module_from_spec(anchors_spec)
        anchors_spec.loader.exec_module(module)
        return module.feature_anchors


def rpn_anchors(feat_hw=FEAT_HW):
    """GluonCV RPNAnchorGenerator's anchors, (1, H*W*15, 4) corner, float32."""
    return _feature_anchors()(feat_hw)


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


def seed_rois(n=NUM_ROIS, seed=0):
    """n realistic proposals inside the 600x800 image: width/height 16..400, batch index 0."""
    rng = np.random.default_rng(seed)
    hw = np.array(IMAGE_HW[::-1], np.float64)  # (800, 600) as (x, y)
    wh = rng.uniform(16, 400, size=(n, 2))
    xy = rng.uniform(0, 1, size=(n, 2)) * (hw - wh)
    return np.concatenate([np.zeros((n, 1)), xy, xy + wh], axis=1).astype(np.float32)


def feature_map(channels=FEAT_C, seed=0, feat_hw=FEAT_HW):
    """(1, channels, 38, 50) float32 normal: the seed's layer3 output for one image."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(1, channels) + tuple(feat_hw)).astype(np.float32)


def roi_head_grad(n_rois=NUM_ROIS, channels=FEAT_C, seed=1):
    """A head gradient for the ROIAlign output (n_rois, channels, 14, 14)."""
    return np.random.default_rng(seed).normal(
        size=(n_rois, channels) + ROI_POOLED).astype(np.float32)
