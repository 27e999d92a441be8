"""SyntheticShapes utilities: the preview grid (docs/synthetic_shapes.png) and a render timer.

    python tools/synthetic_shapes.py preview [docs/synthetic_shapes.png]
    python tools/synthetic_shapes.py bench [--size 256] [--n 500] [--repeat 5]

The timer reports the best and median of ``repeat`` passes over ``n`` images (the machine may be
shared: the best pass is the one to quote). A benchmark, not a test: nothing is asserted.
"""
import argparse
import statistics
import time

from frcnn_model.data.datasets import SyntheticShapes, preview


def bench(size=256, n=500, repeat=5, seed=0):
    ds = SyntheticShapes(n, seed=seed, size=size)
    ds[0]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for i in range(n):
            ds[i]
        times.append((time.perf_counter() - t) / n * 1e3)
    return min(times), statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("preview")
    p.add_argument("path", nargs="?", default="docs/synthetic_shapes.png")
    b = sub.add_parser("bench")
    b.add_argument("--size", type=int, default=256)
    b.add_argument("--n", type=int, default=500)
    b.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    if args.cmd == "preview":
        print(preview(args.path))
    else:
        best, med = bench(args.size, args.n, args.repeat)
        print("SyntheticShapes %dx%d: %.3f ms/image best, %.3f median (%d images x %d)"
              % (args.size, args.size, best, med, args.n, args.repeat))


if __name__ == "__main__":
    main()
