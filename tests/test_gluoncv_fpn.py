"""patch_gluoncv on GluonCV's FPN Faster R-CNN and Mask R-CNN (faster_rcnn_fpn_resnet50_v1b_coco,
mask_rcnn_fpn_resnet50_v1b_coco; random init, a small image): the same detections (and masks)
at inference, the same outputs, loss and parameter gradients in training."""
import numpy as np
import pytest

import frcnn_ops
from testutil import (detection_keys, gluoncv_unmasked_reference, matched_detections,
                      params_by_name)

HW = (128, 192)


@pytest.fixture(scope="module", params=["faster_rcnn_fpn_resnet50_v1b_coco",
                                        "mask_rcnn_fpn_resnet50_v1b_coco"])
def fpn(mx, gluoncv, request):
    from gluoncv import model_zoo

    def make(std):
        mx.random.seed(0)
        net = model_zoo.get_model(request.param, pretrained=False, pretrained_base=False)
        net.initialize(mx.init.Normal(std))
        return gluoncv_unmasked_reference(net)  # a reference that writes every row
    make.mask = request.param.startswith("mask")
    x = mx.nd.array(np.random.default_rng(0).uniform(-1, 1, size=(1, 3) + HW))
    return make, x


@pytest.mark.parametrize("hybridize", [False, True])
def test_fpn_inference_same_detections(mx, fpn, hybridize):
    make, x = fpn
    if hybridize and make.mask:
        pytest.skip("Mask R-CNN: imperative only (the graph path is the same ops)")
    net = make(0.01)
    if make.mask:
        net._rcnn_max_dets = 100  # masks of the top 100 detections (1000: 25 s a run)
    if hybridize:
        net.hybridize()
    ref = [o.asnumpy() for o in net(x)]
    frcnn_ops.patch_gluoncv(net)
    ours = [o.asnumpy() for o in net(x)]
    # rows matched as (id, score, box) multisets (testutil.detection_keys); the pyramid
    # pooling's sums differ from GluonCV's in the last bits, which can flip an NMS decision
    # between tied boxes
    n_ref, n_ours = int((ref[1] > 0).sum()), int((ours[1] > 0).sum())
    assert n_ref > 0 and abs(n_ours - n_ref) <= 1e-3 * n_ref, (n_ours, n_ref)
    assert matched_detections(ref, ours) >= 0.99 * n_ref
    if len(ref) == 4:  # Mask R-CNN: the mask of every detection found in both, by its row
        assert ours[3].shape == ref[3].shape
        ref_masks = dict(zip(detection_keys(ref), ref[3][0]))
        both = [(m, ref_masks[k]) for k, m in zip(detection_keys(ours), ours[3][0])
                if k in ref_masks]
        assert len(both) >= 0.95 * len(ref_masks)  # tied scores reorder the top 100
        np.testing.assert_allclose(np.stack([m for m, _ in both]),
                                   np.stack([r for _, r in both]), rtol=1e-3, atol=1e-3)


def test_fpn_training_same_outputs_and_gradients(mx, fpn):
    from mxnet import autograd
    make, x = fpn
    gt_box = mx.nd.array([[[20, 30, 120, 150], [100, 60, 300, 240]]])
    gt_label = mx.nd.array([[[1], [5]]])
    nets = []
    for patched in (False, True):
        net = make(0.05)  # seeded: the same weights both times
        net(x)
        if patched:
            frcnn_ops.patch_gluoncv(net)
        mx.random.seed(7)  # the samplers draw
        with autograd.train_mode(), autograd.record():
            out = net(x, gt_box, gt_label)
            # float32 sums: MXNet 1.9.1 fails the backward of astype on a Mask R-CNN output
            # ("Check failed: !is_view"), patched or not
            loss = sum(o.sum() * (i + 1) for i, o in enumerate(out[:3]))
        loss.backward()
        flat = [a for o in out for a in (o if isinstance(o, (list, tuple)) else [o])]
        nets.append((net, [o.asnumpy() for o in flat], loss.asscalar()))
    (ref_net, ref_out, ref_loss), (net, out, loss) = nets
    assert len(out) == len(ref_out)
    for a, b in zip(out, ref_out):  # float sums in another order: atol relative to the size
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(b).max()))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-4)
    rp, p = params_by_name(ref_net), params_by_name(net)
    checked = 0
    for k, v in rp.items():
        if v.grad_req == "null":
            continue
        want = v.grad().asnumpy()  # float sums in another order: atol relative to the size
        np.testing.assert_allclose(p[k].grad().asnumpy(), want, rtol=1e-4,
                                   atol=1e-5 * np.abs(want).max(), err_msg=k)
        checked += 1
    assert checked > 50
