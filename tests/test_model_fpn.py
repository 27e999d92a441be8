"""frcnn_model's FPN Faster R-CNN (faster_rcnn_fpn_resnet50_v1b_coco): GluonCV's parameter
files load unchanged both ways, the same detections as GluonCV on the same weights (random
init, a small image), batches > 1, and save_model / load_model / model_spec know the
architecture (GluonCV's files by their parameter names)."""
import json
import warnings
from collections import Counter

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")
gluoncv = pytest.importorskip("gluoncv")

import frcnn_model  # noqa: E402
from frcnn_model.modeling.faster_rcnn import load_model, model_spec, save_model  # noqa: E402
from frcnn_model.modeling.fpn import FasterRCNNFPN  # noqa: E402
from testutil import gluoncv_unmasked_reference  # noqa: E402

HW = (128, 192)
NAME = "faster_rcnn_fpn_resnet50_v1b_coco"


@pytest.fixture(scope="module")
def gluoncv_fpn(tmp_path_factory):
    """GluonCV's FPN at random init (seeded), its parameter file, and an input."""
    from gluoncv import model_zoo
    mx.random.seed(0)
    net = model_zoo.get_model(NAME, pretrained=False, pretrained_base=False)
    net.initialize(mx.init.Normal(0.01))
    gluoncv_unmasked_reference(net)
    x = mx.nd.array(np.random.default_rng(0).uniform(-1, 1, size=(1, 3) + HW))
    ref = [o.asnumpy() for o in net(x)]
    path = str(tmp_path_factory.mktemp("fpn") / "gluoncv_fpn.params")
    net.save_parameters(path)
    return net, path, x, ref


@pytest.fixture(scope="module")
def our_fpn(gluoncv_fpn):
    net = frcnn_model.faster_rcnn_fpn_resnet50_v1b_coco()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a GluonCV file has no keys we would ignore
        net.load_parameters(gluoncv_fpn[1])
    net.hybridize(static_alloc=True)
    return net


def _keys(out, b=0):
    """(id, score to 1e-5, box to 1e-2) of each valid detection row of image b."""
    ids, scores, boxes = (np.asarray(o)[b] for o in out[:3])
    return Counter((i, s, tuple(bx)) for i, s, bx in zip(
        ids[:, 0].tolist(), np.round(scores[:, 0], 5).tolist(),
        map(tuple, np.round(boxes, 2).tolist())) if s > 0)


def _match(ref, ours, b=0):
    """Matched rows (as multisets), the reference's and our valid counts."""
    a, c = _keys(ref), _keys(ours, b)
    return sum(min(n, c[k]) for k, n in a.items()), sum(a.values()), sum(c.values())


def test_fpn_parameter_files_load_both_ways(gluoncv_fpn, our_fpn, tmp_path):
    g, path, x, _ = gluoncv_fpn
    theirs = mx.nd.load(path)
    assert len(theirs) == 302 and "features.P6_conv1_weight" in theirs
    ours_path = str(tmp_path / "ours.params")
    our_fpn.save_parameters(ours_path)
    ours = mx.nd.load(ours_path)
    assert set(ours) == set(theirs)
    for k, v in ours.items():
        np.testing.assert_array_equal(v.asnumpy(), theirs[k].asnumpy(), err_msg=k)
    from gluoncv import model_zoo
    g2 = model_zoo.get_model(NAME, pretrained=False, pretrained_base=False)
    g2.load_parameters(ours_path)  # ours -> GluonCV, strict
    # a fresh model builds GluonCV's anchors (each level's stride is its reference window)
    # and every parameter shape
    fresh = frcnn_model.faster_rcnn_fpn_resnet50_v1b_coco()
    fresh.initialize()
    fresh(x)
    fp = fresh._collect_params_with_prefix()
    for k, p in g._collect_params_with_prefix().items():
        assert fp[k].shape == p.shape, k
        if "anchor" in k:
            np.testing.assert_array_equal(fp[k].data().asnumpy(), p.data().asnumpy())


