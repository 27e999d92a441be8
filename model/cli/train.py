"""frcnn-train: train a Faster R-CNN on frcnn_ops (GluonCV's recipe), from scratch or on
top of saved weights.

    frcnn-train --preset synthetic-small --save-dir runs/shapes     # the CPU demo, ~20 min
    frcnn-train --dataset voc:~/data/VOCdevkit --preset voc-resnet50 --pretrained-base R50.params

Each epoch: a tqdm bar with the four losses and images/s, then VOC07 mAP on the validation set,
a checkpoint (``epoch_NNNN.params`` + ``.json`` architecture + ``.states`` optimizer +
``.state.json`` position and random states, sealed by ``.manifest.json``; ``last``/``best``
copies), ``log.json`` and ``curves.png`` (losses and mAP), every file crash-safe
(frcnn_model.training.checkpoint). ``--resume`` continues from the newest complete checkpoint
in --save-dir where the uninterrupted run would be (same data order, schedule, random state).
``--kvstore dist_sync`` trains data-parallel across the workers MXNet's launcher starts (each
reads its shard of the data).

Datasets: ``synthetic`` (the built-in shapes, generated from --seed; no download) or
``voc:ROOT`` (a VOCdevkit folder; --train-split / --val-split, e.g. 2007-trainval, 2007-test;
every annotation and image checked before training: --skip-bad, --check-data, --classes).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .common import PRESETS, checked_voc, synthetic_set, voc_splits
from .detect import MODEL_NAMES

# frcnn_model.modeling.faster_rcnn.MODELS (not imported here: MXNet would come with it)
MODELS = dict(zip(MODEL_NAMES, ("faster_rcnn", "faster_rcnn_fpn")))

if TYPE_CHECKING:
    from mxnet import gluon

    from ..modeling.faster_rcnn import FasterRCNN


def _parse(argv):
    p = argparse.ArgumentParser(prog="frcnn-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="synthetic-small",
                   help="named settings the other options override (default: %(default)s)")
    p.add_argument("--dataset", help="synthetic | voc:ROOT")
    p.add_argument("--train-split", default="2007-trainval", help="VOC split (YEAR-NAME)")
    p.add_argument("--val-split", default="2007-test", help="VOC split (YEAR-NAME)")
    p.add_argument("--num-train", type=int, help="synthetic: training images")
    p.add_argument("--num-val", type=int, help="synthetic: validation images (0: no mAP)")
    p.add_argument("--image-size", type=int, help="synthetic: image side in pixels")
    p.add_argument("--object-size", help="synthetic: MIN,MAX object side in pixels")
    p.add_argument("--model", dest="arch", choices=sorted(MODEL_NAMES),
                   default=MODEL_NAMES[0],
                   help="the detector: the C4 one (GluonCV's faster_rcnn_resnet50_v1b_voc design) "
                   "or the FPN one (faster_rcnn_fpn_resnet50_v1b_coco's), on --backbone with "
                   "the preset's settings for it (default: %(default)s)")
    p.add_argument("--backbone", choices=["resnet18_v1b", "resnet50_v1b"])
    p.add_argument("--width", type=float, help="backbone channel multiplier")
    p.add_argument("--frozen-bn", type=int, choices=[0, 1],
                   help="1: BatchNorm with frozen global statistics (pretrained backbones)")
    p.add_argument("--pretrained-base", help="backbone weights to start from (a GluonCV "
                   "ResNet v1b save_parameters file); default: random initialisation")
    p.add_argument("--init", help="whole-detector weights to start from (a frcnn_model or "
                   "GluonCV Faster R-CNN parameter file)")
    p.add_argument("--short", type=int, help="image short side (training and validation)")
    p.add_argument("--max-size", type=int, help="image long side cap")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="images per iteration (per worker)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "nag", "adam"])
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--lr-decay", type=float, help="factor at each --lr-decay-epoch")
    p.add_argument("--lr-decay-epoch", help="comma-separated epochs where the rate decays")
    p.add_argument("--lr-warmup", type=int, help="iterations of linear warm-up")
    p.add_argument("--wd", type=float, help="weight decay")
    p.add_argument("--momentum", type=float)
    p.add_argument("--flip", type=float, help="horizontal flip probability")
    p.add_argument("--max-iters", type=int, default=0,
                   help="stop after this many iterations in all (smoke runs; 0: no limit)")
    p.add_argument("--save-dir", default="frcnn_train", help="checkpoints, log.json, curves.png")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in --save-dir (newer "
                   "incomplete ones are named and skipped; none: from the beginning)")
    p.add_argument("--kvstore", default="local",
                   help="MXNet kvstore: local, device, dist_sync, dist_device_sync, dist_async")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-batch-size", type=int, default=8)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar (logs instead)")
    p.add_argument("--target-map", type=float, default=0.0,
                   help="stop once validation mAP reaches this (0: train all epochs)")
    p.add_argument("--classes", help="voc: comma-separated class names (class id = position); "
                   "default: the 20 VOC names if the annotations use only those, else the "
                   "sorted names the training annotations use (saved in .params.json)")
    p.add_argument("--skip-bad", action="store_true",
                   help="voc: leave out bad samples (unreadable image, missing or malformed "
                   "annotation, unknown class, bad box), count them and list them in log.json; "
                   "default: an error naming every one before training starts")
    p.add_argument("--check-data", action="store_true",
                   help="voc: check every annotation and image of both splits, report, exit "
                   "(0: all good, 1: bad samples); the same check runs before every training")
    p.add_argument("--no-check-images", action="store_true",
                   help="voc: do not decode every image before training (annotations are "
                   "always checked; a bad image then stops the run when it is read)")
    args = p.parse_args(argv)
    preset = PRESETS[args.preset]
    for key, value in preset.items():
        if key not in ("model", "model_fpn") and getattr(args, key, None) is None:
            setattr(args, key, value)
    fpn = MODELS[args.arch] == "faster_rcnn_fpn"
    args.model = dict(preset["model_fpn" if fpn else "model"])
    if args.dataset is None:
        args.dataset = preset["dataset"]
    if args.dataset.startswith("voc") and ":" not in args.dataset:
        p.error("--dataset voc needs the VOCdevkit folder: voc:ROOT")
    if args.batch_size < 1 or args.epochs < 1:
        p.error("--batch-size and --epochs must be >= 1")
    return args


def make_datasets(args: argparse.Namespace) -> Tuple[Any, Optional[Any]]:
    """(train, val) datasets of the --dataset option; val may be None. The synthetic
    validation set is the one with seed --seed + 1000 (frcnn-eval's default)."""
    if args.dataset == "synthetic":
        train = synthetic_set(args.num_train, args.seed, args.image_size, args.object_size)
        val = synthetic_set(args.num_val, args.seed + 1000, args.image_size,
                            args.object_size) if args.num_val else None
        return train, val
    if args.dataset.startswith("voc:"):
        root = os.path.expanduser(args.dataset[4:])
        classes = voc_classes(args, root)
        sets = [checked_voc(root, args.train_split, classes, args, "train", "frcnn-train")]
        if args.val_split:
            sets.append(checked_voc(root, args.val_split, classes, args, "val", "frcnn-train"))
        return sets[0], (sets[1] if len(sets) > 1 else None)
    raise SystemExit("frcnn-train: unknown --dataset %r (synthetic | voc:ROOT)" % args.dataset)


def voc_classes(args: argparse.Namespace, root: str) -> Tuple[str, ...]:
    """--classes, else the VOC names if the training annotations use only those, else the
    sorted names they use."""
    from ..data.datasets import voc_class_names
    from ..data.classes import VOC_CLASSES
    if getattr(args, "classes", None):
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not classes:
            raise SystemExit("frcnn-train: --classes is empty")
        return tuple(classes)
    try:
        names = voc_class_names(root, voc_splits(args.train_split))
    except FileNotFoundError as e:
        raise SystemExit("frcnn-train: %s" % e)
    if not names:
        raise SystemExit("frcnn-train: the %s annotations in %s name no objects"
                         % (args.train_split, root))
    if set(names) <= set(VOC_CLASSES):
        return tuple(VOC_CLASSES)
    print("frcnn-train: classes from the annotations: %s" % ",".join(names), flush=True)
    return tuple(names)


def check_data(args: argparse.Namespace) -> int:
    """--check-data: every sample of both splits checked and reported; 0 if all good."""
    train_set, val_set = make_datasets(args)
    total = 0
    for name, ds in (("train", train_set), ("val", val_set)):
        if ds is None:
            continue
        bad = getattr(ds, "bad", [])
        total += len(bad)
        print("%s: %d images good, %d bad" % (name, len(ds), len(bad)))
        for item in bad:
            print("  %s: %s" % (item["file"], item["problem"]))
    print("classes: %s" % ",".join(train_set.classes))
    return 1 if total else 0


def build_net(args: argparse.Namespace, classes: Sequence[str]) -> FasterRCNN:
    """The --model detector on --backbone / --width / --frozen-bn with the preset's settings
    and the dataset's classes."""
    from ..modeling.faster_rcnn import build_model
    try:
        return build_model(dict(arch=MODELS[args.arch], backbone=args.backbone,
                                width=args.width, use_global_stats=bool(args.frozen_bn),
                                classes=tuple(classes), **args.model))
    except (TypeError, ValueError) as e:
        raise SystemExit("frcnn-train: --model %s: %s" % (args.arch, e))


def plot_curves(log: Dict[str, Any], path: str) -> None:
    """PNG of the smoothed losses per iteration and the validation mAP per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    it = log["iterations"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    if it["iter"]:
        for key in ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box"):
            a1.plot(it["iter"], it[key], label=key, lw=1)
        a1.plot(it["iter"], it["total"], label="total", lw=1.6, color="black")
        a1.set_yscale("log")
        a1.legend(fontsize=8)
    a1.set_xlabel("iteration")
    a1.set_ylabel("loss per image (smoothed)")
    ep = [e for e in log["epochs"] if "mAP" in e]
    if ep:
        minutes = [e["time_s"] / 60.0 for e in ep]
        a2.plot(minutes, [e["mAP"] for e in ep], "o-", color="tab:green")
        for e, m in zip(ep, minutes):
            a2.annotate("%d" % e["epoch"], (m, e["mAP"]), fontsize=7, xytext=(3, -9),
                        textcoords="offset points")
    a2.axhline(0.8, color="grey", lw=0.8, ls="--")
    a2.set_ylim(0, 1)
    a2.set_xlabel("wall time (min, training + evaluation)")
    a2.set_ylabel("VOC07 mAP (validation)")
    a2.grid(alpha=0.3)
    fig.suptitle(log.get("title", ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# the arguments that decide a run's trajectory: a resume with other values warns
_TRAJECTORY = ("preset", "arch", "dataset", "train_split", "num_train", "image_size",
               "object_size", "backbone", "width", "frozen_bn", "short", "max_size",
               "batch_size", "optimizer", "lr", "lr_decay", "lr_decay_epoch", "lr_warmup", "wd", "momentum", "flip",
               "seed", "kvstore", "classes", "skip_bad")


def _rng_state(step):
    """The random states a resumed run needs (JSON): the training step's generator (anchor
    and roi sampling), NumPy's and Python's global ones. MXNet's generator has no state to
    save: it is reseeded from (seed, epoch, batch) where each epoch (part) starts."""
    import random
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {"step": step.rng.bit_generator.state,
            "numpy": [np_state[0], np_state[1].tolist()] + list(np_state[2:]),
            "python": [py_state[0], list(py_state[1]), py_state[2]]}


def _set_rng_state(step, state):
    import random
    step.rng.bit_generator.state = state["step"]
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32)) + tuple(n[2:]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def _mx_seed(seed, epoch, batch):
    return (seed * 1000003 + epoch * 1009 + batch) % (2 ** 31)


def _legacy_resume(args):
    """A folder written before checkpoints had manifests: the newest epoch_*.params that
    MXNet reads, the position from log.json (random states restart)."""
    import mxnet as mx
    names = sorted(n for n in os.listdir(args.save_dir) if n.startswith("epoch_")
                   and n.endswith(".params"))
    for name in reversed(names):
        try:
            mx.nd.load(os.path.join(args.save_dir, name))
        except Exception:  # noqa: BLE001 - truncated by a crash: the one before
            print("frcnn-train: --resume: skipping %s: not readable" % name, flush=True)
            continue
        with open(os.path.join(args.save_dir, "log.json")) as f:
            old = json.load(f)
        epoch = int(name[len("epoch_"):-len(".params")])
        epochs = [e for e in old["epochs"] if e["epoch"] <= epoch]
        last = epochs[-1] if epochs else {"iteration": 0, "time_s": 0.0}
        return name[:-len(".params")], {
            "epoch": epoch, "batch": 0, "iteration": last["iteration"],
            "elapsed": last["time_s"], "best": max([e.get("mAP", -1) for e in epochs] + [-1]),
            "smooth": {}, "log": {"epochs": epochs, "iterations": old["iterations"]},
            "rng": None}
    return None, None


def find_resume_point(args: argparse.Namespace
                      ) -> Tuple[Optional[str], Optional[Dict[str, Any]]]:
    """(stem, state) of the newest complete checkpoint in --save-dir; prints which one and why
    any newer one was skipped. (None, None) when the folder (created when the run started)
    has no complete checkpoint (the run was killed before its first one was sealed): the run
    starts from the beginning."""
    from ..training import checkpoint
    if not os.path.isdir(args.save_dir):
        raise SystemExit("frcnn-train: --resume: no epoch_*.params checkpoint in %s (no such "
                         "folder)" % args.save_dir)
    stem, skipped = checkpoint.newest_complete(args.save_dir)
    for name, why in skipped:
        print("frcnn-train: --resume: skipping %s: %s" % (name, why), flush=True)
    if stem is None:
        # a folder of an older frcnn-train: log.json (written after each checkpoint) but no
        # manifest; this version writes log.json only after a manifest
        if not any(n.endswith(".manifest.json") for n in os.listdir(args.save_dir)) \
                and os.path.exists(os.path.join(args.save_dir, "log.json")):
            print("frcnn-train: --resume: %s has no checkpoint manifests (an older frcnn-train "
                  "wrote it): using the newest readable epoch_*.params, random states restart"
                  % args.save_dir, flush=True)
            stem, state = _legacy_resume(args)
            if stem is not None:
                return stem, state
        print("frcnn-train: --resume: no complete checkpoint in %s: starting from the "
              "beginning" % args.save_dir, flush=True)
        return None, None
    with open(os.path.join(args.save_dir, stem + ".state.json")) as f:
        state = json.load(f)
    old = state.get("args", {})
    changed = [k for k in _TRAJECTORY if k in old and old[k] != getattr(args, k, None)]
    if changed:
        print("frcnn-train: --resume: warning: %s differ from the run that wrote %s (%s): the "
              "result will not be the uninterrupted run's" % (
                  ", ".join(changed), stem,
                  ", ".join("%s=%r" % (k, old[k]) for k in changed)), flush=True)
    return stem, state


def save_checkpoint(args: argparse.Namespace, net: FasterRCNN, trainer: gluon.Trainer,
                    stem: str, state: Dict[str, Any], mAP: float, best: float,
                    log: Dict[str, Any]) -> None:
    """Writes checkpoint ``stem`` (params, .params.json, .states, .state.json, then the
    manifest that seals it), the last/best copies, log.json and curves.png: each file
    crash-safe. A write error ends the run with a message naming the file (the previous
    complete checkpoint is untouched)."""
    from ..training import checkpoint
    from ..modeling.faster_rcnn import save_model
    d = args.save_dir
    written = []
    try:
        checkpoint.invalidate(d, stem)
        base = os.path.join(d, stem)
        save_model(net, base + ".params", (args.short, args.max_size))
        written += [stem + ".params", stem + ".params.json"]
        if not args.kvstore.startswith("dist"):  # dist: the servers hold them
            with checkpoint.atomic_file(base + ".states") as tmp:
                trainer.save_states(tmp)
            written.append(stem + ".states")
        checkpoint.write_json(base + ".state.json", state, default=str)
        written.append(stem + ".state.json")
        checkpoint.write_manifest(d, stem, written, epoch=state["epoch"],
                                  iteration=state["iteration"])
        for name in ("last",) + (("best",) if mAP > best else ()):
            checkpoint.invalidate(d, name)
            for ext in (".params.json", ".params"):
                checkpoint.copy_file(base + ext, os.path.join(d, name + ext))
            checkpoint.write_manifest(d, name, [name + ".params", name + ".params.json"],
                                      source=stem)
        checkpoint.write_json(os.path.join(d, "log.json"), log, indent=1, default=str)
        with checkpoint.atomic_file(os.path.join(d, "curves.png")) as tmp:
            plot_curves(log, tmp)
    except checkpoint.CheckpointError as e:
        if not os.path.exists(checkpoint.manifest_path(d, stem)):
            for name in written:  # the incomplete checkpoint's files: room on a full disk
                try:
                    os.remove(os.path.join(d, name))
                except OSError:
                    pass
        prev, _ = checkpoint.newest_complete(d)
        raise SystemExit("frcnn-train: checkpoint %s: %s; the newest complete checkpoint is %s"
                         % (stem, e, prev or "none")) from None


class _Run:
    """What the steps of one frcnn-train run share: the arguments, the kvstore and this
    worker's place in it, the datasets, network, trainer, training step and transforms (set by
    :func:`_setup`), and the position that carries from one epoch to the next (start epoch and
    batch, iterations done, seconds spent, smoothed losses, best mAP: what a checkpoint's
    ``.state.json`` saves)."""

    def __init__(self, args):
        self.args = args
        self.ctx = self.kv = None
        self.rank, self.workers = 0, 1
        self.train_set = self.val_set = self.net = self.trainer = self.step = None
        self.train_tf = self.val_tf = None
        self.decay_epochs, self.per_epoch = [], 0
        self.log = None
        self.start_epoch, self.start_batch, self.iteration, self.elapsed = 0, 0, 0, 0.0
        self.smooth, self.best = {}, -1.0


def _init_net(args, classes, ctx):
    """The network of --backbone etc., initialised, then --pretrained-base and --init loaded."""
    import mxnet as mx
    net = build_net(args, classes)
    net.initialize(mx.init.Xavier(magnitude=2), ctx=ctx)
    if args.pretrained_base:
        from ..modeling.faster_rcnn import load_pretrained_base
        count = load_pretrained_base(net, args.pretrained_base)
        print("frcnn-train: %d backbone parameters from %s" % (count, args.pretrained_base))
    if args.init:
        net.load_parameters(args.init, ctx=ctx)
    return net


def _new_log(args, train_set, val_set):
    """log.json of a new run: the arguments, no epochs yet, the bad samples left out."""
    log = {"args": {k: v for k, v in vars(args).items()}, "epochs": [],
           "iterations": {k: [] for k in ("iter", "rpn_cls", "rpn_box", "rcnn_cls",
                                          "rcnn_box", "total")},
           "title": "frcnn-train %s: %s%s x%s, %d train images, batch %d" % (
               args.preset, "FPN " if MODELS[args.arch] == "faster_rcnn_fpn" else "",
               args.backbone, args.width, len(train_set), args.batch_size)}
    if getattr(train_set, "bad", None) or getattr(val_set, "bad", None):
        log["bad_data"] = {"train": list(getattr(train_set, "bad", [])),
                           "val": list(getattr(val_set, "bad", []) if val_set else [])}
    return log


def _trained_names(net):
    """The structural keys of the parameters the trainer updates (a checkpoint records them:
    optimizer states only fit the same list)."""
    train = {id(p) for p in net.collect_train_params().values()}
    return sorted(k for k, p in net._collect_params_with_prefix().items() if id(p) in train)


def _make_trainer(args, net, kv):
    """The optimizer over what GluonCV's train_faster_rcnn.py trains
    (``net.collect_train_params()``); every other parameter gets grad_req 'null', as there."""
    from mxnet import gluon
    from ..training.step import select_train_params
    opt_args = {"learning_rate": args.lr, "wd": args.wd}
    if args.optimizer in ("sgd", "nag"):
        opt_args["momentum"] = args.momentum
    return gluon.Trainer(select_train_params(net), args.optimizer, opt_args, kvstore=kv)


def _resume(run, stem, resumed):
    """Resume step: the weights and optimizer states of checkpoint ``stem``, and the position
    and log of its ``.state.json`` (``resumed``)."""
    args = run.args
    ckpt = os.path.join(args.save_dir, stem + ".params")
    run.net.load_parameters(ckpt, ctx=run.ctx)
    states = os.path.join(args.save_dir, stem + ".states")
    if resumed.get("trained") != _trained_names(run.net):
        # a checkpoint of a run that trained other parameters (before frcnn-train followed
        # GluonCV's selection, every one): its states belong to other parameters
        print("frcnn-train: %s is not known to hold the optimizer state of the parameters "
              "this run trains (net.collect_train_params()); momentum restarts"
              % os.path.basename(states), flush=True)
    elif os.path.exists(states) and not args.kvstore.startswith("dist"):
        run.trainer.load_states(states)
    else:
        print("frcnn-train: no optimizer state to resume (%s); momentum restarts"
              % os.path.basename(states), flush=True)
    run.log["epochs"] = resumed["log"]["epochs"]
    run.log["iterations"] = resumed["log"]["iterations"]
    run.start_epoch, run.start_batch = resumed["epoch"], resumed["batch"]
    run.iteration, run.elapsed = resumed["iteration"], resumed["elapsed"]
    run.smooth, run.best = dict(resumed["smooth"]), resumed["best"]
    if run.start_batch:  # the checkpoint stopped inside this epoch (--max-iters)
        run.log["epochs"] = [e for e in run.log["epochs"] if e["epoch"] <= run.start_epoch]
    print("frcnn-train: resumed from %s (epoch %d, iteration %d%s)"
          % (ckpt, run.start_epoch, run.iteration,
             ", batch %d of epoch %d" % (run.start_batch, run.start_epoch + 1)
             if run.start_batch else ""), flush=True)


def _setup(args):
    """Everything before the first epoch: the kvstore, datasets, network (initialised, or
    resumed), trainer, training step and transforms."""
    import mxnet as mx
    from ..data.transforms import FasterRCNNTrainTransform, FasterRCNNValTransform
    from ..training import checkpoint
    from ..training.step import TrainStep
    run = _Run(args)
    run.ctx = mx.cpu()
    run.kv = mx.kv.create(args.kvstore)
    run.rank, run.workers = run.kv.rank, run.kv.num_workers
    checkpoint.FAULT_RANK = run.rank
    mx.random.seed(args.seed)  # the same initial weights on every worker
    run.train_set, run.val_set = make_datasets(args)
    run.net = _init_net(args, run.train_set.classes, run.ctx)
    stem, resumed = find_resume_point(args) if args.resume else (None, None)
    os.makedirs(args.save_dir, exist_ok=True)
    if run.rank == 0:
        checkpoint.remove_stale_temporaries(args.save_dir)
    run.log = _new_log(args, run.train_set, run.val_set)
    run.trainer = _make_trainer(args, run.net, run.kv)
    if resumed is not None:
        _resume(run, stem, resumed)
    run.net.hybridize(static_alloc=True)
    run.step = TrainStep(run.net, seed=args.seed * 1000 + run.rank + 7919 * run.start_epoch)
    if resumed and resumed.get("rng") and run.rank == 0:
        _set_rng_state(run.step, resumed["rng"])
    run.train_tf = FasterRCNNTrainTransform(short=args.short, max_size=args.max_size,
                                            flip_p=args.flip)
    run.val_tf = FasterRCNNValTransform(short=args.short, max_size=args.max_size)
    run.decay_epochs = [int(e) for e in str(args.lr_decay_epoch).split(",") if e.strip()]
    run.per_epoch = len(run.train_set) // (args.batch_size * run.workers)
    if run.per_epoch == 0:
        raise SystemExit("frcnn-train: %d training images are fewer than one batch of %d x %d "
                         "workers" % (len(run.train_set), args.batch_size, run.workers))
    return run


def _progress_bar(run, epoch, first):
    """The batches of an epoch from ``first``: a tqdm bar on rank 0 unless --no-progress."""
    bar = range(first, run.per_epoch)
    if not run.args.no_progress and run.rank == 0:
        from tqdm import tqdm
        bar = tqdm(bar, desc="epoch %d/%d" % (epoch + 1, run.args.epochs), dynamic_ncols=True,
                   initial=first, total=run.per_epoch)
    return bar


def _log_losses(run, losses):
    """Log step: the smoothed per-image losses, into log.json every 10 iterations."""
    smooth = run.smooth
    for key in ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box"):
        value = losses[key] / run.args.batch_size
        smooth[key] = value if key not in smooth else 0.95 * smooth[key] + 0.05 * value
    smooth["total"] = sum(smooth[k] for k in ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box"))
    if run.iteration % 10 == 0:
        run.log["iterations"]["iter"].append(run.iteration)
        for key in ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box", "total"):
            run.log["iterations"][key].append(smooth[key])


def _show_progress(run, bar, rate):
    """The losses and ``rate`` (images/s) on the bar, or a line every 50 iterations."""
    s = run.smooth
    if hasattr(bar, "set_postfix_str"):
        bar.set_postfix_str("loss %.3f (rpn %.3f/%.3f rcnn %.3f/%.3f) %.1f img/s lr %.4g"
                            % (s["total"], s["rpn_cls"], s["rpn_box"], s["rcnn_cls"],
                               s["rcnn_box"], rate, run.trainer.learning_rate))
    elif run.iteration % 50 == 0 and run.rank == 0:
        print("iter %d loss %.4f rpn_cls %.4f rpn_box %.4f rcnn_cls %.4f rcnn_box %.4f "
              "%.1f img/s" % (run.iteration, s["total"], s["rpn_cls"], s["rpn_box"],
                              s["rcnn_cls"], s["rcnn_box"], rate), flush=True)


def _train_epoch(run, epoch, first):
    """Trains epoch ``epoch`` from its batch ``first`` (not 0 when a run resumes inside it):
    returns the epoch's log entry and the number of its batches done."""
    import mxnet as mx
    from ..data.transforms import iterate_batches
    from ..training.checkpoint import fault_point
    args, rank, workers = run.args, run.rank, run.workers
    mx.random.seed(_mx_seed(args.seed, epoch, first))
    lr_epoch = args.lr * args.lr_decay ** sum(epoch >= e for e in run.decay_epochs)
    batches = iterate_batches(run.train_set, run.train_tf, args.batch_size * workers,
                              shuffle=True, seed=args.seed, epoch=epoch, drop_last=True,
                              start=first)
    bar = _progress_bar(run, epoch, first)
    seen, t_epoch, done = 0, time.time(), first
    for _, (data, labels, im_hw) in zip(bar, batches):
        if args.max_iters and run.iteration >= args.max_iters:
            break
        lo, hi = rank * args.batch_size, (rank + 1) * args.batch_size
        warm = min(1.0, (run.iteration + 1) / args.lr_warmup) if args.lr_warmup else 1.0
        run.trainer.set_learning_rate(lr_epoch * warm)
        losses = run.step(data[lo:hi], labels[lo:hi], im_hw[lo:hi], ctx=run.ctx)
        fault_point("iter", "iteration %d" % (run.iteration + 1))
        run.trainer.step(args.batch_size * workers)  # gradients summed over workers
        run.iteration += 1
        done += 1
        seen += args.batch_size
        _log_losses(run, losses)
        _show_progress(run, bar, seen * workers / max(time.time() - t_epoch, 1e-9))
    if hasattr(bar, "close"):
        bar.close()
    entry = {"epoch": epoch + 1, "iteration": run.iteration,
             "images_per_s": seen * workers / max(time.time() - t_epoch, 1e-9),
             "loss": dict(run.smooth)}
    return entry, done


