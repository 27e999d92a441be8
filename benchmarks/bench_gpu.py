"""GPU suites: frcnn-bench --device gpu's cases (our CuPy path against torchvision's CUDA ops)
and the extra ones; skipped without a GPU, CuPy and torch.

Each callable ends with a device synchronize so that the time covers the GPU work.

Script mode (what tools/gpu_check.sh runs; docs/GPU.md lists the figures and the targets):

    python benchmarks/bench_gpu.py --json bench.json [--numpy]

times the seed shapes with CUDA events (warm-up, then the median of several repetitions of many
back-to-back launches: no host synchronisation between the calls of one repetition), the
proposal step also as a CUDA-graph replay, against torchvision's CUDA ops, and records every
figure, the agreement checks and the targets in the JSON file. ``--numpy`` runs the same code
path with NumPy (the CPU kernels, perf_counter, small sizes): the dry run on a machine without
a GPU.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import frcnn_ops  # noqa: E402
from benchutil import case_params, time_case  # noqa: E402
from frcnn_ops.bench.cases import suite_cases  # noqa: E402
from frcnn_ops.bench.cases import shapes as S  # noqa: E402
from frcnn_ops.bench.cases.refs import torchvision_proposal  # noqa: E402
from frcnn_ops.bench.cases.shapes import (detections, feature_map, im_info,  # noqa: E402
                                          pre_nms_boxes, roi_kw, rpn_anchors, rpn_deltas,
                                          rpn_scores, seed_rois)
from frcnn_ops.bench.timing import sync_device  # noqa: E402

try:
    import cupy as cp
except ImportError:
    cp = None


def _has_device():
    try:
        return cp is not None and cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no driver
        return False


if __name__ != "__main__":  # collected by pytest
    if cp is None:
        pytest.skip("no CuPy", allow_module_level=True)
    if not _has_device():
        pytest.skip("no CUDA device", allow_module_level=True)


@pytest.mark.parametrize("case,side", case_params(suite_cases(
    "box_decode", "proposal", "nms", "roi_align", device="gpu")))
def test_gpu(benchmark, env, case, side):
    time_case(benchmark, env, case, side)


# ---- script mode: CUDA events, JSON ----------------------------------------------------------

class Clock:
    """Times `iters` back-to-back calls per repetition: CUDA events on the current stream of
    CuPy or torch (no host synchronisation between the calls), or perf_counter for NumPy."""

    def __init__(self, kind, stream=None):
        self.kind = kind
        self.stream = stream

    def _events(self):
        if self.kind == "cupy":
            return cp.cuda.Event(), cp.cuda.Event()
        import torch
        return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def sync(self):
        if self.kind != "numpy":
            sync_device()

    def measure(self, fn, iters, reps, warmup=3):
        """Per-call milliseconds of each repetition."""
        for _ in range(warmup):
            fn()
        self.sync()
        out = []
        for _ in range(reps):
            if self.kind == "numpy":
                t0 = time.perf_counter()
                for _ in range(iters):
                    fn()
                out.append((time.perf_counter() - t0) * 1e3 / iters)
                continue
            a, b = self._events()
            if self.kind == "cupy":
                stream = self.stream or cp.cuda.get_current_stream()
                a.record(stream)
                for _ in range(iters):
                    fn()
                b.record(stream)
                b.synchronize()
                out.append(cp.cuda.get_elapsed_time(a, b) / iters)
            else:
                a.record()
                for _ in range(iters):
                    fn()
                b.record()
                b.synchronize()
                out.append(a.elapsed_time(b) / iters)
        return out


def _stats(ms):
    ms = sorted(ms)
    return {"median_us": statistics.median(ms) * 1e3, "min_us": ms[0] * 1e3,
            "max_us": ms[-1] * 1e3, "reps": len(ms)}


class Run:
    def __init__(self, use_numpy):
        self.numpy = use_numpy
        self.xp = np if use_numpy else cp
        self.kind = "numpy" if use_numpy else "cupy"
        self.figures, self.checks, self.skipped = {}, {}, {}
        # repetitions x launches per repetition; the NumPy dry run only walks the code path
        self.reps, self.iters = (3, 2) if use_numpy else (15, 20)
        self.torch = self.tv = None
        try:
            import torch
            import torchvision
            if use_numpy or torch.cuda.is_available():
                self.torch, self.tv = torch, torchvision
            else:
                self.skipped["torchvision"] = "torch without CUDA"
        except ImportError as e:
            self.skipped["torchvision"] = "not importable (%s)" % e
        self.tdev = "cpu" if use_numpy else "cuda"
        self.channels = 16 if use_numpy else S.FEAT_C

    def time(self, name, fn, clock=None, iters=None, reps=None, **extra):
        clock = clock or Clock(self.kind)
        st = _stats(clock.measure(fn, iters or self.iters, reps or self.reps))
        st.update(extra)
        self.figures[name] = st
        print("  %-36s %10.1f us (min %.1f, %d reps)" % (name, st["median_us"], st["min_us"],
                                                      st["reps"]))
        sys.stdout.flush()
        return st["median_us"]

    def tclock(self):
        return Clock("numpy" if self.numpy else "torch")

    def t(self, a):
        return self.torch.as_tensor(np.ascontiguousarray(a), device=self.tdev)

    def check(self, name, ok, detail=""):
        self.checks[name] = {"ok": bool(ok), "detail": detail}
        print("  check %-30s %s %s" % (name, "ok" if ok else "MISMATCH", detail))

    # ---- the figures ----

    def copy_bandwidth(self):
        nbytes = (8 << 20) if self.numpy else (1 << 30)
        src = self.xp.ones(nbytes // 4, np.float32)
        dst = self.xp.empty_like(src)
        if self.numpy:
            fn = lambda: np.copyto(dst, src)  # noqa: E731
        else:
            fn = lambda: dst.data.copy_from_device_async(src.data, nbytes)  # noqa: E731
        us = self.time("d2d_copy_%dMiB" % (nbytes >> 20), fn, iters=5)
        gbs = 2 * nbytes / (us * 1e-6) / 1e9   # bytes read + bytes written
        self.figures["card_bandwidth_GBps"] = gbs
        print("  card bandwidth (copy, read+write)  %10.1f GB/s" % gbs)
        return gbs

    def roi_align(self, card_gbs):
        feat, rois = feature_map(self.channels), seed_rois()
        kw = roi_kw()
        head = np.random.default_rng(1).normal(size=(len(rois), self.channels) + S.ROI_POOLED)
        head = head.astype(np.float32)
        X, R, G = (self.xp.asarray(a) for a in (feat, rois, head))
        ours = lambda: frcnn_ops.roi_align(X, R, **kw)  # noqa: E731
        written = len(rois) * self.channels * S.ROI_POOLED[0] * S.ROI_POOLED[1] * 4
        us = self.time("roi_align_fwd", ours)
        bound_us = written / (card_gbs * 1e9) * 1e6
        self.figures["roi_align_fwd"].update(
            bytes_written=written, achieved_GBps=written / (us * 1e-6) / 1e9,
            write_bound_us=bound_us, x_write_bound=us / bound_us)

        def fwd_bwd(det):
            def run():
                frcnn_ops.roi_align(X, R, **kw)
                return frcnn_ops.roi_align_backward(G, R, X.shape, deterministic=det, **kw)
            return run
        self.time("roi_align_fwd_bwd", fwd_bwd(False))
        self.time("roi_align_fwd_bwd_deterministic", fwd_bwd(True))
        bwd = {det: (lambda det=det: frcnn_ops.roi_align_backward(G, R, X.shape,
                                                                   deterministic=det, **kw))
               for det in (False, True)}
        a = self.time("roi_align_bwd_atomic", bwd[False])
        d = self.time("roi_align_bwd_deterministic", bwd[True])
        self.figures["roi_align_bwd_det_over_atomic"] = d / a
        if self.tv is None:
            return
        torch, tv = self.torch, self.tv
        tx, tr, tg = self.t(feat), self.t(rois), self.t(head)
        tvf = lambda x: tv.ops.roi_align(x, tr, kw["pooled_size"], kw["spatial_scale"],  # noqa
                                         kw["sample_ratio"], aligned=False)
        got, exp = self._host(ours()), tvf(tx).detach().cpu().numpy()
        self.check("roi_align_fwd vs torchvision", np.allclose(got, exp, rtol=1e-5, atol=1e-5),
                   "max abs diff %.2e" % np.abs(got - exp).max())
        self.time("tv_roi_align_fwd", lambda: tvf(tx), clock=self.tclock())
        txg = tx.clone().requires_grad_(True)

        def tv_fwd_bwd():
            txg.grad = None
            tvf(txg).backward(tg)
        tv_fwd_bwd()
        g_tv = txg.grad.detach().cpu().numpy()
        g_ours = self._host(fwd_bwd(False)())
        scale = float(np.abs(g_tv).max()) or 1.0
        self.check("roi_align_bwd vs torchvision",
                   np.allclose(g_ours, g_tv, rtol=1e-5, atol=1e-5 * scale),
                   "max abs diff %.2e (max |grad| %.2e)" % (np.abs(g_ours - g_tv).max(), scale))
        self.time("tv_roi_align_fwd_bwd", tv_fwd_bwd, clock=self.tclock())

    def proposal(self):
        pre, post = 6000, 300
        scores, deltas, anchors, info = rpn_scores(), rpn_deltas(), rpn_anchors(), im_info()
        Sc, D, A, I = (self.xp.asarray(a) for a in (scores, deltas, anchors, info))
        ours = lambda: frcnn_ops.proposal(Sc, D, A, I, pre, post)  # noqa: E731
        self.time("proposal_launches", ours)
        if not self.numpy:
            # the same call captured once in a CUDA graph, replayed: no host work at all
            stream = cp.cuda.Stream(non_blocking=True)
            with stream:
                ours()
                stream.synchronize()
                stream.begin_capture()
                ours()
                graph = stream.end_capture()
                self.time("proposal_graph", lambda: graph.launch(stream),
                          clock=Clock("cupy", stream))
                stream.synchronize()
            del graph
            frcnn_ops.release_graph_workspaces()
        if self.tv is None:
            return
        torch, tv = self.torch, self.tv
        ts, td, ta = self.t(scores[0, :, 0]), self.t(deltas[0]), self.t(anchors[0])

        def composite():  # torchvision's RPN steps: topk, decode, clip, min size, batched_nms
            s, idx = ts.topk(pre)
            d, a = td[idx], ta[idx]
            wa, ha = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
            xa, ya = a[:, 0] + 0.5 * wa, a[:, 1] + 0.5 * ha
            cx, cy = d[:, 0] * wa + xa, d[:, 1] * ha + ya
            w, h = torch.exp(d[:, 2]) * wa, torch.exp(d[:, 3]) * ha
            boxes = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], 1)
            boxes = tv.ops.clip_boxes_to_image(boxes, S.IMAGE_HW)
            keep = tv.ops.remove_small_boxes(boxes, 16.0)
            boxes, s = boxes[keep], s[keep]
            lvl = torch.zeros_like(s, dtype=torch.int64)
            keep = tv.ops.batched_nms(boxes, s, lvl, 0.7)[:post]
            return boxes[keep], s[keep]
        self.time("tv_proposal_composite", composite, clock=self.tclock())
        self.time("tv_proposal_composite_nms", lambda: torchvision_proposal(
            torch, tv, ts, td, ta, S.IMAGE_HW, pre, post), clock=self.tclock())

    def nms(self):
        data = pre_nms_boxes(6000)
        X = self.xp.asarray(data)
        kw = dict(overlap_thresh=0.7, coord_start=1, score_index=0, force_suppress=True)
        ours = lambda: frcnn_ops.nms(X, **kw)  # noqa: E731
        self.time("nms_6000", ours)
        det = detections()
        Xd = self.xp.asarray(det)
        self.time("nms_per_class_20x300", lambda: frcnn_ops.nms(
            Xd, overlap_thresh=0.3, topk=400, valid_thresh=0.0001, id_index=0))
        if self.tv is None:
            return
        tv = self.tv
        tb, tsc = self.t(data[0, :, 1:]), self.t(data[0, :, 0])
        kept_tv = set(tv.ops.nms(tb, tsc, 0.7).cpu().numpy().tolist())
        out = self._host(ours())[0]
        kept = out[out[:, 0] >= 0]
        # rows of ours are [score, box]; map back to the input rows by exact match
        index = {tuple(r): i for i, r in enumerate(data[0].tolist())}
        kept_ours = {index.get(tuple(r), -1) for r in kept.tolist()}
        self.check("nms_6000 vs torchvision", kept_ours == kept_tv,
                   "%d vs %d kept" % (len(kept_ours), len(kept_tv)))
        self.time("tv_nms_6000", lambda: tv.ops.nms(tb, tsc, 0.7), clock=self.tclock())
        flat = det.reshape(-1, 6)
        fb, fs, fi = self.t(flat[:, 2:]), self.t(flat[:, 1]), self.t(flat[:, 0]).long()
        self.time("tv_batched_nms_20x300", lambda: tv.ops.batched_nms(fb, fs, fi, 0.3),
                  clock=self.tclock())

    def _host(self, a):
        return a if self.numpy else cp.asnumpy(a)

    # ---- ratios and targets ----

    def targets(self):
        f = self.figures

        def us(name):
            return f[name]["median_us"] if name in f else None

        def ratio(ref, ours):
            return us(ref) / us(ours) if us(ref) and us(ours) else None

        prop = us("proposal_graph") or us("proposal_launches")
        r = {
            "roi_align_fwd_x_write_bound": (f.get("roi_align_fwd", {}).get("x_write_bound"),
                                            "<=", 2.0),
            "roi_align_fwd_x_torchvision": (ratio("tv_roi_align_fwd", "roi_align_fwd"), ">=",
                                            3.0),
            "roi_align_fwd_bwd_x_torchvision": (ratio("tv_roi_align_fwd_bwd",
                                                      "roi_align_fwd_bwd"), ">=", 3.0),
            "proposal_us_no_host_sync": (prop, "<=", 100.0),
            "proposal_x_torchvision_composite": (
                us("tv_proposal_composite") / prop if prop and us("tv_proposal_composite")
                else None, ">=", 5.0),
            "nms_6000_x_torchvision": (ratio("tv_nms_6000", "nms_6000"), ">=", 3.0),
            "roi_align_bwd_det_over_atomic": (f.get("roi_align_bwd_det_over_atomic"), "<=",
                                              3.0),
        }
        out = {}
        for k, (v, op, target) in r.items():
            met = (None if v is None or self.numpy
                   else (v <= target if op == "<=" else v >= target))
            out[k] = {"value": v, "target": "%s %g" % (op, target), "met": met}
        return out


def print_summary(run, targets, bad, status):
    """The targets, one line each, and the SUMMARY line gpu_check.sh reads."""
    met = [v["met"] for v in targets.values() if v["met"] is not None]
    for k, v in targets.items():
        val = "n/a" if v["value"] is None else "%.3g" % v["value"]
        print("  target %-36s %8s  (%s)  %s" % (k, val, v["target"],
                                               {True: "met", False: "NOT met",
                                                None: "-"}[v["met"]]))
    f = run.figures

    def us(k):
        return "%.1fus" % f[k]["median_us"] if k in f else "n/a"
    print("SUMMARY: roi_fwd %s (%s x bound), fwd+bwd %s, proposal %s, nms6000 %s; "
          "targets met %d/%d; checks %d/%d ok%s" % (
              us("roi_align_fwd"), "%.2f" % f["roi_align_fwd"]["x_write_bound"]
              if "roi_align_fwd" in f else "n/a", us("roi_align_fwd_bwd"),
              us("proposal_graph") if "proposal_graph" in f else us("proposal_launches"),
              us("nms_6000"), sum(met), len(targets), len(run.checks) - len(bad),
              len(run.checks), "; errors: " + ", ".join(run.skipped) if status else ""))


def script_main(argv=None):
    p = argparse.ArgumentParser(description="GPU figures with CUDA events into a JSON file")
    p.add_argument("--json", required=True, help="where the figures go")
    p.add_argument("--numpy", action="store_true",
                   help="NumPy and the CPU kernels stand in for the GPU (dry run, small sizes)")
    args = p.parse_args(argv)
    if not args.numpy and not _has_device():
        print("bench: no CUDA device visible to CuPy (use --numpy for the dry run)")
        return 2
    run = Run(args.numpy)
    info = {"mode": "numpy (dry run: CPU kernels, not GPU figures)" if args.numpy else "cuda",
            "build_info": frcnn_ops.build_info(), "python": sys.version.split()[0],
            "numpy": np.__version__, "timing": "median over %d repetitions of %d back-to-back "
            "calls each (%s)" % (run.reps, run.iters, "perf_counter" if args.numpy else
                                 "CUDA events")}
    if not args.numpy:
        dev = cp.cuda.Device()
        info["device"] = cp.cuda.runtime.getDeviceProperties(dev.id)["name"].decode()
        info["compute_capability"] = dev.compute_capability
        info["cupy"] = cp.__version__
    if run.torch is not None:
        info["torch"], info["torchvision"] = run.torch.__version__, run.tv.__version__
    print("bench: %s" % info["mode"])
    status = 0
    for step in ("copy_bandwidth", "roi_align", "proposal", "nms"):
        try:
            if step == "copy_bandwidth":
                gbs = run.copy_bandwidth()
            elif step == "roi_align":
                run.roi_align(gbs)
            else:
                getattr(run, step)()
        except Exception as e:  # noqa: BLE001 - record it, go on with the next figure
            import traceback
            traceback.print_exc()
            run.skipped[step] = "error: %s: %s" % (type(e).__name__, e)
            status = 1
    targets = run.targets()
    bad = [k for k, c in run.checks.items() if not c["ok"]]
    if bad:
        status = 1
    result = dict(info, figures=run.figures, checks=run.checks, targets=targets,
                  skipped=run.skipped)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True, default=str)
    print_summary(run, targets, bad, status)
    return status


if __name__ == "__main__":
    sys.exit(script_main())
