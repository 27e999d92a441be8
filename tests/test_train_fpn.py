"""Training the FPN model: the loss falls on a synthetic batch with gradients in every pyramid
level, and the training graph (RPN outputs of all levels, pyramid pooling of the sampled rois,
box head) computes GluonCV's outputs and parameter gradients on the same weights."""
import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

import frcnn_model  # noqa: E402
from frcnn_model.training.step import TrainStep  # noqa: E402
from testutil import synthetic_train_batch  # noqa: E402

CLASSES = ("circle", "square", "triangle", "cross", "diamond")
# anchors of 16 and 32 pixels: on a 128-pixel image every level has anchors inside it (larger
# ones cross the border, which leaves P5 and P6 without RPN samples)
SMALL = dict(scales=(1, 2, 2, 2, 2), rpn_train_pre_nms=1000, rpn_train_post_nms=200,
             rpn_test_pre_nms=500, rpn_test_post_nms=50, num_sample=64, num_fpn_filters=16,
             rpn_channel=16, box_head_units=64)


def _small_fpn(seed=0):
    mx.random.seed(seed)
    net = frcnn_model.faster_rcnn_fpn("resnet18_v1b", width=0.25, use_global_stats=False,
                                      classes=CLASSES, **SMALL)
    net.initialize(mx.init.Xavier(magnitude=2))
    return net


def _batch(n=2, size=128, seed=0):
    return synthetic_train_batch(n, size, seed)


def _grad_norm(block):
    return float(mx.nd.abs(block.weight.grad()).sum().asscalar())


