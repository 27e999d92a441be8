"""Run a data-parallel frcnn-train on this machine: MXNet's parameter-server roles (one
scheduler, servers, workers) as local processes.

    python -m frcnn_model.cli.launch -n 2 -- frcnn-train --kvstore dist_sync --save-dir runs/dp

Each worker runs the command with DMLC_* set (DMLC_ROLE=worker, the scheduler's address);
frcnn-train reads its rank and the number of workers from the kvstore and trains on its share of
every batch. Across machines, use MXNet's tools/launch.py (ssh/mpi/yarn) with the same command.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from typing import Optional, Sequence


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _how(returncode):
    import signal
    if returncode < 0:
        try:
            return "was killed by %s" % signal.Signals(-returncode).name
        except ValueError:
            return "was killed by signal %d" % -returncode
    return "exited with status %d" % returncode


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m frcnn_model.cli.launch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--num-workers", type=int, default=2)
    p.add_argument("-s", "--num-servers", type=int, default=1)
    p.add_argument("--threads-per-worker", type=int, default=1,
                   help="OMP_NUM_THREADS / FRCNN_NUM_THREADS of each worker (default 1)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the worker command")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the worker command after --")
    if args.num_workers < 1 or args.num_servers < 1:
        p.error("--num-workers and --num-servers must be >= 1")
    env = dict(os.environ, DMLC_PS_ROOT_URI="127.0.0.1", DMLC_PS_ROOT_PORT=str(_free_port()),
               DMLC_NUM_SERVER=str(args.num_servers), DMLC_NUM_WORKER=str(args.num_workers))
    server_cmd = [sys.executable, "-c", "import mxnet"]
    procs = [subprocess.Popen(server_cmd, env=dict(env, DMLC_ROLE="scheduler"))]
    procs += [subprocess.Popen(server_cmd, env=dict(env, DMLC_ROLE="server"))
              for _ in range(args.num_servers)]
    threads = str(args.threads_per_worker)
    workers = [subprocess.Popen(command, env=dict(env, DMLC_ROLE="worker",
                                                  OMP_NUM_THREADS=threads,
                                                  FRCNN_NUM_THREADS=threads))
               for _ in range(args.num_workers)]
    code = 0
    roles = [("scheduler", p) for p in procs[:1]] + [("server", p) for p in procs[1:]] \
        + [("worker", w) for w in workers]
    try:
        # a worker (or the scheduler or a server) that fails leaves the others waiting for it
        # in a barrier or a push: stop them all, within a poll period
        while any(w.poll() is None for w in workers):
            dead = next(((role, p) for role, p in roles
                         if p.poll() is not None and p.returncode),
                        None)
            if dead is not None:
                role, p = dead
                code = p.returncode if p.returncode > 0 else 128 - p.returncode \
                    if p.returncode < 0 else 1
                print("frcnn_model.cli.launch: %s (pid %d) %s; stopping the other processes "
                      "(resume from the last complete checkpoint with --resume)"
                      % (role, p.pid, _how(p.returncode)), file=sys.stderr, flush=True)
                break
            time.sleep(0.2)
        code = code or next((w.returncode for w in workers if w.returncode), 0)
        if code == 0:
            for s in procs:
                s.wait(timeout=60)
    finally:
        for proc in workers + procs:
            if proc.poll() is None:
                proc.kill()
    return code


if __name__ == "__main__":
    sys.exit(main())
