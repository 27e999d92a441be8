"""The RPN proposal step and nms: frcnn-bench's cases (proposal at the test and train counts
against GluonCV's composite, mx.nd.contrib.Proposal, the NumPy reference and torchvision's
composite; nms against mx.nd.contrib.box_nms and torchvision) and the extra batch 4 and 12000
boxes. The sweeps are in bench_sweeps.py."""
import pytest

from benchutil import case_params, time_case
from frcnn_ops.bench.cases import suite_cases


@pytest.mark.parametrize("case,side", case_params(suite_cases("proposal", "nms")))
def test_proposal_nms(benchmark, env, case, side):
    time_case(benchmark, env, case, side)
