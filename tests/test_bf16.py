"""bfloat16 inference (precision='bf16'): a small model (resnet18_v1b at width 0.25, 160x200
image, random init) in both precisions, export + SymbolBlock reload of the bf16 graph, and the
refusals (a CPU without AVX512-BF16, simulated by FRCNN_FAKE_NO_BF16=1; a bad precision)."""
import json

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")
frcnn_model = pytest.importorskip("frcnn_model")
from frcnn_ops import bf16  # noqa: E402

needs_bf16 = pytest.mark.skipif(not bf16.bf16_supported(),
                                reason="needs a CPU with AVX512-BF16 (avx512_bf16)")
SMALL = dict(backbone="resnet18_v1b", width=0.25, rpn_test_post_nms=100)
# measured on random init, seeds 0-3: 0.85-0.95 of the float32 detections matched (seed 0:
# 0.90 of 462); random-init scores crowd the 0.01 threshold (all ~0.05), so some flip over it
MIN_SHARE = 0.8


def small(precision):
    from frcnn_model.modeling.faster_rcnn import faster_rcnn
    return faster_rcnn(precision=precision, **SMALL)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same random weights in fp32 and bf16, an input, and both outputs."""
    path = str(tmp_path_factory.mktemp("bf16") / "small.params")
    mx.random.seed(0)
    f32 = small("fp32")
    f32.initialize(mx.init.Xavier())
    x = mx.nd.array(np.random.RandomState(0).normal(size=(1, 3, 160, 200)).astype(np.float32))
    f32.hybridize()
    out32 = [a.asnumpy() for a in f32(x)]
    f32.save_parameters(path)
    b16 = small("bf16")
    b16.load_parameters(path)
    out16 = [a.asnumpy() for a in b16(x)]  # not hybridized: bf16 hybridizes itself
    return f32, b16, x, out32, out16


def graph_ops(sym):
    nodes = json.loads(sym.tojson(remove_amp_cast=False))["nodes"]
    return nodes, {n["name"]: n for n in nodes}


@needs_bf16
def test_bf16_agrees_with_fp32(pair):
    f32, b16, x, out32, out16 = pair
    assert b16.precision == "bf16" and f32.precision == "fp32"
    assert b16._active  # hybridized itself on the first call
    share, n = bf16.matched_share(out32, out16)
    assert n > 50
    assert share >= MIN_SHARE, (share, n)
    # not bitwise float32: the convolutions did run in bfloat16
    assert not np.array_equal(out32[1], out16[1])


@needs_bf16
def test_bf16_graph_casts(pair):
    """Convolutions / dense layers take bfloat16, every frcnn_* op takes float32 only."""
    b16 = pair[1]
    nodes, _ = graph_ops(b16._cached_graph[1])
    casts = [n for n in nodes if n["op"] == "amp_cast"]
    assert any(n["attrs"]["dtype"] == "bfloat16" for n in casts)
    for n in nodes:
        if n["op"] in ("Convolution", "FullyConnected"):
            src = nodes[n["inputs"][0][0]]
            assert src["op"] != "null" or src["name"] == "data", n["name"]
        if n["op"].startswith("frcnn_"):
            for i, _, _ in n["inputs"]:
                src = nodes[i]
                assert not (src["op"] == "amp_cast" and src["attrs"]["dtype"] == "bfloat16")
                assert src["op"] not in ("Convolution", "FullyConnected", "BatchNorm",
                                         "Activation", "elemwise_add"), (n["name"], src["name"])
    # the parameters stay float32 (cast in the graph)
    assert all(np.dtype(p.dtype) == np.float32 for p in b16.collect_params().values())


@needs_bf16
def test_bf16_export_symbolblock(pair, tmp_path):
    f32, b16, x, out32, out16 = pair
    prefix = str(tmp_path / "bf16")
    b16.export(prefix)
    with open(prefix + "-symbol.json") as f:
        assert '"amp_cast"' in f.read()  # the bf16 casts are kept
    loaded = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                          prefix + "-0000.params")
    got = [a.asnumpy() for a in loaded(x)]
    for a, b in zip(got, out16):
        np.testing.assert_array_equal(a, b)
    # fp32 export unchanged (no casts)
    f32.export(str(tmp_path / "fp32"))
    with open(str(tmp_path / "fp32") + "-symbol.json") as f:
        assert '"amp_cast"' not in f.read()


@needs_bf16
def test_load_model_precision(pair, tmp_path):
    from frcnn_model.modeling.faster_rcnn import load_model, save_model
    f32, _, x, _, out16 = pair
    path = str(tmp_path / "m.params")
    save_model(f32, path)
    with open(path + ".json") as f:
        assert "precision" not in json.load(f)
    net = load_model(path, precision="bf16")
    assert net.precision == "bf16"
    got = [a.asnumpy() for a in net(x)]
    for a, b in zip(got, out16):
        np.testing.assert_array_equal(a, b)


def test_refused_without_avx512_bf16(monkeypatch):
    from frcnn_model.modeling.faster_rcnn import faster_rcnn
    monkeypatch.setenv("FRCNN_FAKE_NO_BF16", "1")
    assert not bf16.bf16_supported()
    with pytest.raises(RuntimeError, match="AVX512-BF16.*avx512_bf16.*FRCNN_FAKE_NO_BF16"):
        faster_rcnn(precision="bf16", **SMALL)
    faster_rcnn(precision="fp32", **SMALL)  # fp32 is unaffected


def test_patch_gluoncv_refusals(monkeypatch):
    from frcnn_ops import patch_gluoncv
    net = small("fp32")  # GluonCV's sub-block names
    with pytest.raises(ValueError, match="patch_gluoncv: precision.*'fp16'"):
        patch_gluoncv(net, precision="fp16")
    monkeypatch.setenv("FRCNN_FAKE_NO_BF16", "1")
    with pytest.raises(RuntimeError, match="AVX512-BF16"):
        patch_gluoncv(net, precision="bf16")


def test_invalid_precision():
    from frcnn_model.modeling.faster_rcnn import faster_rcnn
    for bad in ("float16", "BF16", None):
        with pytest.raises(ValueError, match="precision must be one of 'fp32', 'bf16'"):
            faster_rcnn(precision=bad, **SMALL)


def test_cli_refusals(monkeypatch, capsys, tmp_path):
    import importlib
    detect = importlib.import_module("frcnn_model.cli.detect")
    monkeypatch.setenv("FRCNN_FAKE_NO_BF16", "1")
    with pytest.raises(SystemExit, match="frcnn-detect: --precision bf16: .*AVX512-BF16"):
        detect.main(["x.jpg", "--random-init", "--precision", "bf16", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        detect.main(["x.jpg", "--random-init", "--precision", "fp16"])
    assert "--precision" in capsys.readouterr().err



# ---- AMX (frcnn_ops/bf16.py: amx_for_mxnet_load) -------------------------------------------

AMX_CPU = {"amx_bf16", "amx_tile", "avx512_bf16"}


def test_amx_decision():
    asked = []

    def grant():
        asked.append(1)
        return None

    def decide(flags=AMX_CPU, env=None, loaded=False, machine="x86_64", request=grant):
        return bf16._amx_decision(flags, env or {}, loaded, machine, request)

    assert decide() == ("on", "AVX512_CORE_AMX") and asked == [1]
    # the user's own AMX setting is kept, and the permission still asked (oneDNN 2.4 would die)
    assert decide(env={"DNNL_MAX_CPU_ISA": "avx512_core_amx"}) == ("on", None) and len(asked) == 2
    for kwargs, why in ((dict(flags={"avx512_bf16"}), "no AMX-BF16"),
                        (dict(env={"FRCNN_NO_AMX": "1"}), "FRCNN_NO_AMX"),
                        (dict(env={"DNNL_MAX_CPU_ISA": "AVX512_CORE_BF16"}), "AVX512_CORE_BF16"),
                        (dict(machine="aarch64"), "x86-64"),
                        (dict(request=lambda: "the kernel refused"), "the kernel refused")):
        state, isa = decide(**kwargs)
        assert state.startswith("off: ") and why in state and isa is None, (kwargs, state)
    assert len(asked) == 2   # never asked when AMX stays off
    state, isa = decide(loaded=True)     # MXNet imported first: on if no operator ran yet
    assert state.startswith("on, unless MXNet ran an operator") and isa == "AVX512_CORE_AMX"


# a bf16 convolution big enough for oneDNN's AMX kernels, then its sum
_BF16_CONV = """
import mxnet as mx
from mxnet.contrib import amp
net = mx.gluon.nn.HybridSequential()
net.add(mx.gluon.nn.Conv2D(64, 3, padding=1))
net.initialize()
x = mx.nd.ones((2, 64, 16, 16))
net.hybridize()
net(x).wait_to_read()
net = amp.convert_hybrid_block(net, target_dtype="bfloat16", ctx=mx.cpu())
print("SUM", float(net(x).sum().asscalar()))
"""
_AMX_CHILD = """
import os, subprocess, sys
if sys.argv[1] != "frcnn_ops-first":
    import mxnet
