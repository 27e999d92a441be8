"""frcnn-eval: VOC07 mAP of a saved Faster R-CNN.

    frcnn-eval runs/shapes/best.params --dataset synthetic
    frcnn-eval faster_rcnn_resnet50_v1b_voc.params --dataset voc:~/data/VOCdevkit --split 2007-test

PARAMS is a file written by frcnn-train (its ``.json`` beside it names the architecture) or a
GluonCV parameter file of faster_rcnn_resnet50_v1b_voc or faster_rcnn_fpn_resnet50_v1b_coco
(told apart by its parameter names). ``--random-init --model NAME`` evaluates that network with
random weights and the dataset's classes (a smoke run). Prints the AP of each class and the mAP,
and with --json writes them to a file.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Optional, Sequence


from .detect import MODEL_NAMES  # noqa: E402  (no MXNet import)


def _parse(argv):
    p = argparse.ArgumentParser(prog="frcnn-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("params", nargs="?",
                   help="parameter file (frcnn-train checkpoint or GluonCV's)")
    p.add_argument("--model", choices=sorted(MODEL_NAMES),
                   help="the network of --random-init (default: faster_rcnn_resnet50_v1b_voc); "
                   "with PARAMS only as a check of what the file holds")
    p.add_argument("--random-init", action="store_true",
                   help="no weights: the --model network with random weights (a smoke run)")
    p.add_argument("--dataset", default="synthetic",
                   help="synthetic (the validation set frcnn-train uses) | voc:ROOT")
    p.add_argument("--split", default="2007-test", help="VOC split (YEAR-NAME[,YEAR-NAME])")
    p.add_argument("--num-images", type=int, help="synthetic: images (default: the checkpoint's "
                   "training run's --num-val, else 300)")
    p.add_argument("--seed", type=int, help="synthetic: seed of the training run (default: "
                   "the checkpoint's, else 0); the validation set uses seed + 1000")
    p.add_argument("--image-size", type=int, help="synthetic: image side")
    p.add_argument("--short", type=int, help="image short side (default: the size the weights "
                   "were trained at, from PARAMS.json, else 600)")
    p.add_argument("--max-size", type=int, help="image long side cap")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="bf16: convolutions and dense layers in bfloat16 (needs AVX512-BF16); "
                   "int8: the backbone (features, layer4) in int8 through oneDNN, calibrated "
                   "on training images (needs AVX512-VNNI; default: %(default)s)")
    p.add_argument("--calib-batches", type=int, default=8,
                   help="int8: batches of --batch-size training images to calibrate on "
                   "(synthetic: the checkpoint's training set; voc: --calib-split; default: "
                   "%(default)s)")
    p.add_argument("--calib-mode", choices=("naive", "entropy"), default="naive",
                   help="int8: naive (min/max) or entropy (KL) thresholds (default: "
                   "%(default)s)")
    p.add_argument("--calib-split", default="2007-trainval",
                   help="voc, int8: the split to calibrate on (default: %(default)s)")
    p.add_argument("--json", help="write the APs to this file")
    p.add_argument("--skip-bad", action="store_true",
                   help="voc: leave out bad samples (unreadable image, missing or malformed "
                   "annotation, a class the network does not know, bad box) and count them; "
                   "default: an error naming every one")
    p.add_argument("--no-check-images", action="store_true",
                   help="voc: do not decode every image before evaluating")
    args = p.parse_args(argv)
    if args.calib_batches < 1:
        p.error("--calib-batches must be >= 1")
    if bool(args.params) == bool(args.random_init):
        p.error("give PARAMS or --random-init (one of them)")
    return args


def _training_args(params):
    """The frcnn-train arguments of the run that wrote ``params`` (its log.json), or {}."""
    import os
    log = os.path.join(os.path.dirname(os.path.abspath(params)), "log.json")
    if os.path.exists(log):
        with open(log) as f:
            return json.load(f).get("args", {})
    return {}


def _quantize(net, args, run, short, max_size):
    """--precision int8: quantizes ``net``'s backbone, calibrated on --calib-batches batches of
    training images (the inference transform, a fixed shuffled order)."""
    import os
    from frcnn_ops import int8
    from ..data.transforms import FasterRCNNValTransform, iterate_batches
    from .common import PRESETS, synthetic_set
    if args.dataset == "synthetic":
        preset = PRESETS["synthetic-small"]
        train = synthetic_set(run.get("num_train") or preset["num_train"], run.get("seed", 0)
                              if args.seed is None else args.seed,
                              args.image_size or run.get("image_size") or 160,
                              run.get("object_size") or preset["object_size"])
    else:
        from ..data.datasets import VOCDetection
        from .common import voc_splits
        try:
            train = VOCDetection(os.path.expanduser(args.dataset[4:]),
                                 splits=voc_splits(args.calib_split), classes=net.classes,
                                 on_bad="skip")
        except FileNotFoundError as e:
            raise SystemExit("frcnn-eval: --calib-split %s: %s" % (args.calib_split, e))
    batches = iterate_batches(train, FasterRCNNValTransform(short=short, max_size=max_size),
                              args.batch_size, shuffle=True, seed=0, epoch=0)
    t0 = time.time()
    try:
        int8.quantize(net, batches, calib_mode=args.calib_mode, num_batches=args.calib_batches)
    except (TypeError, ValueError, RuntimeError) as e:
        raise SystemExit("frcnn-eval: --precision int8: %s" % e)
    info = net._frcnn_int8
    print("int8: calibrated on %d training images (%s) in %.1f s"
          % (info["calib_images"], info["calib_mode"], time.time() - t0))


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .threads import load_mxnet, use_all_cpus
    use_all_cpus()  # before MXNet is imported
    args = _parse(sys.argv[1:] if argv is None else argv)
    load_mxnet()
    from ..data.transforms import FasterRCNNValTransform
    from ..evaluation.evaluate import evaluate
    from ..data.classes import VOC_CLASSES
    from ..modeling.faster_rcnn import MODELS, default_input_size, model_spec
    from .common import (PRESETS, check_precision_cli, checked_voc, load_model_checked,
                         model_for_params, random_model, synthetic_set)

    check_precision_cli(args.precision, "frcnn-eval")
    load_precision = "fp32" if args.precision == "int8" else args.precision
    if args.params:
        # first: a bad file fails fast
        model_for_params(args.params, args.model, "frcnn-eval")
        # int8: the float32 net, quantized below once the calibration images are known
        net = load_model_checked(args.params, "frcnn-eval", precision=load_precision)
        run = _training_args(args.params)
        # the input size saved with the weights (as frcnn-detect reads it), not the run's log
        short, max_size = default_input_size(model_spec(args.params))
    else:
        net, run = None, {}
        short, max_size = default_input_size({"arch": MODELS[args.model or MODEL_NAMES[0]]})
    short, max_size = args.short or short, args.max_size or max_size
    if args.dataset == "synthetic":
        side = args.image_size or run.get("image_size") or 160
        seed = args.seed if args.seed is not None else run.get("seed", 0)
        count = args.num_images or run.get("num_val") or 300
        objects = run.get("object_size") or PRESETS["synthetic-small"]["object_size"]
        dataset = synthetic_set(count, seed + 1000, side, objects)
    elif args.dataset.startswith("voc:"):
        import os
        # the network's classes (saved in PARAMS.json); an object of another class is bad
        args.no_progress = not sys.stderr.isatty()
        classes = net.classes if net is not None else VOC_CLASSES
        dataset = checked_voc(os.path.expanduser(args.dataset[4:]), args.split, classes,
                              args, "eval", "frcnn-eval")
    else:
        raise SystemExit("frcnn-eval: unknown --dataset %r (synthetic | voc:ROOT)" % args.dataset)
    if net is None:  # --random-init: the dataset's classes
        import mxnet as mx
        net = random_model(args.model or MODEL_NAMES[0], "frcnn-eval", precision=load_precision,
                           classes=tuple(dataset.classes))
        mx.random.seed(args.seed or 0)
        net.initialize(mx.init.Xavier())
    if tuple(net.classes) != tuple(dataset.classes):
        raise SystemExit("frcnn-eval: the network's classes %s are not the dataset's %s"
                         % (list(net.classes), list(dataset.classes)))
    if args.precision == "int8":
        _quantize(net, args, run, short, max_size)
    net.hybridize(static_alloc=True)
    t0 = time.time()
    names, values = evaluate(net, dataset, FasterRCNNValTransform(short=short, max_size=max_size),
                             args.batch_size, progress=sys.stderr.isatty())
    seconds = time.time() - t0
    for name, value in zip(names, values):
        print("%-12s %.4f" % (name, value))
    print("%d images in %.1f s (%s)" % (len(dataset), seconds, args.precision))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"params": args.params, "dataset": args.dataset, "images": len(dataset),
                       "precision": args.precision,
                       "ap": dict(zip(names, map(float, values))),
                       "bad_data": list(getattr(dataset, "bad", []))}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
