"""Calls every CUDA kernel of frcnn_ops once per configuration, for compute-sanitizer
(tools/gpu_check.sh runs it under memcheck, racecheck, synccheck and initcheck), and the
smoke test of the GPU check.

    python tools/gpu_driver.py              every kernel, forward and backward, float32/64/16,
                                            edge sizes (0, 1, 63, 64, 65 rows, a few hundred rois)
    python tools/gpu_driver.py --smoke      import, build_info, one call of each op on the
                                            device compared with the CPU kernels (NumPy)
    --numpy                                 NumPy stands in for CuPy (the CPU kernels; float16
                                            is left out): the dry run of tools/gpu_check.sh

On the device CuPy's memory pool is off (``cupy.cuda.set_allocator(None)``): every array and
every workspace is its own cudaMalloc, so the sanitizer's bounds are the arrays' exact bounds.
Every call is followed by a device synchronize so that a fault is reported at its call. The
last line is ``driver: <n> calls, <m> rejected, ok`` (exit 0) or an exception (exit 1).
"""
import argparse
import gc
import os
import sys

import numpy as np

EDGE_ROWS = (0, 1, 63, 64, 65)


class Backend:
    def __init__(self, use_numpy):
        self.numpy = use_numpy
        if use_numpy:
            self.xp = np
            self.dtypes = ("float32", "float64")
        else:
            import cupy
            cupy.cuda.set_allocator(None)            # exact bounds: no pool
            cupy.cuda.set_pinned_memory_allocator(None)
            self.xp = cupy
            self.dtypes = ("float32", "float64", "float16")
        self.calls = 0
        self.rejected = 0

    def arr(self, a, dtype):
        return self.xp.asarray(np.asarray(a).astype(dtype))

    def host(self, a):
        return a if self.numpy else self.xp.asnumpy(a)

    def sync(self):
        if not self.numpy:
            self.xp.cuda.Device().synchronize()

    def call(self, what, fn, *args, **kw):
        """One op call, synchronized; a ValueError (the host-side shape checks) counts as a
        rejection: no kernel ran."""
        try:
            out = fn(*args, **kw)
        except ValueError as e:
            self.rejected += 1
            if os.environ.get("GPU_DRIVER_VERBOSE"):
                print("rejected %s: %s" % (what, e))
            return None
        self.sync()
        self.calls += 1
        return out


# ---- inputs -------------------------------------------------------------------------------

def anchors(rng, n, fmt="corner", hw=(600, 800)):
    xy = rng.uniform(0, 1, size=(n, 2)) * np.array(hw[::-1]) * 0.9
    wh = rng.uniform(8, 200, size=(n, 2))
    if fmt == "center":
        return np.concatenate([xy + wh / 2, wh], axis=1)[None]
    return np.concatenate([xy, xy + wh], axis=1)[None]


