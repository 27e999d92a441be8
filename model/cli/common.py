"""What the command-line tools share: frcnn-train's named settings (frcnn-eval reads their
defaults), the dataset options, and loading a parameter file with an error message that names
the file instead of an MXNet stack trace."""
from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

from ..training.checkpoint import describe_error, manifest_path, verify

if TYPE_CHECKING:
    import mxnet as mx

    from ..data.datasets import SyntheticShapes, VOCDetection
    from ..modeling.faster_rcnn import FasterRCNN

# Named settings: the demo that trains on this project's 2-core CPU, and GluonCV's VOC recipe.
PRESETS = {
    "synthetic-small": dict(
        dataset="synthetic", num_train=2000, num_val=300, image_size=160, object_size="20,64",
        short=160,
        max_size=160, backbone="resnet18_v1b", width=0.5, frozen_bn=False, epochs=4,
        batch_size=4, lr=0.02, lr_decay=0.1, lr_decay_epoch="3", lr_warmup=100, wd=1e-4,
        momentum=0.9, flip=0.5,
        model=dict(scales=[1, 2, 4, 8], ratios=[0.5, 1, 2], rpn_train_pre_nms=2000,
                   rpn_train_post_nms=300, rpn_test_pre_nms=1000, rpn_test_post_nms=100,
                   roi_size=[7, 7], num_sample=64, rpn_min_size=4),
        # --model faster_rcnn_fpn_resnet50_v1b_coco: anchors of 16..256 pixels on P2..P6 for
        # the 20..64-pixel shapes, and a pyramid and heads sized for the small backbone
        model_fpn=dict(scales=[1, 2, 4, 8, 16], rpn_train_pre_nms=2000, rpn_train_post_nms=300,
                       rpn_test_pre_nms=1000, rpn_test_post_nms=100, num_sample=64,
                       num_fpn_filters=64, rpn_channel=64, box_head_units=256)),
    "voc-resnet50": dict(
        dataset="voc", num_train=0, num_val=0, image_size=0, object_size="", short=600,
        max_size=1000,
        backbone="resnet50_v1b", width=1.0, frozen_bn=True, epochs=20, batch_size=1,
        lr=0.001, lr_decay=0.1, lr_decay_epoch="14,20", lr_warmup=0, wd=5e-4, momentum=0.9,
        flip=0.5, model={}, model_fpn={}),
}


def voc_splits(text: str) -> Tuple[Tuple[int, str], ...]:
    """``2007-trainval,2012-trainval`` -> ``((2007, "trainval"), (2012, "trainval"))``."""
    out = []
    for item in text.split(","):
        year, _, name = item.partition("-")
        out.append((int(year), name or "trainval"))
    return tuple(out)


def synthetic_set(count: int, seed: int, image_size: int, object_size: str) -> SyntheticShapes:
    """The built-in shapes: ``count`` images of ``image_size`` pixels square, objects of
    ``object_size`` = "MIN,MAX" pixels."""
    from ..data.datasets import SyntheticShapes
    lo, hi = (int(v) for v in str(object_size).split(","))
    return SyntheticShapes(count, seed=seed, size=(image_size, image_size),
                           object_size=(lo, hi))


def checked_voc(root: str, split: str, classes: Sequence[str], args: argparse.Namespace,
                what: str, who: str) -> VOCDetection:
    """VOCDetection of ``split`` with every annotation (and, unless --no-check-images, every
    image) checked: bad samples are an error naming each (SystemExit) or, with --skip-bad,
    left out and listed in the dataset's ``bad``."""
    from ..data.datasets import BadDataError, VOCDetection
    try:
        ds = VOCDetection(root, splits=voc_splits(split), classes=classes, on_bad="skip")
        if not getattr(args, "no_check_images", False):
            ds.check_images(progress=not getattr(args, "no_progress", True)
                            and sys.stderr.isatty())
    except FileNotFoundError as e:
        raise SystemExit("%s: %s" % (who, e))
    if ds.bad and not getattr(args, "skip_bad", False) and not getattr(args, "check_data",
                                                                       False):
        raise SystemExit("%s: %s\n(--skip-bad leaves them out and trains on the rest)"
                         % (who, BadDataError(ds.bad, "the %s split %s of %s"
                                              % (what, split, root))))
    if ds.bad:
        print("%s: %s split %s: %d bad sample%s left out%s" % (
            who, what, split, len(ds.bad), "" if len(ds.bad) == 1 else "s",
            " (listed in log.json)" if who == "frcnn-train" else ""), flush=True)
    if len(ds) == 0:
        raise SystemExit("%s: no usable samples in the %s split %s of %s"
                         % (who, what, split, root))
    return ds


