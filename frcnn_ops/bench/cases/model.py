"""The model comparisons (frcnn_model against GluonCV's faster_rcnn_resnet50_v1b_voc, bf16
against float32), and the only place frcnn-bench and benchmarks/ import frcnn_model from."""
import importlib.util
import os
import tempfile
import warnings
from types import SimpleNamespace

import numpy as np

from ..timing import mx_sync
from . import shapes as S
from .checks import match_bf16, match_detections
from .core import Comparison, Pair


def frcnn_model_package():
    import frcnn_model
    return frcnn_model


def frcnn_model_parts():
    """The frcnn_model pieces the benchmark suites drive (imports kept here: the package's
    layout may move)."""
    from frcnn_model.evaluation.metrics import VOC07MApMetric
    from frcnn_model.modeling.faster_rcnn import (faster_rcnn_resnet50_v1b_voc, image_size,
                                                  rpn_head)
    from frcnn_model.training import targets
    from frcnn_model.training.step import TrainStep
    return SimpleNamespace(faster_rcnn_resnet50_v1b_voc=faster_rcnn_resnet50_v1b_voc,
                           image_size=image_size, rpn_head=rpn_head, targets=targets,
                           VOC07MApMetric=VOC07MApMetric, TrainStep=TrainStep,
                           feature_anchors=feature_anchors())


def feature_anchors():
    """frcnn_model.modeling.anchors.feature_anchors; frcnn_model's package import needs MXNet,
    so without MXNet (a CuPy-only install) its anchors.py is loaded on its own."""
    try:
        from frcnn_model.modeling.anchors import feature_anchors
        return feature_anchors
    except ImportError:
        spec = importlib.util.find_spec("frcnn_model")
        if spec is None or not spec.submodule_search_locations:
            raise
        path = os.path.join(list(spec.submodule_search_locations)[0], "modeling", "anchors.py")
        anchors_spec = importlib.util.spec_from_file_location("_frcnn_model_anchors", path)
        module = importlib.util.module_from_spec(anchors_spec)
        anchors_spec.loader.exec_module(module)
        return module.feature_anchors


def transfer_parameters(src, make):
    """A new net from make() holding src's parameters (through a temporary file)."""
    fd, path = tempfile.mkstemp(suffix=".params", prefix="frcnn_bench_")
    os.close(fd)
    try:
        src.save_parameters(path)
        net = make()
        net.load_parameters(path)
    finally:
        os.remove(path)
    return net


def build_models(env, x, seed=0):
    """(ours, GluonCV's) faster_rcnn_resnet50_v1b_voc with the same random weights: GluonCV's
    initialisation (completed by one forward on x: its shapes are deferred), saved and loaded
    into ours; both hybridized with static_alloc and static_shape."""
    mx, gluoncv = env.mx, env.gluoncv
    mx.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = gluoncv.model_zoo.get_model(S.MODEL_NAME, pretrained=False,
                                             pretrained_base=False)
        theirs.initialize()
        theirs.hybridize(static_alloc=True, static_shape=True)
        for o in theirs(x):
            o.wait_to_read()
        ours = transfer_parameters(theirs, frcnn_model_parts().faster_rcnn_resnet50_v1b_voc)
    ours.hybridize(static_alloc=True, static_shape=True)
    return ours, theirs


def model_input(mx):
    return mx.nd.array(np.random.default_rng(0).normal(size=S.MODEL_INPUT).astype(np.float32))


_built = {}


def seed_models(env):
    """(ours, GluonCV's, x) from build_models, built once a process (~10 s on 2 cores): the
    float32 and bf16 cases and the suites' stage breakdown share them."""
    if "models" not in _built:
        x = model_input(env.mx)
        _built["models"] = build_models(env, x) + (x,)
    return _built["models"]


def _fp32(env):
    ours, theirs, x = seed_models(env)
    return Pair(mx_sync(lambda: ours(x)), mx_sync(lambda: theirs(x)), match_detections)


def _bf16(env):
    fp32, _, x = seed_models(env)
    make = frcnn_model_parts().faster_rcnn_resnet50_v1b_voc
    ours = transfer_parameters(fp32, lambda: make(precision="bf16"))
    ours.hybridize(static_alloc=True, static_shape=True)
    return Pair(mx_sync(lambda: ours(x)), mx_sync(lambda: fp32(x)), match_bf16)


def model_cases():
    shape = "%dx%dx%dx%d image, random weights" % S.MODEL_INPUT
    needs = ("mxnet", "gluoncv", "frcnn_model")
    return [Comparison("model", "model (end to end)", shape, "GluonCV " + S.MODEL_NAME, _fp32,
                       needs, slow=True),
            Comparison("model", "model bf16 (end to end)", shape, "ours, float32", _bf16,
                       needs + ("bf16",), slow=True)]
