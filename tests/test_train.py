"""Training: the loss falls over a few iterations on the synthetic set, checkpoints resume,
frcnn-eval and frcnn-detect take the trained weights, and the training graph's pieces are
GluonCV's (losses recomputed in NumPy)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from frcnn_model.modeling.faster_rcnn import faster_rcnn, load_model, save_model  # noqa: E402
from testutil import synthetic_train_batch  # noqa: E402

CLASSES = ("circle", "square", "triangle", "cross", "diamond")
SMALL = dict(scales=(1, 2, 4, 8), ratios=(0.5, 1, 2), rpn_train_pre_nms=2000,
             rpn_train_post_nms=300, rpn_test_pre_nms=1000, rpn_test_post_nms=100,
             roi_size=(7, 7), num_sample=64, rpn_min_size=4)


def _net(seed=0, use_global_stats=False, **kw):
    mx.random.seed(seed)
    net = faster_rcnn("resnet18_v1b", width=0.25, use_global_stats=use_global_stats,
                      classes=CLASSES,
                      **dict(SMALL, **kw))
    net.initialize(mx.init.Xavier(magnitude=2))
    return net


def _batch(n=2, size=128, seed=0):
    return synthetic_train_batch(n, size, seed)


def test_loss_falls_over_a_few_iterations():
    """The same batch, 25 SGD steps: every RPN/RCNN loss term is finite and the total falls
    by more than half (a broken gradient path — ROIAlign backward, targets, losses — stalls)."""
    from mxnet import gluon
    from frcnn_model.training.step import TrainStep
    net = _net()
    step = TrainStep(net, seed=0)
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": 0.02, "momentum": 0.9, "wd": 1e-4})
    data, labels, im_hw = _batch()
    totals = []
    for _ in range(25):
        losses = step(data, labels, im_hw)
        trainer.step(data.shape[0])
        for key in ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box"):
            assert np.isfinite(losses[key]), (key, losses)
        totals.append(sum(losses[k] for k in ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box")))
    first, last = np.mean(totals[:3]), np.mean(totals[-3:])
    assert last < 0.5 * first, totals


def test_roi_align_backward_reaches_the_backbone():
    """The head's loss alone gives the first conv a gradient: ROIAlign's backward is in the
    graph (proposals and targets are not)."""
    from mxnet import autograd
    from frcnn_model.training.step import TrainStep
    net = _net(1)
    step = TrainStep(net, seed=0)
    for p in net.collect_params().values():
        p.zero_grad()
    step.rpn_cls_loss = step.rpn_box_loss = (lambda *a: 0 * a[0].sum())  # head only
    data, labels, im_hw = _batch(seed=3)
    step(data, labels, im_hw)
    grad = net.features[0].weight.grad()
    assert float(mx.nd.abs(grad).sum().asscalar()) > 0
    assert not autograd.is_recording()


def test_train_step_losses_match_numpy():
    """The four losses equal GluonCV's formulas recomputed in NumPy from the same outputs and
    targets (sigmoid BCE and Huber 1/9 over the sampled anchors, softmax CE and Huber 1 over
    the sampled rois, each normalised by the number sampled in the batch; GluonCV's per-image
    terms summed over the batch, so B times that, and trainer.step(B) divides by B)."""
    from frcnn_model.training import step as training
    net = _net(2)
    step = training.TrainStep(net, seed=5)
    seen = {}
    stage2 = step.stage2

    def spy2(feat, rois, index):
        out = stage2(feat, rois, index)
        seen["cls_pred"], seen["box_pred"] = out[0].asnumpy(), out[1].asnumpy()
        return out
    stage1 = step.stage1

    def spy1(x, hw):
        out = stage1(x, hw)
        seen["logits"], seen["deltas"] = out[1].asnumpy(), out[2].asnumpy()
        return out
    rpn_targets, rcnn_targets = step.rpn_targets, training.rcnn_targets

    def spy_rpn(*a):
        out = rpn_targets(*a)
        seen["rpn"] = out
        return out

    def spy_rcnn(*a, **k):
        out = rcnn_targets(*a, **k)
        seen["rcnn"] = out
        return out
    step.stage1, step.stage2, step.rpn_targets = spy1, spy2, spy_rpn
    training.rcnn_targets = spy_rcnn
    try:
        data, labels, im_hw = _batch(seed=4)
        losses = step(data, labels, im_hw)
    finally:
        training.rcnn_targets = rcnn_targets
    b = data.shape[0]
    cls_t, box_t, mask = seen["rpn"]
    x = seen["logits"][..., 0]
    valid = cls_t >= 0
    bce = np.maximum(x, 0) - x * cls_t + np.log1p(np.exp(-np.abs(x)))
    np.testing.assert_allclose(losses["rpn_cls"], b * (bce * valid).sum() / valid.sum(),
                               rtol=1e-4)

    def huber(d, rho):
        a = np.abs(d)
        return np.where(a > rho, a - 0.5 * rho, 0.5 / rho * a * a)
    np.testing.assert_allclose(losses["rpn_box"],
                               b * (huber(seen["deltas"] - box_t, 1 / 9.0) * mask).sum()
                               / valid.sum(), rtol=1e-4, atol=1e-7)
    rc_t, rb_t, rb_mask, _ = seen["rcnn"]
    logits = seen["cls_pred"].reshape(b, rc_t.shape[1], -1).astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    ok = rc_t >= 0
    ce = -np.take_along_axis(logp, np.maximum(rc_t, 0).astype(int)[..., None], -1)[..., 0]
    np.testing.assert_allclose(losses["rcnn_cls"], b * (ce * ok).sum() / ok.sum(), rtol=1e-4)
    box_pred = seen["box_pred"].reshape(rb_t.shape)
    np.testing.assert_allclose(losses["rcnn_box"],
                               b * (huber(box_pred - rb_t, 1.0) * rb_mask).sum() / ok.sum(),
                               rtol=1e-4, atol=1e-7)


def test_save_load_model_roundtrip(tmp_path):
    net = _net(3)
    x = mx.nd.array(_batch(1)[0])
    before = [o.asnumpy() for o in net(x)]
    path = str(tmp_path / "m.params")
    save_model(net, path, (128, 128))
    spec = json.load(open(path + ".json"))
    assert spec["backbone"] == "resnet18_v1b" and spec["width"] == 0.25
    assert spec["input_size"] == [128, 128]
    again = load_model(path)
    after = [o.asnumpy() for o in again(x)]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_bad_backbone_is_named():
    with pytest.raises(ValueError, match="backbone"):
        faster_rcnn("vgg16")
    with pytest.raises(ValueError, match="width"):
        faster_rcnn("resnet18_v1b", width=0)


def _run(args, cwd, timeout=600):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m"] + args, cwd=cwd, env=env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


SMOKE = ["--num-train", "16", "--num-val", "8", "--image-size", "128", "--short", "128",
         "--max-size", "128", "--width", "0.25", "--batch-size", "4", "--no-progress",
         "--lr-warmup", "2"]


@pytest.mark.slow
def test_frcnn_train_resume_eval_detect(tmp_path):
    """frcnn-train for 2 epochs writes checkpoints, log.json and curves.png; --resume goes on to
    epoch 3; frcnn-eval and frcnn-detect read the checkpoint."""
    out = str(tmp_path / "run")
    r = _run(["frcnn_model.cli.train", "--epochs", "2", "--save-dir", out] + SMOKE, str(tmp_path))
    assert r.returncode == 0, r.stdout
    for name in ("epoch_0001.params", "epoch_0002.params", "epoch_0002.params.json",
                 "epoch_0002.states", "last.params", "best.params", "log.json", "curves.png"):
        assert os.path.exists(os.path.join(out, name)), (name, os.listdir(out))
    log = json.load(open(os.path.join(out, "log.json")))
    assert [e["epoch"] for e in log["epochs"]] == [1, 2]
    assert all(0.0 <= e["mAP"] <= 1.0 for e in log["epochs"])
    r = _run(["frcnn_model.cli.train", "--epochs", "3", "--save-dir", out, "--resume"] + SMOKE,
             str(tmp_path))
    assert r.returncode == 0, r.stdout
    assert "resumed from" in r.stdout
    log = json.load(open(os.path.join(out, "log.json")))
    assert [e["epoch"] for e in log["epochs"]] == [1, 2, 3]
    assert log["epochs"][2]["iteration"] == 12
    r = _run(["frcnn_model.cli.eval", os.path.join(out, "last.params"), "--json",
              str(tmp_path / "ap.json")], str(tmp_path))
    assert r.returncode == 0, r.stdout
    ap = json.load(open(tmp_path / "ap.json"))["ap"]
    assert set(ap) == set(CLASSES) | {"mAP"}
    assert abs(ap["mAP"] - log["epochs"][2]["mAP"]) < 1e-9  # same images, same weights
    from frcnn_model.data.datasets import SyntheticShapes
    import cv2
    img, _ = SyntheticShapes(1, seed=9, size=(128, 128))[0]
    cv2.imwrite(str(tmp_path / "shapes.png"), img[:, :, ::-1])
    r = _run(["frcnn_model.cli.detect", str(tmp_path / "shapes.png"), "--params",
              os.path.join(out, "last.params"), "--out", str(tmp_path / "det"),
              "--threshold", "0"], str(tmp_path))
    assert r.returncode == 0, r.stdout
    assert os.path.exists(tmp_path / "det" / "shapes_4_detections.png")
    assert "input 128x128" in r.stdout  # the input size came from last.params.json


def test_frcnn_train_errors(tmp_path):
    r = _run(["frcnn_model.cli.train", "--dataset", "voc", "--save-dir", str(tmp_path)],
             str(tmp_path))
    assert r.returncode != 0 and "voc:ROOT" in r.stdout
    r = _run(["frcnn_model.cli.train", "--resume", "--save-dir", str(tmp_path / "none")] + SMOKE,
             str(tmp_path))
    assert r.returncode != 0 and "no epoch_" in r.stdout


@pytest.mark.slow
def test_dist_sync_two_local_workers(tmp_path):
    """--kvstore dist_sync with two workers (python -m frcnn_model.cli.launch: scheduler, server and
    workers as local processes), each on its half of every batch: both finish and rank 0
    writes the checkpoint after the two synchronised iterations."""
    out = str(tmp_path / "dp")
    cmd = [sys.executable, "-m", "frcnn_model.cli.train", "--kvstore", "dist_sync", "--epochs", "1",
           "--max-iters", "2", "--save-dir", out] + SMOKE[:2] + ["--num-val", "0"] + SMOKE[4:]
    r = _run(["frcnn_model.cli.launch", "-n", "2", "--"] + cmd, str(tmp_path), timeout=300)
    assert r.returncode == 0, r.stdout
    assert os.path.exists(os.path.join(out, "epoch_0001.params")), r.stdout
    log = json.load(open(os.path.join(out, "log.json")))
    assert log["epochs"][0]["iteration"] == 2


def test_pretrained_base_from_gluoncv_classifier(tmp_path):
    """A GluonCV resnet18_v1b classifier's parameter file fills the detector's backbone: the
    features then compute GluonCV's conv1..layer3 exactly; a wrong depth is refused by name."""
    from gluoncv.model_zoo import get_model
    from frcnn_model.modeling.faster_rcnn import load_pretrained_base
    mx.random.seed(4)
    cls = get_model("resnet18_v1b", pretrained=False, use_global_stats=True)
    cls.initialize(mx.init.Xavier())
    x = mx.nd.random.normal(shape=(1, 3, 64, 64))
    cls(x)
    for p in cls.collect_params().values():  # non-trivial BatchNorm statistics
        if p.name.endswith(("running_mean", "running_var")):
            p.set_data(mx.nd.random.uniform(0.5, 1.5, shape=p.shape))
    path = str(tmp_path / "r18.params")
    cls.save_parameters(path)
    net = faster_rcnn("resnet18_v1b", classes=CLASSES)
    net.initialize()
    assert load_pretrained_base(net, path) == len([k for k in net._collect_params_with_prefix()
                                                   if k.startswith(("features", "top_features"))])
    h = cls.maxpool(cls.relu(cls.bn1(cls.conv1(x))))
    expect = cls.layer3(cls.layer2(cls.layer1(h)))
    np.testing.assert_allclose(net.features(x).asnumpy(), expect.asnumpy(), rtol=1e-5, atol=1e-5)
    wrong = faster_rcnn("resnet50_v1b", classes=CLASSES)
    wrong.initialize()
    with pytest.raises(ValueError, match="pretrained base"):
        load_pretrained_base(wrong, path)


