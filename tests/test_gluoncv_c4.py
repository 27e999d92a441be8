"""patch_gluoncv on GluonCV's single-level (C4) Faster R-CNN and Mask R-CNN (random init, small
images): the same detections and masks at inference; the same outputs, GluonCV losses and
parameter gradients in training; the zoo's other variants construct and patch."""
import warnings

import numpy as np
import pytest

import frcnn_ops
from testutil import detection_keys, matched_detections, params_by_name

HW = (128, 192)  # inference: 8x12 features, 1440 anchors
# training: 12x16 features, 2880 anchors; GluonCV's sampler takes all 2000 training proposals
# (the RPN's slice fails on fewer anchors, patched or not)
HW_TRAIN = (192, 256)


def _resnet18_c4(mask, **overrides):
    """GluonCV's own FasterRCNN / MaskRCNN on a C4 resnet18_v1b, built as the zoo's
    mask_rcnn_resnet18_v1b_coco (its settings; VOC's classes for Faster R-CNN) with fewer rois:
    the head runs layer4 once per roi (256 training rois: 20 s a run on 2 cores)."""
    from mxnet.gluon import nn
    from gluoncv.data import COCODetection, VOCDetection
    from gluoncv.model_zoo.resnetv1b import resnet18_v1b
    from gluoncv.model_zoo.rcnn.faster_rcnn.faster_rcnn import get_faster_rcnn
    from gluoncv.model_zoo.rcnn.mask_rcnn.mask_rcnn import get_mask_rcnn

    base = resnet18_v1b(pretrained=False, dilated=False, use_global_stats=True)
    features, top_features = nn.HybridSequential(), nn.HybridSequential()
    for layer in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"):
        features.add(getattr(base, layer))
    top_features.add(base.layer4)
    settings = dict(
        features=features, top_features=top_features, short=800, max_size=1333,
        nms_thresh=0.5, nms_topk=-1, post_nms=-1, roi_mode="align", roi_size=(14, 14),
        strides=16, clip=4.42, rpn_channel=1024, base_size=16, scales=(2, 4, 8, 16, 32),
        ratios=(0.5, 1, 2), alloc_size=(128, 128), rpn_nms_thresh=0.7,
        rpn_train_pre_nms=12000, rpn_train_post_nms=2000, rpn_test_pre_nms=6000,
        rpn_test_post_nms=100, rpn_min_size=1, num_sample=32, pos_iou_thresh=0.5,
        pos_ratio=0.25)
    settings.update(overrides)
    if mask:
        return get_mask_rcnn(name="resnet18_v1b", dataset="coco", classes=COCODetection.CLASSES,
                             mask_channels=256, rcnn_max_dets=50, **settings)
    return get_faster_rcnn(name="resnet18_v1b", dataset="voc", classes=VOCDetection.CLASSES,
                           **settings)


def _make(mask, std, **overrides):
    """Seeded random weights, N(0, std). Inference takes 0.03: at 0.01 the activations fade
    through the backbone and the box deltas move the boxes by 1e-4, less than the 1e-2 that
    detections are matched to (a wrong decode would pass)."""
    import mxnet as mx
    mx.random.seed(0)
    net = _resnet18_c4(mask, **overrides)
    net.initialize(mx.init.Normal(std))
    return net


def _image(mx, hw):
    return mx.nd.array(np.random.default_rng(0).uniform(-1, 1, size=(1, 3) + hw))


