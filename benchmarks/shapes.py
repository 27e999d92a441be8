"""The seed model's real shapes (GluonCV faster_rcnn_resnet50_v1b_voc at 600x800) and the
inputs built from them, shared by the benchmark suites and frcnn-bench."""
import numpy as np

IMAGE_HW = (600, 800)
FEAT_HW = (38, 50)          # stride 16
NUM_ANCHORS = 38 * 50 * 15  # 28500
FEAT_C = 1024


def rpn_anchors(feat_hw=FEAT_HW, stride=16, base_size=16, scales=(2, 4, 8, 16, 32),
                ratios=(0.5, 1, 2)):
    """GluonCV RPNAnchorGenerator's anchors, (1, H*W*A, 4) corner, float32."""
    px, py = (base_size - 1) * 0.5, (base_size - 1) * 0.5
    base = []
    for r in ratios:
        for s in scales:
            size = base_size * base_size / r
            ws = np.round(np.sqrt(size))
            w = (ws * s - 1) * 0.5
            h = (np.round(ws * r) * s - 1) * 0.5
            base.append([px - w, py - h, px + w, py + h])
    base = np.array(base, np.float32)
    h, w = feat_hw
    sx, sy = np.meshgrid(np.arange(w) * stride, np.arange(h) * stride)
    shifts = np.stack([sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel()], axis=1)
    anchors = (base[None, :, :] + shifts[:, None, :]).reshape(-1, 4)
    return anchors[None].astype(np.float32)


def rpn_deltas(batch=1, n=NUM_ANCHORS, seed=0, scale=0.2):
    return np.random.default_rng(seed).normal(0, scale, size=(batch, n, 4)).astype(np.float32)
