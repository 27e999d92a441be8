"""int8 backbone experiment (issue 18 item 3): MXNet oneDNN quantization of the C4 backbone.

What it measures, for a frcnn-train checkpoint of the C4 model (e.g. the synthetic-small demo):

1. Quantizes the backbone with ``frcnn_ops.int8.quantize`` (MXNet 1.9.1's oneDNN quantization,
   ``MKLDNN_QUANTIZE`` backend: convolution + BatchNorm + ReLU (+ residual add) fused and run in
   uint8/int8 with VNNI): ``net.features`` (conv1..layer3) and ``net.top_features`` (layer4,
   run on every roi), each calibrated on what the float32 model feeds it over
   ``--calib-batches`` batches of *training-set* images (inference transform, no flip). The RPN
   and RCNN heads, the frcnn_* ops (proposals, ROIAlign, decoding, NMS) and the pooling stay
   float32.
2. VOC07 mAP (``frcnn_model.evaluation.evaluate``, what frcnn-eval runs) of the float32 model
   and of the int8 one on the run's synthetic validation set (``--num-val`` images), and the
   share of one validation image's float32 detections the int8 model also has.
3. Timing in interleaved rounds (fp32, fp32-fused, int8, fp32, ...) so that the ratio survives
   a loaded machine: fp32 is the model as frcnn-eval runs it (``hybridize(static_alloc=True)``),
   fp32-fused the same with MXNet's oneDNN graph fusion (``backend='MKLDNN'``: the conv +
   BatchNorm + ReLU fusion the int8 graph has too), int8 the quantized model. For the whole
   detector on ``--time-batch`` validation images, ``features`` alone, and ``top_features``
   (layer4) alone on the rois of that batch. With ``--seed-model`` the same for the seed model
   faster_rcnn_resnet50_v1b_voc (ResNet-50, random init, calibrated on
   ``--seed-calib-images`` training images resized to ``--seed-size``'s short side and timed
   on one zero-padded to ``--seed-size``), where only the times mean something.
   A nice'd process on a shared machine is starved at times, which only slows a timing down:
   the minimum of each variant is printed besides the median.

Run (from outside the repository root, with frcnn_ops and frcnn_model importable; on a shared
machine under nice with one thread):

    frcnn-train --preset synthetic-small --num-train 600 --epochs 5 --save-dir /tmp/int8run
    OMP_NUM_THREADS=1 MXNET_OMP_MAX_THREADS=1 FRCNN_NUM_THREADS=1 nice -n 19 \
        python tools/int8_experiment.py /tmp/int8run/best.params --seed-model --json int8.json

Prints one line per measurement and, with ``--json``, writes them all to a file.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("params", help="frcnn-train checkpoint of the C4 model (its .json beside it)")
    p.add_argument("--calib-batches", type=int, default=8,
                   help="training-set batches to calibrate on (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--calib-mode", default="naive", choices=("naive", "entropy"))
    p.add_argument("--quantized-dtype", default="auto", choices=("auto", "int8", "uint8"))
    p.add_argument("--blocks", default="features,top_features",
                   help="which backbone blocks to quantize (comma-separated)")
    p.add_argument("--num-val", type=int, help="validation images (default: the run's --num-val)")
    p.add_argument("--skip-map", action="store_true", help="timings only")
    p.add_argument("--rounds", type=int, default=7,
                   help="interleaved timing rounds (fp32, fp32-fused, int8) (default: "
                   "%(default)s)")
    p.add_argument("--seed-rounds", type=int, default=5, help="the same for --seed-model")
    p.add_argument("--time-batch", type=int, default=1,
                   help="validation images per timed call (default: %(default)s)")
    p.add_argument("--seed-model", action="store_true",
                   help="also time the seed model (ResNet-50 C4, random init) fp32 vs int8")
    p.add_argument("--seed-size", default="600,800", help="seed model input H,W")
    p.add_argument("--seed-calib-images", type=int, default=1,
                   help="training images to calibrate the random-init seed model on (its times "
                   "do not depend on it; default: %(default)s)")
    p.add_argument("--json", help="write the results to this file")
    return p.parse_args(argv)


def _batches(dataset, transform, batch_size, count):
    from frcnn_model.data.transforms import iterate_batches
    out = []
    for data, labels, _ in iterate_batches(dataset, transform, batch_size, shuffle=True, seed=0,
                                           epoch=0):
        out.append((data, labels))
        if len(out) == count:
            break
    return out


def _time(fn, reps=1):
    import mxnet as mx
    t0 = time.perf_counter()
    for _ in range(reps):
        out = fn()
        mx.nd.waitall()
    del out
    return (time.perf_counter() - t0) / reps


def _rounds(name, fns, rounds, results, target_s=0.5):
    """``rounds`` interleaved timings of each of ``fns`` ({variant: callable}, in turn: fp32,
    fp32-fused, int8, fp32, ...), each the mean of enough calls to take about ``target_s``
    (at least one). On a shared machine a nice'd process is starved at times: the noise only
    slows a timing down, so the minimum of each variant is printed besides the median."""
    for fn in fns.values():  # warm-up (graph build, oneDNN primitive creation)
        _time(fn)
    reps = max(1, int(round(target_s / _time(fns["fp32"]))))
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(_time(fn, reps))
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    per_round = sorted(x / y for x, y in zip(times["fp32"], times["int8"]))
    results[name] = dict(calls_per_timing=reps, seconds=times,
                         min_s={k: min(v) for k, v in times.items()},
                         median_s={k: med(v) for k, v in times.items()},
                         int8_speedup_per_round=per_round,
                         int8_speedup_of_min=min(times["fp32"]) / min(times["int8"]))
    print("%-36s %s | int8 speed-up: of the minima %.2fx, per round %s"
          % (name, "  ".join("%s min %.1f med %.1f ms" % (k, min(v) * 1e3, med(v) * 1e3)
                             for k, v in times.items()),
             results[name]["int8_speedup_of_min"], " ".join("%.2f" % r for r in per_round)),
          flush=True)


def _time_model(tag, nets, batch, rounds, results):
    """Interleaved rounds over ``nets`` ({variant: detector}: fp32, fp32-fused, int8): the whole
    detector, ``features`` alone and ``top_features`` (layer4) alone on the batch's rois."""
    import mxnet as mx
    x = mx.nd.array(batch)
    _rounds("%s whole model %s" % (tag, "x".join(map(str, x.shape))),
            {k: (lambda n=n: n(x)) for k, n in nets.items()}, rounds, results)
    # the rois' ROIAlign output: an eager pass with a hook
    f32 = nets["fp32"]
    from frcnn_ops.int8 import _Capture   # the calibration's own input hook
    cap = _Capture()
    f32.hybridize(active=False)
    h = f32.top_features.register_forward_pre_hook(cap)
    f32(x)
    h.detach()
    f32.hybridize(static_alloc=True)
    for name, inp in (("features", x), ("top_features", cap.inputs[0])):
        fns = {}
        for k, n in nets.items():
            block = getattr(n, name)  # its own hybridized graph
            block.hybridize(static_alloc=True,
                            **({"backend": "MKLDNN"} if k == "fp32-fused" else {}))
            fns[k] = lambda b=block: b(inp)
        _rounds("%s %s %s" % (tag, name, "x".join(map(str, inp.shape))), fns, rounds, results)


