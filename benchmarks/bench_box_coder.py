"""box_decode and clip_boxes: frcnn-bench's cases (batch 1, against mx.nd.contrib.box_decode,
GluonCV's composites and the NumPy reference) and the extra batch 8."""
import pytest

from benchutil import case_params, time_case
from frcnn_ops.bench.cases import suite_cases


@pytest.mark.parametrize("case,side", case_params(suite_cases("box_decode", "clip_boxes")))
def test_box_coder(benchmark, env, case, side):
    time_case(benchmark, env, case, side)
