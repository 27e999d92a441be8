"""One training iteration of the seed model (ResNet-50 v1b C4, VOC, 600x800, batch 1): frcnn_model
(frcnn_ops proposal 12000->2000 and ROIAlign backward, Cython targets) against GluonCV's
training forward (RPNTargetGenerator, RPNProposal + box_nms, RCNNTargetSampler, contrib ROIAlign)
with the same weights, both hybridized; each call is RPN targets + forward + the four losses +
backward, as GluonCV's train_faster_rcnn.py does it, on the parameters it trains (both sides'
``collect_train_params()``). The optimizer step is left out (the same for both). With --benchmark-disable (CI) the image is 300x400 to keep the smoke run short."""
import numpy as np
import pytest

from benchutil import require
from frcnn_ops.bench.cases.model import transfer_parameters
from frcnn_ops.bench.cases.shapes import IMAGE_HW, MODEL_NAME

GT = np.array([[40, 60, 300, 420, 14], [350, 100, 560, 380, 6], [100, 300, 240, 560, 11],
               [500, 500, 780, 590, 2], [10, 10, 120, 90, 8]], dtype=np.float32)


@pytest.fixture(scope="module")
def setup(env, parts, request):
    require(env, "mxnet", "gluoncv")
    from gluoncv import model_zoo
    mx = env.mx
    small = request.config.getoption("benchmark_disable", default=False)
    hw = (IMAGE_HW[0] // 2, IMAGE_HW[1] // 2) if small else IMAGE_HW
    gt = GT.copy()
    if small:
        gt[:, :4] /= 2
    mx.random.seed(0)
    theirs = model_zoo.get_model(MODEL_NAME, pretrained=False,
                                 pretrained_base=False)
    theirs.initialize(mx.init.Xavier())
    x = np.random.default_rng(0).normal(0, 1, (1, 3) + hw).astype(np.float32)
    theirs(mx.nd.array(x))
    ours = transfer_parameters(theirs, parts.faster_rcnn_resnet50_v1b_voc)
    theirs.hybridize(static_alloc=True)
    feat_hw = tuple(ours.features(mx.nd.array(x)).shape[2:])
    anchors = parts.feature_anchors(feat_hw)[0]
    return dict(mx=mx, ours=ours, theirs=theirs, x=x, gt=gt, anchors=anchors, hw=hw,
                TrainStep=parts.TrainStep)


def _gluoncv_step(s):
    from frcnn_ops.bench.cases.refs import gluoncv_train_step
    mx = s["mx"]
    step = gluoncv_train_step(mx, s["theirs"], mx.nd.array(s["x"]), s["gt"], s["anchors"])

    def run():
        step()
        mx.nd.waitall()
    return run


def _our_step(s):
    from frcnn_ops.bench.cases.refs import train_params_only
    train_params_only(s["ours"])
    step = s["TrainStep"](s["ours"], seed=0)
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
