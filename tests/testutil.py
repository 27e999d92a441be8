"""Helpers shared by the test modules (conftest.py holds only fixtures and hooks)."""
import numpy as np


def corner_anchors(rng, n, scale=100.0, dtype=np.float32):
    """n random corner boxes with positive size."""
    xy = rng.uniform(-scale / 4, scale, size=(n, 2))
    wh = rng.uniform(1.0, scale / 2, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)


def detection_keys(out):
    """(id, score to 1e-5, box to 1e-2) of each detection row of image 0 of (ids, scores,
    boxes, ...): random weights give many tied scores and degenerate boxes (zero width: IoU
    matching does not apply), so the GluonCV tests match rows as multisets of these."""
    ids, scores, boxes = (o[0] for o in out[:3])
    return list(zip(ids[:, 0].tolist(), np.round(scores[:, 0], 5).tolist(),
                    map(tuple, np.round(boxes, 2).tolist())))


def matched_detections(ref, ours):
    """How many detections (score > 0) of ref are in ours, by detection_keys."""
    from collections import Counter

    def rows(out):
        return Counter(k for k in detection_keys(out) if k[1] > 0)
    a, b = rows(ref), rows(ours)
    return sum(min(n, b[k]) for k, n in a.items())


def params_by_name(net):
    """A Gluon block's parameters by name without the instance's prefix (fasterrcnn0_,
    fasterrcnn1_, ...), so that two instances' compare."""
    return {k.split("_", 1)[1] if "_" in k else k: v for k, v in net.collect_params().items()}


def gluoncv_unmasked_reference(net):
    """A GluonCV FPN net whose pyramid pooling writes every row: GluonCV's masked align branch
    leaves the rows of other levels unwritten (MXNet skips batch index -1) and sums them, so a
    reference through it reads stale memory (frcnn_ops.bench.cases.fpn, which frcnn-bench's
    checks use too)."""
    from frcnn_ops.bench.cases.fpn import gluoncv_unmasked
    return gluoncv_unmasked(net)


def synthetic_train_batch(n=2, size=128, seed=0):
    """A batchified training batch of n SyntheticShapes images at size x size (no flips)."""
    from frcnn_model.data.datasets import SyntheticShapes
    from frcnn_model.data.transforms import FasterRCNNTrainTransform, batchify
    data = SyntheticShapes(n, seed=seed, size=(size, size))
    tf = FasterRCNNTrainTransform(short=size, max_size=size, flip_p=0.0)
    return batchify([tf(*data[i]) for i in range(n)])
