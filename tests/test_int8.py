"""int8 inference (frcnn_ops.int8.quantize, load_model(precision='int8'), frcnn-eval --precision
int8): a small model (resnet18_v1b at width 0.25, 160x200 image, random init) quantized and
compared with its float32 self, the int8 graph's layout (quantized backbone, float32 frcnn ops),
export + SymbolBlock reload, and the refusals (a CPU without AVX512-VNNI, simulated by
FRCNN_FAKE_NO_INT8=1; no calibration data; the FPN model; a net that is not float32).
The accuracy claim (VOC07 mAP within 0.001 of float32 on the synthetic demo) is measured by
tools/int8_experiment.py, not here: random-init detections say little."""
import json

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")
frcnn_model = pytest.importorskip("frcnn_model")
from frcnn_ops import int8  # noqa: E402

needs_vnni = pytest.mark.skipif(not int8.int8_supported(),
                                reason="needs a CPU with AVX512-VNNI (avx512_vnni)")
SMALL = dict(backbone="resnet18_v1b", width=0.25, rpn_test_post_nms=100)


def small():
    from frcnn_model.modeling.faster_rcnn import faster_rcnn
    return faster_rcnn(**SMALL)


def calib_batches(n=3, seed=1):
    rng = np.random.RandomState(seed)
    return [rng.normal(size=(1, 3, 160, 200)).astype(np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same random weights in fp32 and int8, an input, both outputs, the params file."""
    path = str(tmp_path_factory.mktemp("int8") / "small.params")
    mx.random.seed(0)
    f32 = small()
    f32.initialize(mx.init.Xavier())
    x = mx.nd.array(np.random.RandomState(0).normal(size=(1, 3, 160, 200)).astype(np.float32))
    f32.hybridize()
    out32 = [a.asnumpy() for a in f32(x)]
    f32.save_parameters(path)
    q = small()
    q.load_parameters(path)
    q.hybridize()
    int8.quantize(q, calib_batches())
    out8 = [a.asnumpy() for a in q(x)]
    return f32, q, x, out32, out8, path


@needs_vnni
def test_int8_close_to_fp32(pair):
    f32, q, x, out32, out8, _ = pair
    assert q.precision == "int8" and f32.precision == "fp32"
    assert q._frcnn_int8["calib_images"] == 3 and q._frcnn_int8["calib_mode"] == "naive"
    assert q._active  # stays hybridized
    for a, b in zip(out32, out8):
        assert a.shape == b.shape
    # not bitwise float32: the backbone did run in int8 ...
    assert not np.array_equal(out32[1], out8[1])
    # ... and close to it: the backbone's output (random init: correlation ~0.97 measured)
    a, b = f32.features(x).asnumpy(), q.features(x).asnumpy()
    assert a.shape == b.shape
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    assert (out8[1] > 0).sum() > 0  # it detects something


@needs_vnni
def test_int8_graph_layout(pair):
    """Convolutions of features and top_features quantized, RPN / RCNN heads and every
    frcnn_* op in float32 (their inputs never int8)."""
    q = pair[1]
    nodes = json.loads(q._cached_graph[1].tojson())["nodes"]
    quantized = [n for n in nodes if n.get("attrs", {}).get("quantized") == "true"]
    assert len(quantized) >= 8
    assert all("min_calib_range" in n["attrs"] for n in quantized)  # calibrated, not runtime
    ops = {n["op"] for n in nodes}
    assert "_contrib_dequantize" in ops and "FullyConnected" in ops and "Convolution" in ops
    for n in nodes:
        if n["op"].startswith("frcnn_"):
            for i, _, _ in n["inputs"]:
                src = nodes[i]
                assert "quantize" not in src["op"] or src["op"] == "_contrib_dequantize", \
                    (n["name"], src["name"])
                assert src.get("attrs", {}).get("quantized") != "true", (n["name"], src["name"])


@needs_vnni
def test_int8_export_symbolblock(pair, tmp_path):
    _, q, x, _, out8, _ = pair
    prefix = str(tmp_path / "int8")
    q.export(prefix)
    loaded = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                          prefix + "-0000.params")
    got = [a.asnumpy() for a in loaded(x)]
    for a, b in zip(got, out8):
        np.testing.assert_array_equal(a, b)


@needs_vnni
def test_int8_save_parameters_refused(pair, tmp_path):
    with pytest.raises(RuntimeError, match="int8 weights would not load into a float32 net"):
        pair[1].save_parameters(str(tmp_path / "q.params"))


@needs_vnni
def test_load_model_int8(pair, tmp_path):
    from frcnn_model.modeling.faster_rcnn import load_model, save_model
    f32, _, x, _, out8, _ = pair
    path = str(tmp_path / "m.params")
    save_model(f32, path)
    net = load_model(path, precision="int8", calib_data=calib_batches())
    assert net.precision == "int8"
    net.hybridize()
    got = [a.asnumpy() for a in net(x)]
    for a, b in zip(got, out8):  # the same weights and calibration: the same int8 net
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="precision='int8' needs calib_data"):
        load_model(path, precision="int8")
    with pytest.raises(ValueError, match="calib_data is for precision='int8' only"):
        load_model(path, calib_data=calib_batches())


@needs_vnni
def test_quantize_calibration_shapes_and_tuples(pair):
    """Batches of different sizes, as (data, labels, ...) tuples, with num_batches."""
    f32, _, x, _, _, path = pair
    q = small()
    q.load_parameters(path)
    rng = np.random.RandomState(2)
    data = [(rng.normal(size=(2, 3, 128, 160)).astype(np.float32), None),
            (mx.nd.array(rng.normal(size=(1, 3, 160, 200))), None), ("not", "used")]
    int8.quantize(q, data, num_batches=2, calib_mode="entropy")
    assert q._frcnn_int8["calib_images"] == 3 and q._frcnn_int8["calib_batches"] == 2
    assert [a.shape for a in q(x)] == [a.shape for a in f32(x)]


@needs_vnni
def test_quantize_refusals(pair):
    _, q, _, _, _, path = pair
    with pytest.raises(ValueError, match="precision 'int8'; quantize a float32 net"):
        int8.quantize(q, calib_batches())
    net = small()
    net.load_parameters(path)
    with pytest.raises(ValueError, match="calib_data yielded no batches"):
        int8.quantize(net, [])
    with pytest.raises(ValueError, match=r"image batches \(B, 3, H, W\).*\(3, 160, 200\)"):
        int8.quantize(net, [np.zeros((3, 160, 200), np.float32)])
    with pytest.raises(ValueError, match="calib_mode must be one of 'naive', 'entropy'"):
        int8.quantize(net, calib_batches(), calib_mode="kl")
    with pytest.raises(ValueError, match="blocks must be distinct names"):
        int8.quantize(net, calib_batches(), blocks=("rpn",))
    assert net.precision == "fp32"  # nothing changed
    from frcnn_model.modeling.fpn import faster_rcnn_fpn
    fpn = faster_rcnn_fpn(backbone="resnet18_v1b", width=0.25)
    with pytest.raises(TypeError, match="no 'top_features' block: only a C4"):
        int8.quantize(fpn, calib_batches())


def test_refused_without_avx512_vnni(monkeypatch, tmp_path):
    monkeypatch.setenv("FRCNN_FAKE_NO_INT8", "1")
    assert not int8.int8_supported()
    with pytest.raises(RuntimeError, match="AVX512-VNNI.*avx512_vnni.*FRCNN_FAKE_NO_INT8"):
        int8.quantize(small(), calib_batches())
    from frcnn_model.modeling.faster_rcnn import load_model, save_model
    net = small()
    net.initialize()
    net(mx.nd.array(calib_batches(1)[0]))
    path = str(tmp_path / "m.params")
    save_model(net, path)
    with pytest.raises(RuntimeError, match="AVX512-VNNI"):
        load_model(path, precision="int8", calib_data=calib_batches())


def test_int8_is_not_a_build_time_precision():
    from frcnn_model.modeling.faster_rcnn import faster_rcnn
    with pytest.raises(ValueError, match=r"got 'int8' \(int8 is made from a float32 net.*"
                                         r"frcnn_ops.int8.quantize"):
        faster_rcnn(precision="int8", **SMALL)


def test_cli_refusals(monkeypatch, capsys):
    import importlib
    ev = importlib.import_module("frcnn_model.cli.eval")
    monkeypatch.setenv("FRCNN_FAKE_NO_INT8", "1")
    with pytest.raises(SystemExit, match="frcnn-eval: --precision int8: .*AVX512-VNNI"):
        ev.main(["--random-init", "--precision", "int8"])
    monkeypatch.delenv("FRCNN_FAKE_NO_INT8")
    with pytest.raises(SystemExit):
        ev.main(["--random-init", "--precision", "int8", "--calib-batches", "0"])
    assert "--calib-batches must be >= 1" in capsys.readouterr().err


@needs_vnni
def test_cli_eval_int8(tmp_path, capsys):
    """frcnn-eval --precision int8 on a tiny synthetic set with a small random-init checkpoint:
    it calibrates on the training images and evaluates (random weights: the mAP means
    nothing)."""
    import importlib
    from frcnn_model.cli.common import synthetic_set
    from frcnn_model.modeling.faster_rcnn import faster_rcnn, save_model
    ev = importlib.import_module("frcnn_model.cli.eval")
    classes = tuple(synthetic_set(1, 0, 96, "20,64").classes)
    mx.random.seed(0)
    net = faster_rcnn(classes=classes, **SMALL)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 96, 96)))
    path = str(tmp_path / "small.params")
    save_model(net, path)
    out = str(tmp_path / "ap.json")
    assert ev.main([path, "--precision", "int8", "--num-images", "4", "--image-size", "96",
                    "--short", "96", "--max-size", "96", "--batch-size", "2",
                    "--calib-batches", "2", "--json", out]) == 0
    text = capsys.readouterr().out
    assert "int8: calibrated on 4 training images (naive)" in text
    with open(out) as f:
        assert json.load(f)["precision"] == "int8"
