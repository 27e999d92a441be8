"""frcnn-bench: every frcnn_ops op against its references on this machine, checked then timed.

With no arguments it runs each op at the seed model's shapes (GluonCV
faster_rcnn_resnet50_v1b_voc on a 600x800 image) against every reference available here:
the mx.nd.contrib op, GluonCV's composite, the NumPy reference (frcnn_ops.reference) and
torchvision.ops when importable; then the whole model (frcnn_model against GluonCV's, same
random weights). For each row it first checks that our result agrees with the reference
(bitwise, or to a stated tolerance; "timing only" where the reference follows other
conventions), then times the two interleaved (ours, reference, ours, reference, ...) and
prints the medians and the median of the per-pair speedups. A row that disagrees prints
MISMATCH and the exit status is 1.

The progress bar goes to stderr, the table to stdout.
"""
import argparse
import json
import os
import platform
import sys
import time

EPILOG = """\
examples:
  frcnn-bench                          all ops and the model, a few minutes on 2 cores
  frcnn-bench --quick                  fewer timed pairs (model: 1 pair), under 2 minutes
  frcnn-bench --plot bench.png --json bench.json
  frcnn-bench --cases proposal,nms --threads 1
  frcnn-bench --device gpu             CuPy path against torchvision.ops on CUDA

exit status: 0 all agree, 1 a MISMATCH or an error, 2 bad usage or --device gpu without a GPU.
"""


def parse_args(argv=None):
    from .cases import GROUPS
    from .sweeps import SIZES

    p = argparse.ArgumentParser(prog="frcnn-bench", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="time fewer pairs (at least 1 a row, ~0.4 s a row; the model row "
                        "still runs, with 1 pair): under 2 minutes on 2 cores")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="cpu (default): ours against MXNet, GluonCV, NumPy, torchvision on "
                        "the CPU; gpu: our CuPy path against torchvision.ops on CUDA (needs "
                        "CuPy, a GPU and a CUDA build; exit 2 otherwise)")
    p.add_argument("--json", metavar="FILE",
                   help="write every row, the sweeps and the machine's description as JSON")
    p.add_argument("--plot", metavar="FILE.png",
                   help="write a figure: speedup bars and the scaling sweeps (runs the "
                        "sweeps, about a minute more)")
    p.add_argument("--sweeps", action="store_true",
                   help="run the scaling sweeps (time against rois and against anchors) "
                        "without --plot")
    p.add_argument("--sweep-sizes", choices=sorted(SIZES), default="full",
                   help="full (default): 64..2000 rois, 10k..200k anchors; small: a tiny "
                        "sweep (for tests)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads: frcnn_ops.set_num_threads(N) and OMP_NUM_THREADS=N for "
                        "MXNet (and torch.set_num_threads)")
    p.add_argument("--cases", metavar="LIST", default=",".join(GROUPS),
                   help="comma-separated subset of: %s (default: all)" % ", ".join(GROUPS))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in GROUPS]
    if unknown or not cases:
        p.error("--cases: unknown %s (choose from %s)" % (", ".join(unknown) or "(empty)",
                                                          ", ".join(GROUPS)))
    args.cases = cases
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    return args


class Progress:
    """tqdm on stderr when installed, else one line per step."""

    def __init__(self, total, enabled):
        self.total, self.n, self.bar = total, 0, None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, file=sys.stderr, unit="row", dynamic_ncols=True,
                                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}]")
            except ImportError:
                self.bar = None

    def start(self, what):
        if self.bar is not None:
            self.bar.set_description(what[:60])
        elif self.enabled:
            print("[%d/%d] %s" % (self.n + 1, self.total, what), file=sys.stderr, flush=True)

    def done(self):
        self.n += 1
        if self.bar is not None:
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.set_description("done")
            self.bar.close()


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name):
    try:
        import importlib.metadata as md
        return md.version(name)
    except Exception:  # noqa: BLE001
        return None


def _loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info(args):
    import frcnn_ops
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": {"frcnn_ops": frcnn_ops.get_num_threads(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "frcnn_ops": frcnn_ops.build_info(),
        "mxnet": _version("mxnet"),
        "gluoncv": _version("gluoncv"),
        "numpy": _version("numpy"),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "cupy": _version("cupy") or _version("cupy-cuda12x") or _version("cupy-cuda11x"),
        "device": args.device,
        "quick": args.quick,
        "loadavg_start": _loadavg(),
    }
    if args.device == "gpu":
        try:
            import cupy as cp
            info["gpu"] = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
        except Exception:  # noqa: BLE001
            info["gpu"] = None
    return info