# --- what trains: GluonCV's collect_train_params ---------------------------------------------

from frcnn_model.cli.train import _trained_names  # noqa: E402  (structural keys)


@pytest.mark.parametrize("name", ["faster_rcnn_resnet50_v1b_voc",
                                  "faster_rcnn_fpn_resnet50_v1b_coco"])
def test_collect_train_params_is_gluoncvs(gluoncv, name):
    """The same parameters as GluonCV's collect_train_params (its train_patterns: the stem,
    layer1 and every BatchNorm frozen), by the structural keys the parameter files share; the
    anchors, constants, are left out."""
    import warnings
    import frcnn_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = gluoncv.model_zoo.get_model(name, pretrained=False, pretrained_base=False)
    expected = set(_trained_names(theirs))
    ours = getattr(frcnn_model, name)()
    got = set(_trained_names(ours))
    assert all(".anchor" in k for k in expected - got) and not got - expected, (
        sorted(expected - got), sorted(got - expected))
    assert len(got) == {"faster_rcnn_resnet50_v1b_voc": 52,
                        "faster_rcnn_fpn_resnet50_v1b_coco": 74}[name]
    assert not any(k.startswith("features.0.") or ".bn" in k for k in got)
    assert ours.collect_train_params(".*dense").keys() == ours.collect_params(".*dense").keys()


