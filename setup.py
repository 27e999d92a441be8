"""Build frcnn_ops: CMake builds the MXNet op library and the pybind11 module; Cython builds
frcnn_model's training-target and metric loops (frcnn_model.training._targets,
frcnn_model.evaluation._metrics).

Environment:
  FRCNN_CUDA=auto|0|1      CUDA kernels when nvcc is found (auto), never (0), required (1)
  CUDAARCHS / FRCNN_CUDA_ARCHS   CUDA architectures, e.g. "80;90" (default sm_70/75..sm_90 + PTX)
  FRCNN_MXNET=auto|0|1     the MXNet op library when mxnet is installed (auto), never, required
  FRCNN_MXNET_ROOT         the mxnet package folder to build against (default: the installed one)
  FRCNN_NATIVE=1           tune the CPU code for this machine (-march=native); off by default
  FRCNN_SANITIZE=...       e.g. address,undefined for the CPU code
  FRCNN_CUDA_EMULATE=1     also build frcnn_ops._C_emu: the CUDA kernels compiled by the host
                           compiler and run on the CPU execution harness (no nvcc needed)
  FRCNN_BUILD_TYPE         CMake build type (Release by default)
  FRCNN_BUILD_DIR          CMake build folder (default build/cmake-<python tag>)
"""
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import glob
import sys
import sysconfig

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

VERSION = "0.1.0"
ROOT = os.path.dirname(os.path.abspath(__file__))


def mxnet_root():
    """The installed mxnet package folder, found without importing mxnet."""
    root = os.environ.get("FRCNN_MXNET_ROOT")
    if root:
        return root, ""
    spec = importlib.util.find_spec("mxnet")
    if spec is None or not spec.submodule_search_locations:
        return "", ""
    try:
        version = importlib.metadata.version("mxnet")
    except importlib.metadata.PackageNotFoundError:
        version = ""
    return list(spec.submodule_search_locations)[0], version


def emulate():
    """FRCNN_CUDA_EMULATE=1: also build frcnn_ops._C_emu (the CPU execution harness)."""
    return os.environ.get("FRCNN_CUDA_EMULATE", "0") not in ("", "0", "OFF", "off")


def cython_extensions():
    """frcnn_model's Cython modules (sources beside the Python modules that use them, in
    model/<subpackage>/, installed as frcnn_model.<subpackage>.*).

    They use typed memoryviews and NumPy's Python API only (no ``cimport numpy``), so they
    need neither NumPy's headers nor NumPy itself to build, and one build imports under NumPy
    1.x and 2.x. Cython is required: frcnn_model has no pure-Python fallback for these loops.
    """
    try:
        from Cython.Build import cythonize
    except ImportError:
        sys.exit("error: building frcnn_model needs Cython>=3 (pip install 'Cython>=3'); "
                 "with --no-build-isolation it must be installed in this environment")

    args = ["-O3", "-ffp-contract=off"]  # float32 arithmetic exactly as written: no FMA
    exts = [Extension("frcnn_model.%s.%s" % (pkg, name),
                      sources=["model/%s/%s.pyx" % (pkg, name)], language="c++",
                      extra_compile_args=args + ["-std=c++14"])
            for pkg, name in (("training", "_targets"), ("evaluation", "_metrics"))]
    return cythonize(exts, compiler_directives={"language_level": "3"})