def main(argv=None):
    args = _parse(sys.argv[1:] if argv is None else argv)
    import mxnet as mx
    import numpy as np
    import frcnn_ops
    import frcnn_ops.int8
    from frcnn_model.cli.common import PRESETS, synthetic_set
    from frcnn_model.data.transforms import FasterRCNNValTransform
    from frcnn_model.evaluation.evaluate import evaluate
    from frcnn_model.modeling.faster_rcnn import default_input_size, load_model, model_spec

    from frcnn_model.cli.eval import _training_args   # the checkpoint run's frcnn-train args
    run = _training_args(args.params)
    short, max_size = default_input_size(model_spec(args.params))
    side = run.get("image_size") or 160
    objects = run.get("object_size") or PRESETS["synthetic-small"]["object_size"]
    seed = run.get("seed", 0)
    train = synthetic_set(run.get("num_train") or 600, seed, side, objects)
    val = synthetic_set(args.num_val or run.get("num_val") or 300, seed + 1000, side, objects)
    tf = FasterRCNNValTransform(short=short, max_size=max_size)
    blocks = tuple(b for b in args.blocks.split(",") if b)
    results = dict(params=args.params, calib_batches=args.calib_batches,
                   batch_size=args.batch_size, calib_mode=args.calib_mode,
                   quantized_dtype=args.quantized_dtype, blocks=list(blocks),
                   mxnet=mx.__version__, threads=dict(
                       (k, os.environ.get(k)) for k in ("OMP_NUM_THREADS", "FRCNN_NUM_THREADS",
                                                        "MXNET_OMP_MAX_THREADS")),
                   loadavg_start=os.getloadavg())
    print("mxnet %s, input %dx%d, calibration: %d training batches of %d, %s, %s, blocks %s"
          % (mx.__version__, short, max_size, args.calib_batches, args.batch_size,
             args.calib_mode, args.quantized_dtype, ",".join(blocks)), flush=True)

    fp32 = load_model(args.params)
    fused = load_model(args.params)
    int8 = load_model(args.params)
    calib = [d for d, _ in _batches(train, tf, args.batch_size, args.calib_batches)]
    t0 = time.time()
    frcnn_ops.int8.quantize(int8, calib, args.calib_mode, quantized_dtype=args.quantized_dtype,
                            blocks=blocks)
    results["calibration"] = int8._frcnn_int8
    results["calibration_s"] = time.time() - t0
    print("calibrated on %d images in %.1f s" % (int8._frcnn_int8["calib_images"],
                                                  results["calibration_s"]), flush=True)
    fp32.hybridize(static_alloc=True)
    # float32 with MXNet's oneDNN graph fusion (conv + BatchNorm + ReLU (+ add)), which the
    # int8 graph has: what int8 gains beyond the fusion
    fused.hybridize(static_alloc=True, backend="MKLDNN")
    int8.hybridize(static_alloc=True)

    # agreement on a few validation images (share of fp32 detections int8 also has)
    vb = _batches(val, tf, args.batch_size, 1)[0][0]
    a, b = fp32(mx.nd.array(vb)), int8(mx.nd.array(vb))
    share, n = frcnn_ops.bf16.matched_share(a, b)
    results["matched_share_image0"] = [share, n]
    print("fp32 detections of val image 0 that int8 also has: %.1f%% of %d" % (share * 100, n),
          flush=True)

    if not args.skip_map:
        for tag, net in (("fp32", fp32), ("int8", int8)):
            t0 = time.time()
            names, values = evaluate(net, val, tf, 8)
            secs = time.time() - t0
            results["map_" + tag] = float(values[-1])
            results["eval_s_" + tag] = secs
            print("VOC07 mAP %s: %.4f (%d val images, %.1f s)" % (tag, values[-1], len(val),
                                                                  secs), flush=True)
        results["map_delta"] = results["map_int8"] - results["map_fp32"]

    tb = _batches(val, tf, args.time_batch, 1)[0][0]
    _time_model("synthetic", {"fp32": fp32, "fp32-fused": fused, "int8": int8}, tb,
                args.rounds, results)

    if args.seed_model:
        from frcnn_model import faster_rcnn_resnet50_v1b_voc
        h, w = (int(v) for v in args.seed_size.split(","))
        tf_seed = FasterRCNNValTransform(short=min(h, w), max_size=max(h, w))
        calib_seed = [d for d, _ in _batches(train, tf_seed, 1, args.seed_calib_images)]
        x = np.random.RandomState(0).randn(1, 3, h, w).astype(np.float32)
        nets = {}
        with tempfile.TemporaryDirectory() as tmp:
            for i, k in enumerate(("fp32", "fp32-fused", "int8")):
                mx.random.seed(0)
                net = faster_rcnn_resnet50_v1b_voc()
                net.initialize(mx.init.Xavier())
                net(mx.nd.array(x))  # materialise the parameters
                if i == 0:
                    net.save_parameters(os.path.join(tmp, "seed.params"))
                else:  # the same weights in all
                    net.load_parameters(os.path.join(tmp, "seed.params"))
                nets[k] = net
        t0 = time.time()
        frcnn_ops.int8.quantize(nets["int8"], calib_seed, args.calib_mode,
                                quantized_dtype=args.quantized_dtype, blocks=blocks)
        results["seed_calibration_s"] = time.time() - t0
        print("seed model calibrated on %d image(s) in %.1f s"
              % (len(calib_seed), results["seed_calibration_s"]), flush=True)
        for k, net in nets.items():
            net.hybridize(static_alloc=True, **({"backend": "MKLDNN"} if k == "fp32-fused"
                                                else {}))
        # the first calibration image (resized to the short side), zero-padded to H x W
        xb = np.zeros((1, 3, h, w), np.float32)
        c = calib_seed[0][:, :, :h, :w]
        xb[:, :, :c.shape[2], :c.shape[3]] = c
        _time_model("seed", nets, xb, args.seed_rounds, results)
    results["loadavg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