def run_comparison(comp, budget):
    """Check, then time one Comparison; returns its table row as a dict."""
    from .cases import Agreement, to_numpy
    from .timing import time_pair

    row_start = time.perf_counter()
    row = dict(case=comp.group, op=comp.op, shape=comp.shape, reference=comp.reference,
               ref_ms=None, ours_ms=None, speedup=None, pairs=0)
    try:
        pair = comp.setup()
        t0 = time.perf_counter()
        ours_out = to_numpy(pair.ours())
        ref_out = to_numpy(pair.ref())
        check_s = time.perf_counter() - t0
        agreement = pair.check(ours_out, ref_out)
        del ours_out, ref_out
    except Exception as e:  # noqa: BLE001 - reported as an ERROR row
        agreement = Agreement("error", "%s: %s" % (type(e).__name__,
                                                   (str(e).splitlines() or [""])[0][:200]))
    if agreement.status in ("ok", "timing-only"):
        try:
            t = time_pair(pair.ours, pair.ref, budget, warmup=check_s < budget.warmup_s)
            row.update(ref_ms=t.ref_ms, ours_ms=t.ours_ms, speedup=t.speedup, pairs=t.pairs)
        except Exception as e:  # noqa: BLE001
            agreement = Agreement("error", "while timing: %s: %s" % (type(e).__name__, e))
    row["agreement"] = agreement.status
    row["check"] = agreement.detail
    row["seconds"] = round(time.perf_counter() - row_start, 2)  # setup, check and timing
    return row


def _ms(v):
    if v is None:
        return "-"
    if v < 1:
        return "%.3f" % v
    if v < 100:
        return "%.2f" % v
    return "%.0f" % v


def _speedup(v):
    if v is None:
        return "-"
    return "%.1fx" % v if v < 100 else "%.0fx" % v


def _check_text(row):
    if row["agreement"] == "mismatch":
        return "MISMATCH: " + row["check"]
    if row["agreement"] == "error":
        return "ERROR: " + row["check"]
    return row["check"]


def format_table(headers, lines, right=()):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *lines)]
    out = []
    for k, line in enumerate([headers, None] + list(lines)):
        if line is None:
            out.append("  ".join("-" * w for w in widths))
            continue
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def rows_table(rows):
    headers = ("op", "shape", "reference", "ref ms", "ours ms", "speedup", "pairs", "check")
    lines = [(r["op"], r["shape"], r["reference"], _ms(r["ref_ms"]), _ms(r["ours_ms"]),
              _speedup(r["speedup"]), r["pairs"], _check_text(r)) for r in rows]
    return format_table(headers, lines, right=(3, 4, 5, 6))


def sweeps_table(points):
    headers = ("sweep", "size", "reference", "ref ms", "ours ms", "speedup", "runs")
    lines = [(p["sweep"], p["x"], p["reference"] if p["ref_ms"] is not None else "(left out)",
              _ms(p["ref_ms"]), _ms(p["ours_ms"]), _speedup(p["speedup"]), p["runs"])
             for p in points]
    return format_table(headers, lines, right=(1, 3, 4, 5, 6))


def _set_threads(args, argv):
    """--threads: OMP_NUM_THREADS must be set before MXNet loads. Importing frcnn_ops (the
    parent package of this module) has already imported MXNet, so a command-line run re-executes
    itself once with the variable set; an in-process call (argv given) only changes frcnn_ops'
    and torch's threads and says so."""
    n = str(args.threads)
    if os.environ.get("OMP_NUM_THREADS") != n:
        os.environ["OMP_NUM_THREADS"] = n
        if "mxnet" in sys.modules:
            if argv is None:
                sys.stdout.flush()
                sys.stderr.flush()
                os.execv(sys.executable, [sys.executable, "-m", "frcnn_ops.bench"]
                         + sys.argv[1:])
            return ("--threads %s: MXNet was imported before OMP_NUM_THREADS could be set (an "
                    "in-process call): MXNet's OpenMP threads are unchanged" % n)
    return None