def _evaluate_epoch(run, entry):
    """Evaluate step: the validation mAP and per-class APs into the epoch's log entry."""
    from ..evaluation.evaluate import evaluate
    t_eval = time.time()
    names, values = evaluate(run.net, run.val_set, run.val_tf, run.args.val_batch_size,
                             progress=not run.args.no_progress)
    entry["mAP"] = float(values[-1])
    entry["ap"] = {n: float(v) for n, v in zip(names[:-1], values[:-1])}
    entry["eval_s"] = time.time() - t_eval


def _checkpoint_epoch(run, epoch, entry, done):
    """Checkpoint step (rank 0): the state a resume needs, the checkpoint files, the best
    mAP so far, and the epoch's line on the terminal."""
    args = run.args
    complete = done >= run.per_epoch
    state = {"epoch": epoch + 1 if complete else epoch,
             "batch": 0 if complete else done, "iteration": run.iteration,
             "elapsed": entry["time_s"], "smooth": run.smooth,
             "best": max(run.best, entry.get("mAP", -1)), "rng": _rng_state(run.step),
             "args": {k: getattr(args, k, None) for k in _TRAJECTORY},
             "trained": _trained_names(run.net),
             "log": {"epochs": run.log["epochs"], "iterations": run.log["iterations"]}}
    save_checkpoint(args, run.net, run.trainer, "epoch_%04d" % (epoch + 1), state,
                    entry.get("mAP", -1), run.best, run.log)
    run.best = max(run.best, entry.get("mAP", -1))
    print("epoch %d: iteration %d, %.1f img/s, loss %.4f%s, %.1f min"
          % (epoch + 1, run.iteration, entry["images_per_s"], run.smooth.get("total", 0.0),
             ", mAP %.4f" % entry["mAP"] if "mAP" in entry else "",
             entry["time_s"] / 60.0), flush=True)


