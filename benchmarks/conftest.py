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
