"""roi_align at the seed's shape (300 rois on 1x1024x38x50, pooled 14x14, spatial_scale 1/16,
sample_ratio 2) against mx.nd.contrib.ROIAlign, forward and forward+backward (autograd with a
head gradient), and against torchvision.ops.roi_align on the CPU when torchvision is installed
(ours through NumPy then: frcnn_ops.roi_align and _C.roi_align_backward), plus small sweeps
over the number of rois and channels.

    pytest benchmarks/bench_roi_align.py --benchmark-only --benchmark-group-by=group
    pytest benchmarks/bench_roi_align.py --benchmark-only --benchmark-group-by=group -k seed

contrib's forward+backward is single-threaded and slow (~4 s at the seed shape on 2 cores), so
it runs a fixed 2 rounds and is left out of the large sweep points.
"""
import pytest

from benchutil import mx_sync
from frcnn_ops.bench.cases import numpy_roi_align_fns, roi_kw
from shapes import FEAT_C, feature_map, roi_head_grad, seed_rois

IMPLS = ["frcnn_ops", "mx.contrib"]


def _op(mx, impl):
    return mx.nd.frcnn_roi_align if impl == "frcnn_ops" else mx.nd.contrib.ROIAlign


def forward_fn(mx, impl, rois, channels):
    x = mx.nd.array(feature_map(channels))
    r = mx.nd.array(rois)
    op = _op(mx, impl)
    return mx_sync(lambda: op(x, r, **roi_kw()))


def fwd_bwd_fn(mx, impl, rois, channels):
    x = mx.nd.array(feature_map(channels))
    x.attach_grad()
    r = mx.nd.array(rois)
    op = _op(mx, impl)
    head = mx.nd.array(roi_head_grad(rois.shape[0], channels))

    def step():
        with mx.autograd.record():
            y = op(x, r, **roi_kw())
        y.backward(head)
        return x.grad
    return mx_sync(step)


def _run(benchmark, impl, fn, slow):
    if impl == "mx.contrib" and slow:
        benchmark.pedantic(fn, rounds=2, iterations=1, warmup_rounds=0)
    else:
        benchmark(fn)


def numpy_fn(impl, backward):
    """Ours through NumPy, or torchvision.ops.roi_align on CPU tensors (seed shape)."""
    if impl == "frcnn_ops.numpy":
        return numpy_roi_align_fns(None, None, backward)[0]
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    return numpy_roi_align_fns(torch, tv, backward)[1]


# ---- The seed shape -----------------------------------------------------------------------

SEED_IMPLS = IMPLS + ["frcnn_ops.numpy", "torchvision"]


@pytest.mark.parametrize("impl", SEED_IMPLS)
def test_seed_forward(benchmark, mx, impl):
    benchmark.group = "roi_align seed fwd: 300 rois 1x1024x38x50 14x14 s2"
    fn = numpy_fn(impl, False) if impl not in IMPLS else forward_fn(mx, impl, seed_rois(300),
                                                                    FEAT_C)
    _run(benchmark, impl, fn, slow=False)


@pytest.mark.parametrize("impl", SEED_IMPLS)
def test_seed_forward_backward(benchmark, mx, impl):
    benchmark.group = "roi_align seed fwd+bwd: 300 rois 1x1024x38x50 14x14 s2"
    fn = numpy_fn(impl, True) if impl not in IMPLS else fwd_bwd_fn(mx, impl, seed_rois(300),
                                                                   FEAT_C)
    _run(benchmark, impl, fn, slow=True)


# ---- Sweeps (contrib only where it takes at most a few seconds) ---------------------------

@pytest.mark.parametrize("impl,rois", [(i, n) for n in (64, 1000, 2000) for i in IMPLS
                                       if not (i == "mx.contrib" and n > 1000)])
def test_sweep_rois_forward(benchmark, mx, impl, rois):
    benchmark.group = "roi_align sweep fwd: %d rois 1x1024x38x50" % rois
    _run(benchmark, impl, forward_fn(mx, impl, seed_rois(rois), FEAT_C), slow=rois > 300)


@pytest.mark.parametrize("impl,rois", [(i, n) for n in (64, 1000, 2000) for i in IMPLS
                                       if not (i == "mx.contrib" and n > 64)])
def test_sweep_rois_forward_backward(benchmark, mx, impl, rois):
    benchmark.group = "roi_align sweep fwd+bwd: %d rois 1x1024x38x50" % rois
    _run(benchmark, impl, fwd_bwd_fn(mx, impl, seed_rois(rois), FEAT_C), slow=True)


@pytest.mark.parametrize("impl,channels", [(i, c) for c in (256, 512) for i in IMPLS])
def test_sweep_channels_forward(benchmark, mx, impl, channels):
    benchmark.group = "roi_align sweep fwd: 300 rois 1x%dx38x50" % channels
    _run(benchmark, impl, forward_fn(mx, impl, seed_rois(300), channels), slow=False)


@pytest.mark.parametrize("impl,channels", [(i, c) for c in (256, 512) for i in IMPLS
                                           if not (i == "mx.contrib" and c > 256)])
def test_sweep_channels_forward_backward(benchmark, mx, impl, channels):
    benchmark.group = "roi_align sweep fwd+bwd: 300 rois 1x%dx38x50" % channels
    _run(benchmark, impl, fwd_bwd_fn(mx, impl, seed_rois(300), channels), slow=True)
