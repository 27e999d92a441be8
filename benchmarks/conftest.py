"""Fixtures of the pytest-benchmark suites; the cases themselves come from frcnn_ops.bench.cases.

Run:  pytest benchmarks --benchmark-only --benchmark-group-by=group
Each test times one side (ours or the reference) of one comparison; the tests of one op at one
shape share a group, so grouping by group reads as frcnn-bench's table.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchutil


@pytest.fixture(scope="session")
def env():
    """What is importable here (frcnn-bench's Env): a case whose needs are missing is skipped."""
    from frcnn_ops.bench.cases import Env
    return Env()


@pytest.fixture(scope="session")
def parts(env):
    """frcnn_model's pieces (the model, training and metric suites)."""
    from benchutil import require
    from frcnn_ops.bench.cases.model import frcnn_model_parts
    require(env, "mxnet", "frcnn_model")
    return frcnn_model_parts()
