"""frcnn-bench: frcnn_ops against its references (MXNet contrib, GluonCV, NumPy, torchvision) at
the seed model's shapes, checked then timed; see ``frcnn-bench --help``.

Modules: shapes (the seed's shapes and inputs, also used by benchmarks/), cases (the
comparisons and their agreement checks), timing (interleaved pairs), sweeps, plot, cli.
Nothing here imports MXNet at import time beyond what ``import frcnn_ops`` does.
"""
