"""Running frcnn-bench's cases under pytest-benchmark (conftest.py holds only fixtures)."""
import pytest


def case_params(cases, sides=("ours", "ref")):
    """pytest params (case, side), the two sides of a case next to each other."""
    return [pytest.param(c, s, id="%s-%s" % (c.id, s)) for c in cases for s in sides]


def require(env, *needs):
    why = env.missing(needs)
    if why:
        pytest.skip(why)


_last = {}  # the latest case's Pair: its two sides run one after the other, setup once


def time_case(benchmark, env, case, side):
    """Times one side of a case; a slow one (seconds a call: case.slow) in 3 fixed rounds."""
    require(env, *case.needs)
    if _last.get("case") is not case:
        _last.clear()
        _last.update(case=case, pair=case.setup(env))
    fn = getattr(_last["pair"], side)
    if fn is None:
        pytest.skip("the reference is left out at this size (it would take too long)")
    benchmark.group = case.title
    benchmark.extra_info.update(reference=case.reference, side=side)
    if case.slow is True or case.slow == side:
        benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)
    else:
        benchmark(fn)
