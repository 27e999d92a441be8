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
import sys
import time
from contextlib import ExitStack

EPILOG = """\
examples:
  frcnn-bench                          all ops and the model, a few minutes on 2 cores
  frcnn-bench --quick                  fewer timed pairs (model: 1 pair), under 2 minutes
  frcnn-bench --plot bench.png --json bench.json
  frcnn-bench --cases proposal,nms --threads 1
  frcnn-bench --under-load --no-thp    each row also with a busy core, and without huge pages
  frcnn-bench --device gpu             CuPy path against torchvision.ops on CUDA

exit status: 0 all agree, 1 a MISMATCH or an error, 2 bad usage or --device gpu without a GPU.
"""


def parse_args(argv=None):
    from .cases import DEFAULT_GROUPS, GROUPS, OPT_IN, SIZES

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
    p.add_argument("--cases", metavar="LIST", default=",".join(DEFAULT_GROUPS),
                   help="comma-separated subset of: %s (default: all but %s, which run only "
                        "when named)" % (", ".join(GROUPS), ", ".join(OPT_IN)))
    p.add_argument("--under-load", action="store_true",
                   help="also time each row with one competing busy-loop process (started "
                        "for the run only, running only while those pairs are timed): "
                        "columns 'loaded' and 'kept' (loaded speedup / quiet speedup)")
    p.add_argument("--no-thp", action="store_true",
                   help="also time each row with transparent huge pages disabled for this "
                        "process (prctl PR_SET_THP_DISABLE): fresh outputs fault in 4 KiB "
                        "pages, as on a machine whose memory is fragmented")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in GROUPS]
    if unknown or not cases:
        p.error("--cases: unknown %s (choose from %s)" % (", ".join(unknown) or "(empty)",
                                                          ", ".join(GROUPS)))
    args.cases = cases
    if (args.under_load or args.no_thp) and not sys.platform.startswith("linux"):
        p.error("--under-load and --no-thp need Linux (prctl); this is %s" % sys.platform)
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    return args


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


def _cases(args, env):
    """(rows, sweep points, notes) to run, or None with --device gpu and no GPU."""
    from . import cases as C
    notes = []
    if args.device == "gpu":
        why = C.gpu_available()
        if why:
            print("frcnn-bench: --device gpu: %s" % why, file=sys.stderr)
            return None
    comps = C.comparisons(env, args.cases, args.device)
    run_sweeps = bool(args.plot or args.sweeps)
    if run_sweeps and (args.device == "gpu" or env.mx is None):
        notes.append("sweeps skipped: they compare against MXNet contrib ops on the CPU")
        run_sweeps = False
    return comps, C.sweep_cases(args.sweep_sizes) if run_sweeps else [], notes


def _write(args, info, rows, sweep_rows, notes, failed, elapsed):
    """--json and --plot."""
    import frcnn_ops
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


def _conditions(args, stack):
    """--under-load and --no-thp: name -> context manager factory (run.run_comparison); the
    busy-loop process lives in ``stack`` (killed when the run ends, however it ends)."""
    from . import conditions as K
    out = {}
    if args.under_load:
        busy = stack.enter_context(K.BusyLoop())
        out["loaded"] = busy.running
    if args.no_thp:
        out["no_thp"] = K.no_thp
    return out


def main(argv=None):
    args = parse_args(argv)
    notes = []
    if args.threads is not None:
        note = _set_threads(args, argv)
        if note:
            notes.append(note)
    start = time.perf_counter()

    import frcnn_ops
    from . import report
    from .cases import Env
    from .run import Progress, run_all

    if args.threads is not None:
        frcnn_ops.set_num_threads(args.threads)
    env = Env()
    todo = _cases(args, env)
    if todo is None:
        return 2
    comps, sweep_points, sweep_notes = todo
    notes += sweep_notes
    if args.threads is not None and env.loaded("torchvision"):
        env.loaded("torchvision")[0].set_num_threads(args.threads)

    info = report.machine_info(args)
    print(report.header(info, args, frcnn_ops.__version__), flush=True)
    progress = Progress(len(comps) + len(sweep_points), not args.no_progress)
    with ExitStack() as stack:
        conditions = _conditions(args, stack)
        rows, sweep_rows = run_all(comps, sweep_points, env, args.quick, progress, conditions)

    notes = notes + env.notes + report.run_notes(rows, info)
    failed = [r for r in rows if r["agreement"] in ("mismatch", "error")]
    elapsed = time.perf_counter() - start
    report.print_report(rows, sweep_rows, notes, failed, elapsed)
    info["loadavg_end"] = report.loadavg()
    _write(args, info, rows, sweep_rows, notes, failed, elapsed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