def _same_detections(ref, ours):
    """The issue's criterion: the same count of detections, >= 99% of them matched (id, score,
    box); for a Mask R-CNN the mask of every matched detection the same."""
    n_ref, n_ours = int((ref[1] > 0).sum()), int((ours[1] > 0).sum())
    assert n_ref > 0 and n_ours == n_ref, (n_ours, n_ref)
    assert matched_detections(ref, ours) >= 0.99 * n_ref
    if len(ref) == 4:
        assert ours[3].shape == ref[3].shape
        ref_masks = dict(zip(detection_keys(ref), ref[3][0]))
        both = [(m, ref_masks[k]) for k, m in zip(detection_keys(ours), ours[3][0])
                if k in ref_masks]
        assert len(both) >= 0.99 * len(ref_masks)
        np.testing.assert_allclose(np.stack([m for m, _ in both]),
                                   np.stack([r for _, r in both]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hybridize", [False, True])
def test_c4_mask_rcnn_inference_same_detections_and_masks(mx, gluoncv, hybridize):
    net = _make(True, 0.03)
    x = _image(mx, HW)
    if hybridize:
        net.hybridize()
    ref = [o.asnumpy() for o in net(x)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left as GluonCV's: no warning
        assert frcnn_ops.patch_gluoncv(net) is net
    ours = [o.asnumpy() for o in net(x)]
    assert len(ours) == 4
    _same_detections(ref, ours)


def test_c4_patched_forward_runs_the_frcnn_ops(mx, gluoncv, monkeypatch):
    """The C4 paths call our ops, not GluonCV's: the Mask R-CNN's both ROIAligns, its
    proposals, decoding and NMS, and a Faster R-CNN's training ROIAlign (with backward)."""
    from mxnet import autograd
    mask_net, net = _make(True, 0.01), _make(False, 0.01)
    net(_image(mx, HW_TRAIN))  # deferred shapes, with GluonCV's ops
    calls = {}
    for op in ("frcnn_proposal", "frcnn_roi_align", "frcnn_box_decode", "frcnn_nms"):
        def spy(*a, _op=op, _f=getattr(mx.nd, op), **k):
            calls[_op] = calls.get(_op, 0) + 1
            return _f(*a, **k)
        monkeypatch.setattr(mx.nd, op, spy)
    for name in ("ROIAlign", "box_nms", "box_decode"):
        monkeypatch.setattr(mx.nd.contrib, name, None)  # a call to GluonCV's op would fail

    frcnn_ops.patch_gluoncv(mask_net)(_image(mx, HW))
    assert calls == {"frcnn_proposal": 1, "frcnn_roi_align": 2, "frcnn_box_decode": 1,
                     "frcnn_nms": 1}
    calls.clear()
    frcnn_ops.patch_gluoncv(net)
    with autograd.train_mode(), autograd.record():
        out = net(_image(mx, HW_TRAIN), mx.nd.array([[[20, 30, 120, 150]]]),
                  mx.nd.array([[[1]]]))
        loss = out[0].sum()
    loss.backward()
    assert calls == {"frcnn_proposal": 1, "frcnn_roi_align": 1}


def _gt(mx):
    gt_box = mx.nd.array([[[20, 30, 120, 150], [100, 60, 180, 120], [130, 20, 250, 180]]])
    gt_label = mx.nd.array([[[1], [5], [14]]])
    h, w = HW_TRAIN
    masks = np.zeros((1, 3, h, w), np.float32)  # a filled ellipse in each box
    yy, xx = np.mgrid[:h, :w]
    for i, (x1, y1, x2, y2) in enumerate(gt_box[0].asnumpy()):
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        masks[0, i] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    return gt_box, gt_label, mx.nd.array(masks)


def _gluoncv_losses(mx, net, out, gt_box, gt_mask, rpn_targets):
    """GluonCV's training losses (scripts/detection/{faster,mask}_rcnn/train_*.py): RPN sigmoid
    cross-entropy and smooth L1 against RPNTargetGenerator's targets, RCNN softmax cross-entropy
    and smooth L1 against the net's own targets, and the mask's sigmoid cross-entropy against
    its MaskTargetGenerator's."""
    from mxnet.gluon import loss as gloss
    mask = len(out) == 13
    if mask:
        (cls_pred, box_pred, mask_pred, rpn_box, _, matches, raw_rpn_score, raw_rpn_box, _,
         cls_targets, box_targets, box_masks, indices) = out
    else:
        (cls_pred, box_pred, rpn_box, _, matches, raw_rpn_score, raw_rpn_box, _,
         cls_targets, box_targets, box_masks, _) = out
    rpn_cls_t, rpn_box_t, rpn_box_m = rpn_targets
    num_rpn_pos = (rpn_cls_t >= 0).sum()
    rpn_cls = gloss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)(
        raw_rpn_score.squeeze(axis=-1), rpn_cls_t, rpn_cls_t >= 0) * rpn_cls_t.size / num_rpn_pos
    rpn_reg = gloss.HuberLoss(rho=1. / 9)(raw_rpn_box, rpn_box_t, rpn_box_m) \
        * raw_rpn_box.size / num_rpn_pos
    num_rcnn_pos = (cls_targets >= 0).sum()
    rcnn_cls = gloss.SoftmaxCrossEntropyLoss()(
        cls_pred, cls_targets, cls_targets.expand_dims(-1) >= 0) * cls_targets.size / num_rcnn_pos
    rcnn_reg = gloss.HuberLoss()(box_pred, box_targets, box_masks) * box_pred.size / num_rcnn_pos
    losses = [rpn_cls.sum(), rpn_reg.sum(), rcnn_cls.sum(), rcnn_reg.sum()]
    if mask:
        def positive(a):  # the rows the mask head saw (one image)
            return mx.nd.take(a[0], indices[0]).expand_dims(0)
        mask_t, mask_m = net.mask_target(positive(rpn_box), gt_mask, positive(matches),
                                         positive(cls_targets))
        losses.append((gloss.SigmoidBinaryCrossEntropyLoss()(mask_pred, mask_t, mask_m)
                       * mask_t.size / mask_m.sum()).sum())
    return losses


@pytest.mark.parametrize("mask", [False, True], ids=["faster", "mask"])
def test_c4_training_same_outputs_losses_and_gradients(mx, gluoncv, mask):
    from mxnet import autograd
    from gluoncv.model_zoo.rcnn.rpn.rpn_target import RPNTargetGenerator
    x = _image(mx, HW_TRAIN)
    gt_box, gt_label, gt_mask = _gt(mx)
    runs, rpn_targets = [], None
    for patched in (False, True):
        # seeded: the same weights both times; std 0.02: at 0.05 the activations blow up
        # (RCNN loss 60) and the backbone's gradients cancel to 1e-3 of their terms, which
        # scales the last-bit differences of ROIAlign's backward (different summation
        # order) up to 1e-3 of the largest (measured; 1e-6 at 0.02, in every parameter)
        net = _make(mask, 0.02)
        net(x)
        if patched:
            frcnn_ops.patch_gluoncv(net)
        mx.random.seed(7)  # the RCNN sampler draws
        with autograd.train_mode(), autograd.record():
            out = net(x, gt_box, gt_label)
            if rpn_targets is None:  # from the anchors (the same both times), as the loader
                np.random.seed(3)
                rpn_targets = [mx.nd.array(np.asarray(t.asnumpy() if hasattr(t, "asnumpy")
                                                      else t)).expand_dims(0)
                               for t in RPNTargetGenerator()(gt_box[0], out[-5][0],
                                                             HW_TRAIN[1], HW_TRAIN[0])]
            losses = _gluoncv_losses(mx, net, out, gt_box, gt_mask, rpn_targets)
        autograd.backward(losses)
        runs.append((net, [o.asnumpy() for o in out], [v.asscalar() for v in losses]))
    (ref_net, ref_out, ref_losses), (net, outs, losses) = runs
    assert len(outs) == len(ref_out) == (13 if mask else 12)  # anchors: one array (C4)
    for a, b in zip(outs, ref_out):  # float sums in another order: atol relative to the size
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(b).max()))
    assert all(np.isfinite(ref_losses)) and min(ref_losses) > 0, ref_losses
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    rp, p = params_by_name(ref_net), params_by_name(net)
    checked = 0
    for k, v in rp.items():
        if v.grad_req == "null":
            continue
        want = v.grad().asnumpy()
        assert np.abs(want).max() > 0 or "mask" in k, k  # every layer is in the losses
        np.testing.assert_allclose(p[k].grad().asnumpy(), want, rtol=1e-4,
                                   atol=1e-5 * np.abs(want).max(), err_msg=k)
        checked += 1
    assert checked > 40


