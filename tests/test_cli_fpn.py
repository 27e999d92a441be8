"""frcnn-train / frcnn-eval / frcnn-detect with --model faster_rcnn_fpn_resnet50_v1b_coco (the
architecture of --params comes from the file), and frcnn-detect's masks for a GluonCV Mask
R-CNN (--gluoncv)."""
import json
import os
import sys

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

FPN = "faster_rcnn_fpn_resnet50_v1b_coco"
CLASSES = ("circle", "square", "triangle", "cross", "diamond")


@pytest.fixture(scope="module")
def gray_png(tmp_path_factory):
    """A uniform grey 96x128 image: anything coloured in a figure is drawn on it."""
    import cv2
    path = str(tmp_path_factory.mktemp("img") / "gray.png")
    cv2.imwrite(path, np.full((96, 128, 3), 128, np.uint8))
    return path


@pytest.fixture(scope="module")
def trained_fpn(tmp_path_factory):
    """frcnn-train --model FPN, 2 iterations on the synthetic set: its last.params."""
    from frcnn_model.cli.train import main
    out = str(tmp_path_factory.mktemp("run"))
    assert main(["--model", FPN, "--epochs", "1", "--max-iters", "2", "--num-train", "8",
                 "--num-val", "4", "--image-size", "96", "--short", "96", "--max-size", "96",
                 "--width", "0.25", "--batch-size", "2", "--no-progress", "--lr-warmup", "2",
                 "--save-dir", out]) == 0
    return os.path.join(out, "last.params")


def test_train_writes_an_fpn_checkpoint(trained_fpn):
    spec = json.load(open(trained_fpn + ".json"))
    assert spec["arch"] == "faster_rcnn_fpn" and spec["classes"] == list(CLASSES)
    assert spec["num_fpn_filters"] == 64 and spec["input_size"] == [96, 96]  # preset, --short
    log = json.load(open(os.path.join(os.path.dirname(trained_fpn), "log.json")))
    assert log["epochs"][0]["iteration"] == 2 and 0 <= log["epochs"][0]["mAP"] <= 1
    assert "FPN" in log["title"]


def test_eval_and_detect_take_the_architecture_from_the_file(trained_fpn, gray_png, tmp_path,
                                                             capsys):
    from frcnn_model.cli import detect, eval as eval_cli
    out = str(tmp_path / "ap.json")
    assert eval_cli.main([trained_fpn, "--num-images", "4", "--json", out]) == 0
    assert set(json.load(open(out))["ap"]) == set(CLASSES) | {"mAP"}
    det = str(tmp_path / "det")
    assert detect.main([gray_png, "--params", trained_fpn, "--out", det,
                        "--threshold", "0.0"]) == 0
    err = capsys.readouterr().err
    assert "input 96x128" not in err and "input 72x96" in err  # the saved input size, 96
    for suffix in ("1_input", "2_rpn", "3_proposals", "4_detections"):
        assert os.path.getsize(os.path.join(det, "gray_%s.png" % suffix)) > 500
    # --model that differs from the file: named, with what the file holds
    with pytest.raises(SystemExit, match="frcnn-detect: --model faster_rcnn_resnet50_v1b_voc "
                       "does not match --params .*holds a faster_rcnn_fpn_resnet50_v1b_coco"):
        detect.main([gray_png, "--params", trained_fpn, "--model",
                     "faster_rcnn_resnet50_v1b_voc"])
    with pytest.raises(SystemExit, match="frcnn-eval: --precision int8: .*only a C4 Faster R-CNN.*fp32 or bf16"):
        eval_cli.main([trained_fpn, "--precision", "int8"])