def _should_stop(args, iteration, entry):
    """Stop step: --max-iters reached, or the validation mAP reached --target-map."""
    if args.max_iters and iteration >= args.max_iters:
        return True
    return bool(args.target_map and entry.get("mAP", 0.0) >= args.target_map)


def train(args: argparse.Namespace) -> Dict[str, Any]:
    """Trains as ``args`` (frcnn-train's options) say: each epoch trained, evaluated and
    checkpointed (rank 0), until --epochs, --max-iters or --target-map. Returns the run's
    log (log.json's content)."""
    import mxnet as mx
    run = _setup(args)
    t0 = time.time() - run.elapsed
    for epoch in range(run.start_epoch, args.epochs):
        entry, done = _train_epoch(run, epoch, run.start_batch if epoch == run.start_epoch
                                   else 0)
        if run.workers > 1:
            mx.nd.waitall()
            run.kv._barrier()  # every worker's last push is in before rank 0 reads the weights
        if run.val_set is not None and run.rank == 0:
            _evaluate_epoch(run, entry)
        entry["time_s"] = time.time() - t0
        run.log["epochs"].append(entry)
        if run.rank == 0:
            _checkpoint_epoch(run, epoch, entry, done)
        if run.workers > 1:
            run.kv._barrier()  # rank 0 saved: the others may go on (or exit) now
        if _should_stop(args, run.iteration, entry):
            break
    return run.log


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .threads import use_all_cpus
    use_all_cpus()  # before MXNet is imported
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.check_data:
        return check_data(args)
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