def boxes_with_scores(rng, b, n, ids=0, hw=(600, 800)):
    """(b, n, 5 or 6): [id,] score, x1, y1, x2, y2 with overlapping clusters."""
    centers = rng.uniform(0, 1, size=(b, max(n // 8, 1), 2)) * np.array(hw[::-1])
    pick = rng.integers(0, centers.shape[1], size=(b, n))
    c = np.take_along_axis(centers, pick[..., None], axis=1) + rng.normal(0, 6, size=(b, n, 2))
    wh = rng.uniform(20, 120, size=(b, n, 2))
    cols = [rng.uniform(0, 1, size=(b, n, 1)), c - wh / 2, c + wh / 2]
    if ids:
        cols.insert(0, rng.integers(0, ids, size=(b, n, 1)).astype(np.float64))
    return np.concatenate(cols, axis=2)


def rois(rng, r, n_batch=2, hw=(600, 800), bad=True):
    xy = rng.uniform(-20, 1, size=(r, 2)) * np.array(hw[::-1])
    xy = np.abs(xy) % np.array(hw[::-1])
    wh = rng.uniform(0, 300, size=(r, 2))
    out = np.concatenate([rng.integers(0, n_batch, size=(r, 1)), xy, xy + wh], axis=1)
    if bad and r >= 4:
        out[0, 0] = -1          # bad batch index: zero roi
        out[1, 0] = n_batch     # bad batch index
        out[2, 1:] = [10, 10, 5, 5]   # inverted roi
        out[3, 1:] = [-40, -40, 900, 700]  # past every border
    return out


# ---- the ops ------------------------------------------------------------------------------

def drive_box_ops(be, rng, fo):
    for dt in be.dtypes:
        for n in EDGE_ROWS + (300,):
            for B, AB in ((1, 1), (2, 1), (2, 2)):
                for fmt in ("corner", "center"):
                    for clip in (-1.0, 1.0):
                        d = be.arr(rng.normal(0, 0.5, size=(B, n, 4)), dt)
                        a = be.arr(np.concatenate([anchors(rng, n, fmt)] * AB), dt)
                        kw = dict(std0=0.1, std1=0.1, std2=0.2, std3=0.2, clip=clip, format=fmt)
                        out = be.call("box_decode", fo.box_decode, d, a, **kw)
                        g = be.arr(rng.normal(size=(B, n, 4)), dt)
                        be.call("box_decode_backward", fo.box_decode_backward, g, d, a, **kw)
                if out is None:
                    continue
                info = be.arr(np.array([[600, 800, 1], [300, 500, 1]][:B]), dt)
                be.call("clip_boxes", fo.clip_boxes, out, info)
                be.call("clip_boxes_backward", fo.clip_boxes_backward,
                        be.arr(rng.normal(size=(B, n, 4)), dt), out, info)


def drive_proposal(be, rng, fo):
    for dt in be.dtypes:
        for n, pre, post in ((0, 1, 1), (1, 1, 1), (63, 64, 16), (64, 64, 64), (65, 64, 32), (300, 200, 50),
                             (2000, 1000, 300), (2000, 6000, 300)):
            for B, per_image in ((1, False), (2, False), (2, True)):
                if post > pre:
                    continue
                s = be.arr(rng.uniform(-0.1, 1, size=(B, n, 1)), dt)
                d = be.arr(rng.normal(0, 0.2, size=(B, n, 4)), dt)
                a = be.arr(np.concatenate([anchors(rng, n)] * (B if per_image else 1)), dt)
                info = be.arr(np.array([[600, 800, 1], [375, 500, 1]][:B]), dt)
                be.call("proposal", fo.proposal, s, d, a, info, pre, post, threshold=0.7,
                        rpn_min_size=16, std0=0.1, std1=0.1, std2=0.2, std3=0.2)
                if n >= 3 and pre >= 3:  # FPN levels, GluonCV's per_level_nms
                    levels = [n // 2, 0, n - n // 2]
                    be.call("proposal per_level_nms", fo.proposal, s, d, a, info, pre, post,
                            threshold=0.7, rpn_min_size=16, level_sizes=levels,
                            per_level_nms=True)


def drive_nms(be, rng, fo):
    cases = [
        dict(overlap_thresh=0.7, coord_start=1, score_index=0, force_suppress=True),
        dict(overlap_thresh=0.5, coord_start=2, score_index=1, id_index=0, topk=50),
        dict(overlap_thresh=0.3, coord_start=2, score_index=1, id_index=0, background_id=0,
             valid_thresh=0.05, topk=400),
        dict(overlap_thresh=0.5, coord_start=2, score_index=1, id_index=0, force_suppress=True),
        dict(overlap_thresh=0.5, coord_start=2, score_index=1, id_index=0, in_format="center",
             out_format="center"),
        dict(overlap_thresh=0.5, coord_start=2, score_index=1, id_index=0, in_format="center",
             out_format="corner"),
        dict(overlap_thresh=0.5, coord_start=2, score_index=1, id_index=0, topk=0),
    ]
    for dt in be.dtypes:
        for n in EDGE_ROWS + (300, 1500):
            for kw in cases:
                ids = 5 if kw.get("id_index", -1) >= 0 else 0
                for lead in ((1,), (3,), (2, 2)):
                    b = int(np.prod(lead))
                    x = boxes_with_scores(rng, b, n, ids).reshape(lead + (n, 6 if ids else 5))
                    be.call("nms", fo.nms, be.arr(x, dt), **kw)


def drive_roi_align(be, rng, fo):
    configs = [  # pooled, sample_ratio, position_sensitive, aligned, spatial_scale
        ((7, 7), 2, False, False, 1 / 16),
        ((14, 14), 2, False, False, 1 / 16),
        ((3, 5), -1, False, False, 1 / 16),
        ((7, 7), 0, False, True, 1 / 16),
        ((2, 2), 1, False, True, 0.25),
        ((3, 3), 2, True, False, 1 / 16),
        ((2, 2), -1, True, True, 0.5),
    ]
    N, H, W = 2, 19, 26
    for dt in be.dtypes:
        for R in EDGE_ROWS + (300,):
            for ps, sr, psn, al, scale in configs:
                C = 2 * ps[0] * ps[1] if psn else 16
                data = be.arr(rng.normal(size=(N, C, H, W)), dt)
                r = be.arr(rois(rng, R), dt)
                kw = dict(pooled_size=ps, spatial_scale=scale, sample_ratio=sr,
                          position_sensitive=psn, aligned=al)
                out = be.call("roi_align", fo.roi_align, data, r, **kw)
                if out is None:
                    continue
                g = be.arr(rng.normal(size=out.shape), dt)
                for det in (False, True):
                    be.call("roi_align_backward", fo.roi_align_backward, g, r, data.shape,
                            deterministic=det, **kw)


def fpn_rois(rng, r, n_batch=2, hw=(256, 384)):
    """Rois of every FPN level's size (16 to 400 px), a few bad ones (batch -1, NaN)."""
    side = np.exp(rng.uniform(np.log(16), np.log(400), size=r))
    xy = rng.uniform(0, 1, size=(r, 2)) * (np.array(hw[::-1]) - side[:, None])
    out = np.concatenate([rng.integers(0, n_batch, size=(r, 1)), xy, xy + side[:, None]], 1)
    if r >= 4:
        out[0, 0] = -1
        out[1, 1] = np.nan
    return out


def drive_multilevel(be, rng, fo):
    """frcnn_multilevel_roi_align (fwd, bwd) over P2-P5 and frcnn_multilevel_proposal."""
    N, C, hw = 2, 8, (256, 384)
    shapes = [(N, C, hw[0] // s, hw[1] // s) for s in (4, 8, 16, 32)]
    for dt in be.dtypes:
        feats = [be.arr(rng.normal(size=sh), dt) for sh in shapes]
        for R in EDGE_ROWS + (300,):
            r = be.arr(fpn_rois(rng, R), dt)
            for ps, sr, al in (((7, 7), 2, False), ((14, 14), 0, True)):
                kw = dict(pooled_size=ps, sample_ratio=sr, aligned=al)
                out = be.call("multilevel_roi_align", fo.multilevel_roi_align, r, feats, **kw)
                if out is None:
                    continue
                g = be.arr(rng.normal(size=out.shape), dt)
                for det in (False, True):
                    be.call("multilevel_roi_align_backward", fo.multilevel_roi_align_backward,
                            g, r, shapes, deterministic=det, **kw)
        sizes = [0, 1, 63, 64, 65, 700]
        for B in (1, 2):
            s = [be.arr(rng.uniform(-0.1, 1, size=(B, n, 1)), dt) for n in sizes]
            d = [be.arr(rng.normal(0, 0.2, size=(B, n, 4)), dt) for n in sizes]
            a = be.arr(anchors(rng, sum(sizes)), dt)
            info = be.arr(np.array([[600, 800, 1], [375, 500, 1]][:B]), dt)
            for pre, post, per_level in ((6000, 300, False), (100, 50, True), (64, 64, True)):
                be.call("multilevel_proposal", fo.multilevel_proposal, s, d, a, info, pre, post,
                        threshold=0.7, rpn_min_size=16, per_level_nms=per_level)


# ---- smoke --------------------------------------------------------------------------------

def smoke(be, rng, fo):
    """One call of each op on the device (or NumPy) against the CPU kernels."""
    info = fo.build_info()
    print("build_info:", info)
    if not be.numpy:
        dev = be.xp.cuda.Device()
        print("device: %s, compute capability %s" % (
            be.xp.cuda.runtime.getDeviceProperties(dev.id)["name"].decode(),
            dev.compute_capability))
        if not info["cuda"]:
            raise SystemExit("smoke: this build has no CUDA kernels")
    results = []

    def compare(name, dev_out, cpu_out, rtol=1e-5, atol=1e-4):
        got = be.host(dev_out)
        ok = got.shape == cpu_out.shape and np.allclose(got, cpu_out, rtol=rtol, atol=atol,
                                                         equal_nan=True)
        diff = float(np.nanmax(np.abs(got - cpu_out))) if got.shape == cpu_out.shape \
            and got.size else 0.0
        print("  %-20s %-5s max abs diff %.2e" % (name, "ok" if ok else "FAIL", diff))
        results.append(ok)

    f32 = np.float32
    d = rng.normal(0, 0.3, size=(2, 500, 4)).astype(f32)
    a = anchors(rng, 500).astype(f32)
    info2 = np.array([[600, 800, 1], [375, 500, 1]], f32)
    kw = dict(std0=0.1, std1=0.1, std2=0.2, std3=0.2, format="corner")
    x = be.arr
    boxes = fo.box_decode(d, a, **kw)
    compare("box_decode", fo.box_decode(x(d, f32), x(a, f32), **kw), boxes, atol=1e-3)
    g = rng.normal(size=d.shape).astype(f32)
    compare("box_decode_backward", fo.box_decode_backward(x(g, f32), x(d, f32), x(a, f32), **kw),
            fo.box_decode_backward(g, d, a, **kw), atol=1e-3)
    compare("clip_boxes", fo.clip_boxes(x(boxes, f32), x(info2, f32)),
            fo.clip_boxes(boxes, info2))
    compare("clip_boxes_backward", fo.clip_boxes_backward(x(g, f32), x(boxes, f32),
                                                          x(info2, f32)),
            fo.clip_boxes_backward(g, boxes, info2))
    s = rng.uniform(size=(2, 500, 1)).astype(f32)
    pkw = dict(threshold=0.7, rpn_min_size=16, std0=0.1, std1=0.1, std2=0.2, std3=0.2)
    compare("proposal", fo.proposal(x(s, f32), x(d, f32), x(a, f32), x(info2, f32), 400, 100,
                                    **pkw),
            fo.proposal(s, d, a, info2, 400, 100, **pkw), atol=1e-3)
    det = boxes_with_scores(rng, 2, 300, ids=4).astype(f32)
    nkw = dict(overlap_thresh=0.5, topk=200, id_index=0)
    compare("nms", fo.nms(x(det, f32), **nkw), fo.nms(det, **nkw), rtol=0, atol=0)
    feat = rng.normal(size=(2, 32, 19, 26)).astype(f32)
    r = rois(rng, 60).astype(f32)
    rkw = dict(pooled_size=(7, 7), spatial_scale=1 / 16, sample_ratio=2)
    out = fo.roi_align(feat, r, **rkw)
    compare("roi_align", fo.roi_align(x(feat, f32), x(r, f32), **rkw), out)
    gr = rng.normal(size=out.shape).astype(f32)
    exp = fo.roi_align_backward(gr, r, feat.shape, **rkw)
    for det_bwd in (False, True):
        compare("roi_align_backward" + (" det" if det_bwd else ""),
                fo.roi_align_backward(x(gr, f32), x(r, f32), feat.shape,
                                      deterministic=det_bwd, **rkw), exp, atol=1e-4)
    fshapes = [(2, 8, 64 // k, 96 // k) for k in (1, 2, 4, 8)]
    feats = [rng.normal(size=sh).astype(f32) for sh in fshapes]
    fr = fpn_rois(rng, 80, hw=(256, 384)).astype(f32)
    mkw = dict(pooled_size=(7, 7), sample_ratio=2)
    out = fo.multilevel_roi_align(fr, feats, **mkw)
    compare("multilevel_roi_align", fo.multilevel_roi_align(x(fr, f32), [x(f, f32) for f in feats],
                                                            **mkw), out)
    gm = rng.normal(size=out.shape).astype(f32)
    exp = fo.multilevel_roi_align_backward(gm, fr, fshapes, **mkw)
    for det_bwd in (False, True):
        got = fo.multilevel_roi_align_backward(x(gm, f32), x(fr, f32), fshapes,
                                               deterministic=det_bwd, **mkw)
        for k in range(len(fshapes)):
            compare("multilevel_bwd_p%d%s" % (k + 2, " det" if det_bwd else ""), got[k], exp[k])
    sizes = (300, 100, 40)
    ls = [rng.uniform(size=(2, n, 1)).astype(f32) for n in sizes]
    ld = [rng.normal(0, 0.3, size=(2, n, 4)).astype(f32) for n in sizes]
    la = anchors(rng, sum(sizes)).astype(f32)
    compare("multilevel_proposal",
            fo.multilevel_proposal([x(v, f32) for v in ls], [x(v, f32) for v in ld], x(la, f32),
                                   x(info2, f32), 200, 50, per_level_nms=True, **pkw),
            fo.multilevel_proposal(ls, ld, la, info2, 200, 50, per_level_nms=True, **pkw),
            atol=1e-3)
    be.sync()
    be.calls += len(results)
    if not all(results):
        raise SystemExit("smoke: %d of %d ops differ from the CPU kernels"
                         % (len(results) - sum(results), len(results)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--numpy", action="store_true", help="NumPy stands in for CuPy (dry run)")
    p.add_argument("--smoke", action="store_true", help="one call of each op vs the CPU")
    p.add_argument("--only", default="box,proposal,nms,roi_align,multilevel",
                   help="comma list of box, proposal, nms, roi_align, multilevel (default: all)")
    args = p.parse_args(argv)
    be = Backend(args.numpy)
    import frcnn_ops as fo
    rng = np.random.default_rng(0)
    print("driver: %s, dtypes %s" % ("NumPy stands in for CuPy" if be.numpy else
                                     "CuPy, memory pool off", ", ".join(be.dtypes)))
    if args.smoke:
        smoke(be, rng, fo)
    else:
        steps = {"box": drive_box_ops, "proposal": drive_proposal, "nms": drive_nms,
                 "roi_align": drive_roi_align, "multilevel": drive_multilevel}
        for name in args.only.split(","):
            before = be.calls
            steps[name](be, rng, fo)
            gc.collect()
            print("  %-10s %d calls" % (name, be.calls - before))
            sys.stdout.flush()
    gc.collect()
    be.sync()
    print("driver: %d calls, %d rejected, ok" % (be.calls, be.rejected))
    return 0


if __name__ == "__main__":
    sys.exit(main())