def test_fpn_loss_falls_and_every_level_learns():
    """20 SGD steps on one batch: every loss term finite, the total falls by more than half;
    the first step's RPN losses reach every level's output conv (P2..P5) and P6, and the head's
    loss alone reaches the pyramid through frcnn_multilevel_roi_align's backward."""
    from mxnet import gluon
    net = _small_fpn()
    step = TrainStep(net, seed=0)
    data, labels, im_hw = _batch()
    step(data, labels, im_hw)
    f = net.features
    for level, conv in enumerate(list(f.output) + [f.p6], 2):
        assert _grad_norm(conv) > 0, "P%d has no gradient" % level
    head_only = TrainStep(net, seed=0)
    head_only.rpn_cls_loss = head_only.rpn_box_loss = (lambda *a: 0 * a[0].sum())
    for p in net.collect_params().values():
        p.zero_grad()
    head_only(data, labels, im_hw)
    assert _grad_norm(f.p6) == 0 and _grad_norm(f.output[0]) > 0  # rois of 128 px: P2, P3
    assert _grad_norm(f.stem[0]) > 0
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": 0.02, "momentum": 0.9, "wd": 1e-4})
    totals = []
    for _ in range(20):
        losses = step(data, labels, im_hw)
        trainer.step(data.shape[0])
        assert all(np.isfinite(losses[k]) for k in ("rpn_cls", "rpn_box", "rcnn_cls",
                                                     "rcnn_box")), losses
        totals.append(sum(losses[k] for k in ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box")))
    assert np.mean(totals[-3:]) < 0.5 * np.mean(totals[:3]), totals


def test_fpn_training_graph_matches_gluoncv(tmp_path):
    """GluonCV's FPN in training mode and ours on its weights: the same RPN logits and deltas
    of all levels, anchors (ours in NumPy for the targets), and, on GluonCV's sampled rois,
    the same class and box predictions; a weighted sum of these four outputs has the same
    gradient for every parameter (the pyramid pooling's backward included). GluonCV pools
    through its unmasked branch (testutil.gluoncv_unmasked_reference)."""
    gluoncv = pytest.importorskip("gluoncv")
    from mxnet import autograd
    from testutil import gluoncv_unmasked_reference
    mx.random.seed(0)
    g = gluoncv.model_zoo.get_model("faster_rcnn_fpn_resnet50_v1b_coco", pretrained=False,
                                    pretrained_base=False)
    g.initialize(mx.init.Normal(0.05))
    gluoncv_unmasked_reference(g)
    x = mx.nd.array(np.random.default_rng(0).uniform(-1, 1, size=(1, 3, 128, 192)))
    g(x)
    path = str(tmp_path / "g.params")
    g.save_parameters(path)
    gt_box = mx.nd.array([[[20, 30, 120, 110], [100, 60, 180, 120]]])
    gt_label = mx.nd.array([[[1], [5]]])
    mx.random.seed(7)
    with autograd.train_mode(), autograd.record():
        out = g(x, gt_box, gt_label)
        cls_pred, box_pred, rois, raw_score, raw_box, anchors, indices = (
            out[0], out[1], out[2], out[5], out[6], out[7], out[11])
        loss = (cls_pred.sum() + 2 * box_pred.sum() + 3 * raw_score.sum()
                + 4 * raw_box.sum())
    loss.backward()

    net = frcnn_model.faster_rcnn_fpn_resnet50_v1b_coco()
    net.load_parameters(path)
    for p in net.collect_params().values():
        if p.grad_req != "null":
            p.zero_grad()
    step = TrainStep(net)
    flat_rois = mx.nd.concat(mx.nd.zeros((rois.shape[1], 1)), rois[0], dim=1)
    with autograd.record():
        o = step.stage1(x, mx.nd.array([[128, 192]]))
        feats, logits, deltas = o[:4], o[5], o[6]
        ours_cls, ours_box = step.stage2(*feats, flat_rois, indices[0].astype("float32"))
        ours_loss = (ours_cls.sum() + 2 * ours_box.sum() + 3 * logits.sum()
                     + 4 * deltas.sum())
    ours_loss.backward()
    feat_hw = tuple(tuple(f.shape[2:]) for f in o[:5])
    np.testing.assert_array_equal(step.anchors(feat_hw),
                                  mx.nd.concat(*anchors, dim=1)[0].asnumpy())
    for a, b in ((logits, raw_score), (deltas, raw_box), (ours_cls, cls_pred),
                 (ours_box, box_pred)):
        b = b.asnumpy()
        np.testing.assert_allclose(a.asnumpy().reshape(b.shape), b, rtol=1e-4,
                                   atol=1e-5 * max(1.0, np.abs(b).max()))
    np.testing.assert_allclose(ours_loss.asscalar(), loss.asscalar(), rtol=1e-4)
    ours = net._collect_params_with_prefix()
    checked = 0
    for k, p in g._collect_params_with_prefix().items():
        if p.grad_req == "null":
            continue
        want = p.grad().asnumpy()  # float sums in another order: atol relative to the size
        np.testing.assert_allclose(ours[k].grad().asnumpy(), want, rtol=1e-4,
                                   atol=1e-5 * np.abs(want).max(), err_msg=k)
        checked += 1
    assert checked > 150


def test_fpn_pretrained_base_from_gluoncv_classifier(tmp_path):
    """frcnn-train --pretrained-base for the FPN model: a GluonCV resnet18_v1b classifier's
    file fills the ResNet under the pyramid (C5 computed as GluonCV's layer4)."""
    gluoncv = pytest.importorskip("gluoncv")
    from frcnn_model.modeling.faster_rcnn import load_pretrained_base
    mx.random.seed(4)
    cls = gluoncv.model_zoo.get_model("resnet18_v1b", pretrained=False, use_global_stats=True)
    cls.initialize(mx.init.Xavier())
    x = mx.nd.random.normal(shape=(1, 3, 64, 64))
    cls(x)
    path = str(tmp_path / "r18.params")
    cls.save_parameters(path)
    net = frcnn_model.faster_rcnn_fpn("resnet18_v1b", classes=CLASSES, num_fpn_filters=16,
                                      rpn_channel=16, box_head_units=32)
    net.initialize()
    # every ResNet-18 parameter: 20 convs (3 of them downsample) and 20 BatchNorms x 4
    assert load_pretrained_base(net, path) == 100
    f = net.features
    c5 = f.layer4(f.layer3(f.layer2(f.layer1(f.stem(x)))))
    expect = cls.layer4(cls.layer3(cls.layer2(cls.layer1(
        cls.maxpool(cls.relu(cls.bn1(cls.conv1(x))))))))
    np.testing.assert_allclose(c5.asnumpy(), expect.asnumpy(), rtol=1e-5, atol=1e-5)
