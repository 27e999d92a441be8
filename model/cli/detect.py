"""frcnn-detect: run the Faster R-CNN on images and draw what it sees at each stage.

    frcnn-detect IMAGE... --params FILE [--out DIR] [--threshold 0.5]
    frcnn-detect IMAGE... --random-init --model faster_rcnn_fpn_resnet50_v1b_coco
    frcnn-detect IMAGE... --gluoncv mask_rcnn_fpn_resnet50_v1b_coco --params FILE

The network: --params FILE (one saved by frcnn_model, or GluonCV's save_parameters file of
faster_rcnn_resnet50_v1b_voc or faster_rcnn_fpn_resnet50_v1b_coco: the architecture comes from
the file), or --random-init with --model NAME (default faster_rcnn_resnet50_v1b_voc).

For each image it writes four PNGs, the figures of a Faster R-CNN walkthrough:
  <name>_1_input.png        the network input (resized as GluonCV's preset does)
  <name>_2_rpn.png          RPN proposals before NMS with objectness >= --rpn-threshold (for
                            the FPN model, all levels together)
  <name>_3_proposals.png    the proposals kept after NMS (the ROIs of the head)
  <name>_4_detections.png   the final detections >= --threshold with class names and scores
and prints one JSON line per detection (boxes in the original image's pixels) and the time per
image (the network forward, after a warm-up).

--gluoncv NAME runs a GluonCV model-zoo Faster R-CNN or Mask R-CNN instead (gluoncv must be
installed; --params is then GluonCV's parameter file of that model, or --random-init),
patched onto frcnn_ops by frcnn_ops.patch_gluoncv. For a Mask R-CNN each detection's mask is
pasted into its box (bilinear resize of the M x M mask to the box, then > 0.5, as GluonCV's
mask fill does), drawn over the image in a semi-transparent colour per detection in
<name>_4_detections.png, and its pixel count is the JSON line's "mask_pixels". Only the input
and detection figures are written for a --gluoncv network.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:
    import mxnet as mx

    from ..modeling.faster_rcnn import FasterRCNN


# frcnn_model.modeling.faster_rcnn.MODELS' names, here without importing MXNet (the thread
# count is set before it is imported); test_model_fpn checks that they agree
MODEL_NAMES = ("faster_rcnn_resnet50_v1b_voc", "faster_rcnn_fpn_resnet50_v1b_coco")
MASK_ALPHA = 0.5
MASK_COLORS = ((0.0, 0.45, 1.0), (1.0, 0.0, 0.85), (0.0, 0.85, 0.3), (1.0, 0.6, 0.0))


def _parse(argv):
    p = argparse.ArgumentParser(prog="frcnn-detect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", help="JPEG or PNG files")
    p.add_argument("--params", help="weights: a file saved by frcnn_model or a GluonCV "
                   "save_parameters file (the architecture comes from it)")
    p.add_argument("--model", choices=sorted(MODEL_NAMES),
                   help="the network of --random-init (default: faster_rcnn_resnet50_v1b_voc); "
                   "with --params only as a check of what the file holds")
    p.add_argument("--gluoncv", metavar="NAME",
                   help="a GluonCV model-zoo Faster/Mask R-CNN (e.g. "
                   "mask_rcnn_fpn_resnet50_v1b_coco) run through frcnn_ops.patch_gluoncv; masks "
                   "of a Mask R-CNN are drawn (needs gluoncv)")
    p.add_argument("--max-detections", type=int,
                   help="--gluoncv Mask R-CNN: masks are computed for this many top detections "
                   "(GluonCV's rcnn_max_dets; default: the model's, 1000 for its COCO models)")
    p.add_argument("--random-init", action="store_true",
                   help="no weights: random initialisation (a smoke run; detections are noise)")
    p.add_argument("--out", default="detections", help="folder for the PNGs (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=0.5, help="detection score to draw/print")
    p.add_argument("--rpn-threshold", type=float, default=0.5,
                   help="objectness of the pre-NMS RPN proposals to draw")
    p.add_argument("--short", type=int, help="input short side (default: the size the weights "
                   "were trained at, from PARAMS.json, else 600)")
    p.add_argument("--max-size", type=int, help="input long side cap (default: as --short, "
                   "else 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: convolutions and dense layers in bfloat16 (needs AVX512-BF16; "
                   "default: %(default)s)")
    return p.parse_args(argv)


def paste_mask(mask: np.ndarray, box: Sequence[float], hw: Tuple[int, int],
               thresh: float = 0.5) -> np.ndarray:
    """A Mask R-CNN's M x M mask probabilities of one detection pasted into its box on an
    image of size ``hw``, as GluonCV's ``data.transforms.mask.fill`` (fast_fill) does: the
    mask padded by one cell, the box widened to match ((M + 2) / M), rounded to pixels,
    bilinear resize (PIL), > ``thresh``. A bool (H, W) array, False outside the box."""
    from PIL import Image
    h, w = hw
    m_h, m_w = mask.shape
    padded = np.pad(np.asarray(mask, np.float32), 1)
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    hw_, hh = (x2 - x1) / 2 * (m_w + 2.0) / m_w, (y2 - y1) / 2 * (m_h + 2.0) / m_h
    x1, y1 = int(np.round(cx - hw_)), int(np.round(cy - hh))
    x2, y2 = int(np.round(cx + hw_)), int(np.round(cy + hh))
    bw, bh = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
    pasted = np.array(Image.fromarray(padded).resize((bw, bh), Image.BILINEAR)) > thresh
    out = np.zeros((h, w), bool)
    xx1, yy1, xx2, yy2 = max(0, x1), max(0, y1), min(w, x2 + 1), min(h, y2 + 1)
    if xx2 > xx1 and yy2 > yy1:
        out[yy1:yy2, xx1:xx2] = pasted[yy1 - y1:yy2 - y1, xx1 - x1:xx2 - x1]
    return out


def _draw(path, img, boxes, labels=None, color="lime", title="", masks=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    h, w = img.shape[:2]
    fig = plt.figure(figsize=(w / 100.0, h / 100.0), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    if masks is not None and len(masks):
        # blended into the pixels (not an imshow layer, which matplotlib resamples)
        img = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
        for i, m in enumerate(masks):
            img[m] = (1 - MASK_ALPHA) * img[m] + MASK_ALPHA * np.array(
                MASK_COLORS[i % len(MASK_COLORS)], np.float32)
    ax.imshow(img, interpolation="nearest")
    ax.set_axis_off()
    for i, b in enumerate(boxes):
        ax.add_patch(plt.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False,
                                   edgecolor=color, linewidth=1.5 if labels else 0.6))
        if labels:
            ax.text(b[0], b[1] - 2, labels[i], fontsize=8, color="white",
                    bbox=dict(facecolor=color, alpha=0.7, pad=1, edgecolor="none"))
    if title:
        ax.text(5, 15, title, fontsize=10, color="white",
                bbox=dict(facecolor="black", alpha=0.6, pad=2, edgecolor="none"))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _outputs(net, x):
    """(ids, scores, boxes, masks or None) of image 0 as NumPy arrays."""
    out = net(x)
    ids, scores, bboxes = out[0][0, :, 0].asnumpy(), out[1][0, :, 0].asnumpy(), \
        out[2][0].asnumpy()
    masks = out[3][0].asnumpy() if len(out) > 3 else None
    return ids, scores, bboxes, masks


def _detect_image(net: FasterRCNN, args: argparse.Namespace, path: str, x: mx.nd.NDArray,
                  shown: np.ndarray) -> None:
    """One image: the timed forward, the four figures, a JSON line per detection."""
    import mxnet as mx
    from ..data.presets import boxes_to_original
    from ..modeling.faster_rcnn import stages
    original = mx.image.imread(path).shape[:2]
    net(x)[0].wait_to_read()  # warm-up (graph build, allocation)
    t0 = time.perf_counter()
    ids, scores, bboxes, masks = _outputs(net, x)
    elapsed = time.perf_counter() - t0
    keep = (scores >= args.threshold) & (ids >= 0)
    order = np.argsort(-scores[keep], kind="stable")
    det_ids, det_scores, det_boxes = ids[keep][order], scores[keep][order], bboxes[keep][order]
    pasted = None
    if masks is not None:  # Mask R-CNN: each kept detection's mask in the shown image
        pasted = [paste_mask(m, b, shown.shape[:2]) for m, b in zip(masks[keep][order],
                                                                     det_boxes)]
    stem = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0])
    _draw(stem + "_1_input.png", shown, [], title="input %dx%d" % shown.shape[:2])
    if not args.gluoncv:  # the RPN figures read our network's blocks and settings
        inter = stages(net, x)  # eager pass for the intermediate figures
        rpn = inter["rpn_boxes"][inter["rpn_scores"] >= args.rpn_threshold]
        _draw(stem + "_2_rpn.png", shown, rpn, color="yellow",
              title="RPN proposals, objectness >= %.2f: %d" % (args.rpn_threshold, len(rpn)))
        props = inter["proposals"][inter["proposals"][:, 0] > 0, 1:]
        _draw(stem + "_3_proposals.png", shown, props, color="cyan",
              title="proposals after NMS: %d" % len(props))
    names = [net.classes[int(i)] for i in det_ids]
    _draw(stem + "_4_detections.png", shown, det_boxes, color="red",
          labels=["%s %.2f" % (n, s) for n, s in zip(names, det_scores)],
          title="detections >= %.2f: %d" % (args.threshold, len(det_boxes)), masks=pasted)
    orig_boxes = boxes_to_original(det_boxes, shown.shape[:2], original)
    for i, (n, s, b) in enumerate(zip(names, det_scores, orig_boxes)):
        line = {"image": path, "class": n, "score": round(float(s), 4),
                "box": [round(float(v), 1) for v in b]}
        if pasted is not None:
            line["mask_pixels"] = int(pasted[i].sum())  # in the shown (resized) image
        print(json.dumps(line))
    print("# %s: %d detections, %.1f ms (forward, %s, input %dx%d)"
          % (path, len(det_boxes), elapsed * 1e3, args.precision, shown.shape[0],
             shown.shape[1]),
          file=sys.stderr)


def _gluoncv_net(args: argparse.Namespace):
    """--gluoncv NAME: the GluonCV model (its weights from --params, or random), patched onto
    frcnn_ops; (net, (short, max_size))."""
    import mxnet as mx
    try:
        from gluoncv import model_zoo
    except ImportError as e:
        raise SystemExit("frcnn-detect: --gluoncv %s needs the gluoncv package (pip install "
                         "gluoncv), which is not importable here: %s" % (args.gluoncv, e))
    import frcnn_ops
    try:
        net = model_zoo.get_model(args.gluoncv, pretrained=False, pretrained_base=False)
    except (ValueError, KeyError) as e:
        raise SystemExit("frcnn-detect: --gluoncv %s: not a GluonCV model-zoo name (%s)"
                         % (args.gluoncv, str(e).splitlines()[0][:200]))
    if args.params:
        from .common import check_params_file
        check_params_file(args.params, "frcnn-detect")
        try:
            net.load_parameters(args.params)
        except Exception as e:  # noqa: BLE001 - MXNet's missing/shape errors: name the file
            from ..training.checkpoint import describe_error
            raise SystemExit("frcnn-detect: --params %s does not fit GluonCV's %s: %s"
                             % (args.params, args.gluoncv, describe_error(e)))
    else:
        mx.random.seed(args.seed)
        # Normal: GluonCV's FPN SymbolBlock gets the global initializer for its biases too,
        # which Xavier refuses (1-D)
        net.initialize(mx.init.Normal(0.01))
    if args.max_detections is not None:
        if args.max_detections < 1 or not hasattr(net, "_rcnn_max_dets"):
            raise SystemExit("frcnn-detect: --max-detections %d: needs a --gluoncv Mask R-CNN "
                             "and a count >= 1" % args.max_detections)
        net._rcnn_max_dets = args.max_detections
    try:
        frcnn_ops.patch_gluoncv(net, precision=args.precision)
    except (TypeError, ValueError, RuntimeError) as e:
        raise SystemExit("frcnn-detect: --gluoncv %s: %s" % (args.gluoncv, e))
    return net, (getattr(net, "short", 600), getattr(net, "max_size", 1000))


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .threads import load_mxnet, use_all_cpus
    use_all_cpus()  # before MXNet is imported
    args = _parse(sys.argv[1:] if argv is None else argv)
    load_mxnet()
    if not args.params and not args.random_init:
        print("frcnn-detect: weights are needed: pass --params FILE (one saved by frcnn_model, "
              "or a GluonCV save_parameters file of %s), or --random-init [--model NAME] for a "
              "smoke run with random weights" % " or ".join(MODEL_NAMES), file=sys.stderr)
        return 2
    if args.params and args.random_init:
        print("frcnn-detect: --params and --random-init exclude each other", file=sys.stderr)
        return 2
    if args.gluoncv and args.model:
        print("frcnn-detect: --model and --gluoncv exclude each other (--gluoncv %s names the "
              "network)" % args.gluoncv, file=sys.stderr)
        return 2
    for path in [args.params] if args.params else []:
        if not os.path.isfile(path):
            print("frcnn-detect: --params %s: no such file" % path, file=sys.stderr)
            return 2
    import mxnet as mx
    from ..data.presets import load_test
    from ..modeling.faster_rcnn import default_input_size, model_spec
    from .common import (check_precision_cli, load_model_checked, model_for_params,
                         random_model)

    check_precision_cli(args.precision, "frcnn-detect")
    if args.gluoncv:
        net, (short, max_size) = _gluoncv_net(args)
    elif args.params:
        model_for_params(args.params, args.model, "frcnn-detect")
        net = load_model_checked(args.params, "frcnn-detect", precision=args.precision)
        short, max_size = default_input_size(model_spec(args.params))
    else:
        net = random_model(args.model or MODEL_NAMES[0], "frcnn-detect",
                           precision=args.precision)
        short, max_size = default_input_size(net.spec)
        mx.random.seed(args.seed)
        net.initialize(mx.init.Xavier())
    args.short = args.short or short
    args.max_size = args.max_size or max_size
    if not args.gluoncv or not hasattr(net, "mask"):  # GluonCV's Mask R-CNN: imperative
        net.hybridize(static_alloc=True, static_shape=True)
    os.makedirs(args.out, exist_ok=True)
    for path in args.images:
        try:
            x, shown = load_test(path, args.short, args.max_size)
        except Exception as e:  # noqa: BLE001 - unreadable image: say which and go on
            print("frcnn-detect: %s: cannot read the image (%s)" % (path, e), file=sys.stderr)
            continue
        _detect_image(net, args, path, x, shown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