def test_fpn_same_detections_as_gluoncv(gluoncv_fpn, our_fpn):
    _, _, x, ref = gluoncv_fpn
    ours = [o.asnumpy() for o in our_fpn(x)]
    for a, b in zip(ours, ref):
        assert a.shape == b.shape == (1, 80 * 1000, a.shape[-1])
    matched, n_ref, n_ours = _match(ref, ours)
    # the pyramid pooling sums in another order than GluonCV's: the last bits can flip an NMS
    # decision between tied boxes of random weights (measured: 16514 of 16517 rows)
    assert n_ours == n_ref > 1000
    assert matched >= 0.99 * n_ref, (matched, n_ref)
    sym = our_fpn._cached_graph[1].tojson()
    assert "frcnn_multilevel_roi_align" in sym and "frcnn_proposal" in sym
    assert "ROIAlign" not in sym and "box_nms" not in sym


def test_fpn_batch_of_two_is_each_image(gluoncv_fpn, our_fpn):
    _, _, x, ref = gluoncv_fpn
    flipped = mx.nd.flip(x, axis=3)
    both = [o.asnumpy() for o in our_fpn(mx.nd.concat(flipped, x, dim=0))]
    assert both[0].shape == (2, 80000, 1)
    matched, n_ref, n_ours = _match(ref, both, b=1)
    assert n_ours == n_ref and matched >= 0.99 * n_ref
    alone = [o.asnumpy() for o in our_fpn(flipped)]
    matched, n_ref, n_ours = _match(alone, both, b=0)
    assert n_ours == n_ref and matched >= 0.99 * n_ref


def test_fpn_spec_from_files(gluoncv_fpn, our_fpn, tmp_path):
    _, path, x, _ = gluoncv_fpn
    # a GluonCV file (no .json): its parameter names say FPN
    assert model_spec(path)["arch"] == "faster_rcnn_fpn"
    net = load_model(path, rpn_test_post_nms=300)
    assert isinstance(net, FasterRCNNFPN) and net.classes == frcnn_model.COCO_CLASSES
    assert net(x)[0].shape == (1, 80 * 300, 1)
    # ours: the .json names the architecture and the settings
    small = frcnn_model.faster_rcnn_fpn("resnet18_v1b", width=0.25, classes=("a", "b"),
                                        num_fpn_filters=16, rpn_channel=16, box_head_units=32,
                                        rpn_test_post_nms=50)
    small.initialize()
    before = [o.asnumpy() for o in small(x)]
    out = str(tmp_path / "small.params")
    save_model(small, out, (128, 192))
    spec = json.load(open(out + ".json"))
    assert spec["arch"] == "faster_rcnn_fpn" and spec["num_fpn_filters"] == 16
    again = load_model(out)
    for a, b in zip(before, again(x)):
        np.testing.assert_array_equal(a, b.asnumpy())
    # and a C4 file stays C4
    c4 = frcnn_model.faster_rcnn("resnet18_v1b", width=0.25, classes=("a",))
    c4.initialize()
    c4(x)
    c4.save_parameters(str(tmp_path / "c4.params"))
    assert model_spec(str(tmp_path / "c4.params"))["arch"] == "faster_rcnn"


def test_fpn_bad_settings_are_named():
    with pytest.raises(TypeError, match="unknown settings.*stride"):
        frcnn_model.faster_rcnn_fpn_resnet50_v1b_coco(stride=16)  # the C4 model's setting
    with pytest.raises(ValueError, match="one anchor scale per level"):
        frcnn_model.faster_rcnn_fpn_resnet50_v1b_coco(scales=(2, 4))
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'bf16', got 'fp16'"):
        frcnn_model.faster_rcnn_fpn_resnet50_v1b_coco(precision="fp16")
    with pytest.raises(ValueError, match="unknown architecture arch='yolo'"):
        frcnn_model.modeling.faster_rcnn.build_model({"arch": "yolo"})
