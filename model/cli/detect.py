"""frcnn-detect: run the Faster R-CNN on images and draw what it sees at each stage.

    frcnn-detect IMAGE... --params FILE [--out DIR] [--threshold 0.5]

For each image it writes four PNGs, the figures of a Faster R-CNN walkthrough:
  <name>_1_input.png        the network input (resized as GluonCV's preset does)
  <name>_2_rpn.png          RPN proposals before NMS with objectness >= --rpn-threshold
  <name>_3_proposals.png    the proposals kept after NMS (the ROIs of the head)
  <name>_4_detections.png   the final detections >= --threshold with class names and scores
and prints one JSON line per detection (boxes in the original image's pixels) and the time per
image (the network forward, after a warm-up).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    import mxnet as mx

    from ..modeling.faster_rcnn import FasterRCNN


def _parse(argv):
    p = argparse.ArgumentParser(prog="frcnn-detect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", help="JPEG or PNG files")
    p.add_argument("--params", help="weights: a GluonCV faster_rcnn_resnet50_v1b_voc "
                   "save_parameters file or one saved by frcnn_model")
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


def _draw(path, img, boxes, labels=None, color="lime", title=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    h, w = img.shape[:2]
    fig = plt.figure(figsize=(w / 100.0, h / 100.0), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(img)
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


def _detect_image(net: FasterRCNN, args: argparse.Namespace, path: str, x: mx.nd.NDArray,
                  shown: np.ndarray) -> None:
    """One image: the timed forward, the four figures, a JSON line per detection."""
    import mxnet as mx
    from ..data.presets import boxes_to_original
    from ..modeling.faster_rcnn import stages
    original = mx.image.imread(path).shape[:2]
    net(x)[0].wait_to_read()  # warm-up (graph build, allocation)
    t0 = time.perf_counter()
    ids, scores, bboxes = net(x)
    scores.wait_to_read()
    elapsed = time.perf_counter() - t0
    inter = stages(net, x)  # eager pass for the intermediate figures
    ids, scores, bboxes = ids[0, :, 0].asnumpy(), scores[0, :, 0].asnumpy(), bboxes[0].asnumpy()
    keep = scores >= args.threshold
    order = np.argsort(-scores[keep], kind="stable")
    det_ids, det_scores, det_boxes = ids[keep][order], scores[keep][order], bboxes[keep][order]
    stem = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0])
    _draw(stem + "_1_input.png", shown, [], title="input %dx%d" % shown.shape[:2])
    rpn = inter["rpn_boxes"][inter["rpn_scores"] >= args.rpn_threshold]
    _draw(stem + "_2_rpn.png", shown, rpn, color="yellow",
          title="RPN proposals, objectness >= %.2f: %d" % (args.rpn_threshold, len(rpn)))
    props = inter["proposals"][inter["proposals"][:, 0] > 0, 1:]
    _draw(stem + "_3_proposals.png", shown, props, color="cyan",
          title="proposals after NMS: %d" % len(props))
    names = [net.classes[int(i)] for i in det_ids]
    _draw(stem + "_4_detections.png", shown, det_boxes, color="red",
          labels=["%s %.2f" % (n, s) for n, s in zip(names, det_scores)],
          title="detections >= %.2f: %d" % (args.threshold, len(det_boxes)))
    orig_boxes = boxes_to_original(det_boxes, shown.shape[:2], original)
    for n, s, b in zip(names, det_scores, orig_boxes):
        print(json.dumps({"image": path, "class": n, "score": round(float(s), 4),
                          "box": [round(float(v), 1) for v in b]}))
    print("# %s: %d detections, %.1f ms (forward, %s, input %dx%d)"
          % (path, len(det_boxes), elapsed * 1e3, args.precision, shown.shape[0],
             shown.shape[1]),
          file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .threads import use_all_cpus
    use_all_cpus()  # before MXNet is imported
    args = _parse(sys.argv[1:] if argv is None else argv)
    if not args.params and not args.random_init:
        print("frcnn-detect: weights are needed: pass --params FILE (a GluonCV "
              "faster_rcnn_resnet50_v1b_voc save_parameters file, or one saved by frcnn_model), "
              "or --random-init for a smoke run with random weights", file=sys.stderr)
        return 2
    for path in [args.params] if args.params else []:
        if not os.path.isfile(path):
            print("frcnn-detect: --params %s: no such file" % path, file=sys.stderr)
            return 2
    import mxnet as mx
    from ..data.presets import load_test
    from ..modeling.faster_rcnn import faster_rcnn_resnet50_v1b_voc, model_spec
    from .common import check_precision_cli, load_model_checked

    check_precision_cli(args.precision, "frcnn-detect")
    net = load_model_checked(args.params, "frcnn-detect", precision=args.precision) \
        if args.params else None
    short, max_size = (model_spec(args.params).get("input_size") if args.params else None) \
        or (600, 1000)
    args.short = args.short or short
    args.max_size = args.max_size or max_size
    if net is None:
        net = faster_rcnn_resnet50_v1b_voc(precision=args.precision)
        mx.random.seed(args.seed)
        net.initialize(mx.init.Xavier())
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