def check_params_file(path: str, who: str) -> Dict[str, mx.nd.NDArray]:
    """Before loading a parameter file: raises SystemExit with a message naming ``path`` and
    the problem if it is missing, fails its checkpoint manifest (when one lists it), or is
    not an MXNet parameter file. Returns the loaded dict of NDArrays."""
    import mxnet as mx
    if not os.path.isfile(path):
        raise SystemExit("%s: %s: no such file" % (who, path))
    folder, name = os.path.split(os.path.abspath(path))
    stem = name[:-len(".params")] if name.endswith(".params") else None
    if stem and os.path.exists(manifest_path(folder, stem)):
        reason = verify(folder, stem)
        if reason is not None:
            raise SystemExit("%s: %s: incomplete checkpoint: %s" % (who, path, reason))
    size = os.path.getsize(path)
    try:
        loaded = mx.nd.load(path)
    except Exception as e:  # noqa: BLE001 - MXNet raises MXNetError with a C++ trace
        raise SystemExit("%s: %s (%d bytes) is not a readable MXNet parameter file (truncated, "
                         "corrupted or another format): %s"
                         % (who, path, size, describe_error(e)))
    if not isinstance(loaded, dict) or not loaded:
        raise SystemExit("%s: %s holds no named parameters (not a save_parameters file)"
                         % (who, path))
    return loaded


def check_precision_cli(precision: str, who: str) -> None:
    """Ends a command line with a message when ``precision`` cannot run on this CPU (bf16
    without AVX512-BF16, int8 without AVX512-VNNI)."""
    from frcnn_ops import bf16, int8
    try:
        if precision == "int8":
            int8.check_int8_cpu()
            return
        bf16.check_precision(precision, "--precision")
        if precision == "bf16":
            bf16.check_bf16_cpu()
    except (ValueError, RuntimeError) as e:
        raise SystemExit("%s: --precision %s: %s" % (who, precision, e))


def load_model_checked(path: str, who: str, **overrides: Any) -> FasterRCNN:
    """:func:`frcnn_model.load_model` for a command line: a missing, truncated,
    corrupted or foreign parameter file (or a bad ``.params.json``) ends the program with a
    message that names the file and the problem, not an MXNet stack trace."""
    from ..modeling.faster_rcnn import load_model, model_name, model_spec
    loaded = check_params_file(path, who)
    try:
        spec = model_spec(path)
    except (OSError, ValueError) as e:
        raise SystemExit("%s: %s.json (the architecture beside the weights) is unreadable: %s"
                         % (who, path, describe_error(e)))
    if overrides.get("precision") == "int8" and spec.get("arch") == "faster_rcnn_fpn":
        raise SystemExit("%s: --precision int8: %s holds a %s, which runs in fp32 or bf16 "
                         "(int8 is the C4 model's)" % (who, path, model_name(spec)))
    try:
        return load_model(path, **overrides)
    except Exception as e:  # noqa: BLE001 - MXNet's missing/shape errors carry C++ traces
        arch = "%s (%s x%s)" % (model_name(spec), spec.get("backbone", "resnet50_v1b"),
                                spec.get("width", 1.0))
        sample = ", ".join(sorted(loaded)[:3])
        source = ("from %s.json" % os.path.basename(path) if os.path.exists(path + ".json")
                  else "no .json beside it: GluonCV's %s assumed from its parameter names"
                  % model_name(spec))
        raise SystemExit("%s: %s does not fit the architecture %s (%s): %s; its first "
                         "parameters are %s (a file of another model?)"
                         % (who, path, arch, source, describe_error(e), sample))


def model_for_params(path: str, wanted: Optional[str], who: str) -> str:
    """The named model a parameter file holds (its .json, else its parameter names); a
    ``wanted`` --model that differs ends the program with a message naming both."""
    from ..modeling.faster_rcnn import model_name, model_spec
    try:
        held = model_name(model_spec(path))
    except (OSError, ValueError) as e:
        raise SystemExit("%s: %s.json (the architecture beside the weights) is unreadable: %s"
                         % (who, path, describe_error(e)))
    if wanted and wanted != held:
        raise SystemExit("%s: --model %s does not match --params %s, which holds a %s (with "
                         "--params the architecture comes from the file; leave --model out)"
                         % (who, wanted, path, held))
    return held


def random_model(name: str, who: str, **overrides: Any) -> FasterRCNN:
    """The named model (frcnn_model.modeling.faster_rcnn.MODELS) with random weights not yet
    initialised; a setting it cannot take (e.g. an unknown --model setting) ends the
    program with a message naming the tool and the model."""
    from ..modeling.faster_rcnn import named_model
    try:
        return named_model(name, **overrides)
    except (TypeError, ValueError) as e:
        raise SystemExit("%s: --model %s: %s" % (who, name, e))