def main(argv=None):
    args = parse_args(argv)
    notes = []
    if args.threads is not None:
        note = _set_threads(args, argv)
        if note:
            notes.append(note)
    start = time.perf_counter()

    import frcnn_ops
    from . import cases as C
    from . import sweeps as SW
    from .timing import Budget

    if args.threads is not None:
        frcnn_ops.set_num_threads(args.threads)
    env = C.Env()
    if args.device == "gpu":
        why = C.gpu_available()
        if why:
            print("frcnn-bench: --device gpu: %s" % why, file=sys.stderr)
            return 2
        comps = C.gpu_comparisons(env, args.cases)
    else:
        comps = C.cpu_comparisons(env, args.cases)
    if args.threads is not None and env._mods.get("torchvision"):
        env._mods["torchvision"][0].set_num_threads(args.threads)

    budget = (Budget(min_pairs=1, max_pairs=100, budget_s=0.4, warmup_s=0.05) if args.quick
              else Budget(min_pairs=3, max_pairs=200, budget_s=2.0, warmup_s=0.2))
    sweep_points = []
    run_sweeps = bool(args.plot or args.sweeps)
    if run_sweeps and (args.device == "gpu" or env.mx is None):
        notes.append("sweeps skipped: they compare against MXNet contrib ops on the CPU")
        run_sweeps = False
    if run_sweeps:
        sweep_points = SW.points(args.sweep_sizes)

    info = machine_info(args)
    load = info["loadavg_start"]
    header = ("frcnn-bench: frcnn_ops %s on %s (%s cpus, load %s), %s; frcnn_ops threads %d, "
              "OMP_NUM_THREADS %s; mxnet %s, gluoncv %s%s"
              % (frcnn_ops.__version__, info["cpu"], info["cpu_count"],
                 "%.2f" % load[0] if load else "?",
                 "GPU " + str(info.get("gpu")) if args.device == "gpu" else "CPU",
                 info["threads"]["frcnn_ops"], info["threads"]["OMP_NUM_THREADS"] or "unset",
                 info["mxnet"], info["gluoncv"] or "-",
                 ", --quick" if args.quick else ""))
    print(header, flush=True)

    progress = Progress(len(comps) + len(sweep_points), not args.no_progress)
    rows = []
    for comp in comps:
        progress.start("%s %s vs %s" % (comp.op, comp.shape, comp.reference))
        rows.append(run_comparison(comp, budget))
        progress.done()
    sweep_rows = []
    sweep_budget = Budget(min_pairs=1 if args.quick else 3, max_pairs=50,
                          budget_s=budget.budget_s / 2, warmup_s=budget.warmup_s)
    for sweep, n in sweep_points:
        progress.start("sweep %s %d" % (sweep, n))
        sweep_rows.append(SW.run_point(env.mx, args.sweep_sizes, sweep, n, sweep_budget))
        progress.done()
    progress.close()

    print()
    print(rows_table(rows) if rows else "(no comparisons ran)")
    if sweep_rows:
        print()
        print("Scaling sweeps (median ms; each side timed in its own block; speedup = ratio of "
              "the medians):")
        print(sweeps_table(sweep_rows))
    notes = notes + env.notes
    if load and load[0] > 0.5:
        notes.append("the 1-minute load average was %.2f on %s cpus when this run started "
                     "(it counts the last minute's work, this shell's too): if other work was "
                     "running, timings are noisy; OpenMP kernels that use every core suffer "
                     "most" % (load[0], info["cpu_count"]))
    if any(r["agreement"] == "timing-only" for r in rows):
        notes.append("timing only: the reference follows other conventions (mx.nd.contrib."
                     "Proposal: +1 widths and its own anchors; torchvision: topk before the "
                     "min-size filter), so its output is not compared")
    failed = [r for r in rows if r["agreement"] in ("mismatch", "error")]
    elapsed = time.perf_counter() - start
    print()
    for note in notes:
        print("note: " + note)
    print("speedup = median over interleaved pairs of (reference time / our time); ms = "
          "medians. %d row%s in %.0f s.%s"
          % (len(rows), "" if len(rows) == 1 else "s", elapsed,
             " %d FAILED." % len(failed) if failed else ""))

    info["loadavg_end"] = _loadavg()
    if args.json:
        doc = dict(machine=info, args={k: v for k, v in vars(args).items()}, rows=rows,
                   sweeps=sweep_rows, notes=notes, ok=not failed, elapsed_s=elapsed)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)
    if args.plot:
        from .plot import plot
        title = "frcnn-bench %s: %s, %s cpus, frcnn_ops threads %d%s" % (
            frcnn_ops.__version__, info["cpu"], info["cpu_count"], info["threads"]["frcnn_ops"],
            " (--quick)" if args.quick else "")
        plot(args.plot, rows, sweep_rows, title)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
