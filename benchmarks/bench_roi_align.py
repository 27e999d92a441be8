"""roi_align at the seed's shape (300 rois on 1x1024x38x50, pooled 14x14, spatial_scale 1/16,
sample_ratio 2), forward and forward+backward: frcnn-bench's cases against
mx.nd.contrib.ROIAlign and torchvision.ops.roi_align. The sweeps are in bench_sweeps.py.

    pytest benchmarks/bench_roi_align.py --benchmark-only --benchmark-group-by=group
"""
import pytest

from benchutil import case_params, time_case
from frcnn_ops.bench.cases import suite_cases


@pytest.mark.parametrize("case,side", case_params(suite_cases("roi_align")))
def test_roi_align(benchmark, env, case, side):
    time_case(benchmark, env, case, side)
