"""The one list of benchmark comparisons: frcnn-bench's rows and sweep points, and the cases
the pytest-benchmark suites in benchmarks/ parametrize over.

A Comparison (core) is our op against one reference at one shape; its ``setup(env)`` builds the
inputs and returns a Pair: two callables that return when their result is ready (timing's
``mx_sync``/``device_sync``) and the check (checks) that holds ours to the reference. Modules,
by concern: shapes (the seed's shapes, parameters and inputs), env (what is importable here),
checks, refs (the references' composites), cpu, gpu, model, fpn (whole FPN and Mask R-CNN
models and an FPN training iteration at 800x1216: seconds a call), sweeps (the case lists).
"""
from .checks import (Agreement, bitwise, close, match_bf16, match_detections, per_output,
                     same_rows, timing_only, to_numpy, tv_nms_check)
from .core import Comparison, Pair
from .env import Env, gpu_available
from .sweeps import SIZES, extra_sweep_cases, sweep_cases

__all__ = ["Agreement", "Comparison", "DEFAULT_GROUPS", "Env", "GROUPS", "OPT_IN", "Pair",
           "SIZES", "all_cases", "bitwise", "close", "comparisons", "gpu_available",
           "match_bf16", "match_detections", "per_output", "same_rows", "suite_cases",
           "sweep_cases", "timing_only", "to_numpy", "tv_nms_check"]

# frcnn-bench's --cases keys, in table order
GROUPS = ("box_decode", "clip_boxes", "proposal", "nms", "roi_align", "multilevel_roi_align",
          "model", "fpn")
# groups that run only when named (--cases fpn): "fpn" is four whole ResNet-50 FPN models at
# 800x1216, seconds a call (~5 minutes on 2 cores, ~2 with --quick); frcnn-bench's default
# (DEFAULT_GROUPS) leaves them out
OPT_IN = ("fpn",)
DEFAULT_GROUPS = tuple(g for g in GROUPS if g not in OPT_IN)


def all_cases(device="cpu"):
    """Every comparison on a device, frcnn-bench's and the extra ones."""
    if device == "gpu":
        from .gpu import gpu_cases
        return gpu_cases()
    from .cpu import cpu_cases
    from .fpn import fpn_cases
    from .model import model_cases
    return cpu_cases() + model_cases() + fpn_cases()


def comparisons(env, groups=DEFAULT_GROUPS, device="cpu"):
    """frcnn-bench's rows: the non-extra cases of these groups, in GROUPS order, whose needs
    this machine has (a missing one leaves a note in env.notes)."""
    cases = [c for c in all_cases(device) if not c.extra and c.group in groups]
    cases.sort(key=lambda c: GROUPS.index(c.group))  # stable: each group keeps its order
    return [c for c in cases if not env.missing(c.needs)]


def suite_cases(*groups, device="cpu"):
    """What a pytest-benchmark suite parametrizes over: every case of these groups (the sweep
    points under group 'sweep'), needs unprobed (the suite skips a case whose needs are
    missing)."""
    cases = all_cases(device)
    if "sweep" in groups:
        cases = cases + sweep_cases("full") + extra_sweep_cases()
    return [c for c in cases if c.group in groups]
