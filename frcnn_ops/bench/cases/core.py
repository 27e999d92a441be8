"""A comparison case: one row of frcnn-bench, one pytest-benchmark group's pair of tests."""
import re
from dataclasses import dataclass


@dataclass
class Pair:
    ours: object   # () -> result, returns when the result is ready
    ref: object    # the same for the reference; None where a sweep point leaves it out
    check: object = None  # (ours result, reference result) -> Agreement


@dataclass
class Comparison:
    group: str      # the --cases key (frcnn-bench) or the suite's name
    op: str
    shape: str
    reference: str
    setup: object   # (Env) -> Pair: builds the inputs; called only when the case runs
    needs: tuple = ()   # Env needs, probed in order (mxnet, gluoncv, torchvision, ...)
    slow: object = False  # True: a call takes seconds; "ref": the reference's does (the suites
    #                       time such a side in a few fixed rounds)
    extra: bool = False  # only in the pytest-benchmark suites (frcnn-bench keeps to the seed)
    sweep: str = None   # the sweep this point belongs to (None: a table row)
    x: int = None       # a sweep point's size

    @property
    def id(self):
        """A pytest id usable in -k: op, shape and reference, words joined by '_' ("B=1" -> "B1",
        "6000->300" -> "6000to300": -k takes neither '=' nor '>')."""
        text = "%s-%s-%s" % (self.op, self.shape, self.reference)
        text = re.sub(r"[^A-Za-z0-9.+-]+", "_", text.replace("->", "to").replace("=", ""))
        return re.sub(r"_?-_?", "-", text).strip("_")

    @property
    def title(self):
        """The suites' benchmark group: every reference of one op at one shape."""
        return "%s: %s" % (self.op, self.shape)
