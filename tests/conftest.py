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


class Device:
    """A CUDA backend for the tests: the GPU through CuPy ('cuda') or the same kernels on
    the CPU execution harness ('cuda_emu', NumPy arrays inside frcnn_ops.emulate_cuda()).
    `call` moves NumPy inputs to the device, runs an frcnn_ops function there and returns
    NumPy; everything outside `call` runs on the CPU path."""

    def __init__(self, name):
        self.name = name
        self.real = name == "cuda"

    @property
    def xp(self):
        if self.real:
            import cupy
            return cupy
        return np

    def asarray(self, x):
        return self.xp.asarray(x) if isinstance(x, np.ndarray) else x

    def asnumpy(self, x):
        return x.get() if self.real else np.asarray(x)

    def context(self):
        import contextlib
        import frcnn_ops
        return contextlib.nullcontext() if self.real else frcnn_ops.emulate_cuda()

    def call(self, fn, *args, **kwargs):
        args = [self.asarray(a) for a in args]
        with self.context():
            out = fn(*args, **kwargs)
        return self.asnumpy(out)


@pytest.fixture(params=[pytest.param("cuda", marks=pytest.mark.gpu),
                        pytest.param("cuda_emu", marks=pytest.mark.cuda_emu)])
def dev(request):
    return Device(request.param)


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
