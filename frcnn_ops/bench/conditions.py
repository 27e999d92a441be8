"""The machine conditions frcnn-bench can time a row under, beside the quiet default:

- ``--under-load``: one competing busy-loop process (``BusyLoop``), as a data-loader worker or a
  second model on a serving machine would be. It is started once per run, stopped (SIGSTOP)
  except while a row's loaded pairs are timed, and killed at the end of the run; it also dies
  with frcnn-bench (PR_SET_PDEATHSIG) and exits by itself after ``max_s`` or when its parent is
  gone, so it can never outlive the run.
- ``--no-thp``: transparent huge pages disabled for this process (``prctl(PR_SET_THP_DISABLE)``)
  while a row's no-THP pairs are timed, as on a machine whose memory is fragmented: every fresh
  page (MXNet allocates each output afresh) is then a 4 KiB fault.
"""
import ctypes
import os
import signal
import subprocess
import sys
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1
PR_SET_THP_DISABLE = 41
PR_GET_THP_DISABLE = 42

# The busy loop: spins on one core; checks its parent and its deadline every ~0.1 s of work.
_BUSY = """
import os, sys, time
parent, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
x = 0
while True:
    for _ in range(200000):
        x += 1
    if os.getppid() != parent or time.monotonic() > deadline:
        break
"""


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # runs in the child between fork and exec: SIGKILL it when frcnn-bench dies
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class BusyLoop:
    """One busy-loop process, paused until ``running()`` is entered."""

    def __init__(self, max_s=4 * 3600):
        if not sys.platform.startswith("linux"):
            raise RuntimeError("frcnn-bench --under-load: needs Linux (prctl), this is %s"
                               % sys.platform)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BUSY, str(os.getpid()), str(float(max_s))],
            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self._stop()

    def _stop(self):
        # returns once it has stopped, so that the quiet timings that follow are quiet
        os.kill(self.proc.pid, signal.SIGSTOP)
        os.waitpid(self.proc.pid, os.WUNTRACED)

    def alive(self):
        return self.proc.poll() is None

    @contextmanager
    def running(self):
        if not self.alive():
            raise RuntimeError("frcnn-bench --under-load: the busy-loop process exited (status "
                               "%s)" % self.proc.returncode)
        os.kill(self.proc.pid, signal.SIGCONT)
        try:
            yield
        finally:
            if self.alive():
                self._stop()

    def close(self):
        if self.alive():
            self.proc.kill()  # SIGKILL ends a stopped process too
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def thp_disabled():
    """Whether transparent huge pages are disabled for this process (prctl)."""
    return bool(_libc().prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) > 0)


def _set_thp_disable(flag):
    libc = _libc()
    if libc.prctl(PR_SET_THP_DISABLE, int(flag), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "frcnn-bench --no-thp: prctl(PR_SET_THP_DISABLE, %d) failed: %s"
                      % (int(flag), os.strerror(err)))


@contextmanager
def no_thp():
    """Transparent huge pages off for this process (Linux), restored afterwards. Pages already
    mapped keep their size: only memory faulted in meanwhile is affected, which is what a
    benchmark of fresh outputs needs."""
    if not sys.platform.startswith("linux"):
        raise RuntimeError("frcnn-bench --no-thp: needs Linux (prctl), this is %s" % sys.platform)
    before = thp_disabled()
    _set_thp_disable(True)
    try:
        yield
    finally:
        _set_thp_disable(before)
