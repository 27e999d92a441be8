"""Helpers shared by the benchmark suites (conftest.py holds only fixtures)."""


def mx_sync(fn):
    """Wraps an MXNet call so that the benchmark waits for its result (MXNet is async)."""
    def run():
        out = fn()
        outs = out if isinstance(out, (list, tuple)) else [out]
        for o in outs:
            o.wait_to_read()
        return out
    return run
