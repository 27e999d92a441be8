"""multilevel_roi_align at issue 17's shape (1000 rois over P2-P5 of an 800x1216 image, 256
channels, pooled 7x7, sample_ratio 2; GluonCV's FPN Faster R-CNN head) against GluonCV's own
FasterRCNN._pyramid_roi_feats, forward and forward+backward (an extra case: frcnn-bench leaves
it out).

    pytest benchmarks/bench_multilevel.py --benchmark-only --benchmark-group-by=group
"""
import pytest

from benchutil import case_params, time_case
from frcnn_ops.bench.cases import suite_cases


@pytest.mark.parametrize("case,side", case_params(suite_cases("multilevel_roi_align")))
def test_multilevel(benchmark, env, case, side):
    time_case(benchmark, env, case, side)