class CMakeBuild(build_ext):
    """CMake for frcnn_ops._C; every other extension (Cython) the setuptools way."""

    def build_extension(self, ext):
        if ext.name != "frcnn_ops._C":
            return super().build_extension(ext)
        import pybind11

        out_dir = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
        tag = sysconfig.get_config_var("SOABI") or "py"
        build_dir = os.environ.get("FRCNN_BUILD_DIR") or os.path.join(ROOT, "build", "cmake-" + tag)
        os.makedirs(build_dir, exist_ok=True)
        mx_root, mx_version = mxnet_root()
        archs = os.environ.get("FRCNN_CUDA_ARCHS") or os.environ.get("CUDAARCHS") or ""
        args = [
            "cmake", "-S", ROOT, "-B", build_dir,
            "-DCMAKE_BUILD_TYPE=" + os.environ.get("FRCNN_BUILD_TYPE", "Release"),
            "-DFRCNN_OUTPUT_DIR=" + out_dir,
            "-DFRCNN_CUDA=" + os.environ.get("FRCNN_CUDA", "auto"),
            "-DFRCNN_MXNET=" + os.environ.get("FRCNN_MXNET", "auto"),
            "-DFRCNN_NATIVE=" + ("ON" if os.environ.get("FRCNN_NATIVE", "0") == "1" else "OFF"),
            "-DFRCNN_SANITIZE=" + os.environ.get("FRCNN_SANITIZE", ""),
            "-DFRCNN_CUDA_EMULATE=" + ("ON" if emulate() else "OFF"),
            "-DFRCNN_VERSION=" + VERSION,
            "-DMXNET_ROOT=" + mx_root,
            "-DFRCNN_MXNET_VERSION=" + mx_version,
            "-Dpybind11_DIR=" + pybind11.get_cmake_dir(),
            "-DPython_EXECUTABLE=" + sys.executable,
        ]
        if archs:
            args.append("-DCMAKE_CUDA_ARCHITECTURES=" + archs)
        # CMake's own message says what is wrong (e.g. FRCNN_CUDA=1 without nvcc): no fallback
        if subprocess.call(args) != 0:
            sys.exit("error: configuring frcnn_ops with CMake failed (see CMake's error above; "
                     "FRCNN_CUDA=%s, FRCNN_MXNET=%s)" % (os.environ.get("FRCNN_CUDA", "auto"),
                                                         os.environ.get("FRCNN_MXNET", "auto")))
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 2)
        if not emulate():  # a _C_emu of an earlier build would be stale
            for path in glob.glob(os.path.join(out_dir, "_C_emu*")):
                os.remove(path)
        if subprocess.call(["cmake", "--build", build_dir, "--parallel", jobs]) != 0:
            sys.exit("error: building frcnn_ops with CMake failed (see the compiler's error above)")
        self._out_dir = out_dir

    def copy_extensions_to_source(self):
        """--inplace / editable: setuptools copies _C only; the op library and config too."""
        super().copy_extensions_to_source()  # also the Cython modules, into model/<subpackage>/
        src_pkg = os.path.join(ROOT, "frcnn_ops")
        out_dir = getattr(self, "_out_dir", None)
        if out_dir is None:
            return
        names = ["libfrcnn_ops_mx.so", "_build_config.py"]
        # the CPU execution harness (FRCNN_CUDA_EMULATE=1); without it, no stale copy stays
        emu = glob.glob(os.path.join(out_dir, "_C_emu" + (sysconfig.get_config_var("EXT_SUFFIX")
                                                          or ".so")))
        if not emulate():
            for path in glob.glob(os.path.join(src_pkg, "_C_emu*")):
                os.remove(path)
        names += [os.path.basename(p) for p in emu]
        for name in names:
            path = os.path.join(out_dir, name)
            if os.path.exists(path):
                shutil.copy2(path, os.path.join(src_pkg, name))


setup(
    name="frcnn_ops",
    version=VERSION,
    description="Fast, exact Faster R-CNN operators (box decode, proposal, NMS, ROIAlign) "
                "for MXNet/Gluon, CPU and CUDA",
    packages=find_packages(include=["frcnn_ops", "frcnn_ops.*"]) + ["frcnn_model"]
    + ["frcnn_model." + sub for sub in ("modeling", "data", "training", "evaluation", "cli")],
    package_dir={"frcnn_model": "model"},
    ext_modules=[Extension("frcnn_ops._C", sources=[])] + cython_extensions(),
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.8",
    install_requires=["numpy"],
    extras_require={"mxnet": ["mxnet>=1.9,<1.10", "numpy<1.24"]},
    entry_points={"console_scripts": ["frcnn-detect=frcnn_model.cli.detect:main",
                                     "frcnn-train=frcnn_model.cli.train:main",
                                     "frcnn-eval=frcnn_model.cli.eval:main",
                                     "frcnn-bench=frcnn_ops.bench.cli:main"]},
    zip_safe=False,
)
