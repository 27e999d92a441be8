"""Smoke tests of the CPU execution harness of the CUDA kernels (frcnn_ops._C_emu, built with
FRCNN_CUDA_EMULATE=1): every kernel once against the CPU path, and the harness's own checks
(launch limits, broken barriers, half conversions, the CUB emulation)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import frcnn_ops

pytestmark = pytest.mark.cuda_emu


@pytest.fixture(scope="module")
def emu():
    from frcnn_ops import _C_emu
    return _C_emu


def run_emu(fn, *args, **kw):
    with frcnn_ops.emulate_cuda():
        return fn(*args, **kw)


def boxes(rng, shape, scale=100.0):
    xy = rng.random(shape + (2,)) * scale
    wh = rng.random(shape + (2,)) * scale / 3 + 1
    return np.concatenate([xy, xy + wh], -1)


def test_module_flags(emu):
    assert emu.emulated and not emu.has_cuda
    assert frcnn_ops._C.emulated is False
    for name in ("workspace_gpu", "run_gpu", "infer_shape", "forward", "backward", "schema"):
        assert hasattr(emu, name), name
    assert [s["name"] for s in emu.schema()] == [s["name"] for s in frcnn_ops._C.schema()]


# ---- the kernels against the CPU path ---------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_box_decode_and_backward(rng, dtype):
    data = rng.standard_normal((2, 300, 4)).astype(dtype)
    anchors = boxes(rng, (1, 300)).astype(dtype)
    kw = dict(std0=0.1, std1=0.1, std2=0.2, std3=0.2, clip=4.0)
    np.testing.assert_array_equal(run_emu(frcnn_ops.box_decode, data, anchors, **kw),
                                  frcnn_ops.box_decode(data, anchors, **kw))
    grad = rng.standard_normal(data.shape).astype(dtype)
    np.testing.assert_array_equal(
        run_emu(frcnn_ops.box_decode_backward, grad, data, anchors, **kw),
        frcnn_ops.box_decode_backward(grad, data, anchors, **kw))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_boxes_and_backward(rng, dtype):
    b = (boxes(rng, (2, 200)) * 8 - 100).astype(dtype)
    info = np.array([[300, 400, 1], [500, 200, 1]], dtype)
    np.testing.assert_array_equal(run_emu(frcnn_ops.clip_boxes, b, info),
                                  frcnn_ops.clip_boxes(b, info))
    grad = rng.standard_normal(b.shape).astype(dtype)
    np.testing.assert_array_equal(run_emu(frcnn_ops.clip_boxes_backward, grad, b, info),
                                  frcnn_ops.clip_boxes_backward(grad, b, info))


def test_float16_box_ops(rng):
    data = rng.standard_normal((1, 200, 4)).astype(np.float16)
    anchors = boxes(rng, (1, 200)).astype(np.float16)
    out = run_emu(frcnn_ops.box_decode, data, anchors)
    assert out.dtype == np.float16
    ref = frcnn_ops.box_decode(data.astype(np.float32), anchors.astype(np.float32))
    np.testing.assert_allclose(out.astype(np.float32), ref, rtol=2e-3, atol=0.1)
    info = np.array([[60, 80, 1]], np.float16)
    clipped = run_emu(frcnn_ops.clip_boxes, anchors, info)
    np.testing.assert_array_equal(clipped.astype(np.float32),
                                  frcnn_ops.clip_boxes(anchors.astype(np.float32),
                                                       info.astype(np.float32)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_proposal(rng, dtype):
    B, N = 2, 600
    scores = rng.random((B, N)).astype(dtype)
    scores[:, ::7] = 0  # non-candidates
    deltas = (rng.standard_normal((B, N, 4)) * 0.2).astype(dtype)
    anchors = boxes(rng, (1, N), 200).astype(dtype)
    info = np.array([[220, 240, 1], [180, 200, 1]], dtype)
    kw = dict(rpn_pre_nms_top_n=300, rpn_post_nms_top_n=100, threshold=0.7, rpn_min_size=4)
    np.testing.assert_array_equal(run_emu(frcnn_ops.proposal, scores, deltas, anchors, info, **kw),
                                  frcnn_ops.proposal(scores, deltas, anchors, info, **kw))


@pytest.mark.parametrize("per_level_nms", [False, True])
def test_multilevel_proposal(rng, per_level_nms):
    levels = [300, 0, 200, 100]
    scores = [rng.random((2, n, 1)).astype(np.float32) for n in levels]
    deltas = [(rng.standard_normal((2, n, 4)) * 0.2).astype(np.float32) for n in levels]
    anchors = boxes(rng, (1, sum(levels)), 200).astype(np.float32)
    info = np.array([[220, 240, 1], [180, 200, 1]], np.float32)
    kw = dict(rpn_pre_nms_top_n=300, rpn_post_nms_top_n=100, threshold=0.7, rpn_min_size=4,
              per_level_nms=per_level_nms)
    want = frcnn_ops.proposal(np.concatenate(scores, 1), np.concatenate(deltas, 1), anchors,
                              info, level_sizes=levels, **kw)
    np.testing.assert_array_equal(
        run_emu(frcnn_ops.multilevel_proposal, scores, deltas, anchors, info, **kw), want)


def nms_input(rng, shape, dtype, classes=3):
    ids = rng.integers(-1, classes, shape + (1,)).astype(dtype)
    scores = np.round(rng.random(shape + (1,)), 2).astype(dtype)  # ties
    return np.concatenate([ids, scores, boxes(rng, shape).astype(dtype)], -1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [
    dict(),
    dict(id_index=0, background_id=-1, topk=150),
    dict(id_index=0, force_suppress=True, valid_thresh=0.3),
    dict(in_format="center", out_format="corner", topk=40),
])
def test_nms_3d(rng, dtype, kw):
    data = nms_input(rng, (2, 3, 130), dtype)  # 3-D: 6 batches, 130 rows (3 mask words)
    np.testing.assert_array_equal(run_emu(frcnn_ops.nms, data, overlap_thresh=0.5, **kw),
                                  frcnn_ops.nms(data, overlap_thresh=0.5, **kw))


def test_nms_float16(rng):
    data = nms_input(rng, (2, 100), np.float16)
    out = run_emu(frcnn_ops.nms, data, overlap_thresh=0.5, id_index=0)
    assert out.dtype == np.float16
    ref = frcnn_ops.nms(data.astype(np.float32), overlap_thresh=0.5, id_index=0)
    np.testing.assert_array_equal(out.astype(np.float32), ref)


def roi_case(rng, dtype, N=2, C=6, H=12, W=14, R=40):
    data = rng.standard_normal((N, C, H, W)).astype(dtype)
    b = boxes(rng, (R,), 14) - 2
    rois = np.concatenate([rng.integers(0, N, (R, 1)), b], -1).astype(dtype)
    return data, rois


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [dict(sample_ratio=2), dict(sample_ratio=-1, aligned=True)])
def test_roi_align_and_backward(rng, dtype, kw):
    data, rois = roi_case(rng, dtype)
    kw = dict(kw, pooled_size=(3, 3), spatial_scale=1.0)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    out = run_emu(frcnn_ops.roi_align, data, rois, **kw)
    np.testing.assert_allclose(out, frcnn_ops.roi_align(data, rois, **kw), **tol)
    grad = rng.standard_normal(out.shape).astype(dtype)
    ref = frcnn_ops.roi_align_backward(grad, rois, data.shape, **kw)
    for deterministic in (True, False):  # gather kernel, atomic kernel
        got = run_emu(frcnn_ops.roi_align_backward, grad, rois, data.shape,
                      deterministic=deterministic, **kw)
        np.testing.assert_allclose(got, ref, **tol)


def test_roi_align_position_sensitive_and_big_grid(rng):
    data, rois = roi_case(rng, np.float32, C=2 * 4, R=10)
    kw = dict(pooled_size=(2, 2), spatial_scale=1.0, sample_ratio=2, position_sensitive=True)
    np.testing.assert_allclose(run_emu(frcnn_ops.roi_align, data, rois, **kw),
                               frcnn_ops.roi_align(data, rois, **kw), rtol=1e-5, atol=1e-5)
    # adaptive grids too big for the tap tables: the in-place fallback
    data, rois = roi_case(rng, np.float32, C=1, H=200, W=200, R=2)
    rois[:, 1:] = [[0, 0, 199, 199], [5, 5, 190, 150]]
    kw = dict(pooled_size=(14, 14), spatial_scale=1.0, sample_ratio=-1)
    np.testing.assert_allclose(run_emu(frcnn_ops.roi_align, data, rois, **kw),
                               frcnn_ops.roi_align(data, rois, **kw), rtol=1e-5, atol=1e-5)


def test_roi_align_float16(rng):
    data, rois = roi_case(rng, np.float16)
    kw = dict(pooled_size=(2, 2), spatial_scale=1.0, sample_ratio=2)
    out = run_emu(frcnn_ops.roi_align, data, rois, **kw)
    assert out.dtype == np.float16
    ref = frcnn_ops.roi_align(data.astype(np.float32), rois.astype(np.float32), **kw)
    np.testing.assert_allclose(out.astype(np.float32), ref, rtol=2e-3, atol=2e-3)
    grad = rng.standard_normal(out.shape).astype(np.float16)
    got = run_emu(frcnn_ops.roi_align_backward, grad, rois, data.shape, **kw)  # gather kernel
    ref = frcnn_ops.roi_align_backward(grad.astype(np.float32), rois.astype(np.float32),
                                       data.shape, **kw)
    np.testing.assert_allclose(got.astype(np.float32), ref, rtol=5e-3, atol=5e-3)


def test_empty_proposal_fills(rng):
    z = np.zeros((1, 0), np.float32)
    out = run_emu(frcnn_ops.proposal, z, np.zeros((1, 0, 4), np.float32),
                  np.zeros((1, 0, 4), np.float32), np.array([[10, 10, 1]], np.float32),
                  rpn_post_nms_top_n=5)
    np.testing.assert_array_equal(out, -np.ones((1, 5, 5), np.float32))


# ---- the harness itself ---------------------------------------------------------------------

def test_launch_limits(emu):
    assert emu._emu_launch_config(0, 3, 2, 2, 8, 4, 2) == 3 * 2 * 2 * 64
    assert emu._emu_launch_config(0, 1, 1, 1, 1024, 1, 1) == 1024
    refused = [
        ((0, 1, 1, 1, 1025, 1, 1), "1025 threads"),
        ((0, 1, 1, 1, 64, 32, 1), "2048 threads"),
        ((0, 1, 1, 1, 1, 1, 65), "z <= 64"),
        ((0, 1, 65536, 1, 1, 1, 1), "grid.y = 65536"),
        ((0, 1, 1, 65536, 1, 1, 1), "grid.z = 65536"),
        ((0, 2 ** 31, 1, 1, 1, 1, 1), "grid.x = 2147483648"),
        ((0, 0, 1, 1, 1, 1, 1), "zero grid or block"),
        ((0, 1, 1, 1, 32, 1, 1, 48 * 1024 + 1), "without the opt-in"),
    ]
    for args, msg in refused:
        with pytest.raises(RuntimeError, match="CUDA kernel count_kernel: .*" + msg):
            emu._emu_launch_config(*args)


def test_dynamic_shared_memory_opt_in(emu):
    assert emu._emu_launch_config(0, 1, 1, 1, 32, 1, 1, 48 * 1024) == 32  # the default limit
    # kernel 1 opts in to 100 KB: 100 KB runs, more is refused; the opt-in is per kernel
    assert emu._emu_launch_config(1, 2, 1, 1, 32, 1, 1, 100 * 1024, 100 * 1024) == 64
    with pytest.raises(RuntimeError, match="over the 102400 bytes opted in"):
        emu._emu_launch_config(1, 1, 1, 1, 32, 1, 1, 100 * 1024 + 1)
    with pytest.raises(RuntimeError, match="without the opt-in"):
        emu._emu_launch_config(0, 1, 1, 1, 32, 1, 1, 100 * 1024)
    with pytest.raises(RuntimeError, match="cudaFuncSetAttribute: invalid argument"):
        emu._emu_launch_config(1, 1, 1, 1, 32, 1, 1, 0, 228 * 1024)  # over sm_90's 227 KB


def test_barriers_in_loops(emu):
    # 3-D blocks, a 2-D grid striding over more blocks than it has, a barrier loop with break
    out = emu._emu_block_sum(13, 3, 2, 8, 4, 2)
    n = 64
    np.testing.assert_array_equal(out, [n * (n + 1) // 2 + n * b * 1000000 for b in range(13)])


def test_partial_barrier_raises(emu):
    with pytest.raises(RuntimeError, match=r"partial_barrier_kernel: __syncthreads at "
                                           r"selftest.cpp:\d+ reached by only 63 of 64 threads; "
                                           r"the other 1 exited"):
        emu._emu_barrier_case("partial")
    assert emu._emu_launch_config(0, 1, 1, 1, 64, 1, 1) == 64  # the harness still works


def test_divergent_barrier_raises(emu):
    with pytest.raises(RuntimeError, match="divergent_barrier_kernel: threads of one block wait "
                                           "at different barriers"):
        emu._emu_barrier_case("divergent")


def test_no_progress_aborts_with_the_kernel_name(tmp_path):
    code = textwrap.dedent("""
        from frcnn_ops import _C_emu
        _C_emu._emu_barrier_case("timeout", 0.3)
        print("returned")
    """)
    # this frcnn_ops (installed or built in place), not the checkout's unbuilt source folder
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(frcnn_ops.__file__)))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=pkg_root))
    assert p.returncode != 0 and "returned" not in p.stdout
    assert "CUDA kernel slow_thread_kernel: no progress in 0.3 s" in p.stderr


def test_half_conversions_match_numpy(emu, rng):
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    f = emu._emu_half2float(h)
    ref = h.view(np.float16).astype(np.float32)
    nan = np.isnan(ref)
    np.testing.assert_array_equal(f[~nan], ref[~nan])
    assert np.all(f[nan].view(np.uint32) == 0x7FFFFFFF)  # CUDA's canonical NaN
    # float -> half, round to nearest even: random bit patterns, exact halfway points,
    # subnormals, overflow
    bits = rng.integers(0, 2 ** 32, 200000, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), ref[~nan] + 0,
                        (ref[~nan].astype(np.float64) * (1 + 2.0 ** -11)).astype(np.float32),
                        np.float32([65504, 65519.99, 65520, 1e-8, 2.0 ** -25, 2.0 ** -24 * 1.5,
                                    -0.0, np.inf, -np.inf])])
    with np.errstate(over="ignore", invalid="ignore"):
        ref16 = x.astype(np.float16).view(np.uint16)
    got = emu._emu_float2half(x)
    ok = ~np.isnan(x)
    np.testing.assert_array_equal(got[ok], ref16[ok])
    assert np.all(got[~ok] == 0x7FFF)


@pytest.mark.parametrize("ktype", [np.uint32, np.uint64])
def test_cub_segmented_sort(emu, rng, ktype):
    keys = rng.integers(0, 50, 1000).astype(ktype) * ktype(2 ** 12) + rng.integers(0, 8, 1000).astype(ktype)
    vals = np.arange(1000, dtype=np.uint32)
    offsets = np.array([0, 10, 10, 400, 990], np.int32)  # an empty segment; items past the last
    for lo, hi in [(0, 8 * keys.itemsize), (12, 20), (0, 3)]:
        ko, vo = emu._emu_sort_pairs(keys, vals, offsets, lo, hi)
        for b, e in zip(offsets[:-1], offsets[1:]):
            masked = (keys[b:e] >> ktype(lo)) & ktype((1 << (hi - lo)) - 1)
            order = np.argsort(masked, kind="stable")
            np.testing.assert_array_equal(ko[b:e], keys[b:e][order])
            np.testing.assert_array_equal(vo[b:e], vals[b:e][order])
        assert np.all(vo[990:] == 0xFFFFFFFF)  # outside every segment: untouched


def test_cub_exclusive_sum(emu, rng):
    a = rng.integers(0, 3, 777).astype(np.int32)
    np.testing.assert_array_equal(emu._emu_exclusive_sum(a),
                                  np.concatenate([[0], np.cumsum(a)[:-1]]))
    with pytest.raises(RuntimeError, match="invalid argument"):
        emu._emu_exclusive_sum(a, short_temp=True)


def test_emulate_cuda_is_scoped(rng):
    data = rng.standard_normal((1, 5, 4)).astype(np.float32)
    anchors = boxes(rng, (1, 5)).astype(np.float32)
    kind = frcnn_ops._dispatch.array_kind
    with frcnn_ops.emulate_cuda():
        frcnn_ops.box_decode(data, anchors)
        assert kind("op", data=data) == "emu"
    assert kind("op", data=data) == "numpy"  # the CPU path again
