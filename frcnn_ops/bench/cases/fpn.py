"""The FPN model comparisons (frcnn-bench --cases fpn; issue 17): whole models at GluonCV's FPN
test size, each against GluonCV's own model with the same random weights, both hybridized
(static_alloc), in one process (the same MXNet threads):

  FPN model (end to end)              frcnn_model's faster_rcnn_fpn_resnet50_v1b_coco vs GluonCV's
  FPN model, patch_gluoncv            GluonCV's FPN patched by frcnn_ops.patch_gluoncv vs unpatched
  Mask R-CNN FPN, patch_gluoncv       the same for mask_rcnn_fpn_resnet50_v1b_coco
  FPN training iteration              frcnn_model's TrainStep vs GluonCV's training forward +
                                      RPN targets + the four losses + backward, each on
                                      the parameters GluonCV's script trains

A row takes seconds a call (a ResNet-50 at 800x1216): the group runs only when named
(cases.OPT_IN). ``fpn_cases(hw, mask_dets, mask_rois)`` builds the same rows at another size
(tests/test_bench_fpn.py runs them at 128x192). The weights: GluonCV's seeded default
initialisation, saved once a process to a temporary file that every FPN model loads unchanged
(ours included); the Mask R-CNN's are its own, transferred the same way. Its masks are those
of the top MASK_DETS (100) detections, GluonCV's rcnn_max_dets being 1000.

The inference checks: GluonCV's FPN graph pools the pyramid through contrib.ROIAlign with the
rois of other levels given batch index -1, rows MXNet leaves unwritten, and sums them; its
hybridized (static_alloc) graph thus sums stale memory into them (its detections differ from
its own imperative run, at 800x1216 none of them is left). So ours is held to GluonCV's
outputs computed once, imperatively, through its other, unmasked branch (every row written:
what its code means); the timed reference is GluonCV's shipped graph, whose own agreement the
check reports next to ours. The training row is timing only (each side samples its own
anchors and rois; tests/test_train_fpn.py holds the outputs and gradients on the same rois),
its check showing both sides' four losses, finite.
"""
import atexit
import os
import tempfile
import types
import warnings

import numpy as np

from ..timing import mx_sync
from . import shapes as S
from .checks import Agreement, match_detections
from .core import Comparison, Pair
from .refs import gluoncv_train_step, train_params_only
from .model import transfer_parameters

FPN_NAME = "faster_rcnn_fpn_resnet50_v1b_coco"
MASK_NAME = "mask_rcnn_fpn_resnet50_v1b_coco"
HW = S.FPN_IMAGE_HW   # (800, 1216): GluonCV's FPN test size (short 800, max 1333)
# masks of the top 100 detections (COCO's per-image maximum); GluonCV's rcnn_max_dets is 1000,
# whose 4-conv mask head alone takes ~20 s a call on 2 cores, the same convolutions both sides
MASK_DETS = 100
# the training image's ground truth at 800x1216: [x1, y1, x2, y2, class]
TRAIN_GT = np.array([[60, 80, 420, 560, 0], [500, 150, 900, 500, 2],
                     [150, 420, 380, 780, 17]], np.float32)
NEEDS = ("mxnet", "gluoncv", "frcnn_model")


class _Unmasked:
    """F for GluonCV's FasterRCNN._pyramid_roi_feats that takes its other align branch (ROIAlign
    on every roi, then where): see the module's docstring."""

    class _Contrib:
        def __init__(self, contrib):
            self._contrib = contrib

        def __getattr__(self, name):
            return getattr(self._contrib, name)

    def __init__(self, F):
        self._F = F
        self.contrib = self._Contrib(F.contrib)  # its __dict__ has no box_encode

    def __getattr__(self, name):
        return getattr(self._F, name)


def gluoncv_unmasked(net):
    """net (a GluonCV FPN model) pooling through its unmasked branch until ``del
    net._pyramid_roi_feats``."""
    pyramid = type(net)._pyramid_roi_feats
    net._pyramid_roi_feats = types.MethodType(
        lambda self, F, *a, **k: pyramid(self, _Unmasked(F), *a, **k), net)
    return net


def image(mx, hw, seed=0):
    return mx.nd.array(np.random.default_rng(seed).normal(size=(1, 3) + tuple(hw))
                       .astype(np.float32))


def _limits(net, mask_dets=None, rois=None):
    """A Mask R-CNN's masks of its top mask_dets detections; rois: the test-time proposals
    (GluonCV's rpn_test_post_nms, 1000; the tests take fewer)."""
    if mask_dets is not None:
        net._rcnn_max_dets = mask_dets
    if rois is not None:
        net._rpn_test_post_nms = net.rpn._test_post_nms = rois
    return net


def gluoncv_model(env, name, seed=0, **limits):
    """GluonCV's model at its default initialisation, seeded; the deferred shapes completed by
    one imperative forward of a small image (the weights do not depend on the image size)."""
    mx = env.mx
    mx.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = env.gluoncv.model_zoo.get_model(name, pretrained=False, pretrained_base=False)
        net.initialize()
    _limits(net, **limits)
    net(image(mx, (128, 128)))
    return net


