"""Whole FPN models per 800x1216 image (frcnn-bench --cases fpn): frcnn_model's FPN against
GluonCV's faster_rcnn_fpn_resnet50_v1b_coco, patch_gluoncv on GluonCV's FPN and on its
mask_rcnn_fpn_resnet50_v1b_coco against the same models unpatched, and one training iteration
of frcnn_model's FPN against GluonCV's; the same random weights, both sides hybridized. Each
side takes seconds a call (3 fixed rounds). With --benchmark-disable (CI) skipped:
tests/test_bench_fpn.py runs the same rows, checks included, at 128x192."""
import pytest

from benchutil import case_params, time_case
from frcnn_ops.bench.cases import suite_cases


@pytest.mark.parametrize("case,side", case_params(suite_cases("fpn")))
def test_fpn(benchmark, env, case, side, request):
    if request.config.getoption("benchmark_disable", default=False):
        pytest.skip("seconds a call at 800x1216: tests/test_bench_fpn.py runs these rows at "
                    "128x192")
    time_case(benchmark, env, case, side)
