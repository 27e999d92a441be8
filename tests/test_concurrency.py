"""Concurrency: every op called from several Python threads at once (NumPy path and mx.nd) and
from several MXNet engine workers (MXNET_CPU_WORKER_NTHREADS=4) gives bitwise the serial
results; the library's thread budget follows the documented policy (README "Threads")."""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import frcnn_ops

THREADS, CALLS = 4, 50


def make_inputs(seed):
    """One small input set per seed for every op (forward and the roi_align backward)."""
    rng = np.random.default_rng(seed)
    B, N = 2, 300
    xy = rng.uniform(0, 300, size=(N, 2))
    anchors = np.concatenate([xy, xy + rng.uniform(8, 120, size=(N, 2))], 1)[None]
    anchors = anchors.astype(np.float32)
    deltas = rng.normal(scale=0.5, size=(B, N, 4)).astype(np.float32)
    scores = rng.random((B, N, 1)).astype(np.float32)
    info = np.array([[400, 420, 1], [330, 380, 1]], np.float32)
    nms = np.concatenate([rng.integers(0, 3, (B, N, 1)), scores,
                          np.broadcast_to(anchors, (B, N, 4))], 2).astype(np.float32)
    data = rng.normal(size=(2, 16, 12, 14)).astype(np.float32)
    rwh = rng.uniform(4, 150, size=(40, 2))
    rxy = rng.uniform(-20, 200, size=(40, 2))
    rois = np.concatenate([rng.integers(0, 2, (40, 1)), rxy, rxy + rwh], 1).astype(np.float32)
    grad = rng.normal(size=(40, 16, 7, 7)).astype(np.float32)
    return dict(deltas=deltas, anchors=anchors, scores=scores, info=info, nms=nms, data=data,
                rois=rois, grad=grad)


ROI_KW = dict(pooled_size=(7, 7), spatial_scale=1 / 16, sample_ratio=2)


def run_numpy(op, x):
    if op == "box_decode":
        return frcnn_ops.box_decode(x["deltas"], x["anchors"], 0.1, 0.1, 0.2, 0.2,
                                    format="corner")
    if op == "clip_boxes":
        return frcnn_ops.clip_boxes(x["deltas"] * 300, x["info"])
    if op == "proposal":
        return frcnn_ops.proposal(x["scores"], x["deltas"], x["anchors"], x["info"],
                                  rpn_pre_nms_top_n=200, rpn_post_nms_top_n=50)
    if op == "nms":
        return frcnn_ops.nms(x["nms"], overlap_thresh=0.5, id_index=0, topk=100)
    if op == "roi_align":
        return frcnn_ops.roi_align(x["data"], x["rois"], **ROI_KW)
    assert op == "roi_align_backward"
    return frcnn_ops.roi_align_backward(x["grad"], x["rois"], list(x["data"].shape), [7, 7],
                                           1 / 16, 2, False, False)


def run_mx(mx, op, x):
    nd = {k: mx.nd.array(v) for k, v in x.items()}
    if op == "roi_align_backward":
        d = nd["data"]
        d.attach_grad()
        with mx.autograd.record():
            y = mx.nd.frcnn_roi_align(d, nd["rois"], **ROI_KW)
        y.backward(nd["grad"])
        return d.grad.asnumpy()
    return run_numpy(op, nd).asnumpy()


OPS = ["box_decode", "clip_boxes", "proposal", "nms", "roi_align", "roi_align_backward"]
INPUTS = [make_inputs(s) for s in range(4)]


def _hammer(fn):
    """THREADS threads x CALLS calls of fn(i) (i cycling over the input sets), all at once."""
    def worker(t):
        return [(i % len(INPUTS), fn(i % len(INPUTS))) for i in range(t, t + CALLS)]
    with ThreadPoolExecutor(THREADS) as ex:
        return [r for rs in ex.map(worker, range(THREADS)) for r in rs]


@pytest.mark.parametrize("op", OPS)
def test_numpy_path_from_python_threads(op):
    serial = [run_numpy(op, x) for x in INPUTS]
    old = frcnn_ops.get_num_threads()
    frcnn_ops.set_num_threads(2)  # also exercise the budget sharing between calls
    try:
        results = _hammer(lambda i: run_numpy(op, INPUTS[i]))
    finally:
        frcnn_ops.set_num_threads(old)
    assert len(results) == THREADS * CALLS
    for i, r in results:
        np.testing.assert_array_equal(r, serial[i])


