"""The scaling sweeps: frcnn-bench's full points (roi_align forward against the number of rois,
proposal against the number of anchors, ours vs the mx.nd.contrib op) and the extra ones
(pre-NMS count, channels, forward+backward). A reference left out at a size is skipped.

    pytest benchmarks/bench_sweeps.py --benchmark-only --benchmark-group-by=group
"""
import pytest

from benchutil import case_params, time_case
from frcnn_ops.bench.cases import suite_cases


@pytest.mark.parametrize("case,side", case_params(suite_cases("sweep")))
def test_sweep(benchmark, env, case, side):
    time_case(benchmark, env, case, side)
