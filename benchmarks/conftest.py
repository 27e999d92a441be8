"""Shared fixtures of the pytest-benchmark suites.

Run:  pytest benchmarks --benchmark-only --benchmark-group-by=group
Each test times one callable; tests in one group compare our op with its references.
"""
import os
import sys
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def mx():
    mxnet = pytest.importorskip("mxnet")
    import frcnn_ops  # noqa: F401
    return mxnet


@pytest.fixture(scope="session")
def gluoncv():
    return pytest.importorskip("gluoncv")


def mx_sync(fn):
    """Wraps an MXNet call so that the benchmark waits for its result (MXNet is async)."""
    def run():
        out = fn()
        outs = out if isinstance(out, (list, tuple)) else [out]
        for o in outs:
            o.wait_to_read()
        return out
    return run