def test_random_init_fpn_and_bad_values(gray_png, tmp_path, capsys):
    from frcnn_model.cli import detect, eval as eval_cli, train
    det = str(tmp_path / "det")
    assert detect.main([gray_png, "--random-init", "--model", FPN, "--out", det, "--short",
                        "96", "--max-size", "128"]) == 0
    assert os.path.getsize(os.path.join(det, "gray_4_detections.png")) > 500
    out = str(tmp_path / "ap.json")
    assert eval_cli.main(["--random-init", "--model", FPN, "--num-images", "2",
                          "--image-size", "64", "--short", "64", "--max-size", "64",
                          "--json", out]) == 0
    assert set(json.load(open(out))["ap"]) == set(CLASSES) | {"mAP"}
    capsys.readouterr()
    for main, tool in ((detect.main, "frcnn-detect"), (eval_cli.main, "frcnn-eval"),
                       (train.main, "frcnn-train")):
        with pytest.raises(SystemExit):
            main([gray_png, "--random-init", "--model", "yolo"] if tool == "frcnn-detect"
                 else ["--random-init", "--model", "yolo"] if tool == "frcnn-eval"
                 else ["--model", "yolo"])
        err = capsys.readouterr().err
        assert "%s: error: argument --model: invalid choice: 'yolo'" % tool in err, err
    with pytest.raises(SystemExit):
        eval_cli.main([])
    assert "give PARAMS or --random-init" in capsys.readouterr().err


def test_detect_draws_gluoncv_mask_rcnn_masks(gray_png, tmp_path, capsys):
    """A random-init GluonCV Mask R-CNN (patched onto frcnn_ops): each detection's JSON line
    has its mask's pixel count, and the detection figure has pixels of the first mask colour
    blended into the grey (none in the input figure)."""
    pytest.importorskip("gluoncv")
    from frcnn_model.cli import detect
    det = str(tmp_path / "det")
    assert detect.main([gray_png, "--gluoncv", "mask_rcnn_fpn_resnet50_v1b_coco",
                        "--random-init", "--max-detections", "5", "--threshold", "0",
                        "--out", det, "--short", "96", "--max-size", "128"]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()
             if ln.startswith("{")]
    assert len(lines) == 5 and all(ln["mask_pixels"] > 0 for ln in lines)
    import matplotlib.image as mpimg
    want = 0.5 * 128 / 255.0 + 0.5 * np.array(detect.MASK_COLORS[0])

    def mask_coloured(name):
        img = mpimg.imread(os.path.join(det, name))[:, :, :3]
        return int((np.abs(img - want) < 3 / 255.0).all(axis=-1).sum())
    assert mask_coloured("gray_4_detections.png") > 0.3 * lines[0]["mask_pixels"]
    assert mask_coloured("gray_1_input.png") == 0


def test_paste_mask_follows_gluoncv_fill():
    gluoncv = pytest.importorskip("gluoncv")
    from frcnn_model.cli.detect import paste_mask
    rng = np.random.default_rng(3)
    masks = rng.uniform(0, 1, (4, 14, 14)).astype(np.float32)
    boxes = np.array([[10, 12, 60, 40], [-5, 3, 30.4, 50.6], [70, 20, 140, 99], [5, 5, 9, 7]],
                     np.float32)
    ref = gluoncv.data.transforms.mask.fill(masks, boxes, (128, 96))
    for m, b, r in zip(masks, boxes, ref):
        np.testing.assert_array_equal(paste_mask(m, b, (96, 128)), r.astype(bool))


def test_detect_without_gluoncv_is_a_clear_error(gray_png, monkeypatch):
    from frcnn_model.cli import detect
    monkeypatch.setitem(sys.modules, "gluoncv", None)  # import gluoncv -> ImportError
    with pytest.raises(SystemExit, match="frcnn-detect: --gluoncv mask_rcnn_fpn_resnet50_v1b_"
                       "coco needs the gluoncv package"):
        detect.main([gray_png, "--gluoncv", "mask_rcnn_fpn_resnet50_v1b_coco",
                     "--random-init"])


def test_cli_model_names_are_the_library_s():
    from frcnn_model.cli.detect import MODEL_NAMES
    from frcnn_model.cli.train import MODELS as TRAIN_MODELS
    from frcnn_model.modeling.faster_rcnn import MODELS
    assert set(MODEL_NAMES) == set(MODELS) and TRAIN_MODELS == MODELS
