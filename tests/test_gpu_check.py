"""tools/gpu_check.sh --dry-run: the GPU check's code path on a machine without a GPU, so that
the one command a lent GPU machine runs cannot rot (docs/GPU.md).

Runs with --no-build (the frcnn_ops this Python imports: the installed package or an in-place
build); CI also runs the full dry run, build included (README ci:test)."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "gpu_check.sh")
STEPS = ("smoke", "pytest", "memcheck", "racecheck", "synccheck", "initcheck", "bench")

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11) or not os.path.exists("/bin/bash"),
                                reason="gpu_check.sh needs bash and Python >= 3.11")


def _run(tmp_path, budget, *args):
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), GPU_CHECK_BUDGET_S=str(budget), PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)
    # the frcnn_ops under test here: an in-place build of this checkout or the installed one
    proc = subprocess.run(["bash", SCRIPT, "--dry-run", "--no-build", *args], env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    summary = (out / "summary.txt").read_text() if (out / "summary.txt").exists() else ""
    lines = {}
    for line in summary.splitlines():
        m = re.match(r"(\w+)\s+(passed|failed|skipped)\s+(\d+)s\s+(.*)", line)
        assert m, "bad summary line: %r" % line
        lines[m.group(1)] = (m.group(2), m.group(4))
    return proc, lines, out


def test_dry_run_reports_every_step(tmp_path):
    proc, lines, out = _run(tmp_path, 240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    for step in STEPS:
        assert step in lines, "no summary line for %s:\n%s" % (step, proc.stdout[-3000:])
        assert lines[step][0] in ("passed", "skipped"), (step, lines[step])
    assert lines["smoke"][0] == "passed" and "19 ops match" in lines["smoke"][1]
    assert lines["pytest"][0] == "passed"
    assert lines["bench"][0] == "passed"
    for tool in ("memcheck", "racecheck", "synccheck", "initcheck"):
        status, detail = lines[tool]
        assert status == "skipped" and "no GPU" in detail
        assert "compute-sanitizer --tool %s" % tool in detail  # the command it would run
    # only the files that come back from a lent machine: few, flat, small
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench.json", "gpu_check.log", "summary.txt"], files
    assert all(p.stat().st_size < 16 << 20 for p in out.iterdir())
    import json
    bench = json.loads((out / "bench.json").read_text())
    assert "roi_align_fwd" in bench["figures"] and "nms_6000" in bench["figures"]
    assert set(bench["targets"]) >= {"roi_align_fwd_x_write_bound", "proposal_us_no_host_sync",
                                     "roi_align_bwd_det_over_atomic"}


def test_tiny_budget_skips_steps(tmp_path):
    proc, lines, _ = _run(tmp_path, 2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    for step in STEPS:
        assert lines[step][0] == "skipped", (step, lines[step])
    for step in ("smoke", "pytest", "bench"):
        assert "budget" in lines[step][1], lines[step]


def test_steps_subset_and_bad_arguments(tmp_path):
    proc, lines, _ = _run(tmp_path, 60, "--steps", "smoke")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert set(lines) == {"build", "smoke"} and lines["smoke"][0] == "passed"
    bad = subprocess.run(["bash", SCRIPT, "--dry-run", "--steps", "nope"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "unknown step" in bad.stderr
