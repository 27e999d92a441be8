import os
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)


def _has_gpu():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


HAS_GPU = _has_gpu()


def _has_cuda_emu():
    try:
        import frcnn_ops._C_emu  # noqa: F401
        return True
    except ImportError:
        return False


HAS_CUDA_EMU = _has_cuda_emu()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU with CuPy")
    skip_emu = pytest.mark.skip(reason="needs frcnn_ops._C_emu, the CPU execution harness of "
                                       "the CUDA kernels (build with FRCNN_CUDA_EMULATE=1)")
    for item in items:
        if "gpu" in item.keywords and not HAS_GPU:
            item.add_marker(skip_gpu)
        if "cuda_emu" in item.keywords and not HAS_CUDA_EMU:
            item.add_marker(skip_emu)


@pytest.fixture(scope="session")
def mx():
    mxnet = pytest.importorskip("mxnet")
    import frcnn_ops  # noqa: F401  (loads the op library)
    return mxnet


@pytest.fixture(scope="session")
def gluoncv():
    return pytest.importorskip("gluoncv")


@pytest.fixture
def rng():
    return np.random.default_rng(int(os.environ.get("FRCNN_TEST_SEED", "0")))
