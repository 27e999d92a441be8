"""Running the cases: check then time a table row, time a sweep point, show progress."""
import sys
import time

from .cases import Agreement, to_numpy
from .timing import Budget, time_one, time_pair


def budgets(quick):
    """(a row's budget, a sweep point's budget): --quick times fewer pairs."""
    row = (Budget(min_pairs=1, max_pairs=100, budget_s=0.4, warmup_s=0.05) if quick
           else Budget(min_pairs=3, max_pairs=200, budget_s=2.0, warmup_s=0.2))
    sweep = Budget(min_pairs=1 if quick else 3, max_pairs=50, budget_s=row.budget_s / 2,
                   warmup_s=row.warmup_s)
    return row, sweep


def _error(e, prefix=""):
    return Agreement("error", "%s%s: %s" % (prefix, type(e).__name__,
                                            (str(e).splitlines() or [""])[0][:200]))


def _time_under(conditions, pair, budget, row):
    """Times the pair again under each condition (conditions: name -> context manager factory,
    see conditions.py); row[name] = its ms, speedup, pairs and ``kept``, the share of the quiet
    speedup that holds under it."""
    for name, condition in conditions.items():
        try:
            with condition():
                t = time_pair(pair.ours, pair.ref, budget)
            row[name] = dict(ref_ms=t.ref_ms, ours_ms=t.ours_ms, speedup=t.speedup,
                             pairs=t.pairs, kept=t.speedup / row["speedup"])
        except Exception as e:  # noqa: BLE001 - the quiet row stands; the column says why
            row[name] = dict(error="%s: %s" % (type(e).__name__, e))


def run_comparison(comp, env, budget, conditions=None):
    """Check, then time one Comparison, quiet and then under each of ``conditions`` (name ->
    context manager factory); returns its table row as a dict."""
    row_start = time.perf_counter()
    row = dict(case=comp.group, op=comp.op, shape=comp.shape, reference=comp.reference,
               ref_ms=None, ours_ms=None, speedup=None, pairs=0)
    try:
        pair = comp.setup(env)
        t0 = time.perf_counter()
        ours_out = to_numpy(pair.ours())
        ref_out = to_numpy(pair.ref())
        check_s = time.perf_counter() - t0
        agreement = pair.check(ours_out, ref_out)
        del ours_out, ref_out
    except Exception as e:  # noqa: BLE001 - reported as an ERROR row
        agreement = _error(e)
    if agreement.status in ("ok", "timing-only"):
        try:
            t = time_pair(pair.ours, pair.ref, budget, warmup=check_s < budget.warmup_s)
            row.update(ref_ms=t.ref_ms, ours_ms=t.ours_ms, speedup=t.speedup, pairs=t.pairs)
            if conditions:
                _time_under(conditions, pair, budget, row)
        except Exception as e:  # noqa: BLE001
            agreement = Agreement("error", "while timing: %s: %s" % (type(e).__name__, e))
    row["agreement"] = agreement.status
    row["check"] = agreement.detail
    row["seconds"] = round(time.perf_counter() - row_start, 2)  # setup, check and timing
    return row


def run_sweep_point(case, env, budget):
    """One sweep point, each side timed in its own block: a dict with sweep, x, label, ours_ms,
    ref_ms (None where the reference is left out), reference, speedup, runs (timed calls of
    each side, the fewer)."""
    pair = case.setup(env)
    row = dict(sweep=case.sweep, x=case.x, label="%s, %s" % (case.op, case.shape),
               reference=case.reference)
    ours_ms, runs = time_one(pair.ours, budget)
    row.update(ours_ms=ours_ms, ref_ms=None, speedup=None, runs=runs)
    if pair.ref is not None:
        ref_ms, ref_runs = time_one(pair.ref, budget)
        row.update(ref_ms=ref_ms, speedup=ref_ms / ours_ms, runs=min(runs, ref_runs))
    return row


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


def run_all(cases, sweep_points, env, quick, progress, conditions=None):
    """(table rows, sweep rows), in order; each row also timed under ``conditions``."""
    budget, sweep_budget = budgets(quick)
    rows, sweep_rows = [], []
    for case in cases:
        progress.start("%s %s vs %s" % (case.op, case.shape, case.reference))
        rows.append(run_comparison(case, env, budget, conditions))
        progress.done()
    for case in sweep_points:
        progress.start("sweep %s %d" % (case.sweep, case.x))
        sweep_rows.append(run_sweep_point(case, env, sweep_budget))
        progress.done()
    progress.close()
    return rows, sweep_rows