def test_c4_double_head_and_force_nms_take_gluoncv_forward(mx, gluoncv):
    """A model whose heads are not FasterRCNN's (double-head R-CNN: same sub-block names) and
    a FasterRCNN with force_nms run GluonCV's own forward on our ops, not detect's heads."""
    from gluoncv import model_zoo
    net = model_zoo.get_model("doublehead_rcnn_resnet50_v1b_voc", pretrained=False,
                              pretrained_base=False)
    net._rpn_test_post_nms = net.rpn._test_post_nms = 20  # its heads on 20 rois, not 300
    faster = _make(False, 0.03)
    faster.set_nms(nms_thresh=0.5, nms_topk=-1, force_nms=True)
    mx.random.seed(0)
    net.initialize(mx.init.Normal(0.03))
    x = _image(mx, HW)
    for model in (net, faster):
        ref = [o.asnumpy() for o in model(x)]
        frcnn_ops.patch_gluoncv(model)
        _same_detections(ref, [o.asnumpy() for o in model(x)])


def test_every_zoo_rcnn_constructs_and_patches(mx, gluoncv):
    """Every Faster / Mask R-CNN of GluonCV's zoo (C4, FPN, syncbn, resnest; no download):
    patched without a warning, its proposal step and ROI pooling ours."""
    from gluoncv import model_zoo
    from frcnn_ops import gluoncv_patch
    names = [n for n in model_zoo.get_model_list() if "rcnn" in n and not n.startswith("custom")]
    assert len(names) >= 20 and any("resnest" in n for n in names)
    for name in names:
        kwargs = {"classes": ["a", "b"]} if name.endswith("custom") else {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Caution using SyncBatchNorm")
            net = model_zoo.get_model(name, pretrained=False, pretrained_base=False, **kwargs)
            warnings.simplefilter("error", UserWarning)  # nothing left as GluonCV's, silently
            assert frcnn_ops.patch_gluoncv(net) is net, name
        assert net.rpn.hybrid_forward.__func__ is gluoncv_patch._rpn_forward, name
        if net.num_stages > 1:
            assert net._pyramid_roi_feats.__func__ is gluoncv_patch._fpn_pyramid, name
        else:
            assert net.box_decoder.hybrid_forward.__func__ is gluoncv_patch._box_decode, name
            assert "hybrid_forward" in vars(net), name


def test_syncbn_builds_with_gluoncv_imported_first(tmp_path):
    """Loading the op library regenerates MXNet's operator functions; GluonCV's FPN compares
    one by identity (``norm_layer is SyncBatchNorm``), so frcnn_ops keeps the old objects and a
    syncbn model builds whatever the import order."""
    import subprocess
    import sys
    code = ("import gluoncv.model_zoo as z, frcnn_ops\n"
            "net = z.get_model('faster_rcnn_fpn_syncbn_resnet50_v1b_coco', pretrained=False,"
            " pretrained_base=False)\n"
            "frcnn_ops.patch_gluoncv(net)\nprint('built')\n")
    # from tmp_path: the repository root's frcnn_ops/ source tree would shadow the install
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=str(tmp_path))
    assert run.returncode == 0 and "built" in run.stdout, run.stderr[-2000:]


def test_bf16_is_refused_for_models_detect_does_not_run(mx, gluoncv, monkeypatch):
    """precision='bf16' converts detect's graph; a Mask R-CNN (GluonCV's forward) is refused,
    naming the function, the argument, its value and the model."""
    from gluoncv import model_zoo
    from frcnn_ops import bf16
    monkeypatch.setattr(bf16, "check_bf16_cpu", lambda: None)  # any CPU: the model decides
    net = model_zoo.get_model("mask_rcnn_resnet18_v1b_coco", pretrained=False,
                              pretrained_base=False)
    with pytest.raises(ValueError, match="patch_gluoncv: precision 'bf16' is supported for a "
                                         "plain C4 Faster R-CNN only .MaskRCNN"):
        frcnn_ops.patch_gluoncv(net, precision="bf16")
    assert "hybrid_forward" not in vars(net)  # refused before anything was patched
