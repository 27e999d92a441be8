"""frcnn-bench (frcnn_ops.bench.cli): runs in-process with --quick on a few cases; checks the
table's rows, the JSON, the PNG, the exit status and the MISMATCH path. Never asserts times."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from frcnn_ops.bench import cases as C
from frcnn_ops.bench import cli
from frcnn_ops.bench.timing import Budget, time_pair


def _run(capsys, *argv):
    code = cli.main(["--quick", "--no-progress", *argv])
    out = capsys.readouterr().out
    return code, out


def _table_rows(out):
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("op "))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append(line)
    return rows


def test_quick_table_and_json(mx, capsys, tmp_path):
    path = tmp_path / "bench.json"
    code, out = _run(capsys, "--cases", "box_decode,nms", "--json", str(path))
    assert code == 0, out
    rows = _table_rows(out)
    refs = ["mx.nd.contrib.box_decode", "NumPy reference"]
    if C.Env().gluoncv is not None:
        refs.append("GluonCV NormalizedBoxCenterDecoder")
    for ref in refs:
        assert any(r.startswith("box_decode") and ref in r for r in rows), (ref, out)
    nms_rows = [r for r in rows if r.startswith("nms") and "mx.nd.contrib.box_nms" in r]
    assert len(nms_rows) == 2 and any("6000 boxes" in r for r in nms_rows)
    assert any("20x300" in r for r in nms_rows)
    assert "MISMATCH" not in out and "bitwise equal" in out

    doc = json.loads(path.read_text())
    assert doc["ok"] is True
    assert {"cpu_count", "platform", "frcnn_ops", "mxnet"} <= set(doc["machine"])
    assert doc["machine"]["frcnn_ops"]["version"]
    assert len(doc["rows"]) == len(rows)
    for row in doc["rows"]:
        assert {"case", "shape", "reference", "ref_ms", "ours_ms", "speedup",
                "agreement"} <= set(row)
        assert row["case"] in ("box_decode", "nms")
        assert row["agreement"] == "ok" and row["pairs"] >= 1
        assert row["ref_ms"] > 0 and row["ours_ms"] > 0 and row["speedup"] > 0


def test_plot_with_small_sweeps(mx, capsys, tmp_path):
    png = tmp_path / "bench.png"
    path = tmp_path / "bench.json"
    code, out = _run(capsys, "--cases", "clip_boxes", "--plot", str(png), "--sweep-sizes",
                     "small", "--json", str(path))
    assert code == 0, out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Scaling sweeps" in out
    sweeps = json.loads(path.read_text())["sweeps"]
    assert {p["sweep"] for p in sweeps} == {"rois", "anchors"}
    assert all(p["ours_ms"] > 0 and p["ref_ms"] > 0 for p in sweeps)


def test_mismatch_exits_nonzero(mx, capsys, monkeypatch, tmp_path):
    import frcnn_ops
    real = frcnn_ops.box_decode
    monkeypatch.setattr(frcnn_ops, "box_decode", lambda *a, **k: real(*a, **k) + 1.0)
    path = tmp_path / "bench.json"
    code, out = _run(capsys, "--cases", "box_decode", "--json", str(path))
    assert code == 1
    bad = [r for r in _table_rows(out) if "MISMATCH" in r]
    assert len(bad) == 1 and "NumPy reference" in bad[0]   # the NumPy path was patched
    assert "FAILED" in out
    doc = json.loads(path.read_text())
    assert doc["ok"] is False
    assert [r["agreement"] for r in doc["rows"] if r["reference"] == "NumPy reference"] == \
        ["mismatch"]


def test_threads_in_process(mx, capsys, monkeypatch):
    import frcnn_ops
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # restored after the test
    try:
        code, out = _run(capsys, "--cases", "clip_boxes", "--threads", "1")
        assert code == 0
        assert "frcnn_ops threads 1" in out
        assert "MXNet's OpenMP threads are unchanged" in out
    finally:
        frcnn_ops.set_num_threads(0)


def test_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--cases", "box_decode,bogus"])
    assert e.value.code == 2
    assert "bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--quick", "--device", "--json", "--plot", "--threads", "--cases"):
        assert opt in text


def test_gpu_without_gpu(capsys):
    if not C.gpu_available() == "":
        assert cli.main(["--device", "gpu", "--no-progress"]) == 2
        assert "--device gpu" in capsys.readouterr().err
    else:
        pytest.skip("a GPU is here")


def test_match_detections():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, size=(1, 600, 1)).astype(np.float32)
    scores = rng.uniform(0.02, 1, size=(1, 600, 1)).astype(np.float32)
    boxes = rng.uniform(0, 600, size=(1, 600, 4)).astype(np.float32)
    scores[0, 500:] = -1  # dropped rows
    ids[0, 500:] = -1
    ref = [ids, scores, boxes]
    perm = rng.permutation(600)  # row order does not matter
    same = [v[:, perm] for v in ref]
    assert C.match_detections(same, ref).status == "ok"
    shifted = [ids, scores, boxes + 0.5]
    assert C.match_detections(shifted, ref).status == "mismatch"
    few = [ids, scores.copy(), boxes.copy()]
    few[2][0, :3] += 1.0   # 3 of 500 off: 99.4% still match
    assert C.match_detections(few, ref).status == "ok"
    other_class = [ids + 1, scores, boxes]
    assert C.match_detections(other_class, ref).status == "mismatch"


def test_checks():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert C.bitwise(a, a.copy()).status == "ok"
    b = a.copy()
    b[1, 2] += 1
    assert C.bitwise(b, a).status == "mismatch"
    assert C.close(1e-5, 1e-5)(a * (1 + 1e-7), a).status == "ok"
    assert C.close(1e-5, 1e-5)(b, a).status == "mismatch"
    assert C.bitwise(a[:2], a).status == "mismatch"   # shapes
    kept = np.array([[0.9, 1, 2, 3, 4], [-1, -1, -1, -1, -1]], np.float32)
    assert C.tv_nms_check(kept[:1][None], 0, "boxes")(kept[None], np.array([0])).status == "ok"


def test_time_pair_interleaves():
    calls = []
    t = time_pair(lambda: calls.append("a"), lambda: calls.append("b"),
                  Budget(min_pairs=4, max_pairs=4, budget_s=0.0, warmup_s=0.0), warmup=False)
    assert calls == ["a", "b"] * 4 and t.pairs == 4
    assert len(t.ours_samples_ms) == len(t.ref_samples_ms) == 4


def test_one_case_list():
    """frcnn-bench's rows are cases of the suites' list, each id once (pytest params)."""
    suite = C.suite_cases(*C.GROUPS, "sweep")
    ids = [c.id for c in suite]
    assert len(ids) == len(set(ids))
    rows = C.comparisons(C.Env())
    assert rows and not any(c.extra for c in rows)
    assert {c.id for c in rows} <= set(ids)
    assert [C.GROUPS.index(c.group) for c in rows] == sorted(C.GROUPS.index(c.group)
                                                             for c in rows)
    sweep = C.sweep_cases("small")
    assert [c.sweep for c in sweep] == ["rois", "rois", "anchors", "anchors"]
    gpu = C.suite_cases(*C.GROUPS, device="gpu")
    assert all("cupy_gpu" in c.needs for c in gpu)


def _cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), fields[0]   # utime + stime, state


def _gone(pid):
    try:
        return _cpu_ticks(pid)[1] in ("Z", "X")   # a zombie nobody reaped yet is gone too
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_under_load_and_no_thp_columns(mx, capsys, monkeypatch, tmp_path):
    from frcnn_ops.bench import conditions as K
    started = []

    class Recorded(K.BusyLoop):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            started.append(self.proc.pid)

    monkeypatch.setattr(K, "BusyLoop", Recorded)
    path = tmp_path / "bench.json"
    code, out = _run(capsys, "--cases", "clip_boxes", "--under-load", "--no-thp",
                     "--json", str(path))
    assert code == 0, out
    assert "under load: ref ms" in out and "no THP: ref ms" in out and "kept" in out
    doc = json.loads(path.read_text())
    assert doc["rows"]
    for row in doc["rows"]:
        for key in ("loaded", "no_thp"):
            c = row[key]
            assert c["ours_ms"] > 0 and c["ref_ms"] > 0 and c["pairs"] >= 1, (key, c)
        assert row["loaded"]["kept"] == pytest.approx(row["loaded"]["speedup"] / row["speedup"])
    assert len(started) == 1 and _gone(started[0])   # the busy loop ended with the run
    assert not K.thp_disabled()                       # huge pages back as they were


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_busy_loop_runs_only_when_asked_and_ends():
    from frcnn_ops.bench.conditions import BusyLoop
    with BusyLoop() as busy:
        pid = busy.proc.pid
        t0, state = _cpu_ticks(pid)
        time.sleep(0.3)
        assert _cpu_ticks(pid)[0] - t0 <= 2 and state == "T"    # stopped until asked
        with busy.running():
            t0 = _cpu_ticks(pid)[0]
            time.sleep(0.5)
            assert _cpu_ticks(pid)[0] - t0 >= 10     # it spins (clock ticks of 10 ms)
        assert _cpu_ticks(pid)[1] == "T"
    assert _gone(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_busy_loop_dies_with_frcnn_bench(tmp_path):
    """A frcnn-bench killed mid-run leaves no busy loop behind (PR_SET_PDEATHSIG), stopped or
    running."""
    code = ("import os, sys; from frcnn_ops.bench.conditions import BusyLoop; b = BusyLoop(); "
            "print(b.proc.pid, flush=True); os.kill(b.proc.pid, 18) if sys.argv[1] == 'run' "
            "else None; os._exit(0)")
    for mode in ("stopped", "run"):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
        pid = int(out.stdout.split()[0])
        deadline = time.time() + 10
        while not _gone(pid) and time.time() < deadline:
            time.sleep(0.05)
        assert _gone(pid), mode


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_no_thp_takes_effect_and_restores():
    import mmap
    import resource
    from frcnn_ops.bench.conditions import no_thp, thp_disabled
    before = thp_disabled()
    with no_thp():
        assert thp_disabled()
        m = mmap.mmap(-1, 64 << 20)          # 64 MiB, a fresh mapping (not reused heap)
        a = np.frombuffer(m, np.uint8)
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a[::4096] = 1                          # every 4 KiB page faults on its own
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        del a
        m.close()
    assert faults >= 0.9 * (64 << 20) / 4096, faults
    assert thp_disabled() == before
