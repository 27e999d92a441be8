"""python -m frcnn_ops.bench: the same as the frcnn-bench command."""
import sys

from .cli import main

sys.exit(main())