def test_trained_batchnorm_trains_everything_but_its_statistics():
    """BatchNorm trained (use_global_stats=False, GluonCV's syncbn recipe): every parameter
    but the running statistics and the anchors."""
    net = _net()
    keys = set(net._collect_params_with_prefix())
    got = set(_trained_names(net))
    assert got == {k for k in keys if "running_" not in k and "anchor" not in k}
    assert "features.0.weight" in got and "features.1.gamma" in got


def test_frcnn_train_updates_only_the_train_params():
    """frcnn-train's trainer on a frozen-BatchNorm model: after a step the stem, layer1 and
    BatchNorm parameters are as loaded, every other one moved; the graph computes no gradient
    for the frozen ones (grad_req 'null')."""
    import argparse
    from frcnn_model.cli.train import _make_trainer
    from frcnn_model.training.step import TrainStep
    net = _net(use_global_stats=True)
    net(mx.nd.zeros((1, 3, 128, 128)))  # deferred shapes
    before = {k: p.data().asnumpy().copy() for k, p in net._collect_params_with_prefix().items()}
    args = argparse.Namespace(lr=0.05, wd=1e-4, optimizer="sgd", momentum=0.9)
    trainer = _make_trainer(args, net, "local")
    train = set(_trained_names(net))
    data, labels, im_hw = _batch()
    TrainStep(net, seed=0)(data, labels, im_hw)
    trainer.step(data.shape[0])
    for k, p in net._collect_params_with_prefix().items():
        moved = not np.array_equal(p.data().asnumpy(), before[k])
        if k in train:
            assert moved, k
        else:
            assert not moved and p.grad_req == "null", k
    assert "features.5.0.conv1.weight" in train and "features.4.0.conv1.weight" not in train