if sys.argv[1] == "operator-first":
    one = mxnet.nd.ones((1, 1, 1, 1))
    mxnet.nd.Convolution(one, one, kernel=(1, 1), num_filter=1, no_bias=True).wait_to_read()
import frcnn_ops
print("STATE", frcnn_ops.bf16.amx, "ENV", os.environ.get("DNNL_MAX_CPU_ISA"))
""" + _BF16_CONV + """
# a child (exec clears the AMX permission) must not inherit DNNL_MAX_CPU_ISA: SIGILL
print("CHILD", subprocess.run([sys.executable, "-c", %r], capture_output=True).returncode)
""" % _BF16_CONV


@pytest.mark.skipif(not AMX_CPU <= bf16.cpu_flags(), reason="needs a CPU with AMX-BF16")
@pytest.mark.parametrize("order", ["frcnn_ops-first", "mxnet-first", "operator-first"])
def test_amx_in_a_fresh_process(order, tmp_path):
    """`import frcnn_ops` before any MXNet operator: oneDNN runs bf16 convolutions on AMX
    (DNNL_VERBOSE names the kernels) without dying of SIGILL, and a child process that runs a
    bf16 convolution survives (DNNL_MAX_CPU_ISA is not left set); an operator first: AMX is off
    (oneDNN had fixed its ISA), and nothing dies."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, DNNL_VERBOSE="1")
    env.pop("DNNL_MAX_CPU_ISA", None)
    env.pop("FRCNN_NO_AMX", None)
    out = subprocess.run([sys.executable, "-c", _AMX_CHILD, order], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    state = next(line for line in out.stdout.splitlines() if line.startswith("STATE"))
    convs = [line for line in out.stdout.splitlines()
             if line.startswith("dnnl_verbose,exec") and ",convolution," in line
             and "bf16" in line]
    assert convs and "SUM" in out.stdout
    assert state.startswith("STATE on") and state.endswith("ENV None"), state
    assert "CHILD 0" in out.stdout, out.stdout[-500:]
    if order != "operator-first":
        assert all("amx" in line for line in convs), convs
    else:
        assert not any("amx" in line for line in convs), convs


@needs_bf16
def test_fpn_bf16_agrees_with_fp32(tmp_path):
    """The FPN model in bf16 (the same install as the C4 model's): most float32 detections
    again, and its graph in bfloat16."""
    from frcnn_model.modeling.fpn import faster_rcnn_fpn
    small = dict(backbone="resnet18_v1b", width=0.25, num_fpn_filters=32, rpn_channel=32,
                 box_head_units=64, rpn_test_post_nms=100)
    mx.random.seed(0)
    f32 = faster_rcnn_fpn(**small)
    f32.initialize(mx.init.Xavier())
    x = mx.nd.array(np.random.RandomState(0).normal(size=(1, 3, 128, 192)).astype(np.float32))
    f32.hybridize()
    out32 = f32(x)
    path = str(tmp_path / "fpn.params")
    f32.save_parameters(path)
    b16 = faster_rcnn_fpn(precision="bf16", **small)
    b16.load_parameters(path)
    out16 = b16(x)
    assert b16.precision == "bf16"
    share, n = bf16.matched_share(out32, out16)
    assert n > 50 and share >= MIN_SHARE, (share, n)
    text = b16._cached_graph[1].tojson(remove_amp_cast=False)
    assert "amp_cast" in text and "bfloat16" in text
