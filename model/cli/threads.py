"""CPU threads for the command-line tools, set before MXNet is imported.

MXNet 1.x uses half of the CPUs for its OpenMP operators by default (it assumes two hardware
threads per core on x86), so on a 2-vCPU machine its convolutions run on one thread. The tools
use every CPU this process may run on unless OMP_NUM_THREADS or MXNET_OMP_MAX_THREADS says
otherwise (measured: one synthetic-small training iteration 493 -> 305 ms on 2 vCPUs).
"""
from __future__ import annotations

import os
import sys
from typing import Optional


def use_all_cpus() -> Optional[int]:
    """Sets MXNET_OMP_MAX_THREADS to the usable CPU count if no thread setting is given.
    Returns the count set, or None (a setting was given, or MXNet is already imported)."""
    if "mxnet" in sys.modules or "OMP_NUM_THREADS" in os.environ \
            or "MXNET_OMP_MAX_THREADS" in os.environ:
        return None
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:
        count = os.cpu_count() or 1
    os.environ["MXNET_OMP_MAX_THREADS"] = str(count)
    return count


def load_mxnet() -> None:
    """Imports MXNet through frcnn_ops (after use_all_cpus), so that oneDNN may use AMX for
    --precision bf16: frcnn_ops sets that up only when it is the one to load MXNet
    (frcnn_ops/bf16.py)."""
    import frcnn_ops  # noqa: F401