def _gluoncv_from(env, name, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = env.gluoncv.model_zoo.get_model(name, pretrained=False, pretrained_base=False)
    net.load_parameters(path)
    return net


def _reference_and_shipped(net, x):
    """(net's outputs on x through GluonCV's unmasked pooling, imperative; net as shipped,
    hybridized)."""
    expected = [o.asnumpy() for o in gluoncv_unmasked(net)(x)]
    del net._pyramid_roi_feats
    net.hybridize(static_alloc=True, static_shape=True)
    return expected, net


_built = {}


def _drop_built():
    path = _built.pop("path", None)
    _built.clear()
    if path and os.path.exists(path):
        os.remove(path)


atexit.register(_drop_built)


def fpn_weights(env):
    """The parameter file of GluonCV's FPN at its seeded random init, saved once a process: the
    weights of every FPN row, loaded unchanged into each model (a temporary file)."""
    if "path" not in _built:
        fd, path = tempfile.mkstemp(suffix=".params", prefix="frcnn_bench_fpn_")
        os.close(fd)
        _built["path"] = path
        gluoncv_model(env, FPN_NAME).save_parameters(path)
    return _built["path"]


def _gluoncv_fpn(env, hw):
    """(x, GluonCV's unmasked outputs on x, GluonCV's FPN as shipped, hybridized), built once a
    process and size: the reference of the first two rows."""
    if _built.get("hw") != hw:
        _built.pop("fpn", None)
        x = image(env.mx, hw)
        _built["fpn"] = (x,) + _reference_and_shipped(
            _gluoncv_from(env, FPN_NAME, fpn_weights(env)), x)
        _built["hw"] = hw
    return _built["fpn"]


def _detections(out):
    return [np.asarray(v) for v in out[:3]]


def _agreement(ours, expected, shipped, masks=False, need=0.99):
    """Ours held to GluonCV's unmasked outputs; GluonCV's shipped graph's own share alongside."""
    a = match_detections(_detections(ours), _detections(expected), need=need)
    s = match_detections(_detections(shipped), _detections(expected), need=need)
    detail = "%s vs GluonCV's unmasked pooling" % a.detail
    if a.status == "ok" and masks:
        m = mask_agreement(ours, expected)
        a = Agreement(m.status, a.detail)
        detail += "; " + m.detail
    return Agreement(a.status, "%s (its shipped graph: %s)"
                     % (detail, s.detail.split(" detections")[0] + " matched"))


def _detection_keys(out):
    """(id, score to 1e-5, box to 1e-2) of each detection of image 0 (tests/testutil.py)."""
    ids, scores, boxes = (np.asarray(o)[0] for o in out[:3])
    return list(zip(ids[:, 0].tolist(), np.round(scores[:, 0], 5).tolist(),
                    map(tuple, np.round(boxes, 2).tolist())))


def mask_agreement(ours, ref, share=0.95, atol=1e-3):
    """The mask of every detection found in both (by its row's key) within atol; ties in the
    scores reorder the top detections, so >= share of them."""
    ref_masks = dict(zip(_detection_keys(ref), np.asarray(ref[3])[0]))
    both = [(m, ref_masks[k]) for k, m in zip(_detection_keys(ours), np.asarray(ours[3])[0])
            if k in ref_masks]
    if len(both) < share * len(ref_masks):
        return Agreement("mismatch", "masks: %d of %d detections' found"
                         % (len(both), len(ref_masks)))
    diff = max(float(np.abs(m.astype(np.float64) - r).max()) for m, r in both) if both else 0.0
    return Agreement("ok" if diff <= atol else "mismatch",
                     "%d masks to %.1e" % (len(both), diff))


def _frcnn_model_fpn(env, hw):
    import frcnn_model
    x, expected, theirs = _gluoncv_fpn(env, hw)
    ours = frcnn_model.faster_rcnn_fpn_resnet50_v1b_coco()
    ours.load_parameters(fpn_weights(env))
    ours.hybridize(static_alloc=True, static_shape=True)
    return Pair(mx_sync(lambda: ours(x)), mx_sync(lambda: theirs(x)),
                lambda o, r: _agreement(o, expected, r))


def _patched_fpn(env, hw):
    import frcnn_ops
    x, expected, theirs = _gluoncv_fpn(env, hw)
    ours = _gluoncv_from(env, FPN_NAME, fpn_weights(env))
    frcnn_ops.patch_gluoncv(ours)
    ours.hybridize(static_alloc=True, static_shape=True)
    return Pair(mx_sync(lambda: ours(x)), mx_sync(lambda: theirs(x)),
                lambda o, r: _agreement(o, expected, r))


def _release_reference():
    """The first two rows' GluonCV FPN and its outputs: not needed by the rows after them."""
    _built.pop("fpn", None)
    _built.pop("hw", None)


def _patched_mask(env, hw, mask_dets, rois):
    import frcnn_ops
    _release_reference()
    x = image(env.mx, hw)
    limits = dict(mask_dets=mask_dets, rois=rois)
    expected, theirs = _reference_and_shipped(gluoncv_model(env, MASK_NAME, **limits), x)

    def make():
        return _limits(env.gluoncv.model_zoo.get_model(MASK_NAME, pretrained=False,
                                                       pretrained_base=False), **limits)
    ours = transfer_parameters(theirs, make)
    frcnn_ops.patch_gluoncv(ours)
    ours.hybridize(static_alloc=True, static_shape=True)
    # the top mask_dets of thousands of detections: tied scores at the cut swap a few
    return Pair(mx_sync(lambda: ours(x)), mx_sync(lambda: theirs(x)),
                lambda o, r: _agreement(o, expected, r, masks=True, need=0.95))


def _train_gt(hw):
    gt = TRAIN_GT.copy()
    gt[:, [0, 2]] *= hw[1] / float(HW[1])
    gt[:, [1, 3]] *= hw[0] / float(HW[0])
    return gt


LOSSES = ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box")


def train_check(ours, ref):
    """Timing only, as long as both sides' four losses are finite: each side samples its own
    RPN anchors and RCNN rois (ours with NumPy, GluonCV with MXNet's generator), so their losses
    differ every iteration; on the same sampled rois ours computes GluonCV's outputs, loss and
    parameter gradients (tests/test_train_fpn.py)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    text = "losses %s vs GluonCV %s" % ("/".join("%.3g" % v for v in ours),
                                        "/".join("%.3g" % v for v in ref))
    if not (np.isfinite(ours).all() and np.isfinite(ref).all()):
        return Agreement("mismatch", "non-finite loss: " + text)
    if ref[2] > 2 * max(ours[2], 1e-3):   # rcnn_cls: ~log(81) = 4.4 at random init
        text += (" (GluonCV's head loss: its shipped graph sums the unwritten ROIAlign rows of "
                 "the other levels, module docstring)")
    return Agreement("timing-only", "timing only: each samples its own anchors and rois (same "
                     "rois: GluonCV's outputs and gradients, tests); " + text)


def _train(env, hw):
    import frcnn_model
    from frcnn_model.training.step import TrainStep
    mx = env.mx
    _release_reference()
    path = fpn_weights(env)  # the inference rows' weights, fresh instances
    x = image(mx, hw)
    theirs = _gluoncv_from(env, FPN_NAME, path)
    theirs.hybridize(static_alloc=True)
    ours = frcnn_model.faster_rcnn_fpn_resnet50_v1b_coco()
    ours.load_parameters(path)
    gt = _train_gt(hw)
    train_params_only(ours)
    step = TrainStep(ours, seed=0)
    feat_hw = tuple(tuple(f.shape[2:]) for f in ours.features(x))
    anchors = step.anchors(feat_hw)
    labels = np.concatenate([gt, np.zeros((len(gt), 1), np.float32)], 1)[None]
    im_hw = np.array([hw], np.float32)
    data = x.asnumpy()

    def run_ours():
        losses = step(data, labels, im_hw)
        mx.nd.waitall()
        return np.array([losses[k] for k in LOSSES])

    def run_theirs():
        out = gluoncv_step()
        mx.nd.waitall()
        return out
    gluoncv_step = gluoncv_train_step(mx, theirs, x, gt, anchors)
    return Pair(run_ours, run_theirs, train_check)


def fpn_cases(hw=HW, mask_dets=MASK_DETS, mask_rois=None):
    """The group's rows at an image size (hw); the Mask R-CNN's masks of its top mask_dets
    detections, of mask_rois proposals (None: GluonCV's 1000; the tests take fewer: GluonCV's
    reference pools them at 14x14 on every level)."""
    hw = tuple(hw)
    size = "1x3x%dx%d image, random weights, hybridized" % hw
    gluoncv_fpn = "GluonCV " + FPN_NAME
    return [
        Comparison("fpn", "FPN model (end to end)", size, gluoncv_fpn + " (same weights)",
                   lambda env: _frcnn_model_fpn(env, hw), NEEDS, slow=True),
        Comparison("fpn", "FPN model, patch_gluoncv (end to end)", size,
                   gluoncv_fpn + ", unpatched", lambda env: _patched_fpn(env, hw), NEEDS,
                   slow=True),
        Comparison("fpn", "Mask R-CNN FPN, patch_gluoncv (end to end)",
                   size + ", top %d masks" % mask_dets
                   + (", %d rois" % mask_rois if mask_rois else ""),
                   "GluonCV %s, unpatched" % MASK_NAME,
                   lambda env: _patched_mask(env, hw, mask_dets, mask_rois), NEEDS, slow=True),
        Comparison("fpn", "FPN training iteration",
                   "1x3x%dx%d image, %d gts: RPN targets + forward + 4 losses + backward "
                   "(collect_train_params)"
                   % (hw + (len(TRAIN_GT),)), gluoncv_fpn + " (same weights)",
                   lambda env: _train(env, hw), NEEDS, slow=True),
    ]
