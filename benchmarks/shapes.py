"""The seed's shapes and inputs: a re-export of frcnn_ops.bench.shapes (which frcnn-bench uses
too, so it lives in the installed package)."""
from frcnn_ops.bench.shapes import *  # noqa: F401,F403
