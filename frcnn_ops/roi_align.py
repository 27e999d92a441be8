"""roi_align (= mx.nd.contrib.ROIAlign)."""
from __future__ import annotations

from typing import Sequence, Union

from ._dispatch import ShapeOnly, Tensor, run, run_backward

__all__ = ["roi_align", "roi_align_backward"]

PooledSize = Union[int, Sequence[int]]


def roi_align(data: Tensor, rois: Tensor, pooled_size: PooledSize, spatial_scale: float,
              sample_ratio: int = -1, position_sensitive: bool = False, aligned: bool = False,
              deterministic: bool = False) -> Tensor:
    """Pools each roi of a feature map to a fixed size by bilinear sampling (ROIAlign, He et
    al., Mask R-CNN); a drop-in for ``mx.nd.contrib.ROIAlign`` (same attributes, same output).

    Roi corners are scaled into the feature map: ``x * spatial_scale - (0.5 if aligned else
    0)``. Without ``aligned`` the roi's width and height are clamped to at least 1 (no +1
    anywhere). Each roi is split into ``pooled_size`` bins; a bin is the plain mean of a
    ``grid_h x grid_w`` grid of samples (``sample_ratio`` per axis, or ``ceil(roi size /
    pooled size)`` when ``sample_ratio <= 0``), each sample bilinearly interpolated. A sample
    with y < -1 or y > H (same for x) reads 0 but still counts in the mean; coordinates in
    [-1, 0] clamp to 0 and at or past the last row/column to H - 1 / W - 1.

    Policies where MXNet has none:

    * a batch index outside ``[0, N)`` (MXNet truncates it to int: -1 < b < N is valid) gives
      an all-zero roi and no gradient (MXNet's CPU kernel leaves such rows uninitialised);
    * a roi with a NaN or infinite coordinate gives an all-zero roi and no gradient;
      NaN never reaches an integer conversion or a memory index;
    * the adaptive grid is capped at 16384 samples per axis; in aligned mode a roi of
      size <= 0 has an empty adaptive grid and gives zeros (MXNet aborts);
    * ``spatial_scale`` must be positive and finite (MXNet accepts [0, 1]).

    Float32 results match MXNet to rounding, not bitwise: the CPU kernel merges samples
    that read the same pixel and weights them once (relative differences ~1e-7).

    Gradient: w.r.t. ``data`` (each sample's bilinear weights / count), zero for ``rois``.
    On the CPU the backward is multi-threaded over disjoint channel ranges and bitwise the
    same for any thread count (``frcnn_ops.set_num_threads``, ``FRCNN_NUM_THREADS``,
    ``OMP_NUM_THREADS``). On the GPU it scatters with ``atomicAdd`` by default (fast, the
    float sums' order varies run to run); ``deterministic=True`` or the environment variable
    ``FRCNN_DETERMINISTIC=1`` selects a gather kernel (each thread owns one element of the
    data gradient and sums its contributions in a fixed order): bitwise identical run to run.
    float16 always uses the gather kernel (float32 accumulation).

    Args:
        data (Tensor[N, C, H, W]): feature maps.
        rois (Tensor[R, 5]): ``[batch_index, x1, y1, x2, y2]`` in image coordinates (corner
            format), same dtype as data. R may be 0.
        pooled_size (int or (int, int)): output (ph, pw).
        spatial_scale (float): feature map size / image size, e.g. 1/16.
        sample_ratio (int): samples per bin and axis; <= 0: adaptive.
        position_sensitive (bool): R-FCN's position-sensitive pooling: C must divide by
            ph * pw; output channel c of bin (i, j) reads input channel
            ``c * ph * pw + i * pw + j``.
        aligned (bool): Detectron2's half-pixel shift, no size clamp.
        deterministic (bool): GPU backward in a fixed order (see above); the CPU backward
            always is.

    Returns:
        Tensor[R, C_out, ph, pw]: ``C_out = C``, or ``C / (ph * pw)`` when position sensitive.
        Of the kind and dtype of ``data``: MXNet NDArray or Symbol (the registered op
        ``frcnn_roi_align``), NumPy array (float32/float64/float16, float16 computed in float32
        and rounded once) or CuPy array (float32/float64/float16, on CuPy's current stream);
        for NumPy and CuPy the gradient is :func:`roi_align_backward`.
    """
    return run("frcnn_roi_align", dict(data=data, rois=rois),
               dict(pooled_size=pooled_size, spatial_scale=spatial_scale,
                    sample_ratio=sample_ratio, position_sensitive=position_sensitive,
                    aligned=aligned, deterministic=deterministic or None))


def roi_align_backward(grad: Tensor, rois: Tensor, data_shape: Sequence[int],
                       pooled_size: PooledSize, spatial_scale: float, sample_ratio: int = -1,
                       position_sensitive: bool = False, aligned: bool = False,
                       deterministic: bool = False) -> Tensor:
    """Gradient of :func:`roi_align` w.r.t. ``data``, for NumPy and CuPy arrays (MXNet computes
    it itself through the registered op).

    Args:
        grad (Tensor[R, C_out, ph, pw]): gradient w.r.t. the pooled output.
        rois (Tensor[R, 5]): the forward call's rois.
        data_shape ((N, C, H, W)): shape of the forward call's data.
        pooled_size, spatial_scale, sample_ratio, position_sensitive, aligned: the forward
            call's attributes.
        deterministic (bool): GPU only, the fixed-order kernel (see :func:`roi_align`); the
            CPU kernel always is.

    Returns:
        Tensor[N, C, H, W]: gradient w.r.t. data (overwritten, not added to), zero where no
        valid roi reads.
    """
    return run_backward("frcnn_roi_align", "roi_align_backward", grad,
                        dict(data=ShapeOnly(data_shape), rois=rois),
                        dict(pooled_size=pooled_size, spatial_scale=spatial_scale,
                             sample_ratio=sample_ratio, position_sensitive=position_sensitive,
                             aligned=aligned, deterministic=deterministic or None))
