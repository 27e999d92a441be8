"""The CPU execution harness catches kernel bugs: a copy of the sources with two deliberate
one-character bugs in CUDA kernels (nms_mask_kernel: `iou > thresh` -> `iou >= thresh`;
backward_gather_kernel: `pw < pw_hi` -> `pw <= pw_hi`) is built as _C_emu alone (CPU only)
and, run on the same inputs, disagrees with the CPU ops where the unmutated harness agrees.

Builds one module (about 2-3 minutes on 2 cores): marked slow as well as cuda_emu."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

pytestmark = [pytest.mark.cuda_emu, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MUTATIONS = [
    ("csrc/nms/nms_cuda.cuh", "if (iou > thresh) bits", "if (iou >= thresh) bits"),
    ("csrc/roi_align/roi_align_cuda_kernels.cuh", "for (int pw = pw_lo; pw < pw_hi; ++pw)",
     "for (int pw = pw_lo; pw <= pw_hi; ++pw)"),
]

# Runs the two ops through _C_emu (the package's, or the module at argv[1]) and the CPU path;
# prints whether each agrees.
CHECK = textwrap.dedent("""
    import importlib.util, json, sys
    import numpy as np
    import frcnn_ops
    if len(sys.argv) > 1:
        spec = importlib.util.spec_from_file_location("frcnn_ops._C_emu", sys.argv[1])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["frcnn_ops._C_emu"] = mod
        frcnn_ops._C_emu = mod
    from frcnn_ops import _C_emu
    assert _C_emu.emulated
    res = {}
    # two boxes overlapping by IoU exactly 0.5: `>` keeps both, `>=` suppresses the second
    d = np.array([[[0, .9, 0, 0, 10, 10], [0, .8, 0, 0, 10, 5], [0, .7, 20, 20, 30, 30]]],
                 np.float32)
    with frcnn_ops.emulate_cuda():
        got = frcnn_ops.nms(d, overlap_thresh=0.5)
    res["nms"] = bool(np.array_equal(got, frcnn_ops.nms(d, overlap_thresh=0.5)))
    rng = np.random.default_rng(0)
    rois = np.array([[0, 1, 1, 9, 7], [0, 2.5, 0.5, 11, 11], [1, 0, 3, 6, 9]], np.float32)
    kw = dict(pooled_size=(2, 3), spatial_scale=1.0, sample_ratio=2)
    grad = rng.standard_normal((3, 4, 2, 3)).astype(np.float32)
    ref = frcnn_ops.roi_align_backward(grad, rois, (2, 4, 12, 12), **kw)
    with frcnn_ops.emulate_cuda():
        got = frcnn_ops.roi_align_backward(grad, rois, (2, 4, 12, 12), deterministic=True, **kw)
    res["roi_align_backward"] = bool(np.allclose(got, ref, rtol=1e-5, atol=1e-5))
    print(json.dumps(res))
""")


def check(*module, cwd):
    # the frcnn_ops this test imports (installed, or an in-place build), never the unbuilt
    # source folder that `python -c` would put first on sys.path from the checkout
    import frcnn_ops
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(frcnn_ops.__file__)))
    env = dict(os.environ, PYTHONPATH=pkg_root)
    p = subprocess.run([sys.executable, "-c", CHECK] + list(module), capture_output=True,
                       text=True, timeout=300, cwd=cwd, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def build_mutated(work):
    import pybind11
    src = os.path.join(work, "src")
    for rel in ["CMakeLists.txt"]:
        os.makedirs(src, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), os.path.join(src, rel))
    shutil.copytree(os.path.join(ROOT, "csrc"), os.path.join(src, "csrc"),
                    ignore=shutil.ignore_patterns("*.o", "*.so"))
    for rel, old, new in MUTATIONS:
        path = os.path.join(src, rel)
        with open(path) as f:
            text = f.read()
        assert text.count(old) == 1, "mutation site not found (once) in %s: %s" % (rel, old)
        with open(path, "w") as f:
            f.write(text.replace(old, new))
    build, out = os.path.join(work, "build"), os.path.join(work, "out")
    cfg = ["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Debug", "-DFRCNN_CUDA=0",
           "-DFRCNN_MXNET=0", "-DFRCNN_CUDA_EMULATE=ON", "-DFRCNN_OUTPUT_DIR=" + out,
           "-Dpybind11_DIR=" + pybind11.get_cmake_dir(), "-DPython_EXECUTABLE=" + sys.executable]
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(min(os.cpu_count() or 2, 4))
    for cmd in (cfg, ["cmake", "--build", build, "--target", "_C_emu", "--parallel", jobs]):
        p = subprocess.run(cmd, capture_output=True, text=True)
        assert p.returncode == 0, "%s failed:\n%s%s" % (cmd[:2], p.stdout[-3000:], p.stderr[-3000:])
    return os.path.join(out, "_C_emu" + sysconfig.get_config_var("EXT_SUFFIX"))


@pytest.mark.skipif(shutil.which("cmake") is None and not os.environ.get("CMAKE"),
                    reason="needs cmake")
def test_one_character_kernel_bugs_are_caught(tmp_path):
    assert check(cwd=tmp_path) == {"nms": True, "roi_align_backward": True}  # the real kernels
    module = build_mutated(str(tmp_path))
    assert check(module, cwd=tmp_path) == {"nms": False, "roi_align_backward": False}
