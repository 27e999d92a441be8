"""Interleaved timing: ours and a reference called in turn (A B A B ...), so that both see the
same machine state (turbo, cache, a neighbour's load); the speedup is the median of the
per-pair ratios reference / ours.

Every callable given here must return only when its result is ready (MXNet: wait_to_read;
CuPy/torch: a device synchronize): wrap them in ``mx_sync`` or ``device_sync``, the only two
sync helpers of frcnn-bench and the pytest-benchmark suites.
"""
import statistics
import time
from dataclasses import dataclass


def _flat(out):
    if isinstance(out, (list, tuple)):
        for o in out:
            yield from _flat(o)
    elif out is not None:
        yield out


def mx_sync(fn):
    """Wraps an MXNet call so that it returns after its outputs are computed (MXNet is async)."""
    def run():
        out = fn()
        for o in _flat(out):
            o.wait_to_read()
        return out
    return run


def sync_device():
    """Waits until the GPU is idle: every stream, CuPy's and torch's (a stream synchronize would
    miss the other library's)."""
    import cupy as cp
    cp.cuda.runtime.deviceSynchronize()


def device_sync(fn):
    """Wraps a CuPy or torch CUDA call so that it returns after the device is idle."""
    import cupy as cp
    sync = cp.cuda.runtime.deviceSynchronize

    def run():
        out = fn()
        sync()
        return out
    return run


@dataclass
class Budget:
    """How long to time one comparison: at least min_pairs pairs, then stop at max_pairs or when
    budget_s has passed, whichever is first. warmup_s: untimed pairs run until this much time
    has passed (at most 5); frcnn-bench skips them when the agreement check's calls (always the
    first warm-up) took longer than this."""
    min_pairs: int = 3
    max_pairs: int = 200
    budget_s: float = 2.0
    warmup_s: float = 0.2


@dataclass
class Timing:
    ours_ms: float
    ref_ms: float
    speedup: float  # median of ref/ours per pair
    pairs: int
    ours_samples_ms: list
    ref_samples_ms: list


def _warmup(fns, warmup_s):
    start = time.perf_counter()
    for _ in range(5):
        t0 = time.perf_counter()
        for fn in fns:
            fn()
        now = time.perf_counter()
        if now - start >= warmup_s or now - t0 >= warmup_s:
            break


def time_pair(ours, ref, budget, warmup=True):
    """Times ours and ref interleaved (ours, ref, ours, ref, ...) after a warm-up."""
    if warmup:
        _warmup((ours, ref), budget.warmup_s)
    clock = time.perf_counter
    t_ours, t_ref = [], []
    start = clock()
    while len(t_ours) < budget.max_pairs:
        t0 = clock()
        ours()
        t1 = clock()
        ref()
        t2 = clock()
        t_ours.append(t1 - t0)
        t_ref.append(t2 - t1)
        if len(t_ours) >= budget.min_pairs and t2 - start >= budget.budget_s:
            break
    ratios = [r / o if o > 0 else float("inf") for o, r in zip(t_ours, t_ref)]
    return Timing(ours_ms=1e3 * statistics.median(t_ours), ref_ms=1e3 * statistics.median(t_ref),
                  speedup=statistics.median(ratios), pairs=len(t_ours),
                  ours_samples_ms=[1e3 * t for t in t_ours],
                  ref_samples_ms=[1e3 * t for t in t_ref])


def time_one(fn, budget, warmup=True):
    """Median ms of fn alone (a sweep point where the reference is left out)."""
    if warmup:
        _warmup((fn,), budget.warmup_s)
    clock = time.perf_counter
    times = []
    start = clock()
    while len(times) < budget.max_pairs:
        t0 = clock()
        fn()
        t1 = clock()
        times.append(t1 - t0)
        if len(times) >= budget.min_pairs and t1 - start >= budget.budget_s:
            break
    return 1e3 * statistics.median(times), len(times)
