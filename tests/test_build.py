"""Build decisions that CI (one Python, one NumPy) can only check indirectly.

One build of the compiled modules must import under NumPy 1.23.5 (with MXNet 1.9.1) and under
NumPy 2 (without MXNet). How:

- frcnn_model.training._targets / evaluation._metrics (Cython) use typed memoryviews and NumPy's
  Python API only: no ``cimport numpy``, so the .so holds no reference to NumPy's C API
  (``_ARRAY_API``) and does not depend on the NumPy it was built next to (none is needed to
  build them).
- frcnn_ops._C (pybind11) reaches NumPy's C API through pybind11, which since 2.12 reads the
  running NumPy's version and layout at import time (1.x or 2.x).

And ``FRCNN_CUDA=1`` without nvcc must fail the build, not fall back to a CPU-only build.
"""
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _origin(name):
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin, name
    return spec.origin


@pytest.mark.parametrize("name", ["frcnn_model.training._targets",
                                  "frcnn_model.evaluation._metrics"])
def test_cython_modules_do_not_use_numpy_c_api(name):
    with open(_origin(name), "rb") as f:
        data = f.read()
    # numpy's import_array() (numpy/__multiarray_api.h) looks up the capsule _ARRAY_API in
    # numpy.core._multiarray_umath (1.x) / numpy._core._multiarray_umath (2.x)
    for marker in (b"_ARRAY_API", b"_multiarray_umath", b"_UFUNC_API"):
        assert marker not in data, "%s references NumPy's C API (%r): it would be tied to " \
            "the NumPy ABI it was built against" % (name, marker.decode())


def test_pybind11_handles_numpy_1_and_2():
    from frcnn_ops import _lib
    version = getattr(_lib.config, "pybind11_version", "")
    assert version, "_build_config.py lacks pybind11_version (rebuild frcnn_ops)"
    major, minor = (int(x) for x in version.split(".")[:2])
    assert (major, minor) >= (2, 12), "pybind11 %s predates NumPy 2 support" % version


@pytest.mark.parametrize("hide_mxnet", [True, False])
def test_compiled_modules_import_and_run_in_a_fresh_interpreter(hide_mxnet):
    """Under this interpreter's NumPy (1.23.5 in CI, 2.x on the GPU machine), with MXNet hidden
    (as where it is not installed) and as installed."""
    code = """if 1:
        import sys
        if %r:
            sys.modules['mxnet'] = None  # import mxnet raises ImportError
        import numpy as np
        import frcnn_ops
        import frcnn_ops._C as C
        from frcnn_model.evaluation import _metrics, metrics
        from frcnn_model.training import _targets, targets
        assert frcnn_ops.mxnet_available == ('mxnet' in sys.modules and
                                             sys.modules['mxnet'] is not None)
        v = np.array([3, 1, 2], np.float32)
        assert _targets.argsort_mx(v).tolist() == [1, 2, 0]
        assert C.has_cuda in (True, False)
        print(np.__version__)
    """ % hide_mxnet
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(ROOT), timeout=120)
    assert out.returncode == 0, out.stderr


def _path_without_nvcc():
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not os.path.exists(os.path.join(d, "nvcc"))]
    return os.pathsep.join(keep)


def test_frcnn_cuda_1_without_nvcc_is_an_error(tmp_path):
    """The CMake configure step alone (seconds): FRCNN_CUDA=1 with no CUDA compiler stops with
    a clear message instead of building for the CPU only."""
    cmakelists = os.path.join(ROOT, "CMakeLists.txt")
    cmake = shutil.which("cmake")
    if not os.path.exists(cmakelists) or cmake is None:
        pytest.skip("needs the source tree's CMakeLists.txt and cmake")
    env = {k: v for k, v in os.environ.items()
           if k not in ("CUDACXX", "CUDA_PATH", "CUDA_HOME", "CUDAToolkit_ROOT",
                        "CMAKE_CUDA_COMPILER")}
    env["PATH"] = _path_without_nvcc()
    if shutil.which("c++", path=env["PATH"]) is None:
        pytest.skip("no C++ compiler on PATH once the nvcc folders are left out")
    out = subprocess.run([cmake, "-S", ROOT, "-B", str(tmp_path / "build"), "-DFRCNN_CUDA=1",
                          "-DFRCNN_OUTPUT_DIR=" + str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=300)
    log = out.stdout + out.stderr
    assert out.returncode != 0, log
    assert "FRCNN_CUDA=1 but no CUDA compiler (nvcc) was found" in log, log
    assert not os.path.exists(tmp_path / "out" / "_build_config.py")