@pytest.mark.parametrize("op", OPS)
def test_mxnet_path_from_python_threads(mx, op):
    serial = [run_mx(mx, op, x) for x in INPUTS]
    results = _hammer(lambda i: run_mx(mx, op, INPUTS[i]))
    for i, r in results:
        np.testing.assert_array_equal(r, serial[i])


_ENGINE_SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, %(tests)r)
import mxnet as mx
import frcnn_ops
import test_concurrency as t
# enqueue every call before waiting for any: the engine runs independent ops on its workers
outs = []
for rep in range(6):
    for x in t.INPUTS:
        nd = {k: mx.nd.array(v) for k, v in x.items()}
        for op in t.OPS[:-1]:
            outs.append(t.run_numpy(op, nd))
        d = nd["data"]
        d.attach_grad()
        with mx.autograd.record():
            y = mx.nd.frcnn_roi_align(d, nd["rois"], **t.ROI_KW)
        y.backward(nd["grad"])
        outs.append(d.grad)
mx.nd.waitall()
np.savez(%(out)r, *[o.asnumpy() for o in outs])
print(json.dumps({"threads": frcnn_ops.get_num_threads()}))
"""


def _engine_run(tmp_path, name, env):
    out = str(tmp_path / (name + ".npz"))
    script = _ENGINE_SCRIPT % dict(tests=os.path.dirname(os.path.abspath(__file__)), out=out)
    full = dict(os.environ, **env)
    full.pop("FRCNN_NUM_THREADS", None)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=full, timeout=300, cwd=str(tmp_path))  # not the source checkout
    assert r.returncode == 0, r.stderr[-3000:]
    with np.load(out) as f:
        arrays = [f["arr_%d" % i] for i in range(len(f.files))]
    return arrays, json.loads(r.stdout.strip().splitlines()[-1])


def test_mxnet_engine_workers_give_the_serial_results(mx, tmp_path):
    serial, _ = _engine_run(tmp_path, "serial", {"MXNET_ENGINE_TYPE": "NaiveEngine"})
    parallel, info = _engine_run(tmp_path, "parallel", {
        "MXNET_ENGINE_TYPE": "ThreadedEnginePerDevice", "MXNET_CPU_WORKER_NTHREADS": "4",
        "OMP_NUM_THREADS": "8"})
    assert info["threads"] == 2  # 8 / 4 workers
    assert len(serial) == len(parallel) == 6 * len(INPUTS) * len(OPS)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


def _default_threads(env):
    """The default budget under env (set_num_threads(0) re-reads the environment)."""
    keys = ("FRCNN_NUM_THREADS", "OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS")
    saved = {k: os.environ.get(k) for k in keys}
    try:
        for k in keys:
            os.environ.pop(k, None)
        os.environ.update(env)
        frcnn_ops._C.set_num_threads(0)
        return frcnn_ops._C.get_num_threads()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        frcnn_ops._C.set_num_threads(0)


def test_thread_budget_policy():
    """The fresh-process default under MXNET_CPU_WORKER_NTHREADS is checked by the engine
    test above; here each rule of the policy."""
    cores = os.cpu_count()
    assert _default_threads({"OMP_NUM_THREADS": "8"}) == 8
    assert _default_threads({"OMP_NUM_THREADS": "8", "MXNET_CPU_WORKER_NTHREADS": "2"}) == 4
    assert _default_threads({"OMP_NUM_THREADS": "8", "MXNET_CPU_WORKER_NTHREADS": "16"}) == 1
    assert _default_threads({"MXNET_CPU_WORKER_NTHREADS": "1"}) == cores
    assert _default_threads({"MXNET_CPU_WORKER_NTHREADS": "2"}) == max(1, cores // 2)
    # an explicit FRCNN_NUM_THREADS is taken as given
    assert _default_threads({"FRCNN_NUM_THREADS": "3", "MXNET_CPU_WORKER_NTHREADS": "2"}) == 3


def test_no_call_left_running():
    for x in INPUTS[:1]:
        for op in OPS:
            run_numpy(op, x)
    assert frcnn_ops._C.active_calls() == 0
