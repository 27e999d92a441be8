"""One training iteration of the seed model (ResNet-50 v1b C4, VOC, 600x800, batch 1): frcnn_model
(frcnn_ops proposal 12000->2000 and ROIAlign backward, Cython targets) against GluonCV's
training forward (RPNTargetGenerator, RPNProposal + box_nms, RCNNTargetSampler, contrib ROIAlign)
with the same weights, both hybridized; each call is RPN targets + forward + the four losses +
backward, as GluonCV's train_faster_rcnn.py does it. The optimizer step is left out (the same
for both). With --benchmark-disable (CI) the image is 300x400 to keep the smoke run short."""
import numpy as np
import pytest

from shapes import IMAGE_HW

GT = np.array([[40, 60, 300, 420, 14], [350, 100, 560, 380, 6], [100, 300, 240, 560, 11],
               [500, 500, 780, 590, 2], [10, 10, 120, 90, 8]], dtype=np.float32)


@pytest.fixture(scope="module")
def setup(mx, gluoncv, request, tmp_path_factory):
    from gluoncv import model_zoo
    import frcnn_model
    from frcnn_model.modeling.anchors import feature_anchors
    small = request.config.getoption("benchmark_disable", default=False)
    hw = (IMAGE_HW[0] // 2, IMAGE_HW[1] // 2) if small else IMAGE_HW
    gt = GT.copy()
    if small:
        gt[:, :4] /= 2
    mx.random.seed(0)
    theirs = model_zoo.get_model("faster_rcnn_resnet50_v1b_voc", pretrained=False,
                                 pretrained_base=False)
    theirs.initialize(mx.init.Xavier())
    x = np.random.default_rng(0).normal(0, 1, (1, 3) + hw).astype(np.float32)
    theirs(mx.nd.array(x))
    path = str(tmp_path_factory.mktemp("train") / "frcnn.params")
    theirs.save_parameters(path)
    ours = frcnn_model.faster_rcnn_resnet50_v1b_voc()
    ours.load_parameters(path)
    theirs.hybridize(static_alloc=True)
    feat_hw = tuple(ours.features(mx.nd.array(x)).shape[2:])
    anchors = feature_anchors(feat_hw)[0]
    return dict(mx=mx, ours=ours, theirs=theirs, x=x, gt=gt, anchors=anchors, hw=hw)


def _gluoncv_step(s):
    from mxnet import autograd, gluon
    from gluoncv.model_zoo.rcnn.rpn.rpn_target import RPNTargetGenerator
    mx, net = s["mx"], s["theirs"]
    gen = RPNTargetGenerator(num_sample=256, pos_iou_thresh=0.7, neg_iou_thresh=0.3,
                             pos_ratio=0.5, stds=(1., 1., 1., 1.))
    rpn_cls_loss = gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
    rpn_box_loss = gluon.loss.HuberLoss(rho=1 / 9.)
    rcnn_cls_loss = gluon.loss.SoftmaxCrossEntropyLoss()
    rcnn_box_loss = gluon.loss.HuberLoss()
    x = mx.nd.array(s["x"])
    gt_box = mx.nd.array(s["gt"][None, :, :4])
    gt_label = mx.nd.array(s["gt"][None, :, 4:5])
    h, w = s["hw"]

    def step():
        cls_t, box_t, mask = gen(gt_box[0], mx.nd.array(s["anchors"]), w, h)
        rpn_cls_t, rpn_box_t, rpn_mask = (mx.nd.array(np.asarray(t))[None]
                                          for t in (cls_t, box_t, mask))
        with autograd.record():
            cls_pred, box_pred, _, _, _, rpn_score, rpn_box, _, cls_targets, box_targets, \
                box_masks, _ = net(x, gt_box, gt_label)
            rpn_score = rpn_score.squeeze(axis=-1)
            num_rpn_pos = (rpn_cls_t >= 0).sum()
            l1 = rpn_cls_loss(rpn_score, rpn_cls_t, rpn_cls_t >= 0) * rpn_cls_t.size / num_rpn_pos
            l2 = rpn_box_loss(rpn_box, rpn_box_t, rpn_mask) * rpn_box.size / num_rpn_pos
            num_rcnn_pos = (cls_targets >= 0).sum()
            l3 = rcnn_cls_loss(cls_pred, cls_targets, cls_targets.expand_dims(-1) >= 0) \
                * cls_targets.size / num_rcnn_pos
            l4 = rcnn_box_loss(box_pred, box_targets, box_masks) * box_pred.size / num_rcnn_pos
            total = l1.sum() + l2.sum() + l3.sum() + l4.sum()
        total.backward()
        mx.nd.waitall()
    return step


def _our_step(s):
    from frcnn_model.training.step import TrainStep
    step = TrainStep(s["ours"], seed=0)
    labels = np.concatenate([s["gt"], np.zeros((len(s["gt"]), 1), np.float32)], 1)[None]
    im_hw = np.array([s["hw"]], np.float32)

    def run():
        step(s["x"], labels, im_hw)
        s["mx"].nd.waitall()
    return run


@pytest.mark.parametrize("impl", ["frcnn_model", "gluoncv"])
def test_train_iteration(benchmark, setup, impl):
    benchmark.group = "train iteration, seed model, batch 1 (targets+fwd+bwd)"
    step = _our_step(setup) if impl == "frcnn_model" else _gluoncv_step(setup)
    step()  # warm-up: graph build, allocation
    benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=0)