def test_resume_loads_optimizer_state_only_for_the_same_train_params(tmp_path, capsys):
    """A checkpoint's optimizer state goes with the parameters it trained (the list in its
    .state.json): a checkpoint without it (an older frcnn-train, which trained every
    parameter) or with another list restarts momentum, saying so, instead of handing one
    parameter's momentum to another."""
    import argparse
    from frcnn_model.cli import train as cli
    from frcnn_model.training.step import TrainStep
    net = _net(use_global_stats=True)
    net(mx.nd.zeros((1, 3, 128, 128)))
    args = argparse.Namespace(lr=0.05, wd=1e-4, optimizer="sgd", momentum=0.9,
                              save_dir=str(tmp_path), kvstore="local")
    trainer = cli._make_trainer(args, net, "local")
    data, labels, im_hw = _batch()
    TrainStep(net, seed=0)(data, labels, im_hw)
    trainer.step(data.shape[0])
    net.save_parameters(str(tmp_path / "e.params"))
    trainer.save_states(str(tmp_path / "e.states"))
    resumed = {"log": {"epochs": [], "iterations": {}}, "epoch": 1, "batch": 0,
               "iteration": 1, "elapsed": 0.0, "smooth": {}, "best": -1,
               "trained": cli._trained_names(net)}
    for trained, loads in ((resumed["trained"], True), (None, False),
                           (resumed["trained"][1:], False)):
        run = cli._Run(args)
        run.net = _net(use_global_stats=True)
        run.net(mx.nd.zeros((1, 3, 128, 128)))
        run.trainer = cli._make_trainer(args, run.net, "local")
        run.log = {"epochs": [], "iterations": {}}
        cli._resume(run, "e", dict(resumed, trained=trained))
        out = capsys.readouterr().out
        assert ("momentum restarts" not in out) == loads, out
        assert bool(run.trainer._updaters[0].states) == loads
