"""Bad data in a VOC folder: every kind of bad sample is named (file and problem) before
training starts, or left out, counted and listed with --skip-bad; a VOC folder of one's own
classes trains and its classes travel with the weights to frcnn-eval."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mxnet")

from frcnn_model.data.datasets import (BadDataError, SyntheticShapes, VOCDetection,  # noqa: E402
                                  voc_class_names, write_voc)

SHAPES = ("circle", "square", "triangle", "cross", "diamond")


def _make_voc(root, n_train=8, n_val=4):
    """A VOCdevkit of the synthetic shapes (64 px): trainval = 0000.., test = 1000.."""
    train = SyntheticShapes(n_train, seed=0, size=(64, 64), object_size=(12, 32))
    val = SyntheticShapes(n_val, seed=1000, size=(64, 64), object_size=(12, 32))
    write_voc(train, root, split="trainval")
    write_voc(val, root, split="test", image_ids=["1%05d" % i for i in range(n_val)])
    return os.path.join(root, "VOC2007")


def _xml(folder, image_id):
    return os.path.join(folder, "Annotations", image_id + ".xml")


def _jpg(folder, image_id):
    return os.path.join(folder, "JPEGImages", image_id + ".jpg")


def _edit(path, old, new):
    text = open(path).read()
    assert old in text, (path, old)
    open(path, "w").write(text.replace(old, new, 1))


def _corrupt(folder):
    """Breaks one sample per kind; returns {file: words expected in its problem}."""
    expect = {}
    data = open(_jpg(folder, "000000"), "rb").read()
    open(_jpg(folder, "000000"), "wb").write(data[:len(data) // 2])
    expect[_jpg(folder, "000000")] = "truncated JPEG"
    open(_jpg(folder, "000001"), "wb").write(np.random.default_rng(1).bytes(3000))
    expect[_jpg(folder, "000001")] = "not a decodable image"
    os.remove(_jpg(folder, "000002"))
    expect[_jpg(folder, "000002")] = "image file missing"
    os.remove(_xml(folder, "000003"))
    expect[_xml(folder, "000003")] = "annotation file missing"
    open(_xml(folder, "000004"), "w").write("<annotation><size><width>64</width>")
    expect[_xml(folder, "000004")] = "malformed XML"
    text = open(_xml(folder, "000005")).read()
    name = text.split("<name>")[1].split("</name>")[0]
    _edit(_xml(folder, "000005"), "<name>%s</name>" % name, "<name>hexagon</name>")
    expect[_xml(folder, "000005")] = "unknown class 'hexagon'"
    _edit(_xml(folder, "000006"), "<xmax>%s</xmax>" % open(_xml(folder, "000006")).read()
          .split("<xmax>")[1].split("</xmax>")[0], "<xmax>90</xmax>")
    expect[_xml(folder, "000006")] = "outside the 64x64 image"
    t7 = open(_xml(folder, "000007")).read()
    xmin = t7.split("<xmin>")[1].split("</xmin>")[0]
    _edit(_xml(folder, "000007"), "<xmax>%s</xmax>" % t7.split("<xmax>")[1].split("</xmax>")[0],
          "<xmax>%s</xmax>" % xmin)
    expect[_xml(folder, "000007")] = "empty box"
    return expect


def test_every_bad_sample_is_named(tmp_path):
    root = str(tmp_path / "devkit")
    folder = _make_voc(root, n_train=10)
    expect = _corrupt(folder)
    ds = VOCDetection(root, classes=SHAPES, on_bad="skip")
    ds.check_images()
    got = {b["file"]: b["problem"] for b in ds.bad}
    assert set(got) == set(expect), got
    for path, words in expect.items():
        assert words in got[path], (path, got[path])
    assert len(ds) == 2 and ds.ids == ["000008", "000009"]
    for i in range(len(ds)):
        ds[i]
    with pytest.raises(BadDataError) as e:  # annotations: raised at construction
        VOCDetection(root, classes=SHAPES, on_bad="raise")
    assert "5 bad samples" in str(e.value) and "000004.xml: malformed XML" in str(e.value)
    ok = VOCDetection(root, splits=((2007, "test"),), classes=SHAPES, on_bad="raise")
    assert ok.check_images() == [] and len(ok) == 4
    assert voc_class_names(root, ((2007, "trainval"),)) == sorted(set(SHAPES) | {"hexagon"})


def _run(args, cwd, timeout=300):
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("FRCNN_FAULT_AT", None)
    return subprocess.run([sys.executable, "-m"] + args, cwd=str(cwd), env=env,
                          timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


TINY = ["--short", "64", "--max-size", "64", "--width", "0.25", "--batch-size", "2",
        "--epochs", "1", "--lr-warmup", "2", "--no-progress", "--backbone", "resnet18_v1b",
        "--frozen-bn", "0", "--lr", "0.02", "--val-batch-size", "4"]


def test_train_and_eval_on_a_bad_voc_folder(tmp_path, capsys):
    """frcnn-train: an error naming every bad sample before training; --check-data the same
    report; --skip-bad trains on the rest and lists them in log.json; the classes are saved
    with the weights and frcnn-eval uses them; frcnn-eval names a bad validation sample, and
    leaves it out with --skip-bad. (The error paths run the commands' main in this process.)"""
    import importlib
    train = importlib.import_module("frcnn_model.cli.train")
    evaluate = importlib.import_module("frcnn_model.cli.eval")
    root = str(tmp_path / "devkit")
    folder = _make_voc(root, n_train=12)
    expect = _corrupt(folder)
    common = ["--dataset", "voc:" + root, "--train-split", "2007-trainval",
              "--val-split", "2007-test", "--save-dir", str(tmp_path / "run"),
              "--classes", ",".join(SHAPES)] + TINY
    with pytest.raises(SystemExit) as e:
        train.main(common)
    text = str(e.value.code)
    assert "8 bad samples in the train split 2007-trainval" in text, text
    for path, words in expect.items():
        line = [ln for ln in text.splitlines() if ln.strip().startswith(path + ": ")]
        assert len(line) == 1 and words in line[0], (path, text)
    assert "--skip-bad leaves them out" in text and not os.path.exists(tmp_path / "run")
    capsys.readouterr()
    assert train.main(common + ["--check-data"]) == 1
    out = capsys.readouterr().out
    assert "train: 4 images good, 8 bad" in out and "val: 4 images good, 0 bad" in out, out
    r = _run(["frcnn_model.cli.train"] + common + ["--skip-bad"], tmp_path)
    assert r.returncode == 0, r.stdout
    assert "train split 2007-trainval: 8 bad samples left out" in r.stdout
    log = json.load(open(tmp_path / "run" / "log.json"))
    assert {b["file"] for b in log["bad_data"]["train"]} == set(expect)
    assert log["bad_data"]["val"] == []
    spec = json.load(open(tmp_path / "run" / "last.params.json"))
    assert spec["classes"] == list(SHAPES)
    params = str(tmp_path / "run" / "last.params")
    ev = [params, "--dataset", "voc:" + root, "--split", "2007-test", "--short", "64",
          "--max-size", "64"]
    assert evaluate.main(ev + ["--json", str(tmp_path / "ap.json")]) == 0
    ap = json.load(open(tmp_path / "ap.json"))["ap"]
    assert set(ap) == set(SHAPES) | {"mAP"}
    assert abs(ap["mAP"] - log["epochs"][-1]["mAP"]) < 1e-9
    os.remove(_jpg(folder, "100001"))
    with pytest.raises(SystemExit) as e:
        evaluate.main(ev)
    assert "%s: image file missing" % _jpg(folder, "100001") in str(e.value.code)
    capsys.readouterr()
    assert evaluate.main(ev + ["--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "1 bad sample left out" in out and "3 images in" in out, out


def test_own_classes_from_the_annotations(tmp_path):
    """Without --classes, a folder whose annotations are not all VOC names trains on the
    sorted names found (here the shapes'), saved in .params.json."""
    root = str(tmp_path / "devkit")
    _make_voc(root, n_train=4, n_val=2)
    names = voc_class_names(root, ((2007, "trainval"),))
    assert names and set(names) <= set(SHAPES)
    r = _run(["frcnn_model.cli.train", "--dataset", "voc:" + root, "--val-split", "",
              "--save-dir", str(tmp_path / "run"), "--max-iters", "1"] + TINY, tmp_path)
    assert r.returncode == 0, r.stdout
    assert "classes from the annotations: %s" % ",".join(names) in r.stdout
    spec = json.load(open(tmp_path / "run" / "epoch_0001.params.json"))
    assert spec["classes"] == names
