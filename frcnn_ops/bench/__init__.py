"""frcnn-bench: frcnn_ops against its references (MXNet contrib, GluonCV, NumPy, torchvision) at
the seed model's shapes, checked then timed; see ``frcnn-bench --help``.

Modules: cases (the one list of comparisons, also what the pytest-benchmark suites in
benchmarks/ parametrize over: shapes, environment, checks, CPU/GPU/model cases, sweep points),
timing (the sync helpers, interleaved pairs), run (check then time), report (tables, machine
description), plot, cli (the command line only).
Nothing here imports MXNet at import time beyond what ``import frcnn_ops`` does.
"""
