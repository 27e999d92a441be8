"""The seed model's real shapes (GluonCV faster_rcnn_resnet50_v1b_voc at 600x800), its ops'
parameters and the inputs built from them: every case of frcnn-bench and of the pytest-benchmark
suites in benchmarks/ takes its inputs from here."""
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
DECODE_STDS = (0.1, 0.1, 0.2, 0.2)
NMS_RPN = dict(overlap_thresh=0.7, coord_start=1, score_index=0, id_index=-1,
               force_suppress=True)
NMS_CLASS = dict(overlap_thresh=0.3, topk=400, valid_thresh=0.0001, id_index=0, score_index=1,
                 coord_start=2, force_suppress=False)
PROPOSALS = ((6000, 300), (12000, 2000))   # (pre, post): test and train
MODEL_INPUT = (1, 3) + IMAGE_HW
MODEL_NAME = "faster_rcnn_resnet50_v1b_voc"
# issue 17's FPN shape: GluonCV's FPN Faster R-CNN head, P2-P5 of an 800x1216 image
FPN_IMAGE_HW = (800, 1216)
FPN_STRIDES = (4, 8, 16, 32)
FPN_C = 256
FPN_ROIS = 1000
# its RPN: P2-P6, GluonCV's faster_rcnn_fpn_resnet50_v1b_coco settings
FPN_RPN_STRIDES = (4, 8, 16, 32, 64)
FPN_RPN_SCALES = (2, 4, 8, 16, 32)
FPN_RPN = dict(clip=4.14, rpn_min_size=1)
FPN_PROPOSALS = ((6000, 1000), (12000, 2000))  # (pre, post): test and train
FPN_POOLED = (7, 7)


def rpn_anchors(feat_hw=FEAT_HW):
    """GluonCV RPNAnchorGenerator's anchors, (1, H*W*15, 4) corner, float32."""
    from .model import feature_anchors
    return feature_anchors()(feat_hw)


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


def roi_kw():
    return dict(pooled_size=ROI_POOLED, spatial_scale=ROI_SCALE, sample_ratio=ROI_SAMPLE_RATIO)


def fpn_features(channels=FPN_C, seed=0):
    """P2..P5 (1, C, H / s, W / s), float32."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(1, channels, FPN_IMAGE_HW[0] // s, FPN_IMAGE_HW[1] // s))
            .astype(np.float32) for s in FPN_STRIDES]


def fpn_rois(n=FPN_ROIS, seed=1):
    """n rois over the image, square roots of areas log-uniform over 16 .. 800 pixels (every
    level: about half at P2 as in RPN output), aspect 1:3 .. 3:1, inside the image."""
    rng = np.random.default_rng(seed)
    h, w = FPN_IMAGE_HW
    side = np.exp(rng.uniform(np.log(16), np.log(800), size=n))
    aspect = np.exp(rng.uniform(-0.55, 0.55, size=n))
    wh = np.minimum(np.stack([side * aspect, side / aspect], 1), [w, h])
    xy = rng.uniform(size=(n, 2)) * ([w, h] - wh)
    return np.concatenate([np.zeros((n, 1)), xy, xy + wh], 1).astype(np.float32)


def fpn_head_grad(n=FPN_ROIS, channels=FPN_C, seed=2):
    return np.random.default_rng(seed).normal(size=(n, channels) + FPN_POOLED).astype(np.float32)


def proposal_inputs(feat_hw=FEAT_HW, batch=1):
    """scores, deltas, anchors, im_info and the image size for a feature map (the seed's
    600x800 image, or for a sweep the image this feature map comes from)."""
    anchors = rpn_anchors(feat_hw)
    n = anchors.shape[1]
    img_hw = IMAGE_HW if tuple(feat_hw) == FEAT_HW else (feat_hw[0] * 16, feat_hw[1] * 16)
    return (rpn_scores(batch, n), rpn_deltas(batch, n), anchors, im_info(batch, img_hw),
            img_hw)


def fpn_rpn_level_hw():
    """The RPN's feature map (H, W) per level: the image's size / stride, rounded up."""
    return [(-(-FPN_IMAGE_HW[0] // s), -(-FPN_IMAGE_HW[1] // s)) for s in FPN_RPN_STRIDES]


def fpn_rpn_inputs(seed=0):
    """GluonCV's FPN RPN inputs at FPN_IMAGE_HW, one of each per level P2-P6: anchors
    (1, n, 4) from its RPNAnchorGenerator (alloc sizes as its FPN RPN: 384, halved a level),
    scores (1, n, 1), deltas (1, n, 4); and im_info (1, 3)."""
    import mxnet as mx
    from gluoncv.model_zoo.rcnn.rpn.anchor import RPNAnchorGenerator
    rng = np.random.default_rng(seed)
    anchors, scores, deltas, alloc = [], [], [], 384
    for stride, scale, hw in zip(FPN_RPN_STRIDES, FPN_RPN_SCALES, fpn_rpn_level_hw()):
        ag = RPNAnchorGenerator(stride, 16, (0.5, 1, 2), (scale,), (alloc, alloc))
        ag.initialize()
        a = ag(mx.nd.zeros((1, 1) + hw)).asnumpy()
        anchors.append(a)
        scores.append(rng.uniform(size=(1, a.shape[1], 1)).astype(np.float32))
        deltas.append(rng.normal(0, 0.2, size=(1, a.shape[1], 4)).astype(np.float32))
        alloc = max(alloc // 2, 16)
    info = np.array([[FPN_IMAGE_HW[0], FPN_IMAGE_HW[1], 1.0]], np.float32)
    return anchors, scores, deltas, info
