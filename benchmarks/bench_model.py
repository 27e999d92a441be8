"""End-to-end Faster R-CNN (ResNet-50 v1b C4, VOC) per 600x800 image: frcnn_model against
GluonCV's faster_rcnn_resnet50_v1b_voc with the same random weights, both hybridized, plus a
per-stage breakdown of both (printed, and stored in the benchmark's extra_info)."""
import time

import numpy as np
import pytest

from shapes import IMAGE_HW

STAGES = ("backbone", "rpn head", "proposal", "roi_align", "top features", "head", "nms")


@pytest.fixture(scope="module")
def nets(mx, gluoncv, tmp_path_factory):
    from gluoncv import model_zoo
    import frcnn_model
    mx.random.seed(0)
    theirs = model_zoo.get_model("faster_rcnn_resnet50_v1b_voc", pretrained=False,
                                 pretrained_base=False)
    theirs.initialize(mx.init.Xavier())
    x = mx.nd.array(np.random.default_rng(0).normal(0, 1, (1, 3) + IMAGE_HW))
    theirs(x)
    path = str(tmp_path_factory.mktemp("model") / "frcnn.params")
    theirs.save_parameters(path)
    ours = frcnn_model.faster_rcnn_resnet50_v1b_voc()
    ours.load_parameters(path)
    for net in (theirs, ours):
        net.hybridize(static_alloc=True, static_shape=True)
        net(x)[0].wait_to_read()
    return {"frcnn_model": ours, "gluoncv": theirs}, x


@pytest.mark.parametrize("impl", ["frcnn_model", "gluoncv"])
def test_model_end_to_end(benchmark, mx, nets, impl):
    benchmark.group = "model end-to-end 600x800 (hybridized)"
    net, x = nets[0][impl], nets[1]
    benchmark.pedantic(lambda: net(x)[0].wait_to_read(), rounds=3, iterations=1,
                       warmup_rounds=0)


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    for o in out if isinstance(out, (list, tuple)) else [out]:
        o.wait_to_read()
    return out, (time.perf_counter() - t) * 1e3


def stage_breakdown(mx, net, x, ours):
    """ms per stage of one eager pass (each stage waited for), ours or GluonCV's ops."""
    F = mx.nd
    from frcnn_model.modeling.faster_rcnn import image_size, rpn_head
    ms = {}
    feat, ms["backbone"] = _timed(lambda: net.features(x))
    (anchors, scores, deltas), ms["rpn head"] = _timed(lambda: rpn_head(F, net.rpn, feat))
    if ours:
        props, ms["proposal"] = _timed(lambda: F.frcnn_proposal(
            scores, deltas, anchors, image_size(F, x), rpn_pre_nms_top_n=6000,
            rpn_post_nms_top_n=300))
    else:
        def gluoncv_proposal():
            pre = net.rpn.region_proposer(anchors, scores, deltas, F.zeros_like(x))
            tmp = F.contrib.box_nms(pre, overlap_thresh=0.7, topk=6000, coord_start=1,
                                    score_index=0, id_index=-1, force_suppress=True)
            return F.slice_axis(tmp, axis=1, begin=0, end=300)
        props, ms["proposal"] = _timed(gluoncv_proposal)
    rois = F.concat(F.zeros((300, 1)), props[0, :, 1:], dim=-1)
    align = F.frcnn_roi_align if ours else F.contrib.ROIAlign
    pooled, ms["roi_align"] = _timed(lambda: align(feat, rois, pooled_size=(14, 14),
                                                   spatial_scale=1.0 / 16, sample_ratio=2))
    top, ms["top features"] = _timed(lambda: net.top_features(pooled))

    def head():
        f = F.contrib.AdaptiveAvgPooling2D(top, output_size=1)
        cls = F.softmax(net.class_predictor(f), axis=-1)
        box = net.box_predictor(f).reshape((1, 300, 20, 4)).transpose((0, 2, 1, 3))[0]
        decode = F.frcnn_box_decode if ours else F.contrib.box_decode
        boxes = decode(box, props[:, :, 1:], std0=0.1, std1=0.1, std2=0.2, std3=0.2,
                       format="corner")
        ids = F.broadcast_like(F.arange(20).reshape((20, 1, 1)), boxes.slice_axis(
            axis=-1, begin=0, end=1))
        scores_ = cls[:, 1:].transpose().reshape((20, 300, 1))
        return F.concat(ids, scores_, boxes, dim=-1)
    res, ms["head"] = _timed(head)
    nms = F.frcnn_nms if ours else F.contrib.box_nms
    _, ms["nms"] = _timed(lambda: nms(res, overlap_thresh=0.3, topk=400, valid_thresh=0.0001,
                                      id_index=0, score_index=1, coord_start=2))
    return ms


def test_model_stage_breakdown(benchmark, mx, nets, capsys):
    benchmark.group = "model stage breakdown (eager, ms)"
    net_ours, net_theirs = nets[0]["frcnn_model"], nets[0]["gluoncv"]
    x = nets[1]
    rows = {}
    stage_breakdown(mx, net_ours, x, True)  # warm-up: first-call allocations
    stage_breakdown(mx, net_theirs, x, False)

    def run():
        rows["frcnn_model"] = stage_breakdown(mx, net_ours, x, True)
        rows["gluoncv"] = stage_breakdown(mx, net_theirs, x, False)
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update({k: {s: round(v, 2) for s, v in r.items()}
                                 for k, r in rows.items()})
    with capsys.disabled():
        print("\nstage            gluoncv ms   frcnn_model ms")
        for s in STAGES:
            print("%-15s %11.1f %15.1f" % (s, rows["gluoncv"][s], rows["frcnn_model"][s]))
