"""What frcnn-bench prints and records: the machine's description, the tables, the notes."""
import os
import platform


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


def loadavg():
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
        "amx": frcnn_ops.bf16.amx,   # whether oneDNN may run bf16 on AMX here
        "mxnet": _version("mxnet"),
        "gluoncv": _version("gluoncv"),
        "numpy": _version("numpy"),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "cupy": _version("cupy") or _version("cupy-cuda12x") or _version("cupy-cuda11x"),
        "device": args.device,
        "quick": args.quick,
        "loadavg_start": loadavg(),
    }
    if args.device == "gpu":
        try:
            import cupy as cp
            info["gpu"] = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
        except Exception:  # noqa: BLE001
            info["gpu"] = None
    return info


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


CONDITIONS = (("loaded", "under load"), ("no_thp", "no THP"))


def _kept(v):
    return "-" if v is None else "%.2f" % v


def conditions_table(rows):
    """The rows again under --under-load / --no-thp, beside their quiet speedup; None when
    neither ran."""
    names = [(k, title) for k, title in CONDITIONS if any(k in r for r in rows)]
    if not names:
        return None
    headers = ["op", "shape", "reference", "quiet"]
    for key, title in names:
        headers += ["%s: ref ms" % title, "ours ms", "speedup"]
        if key == "loaded":
            headers.append("kept")
    lines = []
    for r in rows:
        line = [r["op"], r["shape"], r["reference"], _speedup(r["speedup"])]
        for key, _ in names:
            c = r.get(key) or {}
            if "error" in c:
                line += ["ERROR", c["error"][:60], "-"] + (["-"] if key == "loaded" else [])
                continue
            line += [_ms(c.get("ref_ms")), _ms(c.get("ours_ms")), _speedup(c.get("speedup"))]
            if key == "loaded":
                line.append(_kept(c.get("kept")))
        lines.append(line)
    return format_table(headers, lines, right=tuple(range(3, len(headers))))


def condition_notes(rows):
    notes = []
    if any("loaded" in r for r in rows):
        notes.append("under load: the same pairs timed again while one busy-loop process "
                     "(frcnn-bench's own, for this run only) competes for a core; kept = loaded "
                     "speedup / quiet speedup")
    if any("no_thp" in r for r in rows):
        notes.append("no THP: the same pairs timed again with transparent huge pages disabled "
                     "for this process (prctl PR_SET_THP_DISABLE): fresh outputs fault in "
                     "4 KiB pages")
    return notes


def sweeps_table(points):
    headers = ("sweep", "size", "reference", "ref ms", "ours ms", "speedup", "runs")
    lines = [(p["sweep"], p["x"], p["reference"] if p["ref_ms"] is not None else "(left out)",
              _ms(p["ref_ms"]), _ms(p["ours_ms"]), _speedup(p["speedup"]), p["runs"])
             for p in points]
    return format_table(headers, lines, right=(1, 3, 4, 5, 6))


def header(info, args, version):
    load = info["loadavg_start"]
    return ("frcnn-bench: frcnn_ops %s on %s (%s cpus, load %s), %s; frcnn_ops threads %d, "
            "OMP_NUM_THREADS %s; mxnet %s, gluoncv %s; AMX %s%s"
            % (version, info["cpu"], info["cpu_count"],
               "%.2f" % load[0] if load else "?",
               "GPU " + str(info.get("gpu")) if args.device == "gpu" else "CPU",
               info["threads"]["frcnn_ops"], info["threads"]["OMP_NUM_THREADS"] or "unset",
               info["mxnet"], info["gluoncv"] or "-", info["amx"].split(":")[0].split(",")[0],
               ", --quick" if args.quick else ""))


def run_notes(rows, info):
    """The notes that depend on the run: the load, timing-only rows."""
    notes = condition_notes(rows)
    load = info["loadavg_start"]
    if load and load[0] > 0.5:
        notes.append("the 1-minute load average was %.2f on %s cpus when this run started "
                     "(it counts the last minute's work, this shell's too): if other work was "
                     "running, timings are noisy; OpenMP kernels that use every core suffer "
                     "most" % (load[0], info["cpu_count"]))
    if any(r["agreement"] == "timing-only" for r in rows):
        notes.append("timing only: the reference follows other conventions (mx.nd.contrib."
                     "Proposal: +1 widths and its own anchors; torchvision: topk before the "
                     "min-size filter), so its output is not compared")
    return notes


def print_report(rows, sweep_rows, notes, failed, elapsed):
    print()
    print(rows_table(rows) if rows else "(no comparisons ran)")
    extra = conditions_table(rows)
    if extra:
        print()
        print(extra)
    if sweep_rows:
        print()
        print("Scaling sweeps (median ms; each side timed in its own block; speedup = ratio of "
              "the medians):")
        print(sweeps_table(sweep_rows))
    print()
    for note in notes:
        print("note: " + note)
    print("speedup = median over interleaved pairs of (reference time / our time); ms = "
          "medians. %d row%s in %.0f s.%s"
          % (len(rows), "" if len(rows) == 1 else "s", elapsed,
             " %d FAILED." % len(failed) if failed else ""))
