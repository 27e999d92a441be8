"""proposal (the fused RPN proposal step) and nms (box_nms drop-in)."""
from __future__ import annotations

from typing import Optional, Sequence

from ._dispatch import Tensor, run, run_backward

__all__ = ["proposal", "multilevel_proposal", "nms", "nms_backward"]


def proposal(scores: Tensor, deltas: Tensor, anchors: Tensor, im_info: Tensor,
             rpn_pre_nms_top_n: int = 6000, rpn_post_nms_top_n: int = 300,
             threshold: float = 0.7, rpn_min_size: float = 16.0, std0: float = 1.0,
             std1: float = 1.0, std2: float = 1.0, std3: float = 1.0, clip: float = -1.0,
             level_sizes: Optional[Sequence[int]] = None, per_level_nms: bool = False) -> Tensor:
    """RPN proposals: GluonCV's ``RPNProposal`` + ``box_nms`` + slice as one op.

    Per image: decode the deltas against the anchors (like :func:`box_decode` with
    ``format='corner'``), clip to ``[0, width] x [0, height]`` of that image, drop boxes whose
    width or height with the +1 convention (``x2 - x1 + 1``) is under ``rpn_min_size``, keep the
    boxes with score > 0 (strict), order them by descending score (ties: lower anchor index
    first), take the first ``rpn_pre_nms_top_n``, run greedy NMS (IoU > ``threshold``
    suppresses; IoU without +1), and return the first ``rpn_post_nms_top_n`` kept.

    NaN policy: a NaN score is never a candidate and a box with a NaN coordinate is dropped like
    a box under the min size (GluonCV would pass NaN boxes on). Infinite deltas decode to
    infinite boxes that clip to the image border, as in GluonCV.

    Args:
        scores (Tensor[B, N, 1]): objectness after sigmoid.
        deltas (Tensor[B, N, 4]): box regression (dx, dy, dw, dh).
        anchors (Tensor[1, N, 4] or Tensor[B, N, 4]): corner anchors (x1, y1, x2, y2).
        im_info (Tensor[B, K]), K >= 2: per image ``[height, width, ...]``.
        rpn_pre_nms_top_n (int): boxes entering NMS (6000 test, 12000 train).
        rpn_post_nms_top_n (int): boxes returned (300 test, 2000 train); <= rpn_pre_nms_top_n.
        threshold (float): NMS IoU threshold in [0, 1].
        rpn_min_size (float): minimum box width and height (+1 convention).
        std0, std1, std2, std3 (float): delta scales; clip (float): cap on dw, dh if > 0.
        level_sizes (list of int): for an FPN RPN, the anchors of each level in their order
            along N (GluonCV concatenates the levels' scores, deltas and anchors in level
            order); they must sum to N. Without ``per_level_nms`` the levels are proposed
            together, which is GluonCV's multi-level path (``RPNProposal`` per level, concat,
            ``box_nms``, slice): the same as passing the concatenation without level_sizes.
        per_level_nms (bool): GluonCV's ``RPN(per_level_nms=True)``: each level is proposed
            alone with ``rpn_pre_nms_top_n // len(level_sizes)`` boxes entering its NMS and as
            many kept; then all levels' kept boxes in descending score order (ties: level
            order, then rank), the first ``rpn_post_nms_top_n``. Needs ``level_sizes`` and
            ``rpn_pre_nms_top_n >= len(level_sizes)``.

    Returns:
        Tensor[B, rpn_post_nms_top_n, 5]: ``[score, x1, y1, x2, y2]`` of the kept boxes in
        descending score order; rows past the kept count are all -1. MXNet op
        ``frcnn_proposal`` (no gradient: zeros), NumPy (float32/float64/float16; float16 on the
        CPU is computed in float32 and rounded once) or CuPy (float32/float64/float16, current
        stream, no host synchronisation).
    """
    return run("frcnn_proposal", dict(scores=scores, deltas=deltas, anchors=anchors,
                                      im_info=im_info),
               dict(rpn_pre_nms_top_n=rpn_pre_nms_top_n, rpn_post_nms_top_n=rpn_post_nms_top_n,
                    threshold=threshold, rpn_min_size=rpn_min_size, std0=std0, std1=std1,
                    std2=std2, std3=std3, clip=clip, level_sizes=level_sizes,
                    per_level_nms=per_level_nms or None))


def multilevel_proposal(scores: Sequence[Tensor], deltas: Sequence[Tensor], anchors: Tensor,
                        im_info: Tensor, rpn_pre_nms_top_n: int = 6000,
                        rpn_post_nms_top_n: int = 300, threshold: float = 0.7,
                        rpn_min_size: float = 16.0, std0: float = 1.0, std1: float = 1.0,
                        std2: float = 1.0, std3: float = 1.0, clip: float = -1.0,
                        per_level_nms: bool = False) -> Tensor:
    """FPN RPN proposals with the levels' scores and deltas as separate arrays: exactly
    :func:`proposal` on ``scores`` and ``deltas`` concatenated along N with ``level_sizes`` =
    the levels' anchor counts (bitwise the same output), without the caller's concatenation.
    That is GluonCV's multi-level RPN path (``RPNProposal`` per level, concat, ``box_nms``,
    slice; with ``per_level_nms``, its per-level NMS and merge); see :func:`proposal` for the
    steps, the +1 convention and the NaN policy.

    Args:
        scores (list of Tensor[B, n_i, 1] or Tensor[B, n_i]): each level's objectness after
            sigmoid, in level order (P2, P3, ...).
        deltas (list of Tensor[B, n_i, 4]): each level's box regression, same n_i.
        anchors (Tensor[1, N, 4] or Tensor[B, N, 4]): the levels' corner anchors concatenated
            in the same order, N = sum of n_i (constants of a model: concatenated once).
        im_info (Tensor[B, K]), K >= 2: per image ``[height, width, ...]``.
        rpn_pre_nms_top_n, rpn_post_nms_top_n, threshold, rpn_min_size, std0, std1, std2,
        std3, clip, per_level_nms: as :func:`proposal` (``per_level_nms`` needs
        ``rpn_pre_nms_top_n >= len(scores)``).

    Returns:
        Tensor[B, rpn_post_nms_top_n, 5]: ``[score, x1, y1, x2, y2]`` as :func:`proposal`.
        MXNet op ``frcnn_multilevel_proposal(anchors, im_info, *scores, *deltas,
        num_levels=len(scores), ...)`` (no gradient: zeros), NumPy or CuPy arrays
        (float32/float64/float16, all of one dtype). The levels are copied into one
        contiguous buffer inside the op (CPU: pooled scratch memory; GPU: the workspace, on
        the current stream).
    """
    if len(scores) != len(deltas) or not scores:
        raise ValueError("frcnn_multilevel_proposal: needs one scores and one deltas array per "
                         "level (at least one level), got %d scores and %d deltas" % (
                             len(scores), len(deltas)))
    return run("frcnn_multilevel_proposal", dict(anchors=anchors, im_info=im_info,
                                                 scores=scores, deltas=deltas),
               dict(num_levels=len(scores), rpn_pre_nms_top_n=rpn_pre_nms_top_n,
                    rpn_post_nms_top_n=rpn_post_nms_top_n, threshold=threshold,
                    rpn_min_size=rpn_min_size, std0=std0, std1=std1, std2=std2, std3=std3,
                    clip=clip, per_level_nms=per_level_nms or None))


def nms(data: Tensor, overlap_thresh: float = 0.5, valid_thresh: float = 0.0, topk: int = -1,
        coord_start: int = 2, score_index: int = 1, id_index: int = -1, background_id: int = -1,
        force_suppress: bool = False, in_format: str = "corner",
        out_format: str = "corner") -> Tensor:
    """Non-maximum suppression, a drop-in for ``mx.nd.contrib.box_nms`` (same attributes).

    Per batch (every leading dim is a batch): rows with score > ``valid_thresh`` (strict) and,
    when ``id_index >= 0``, id != ``background_id`` are candidates; they are ordered by
    descending score (ties: lower row first) and the first ``topk`` (all if -1) enter greedy
    NMS: a row is suppressed when its IoU with a kept row exceeds ``overlap_thresh`` (strictly),
    only within the same id unless ``force_suppress``. IoU has no +1; a box with negative width
    or height has area 0. ``topk=0`` returns the input unchanged (as box_nms does); any
    ``topk < 0`` means all (as box_nms).

    NaN policy (as box_nms): a row with a NaN score is never a candidate (it comes out as -1);
    a box with a NaN coordinate has a NaN IoU with every box, so it neither suppresses nor is
    suppressed; infinite coordinates follow IEEE arithmetic as in box_nms.

    Args:
        data (Tensor[..., n, k]): rows holding a score, 4 coordinates from ``coord_start`` and
            optionally an id.
        in_format, out_format (str): 'corner' (x1, y1, x2, y2) or 'center' (x, y, w, h).

    Returns:
        Tensor[..., n, k]: kept rows first in descending score order, every other row -1.
        With ``in_format != out_format`` every kept row is converted (box_nms skips rows whose
        first coordinate is negative, a quirk not copied). MXNet op ``frcnn_nms``, NumPy or
        CuPy arrays, float32/float64/float16 (float16 on the CPU is computed in float32: the
        selection of the float32 op on the same values, so the kept rows are copied exactly).

    Gradient (as box_nms's): the gradient of output row k goes, all columns and unchanged, to
    the input row the k-th kept row came from; every other input row gets 0. With
    ``out_format != in_format`` it is still copied unchanged (box_nms does not apply the
    format conversion's Jacobian); with ``topk=0`` the gradient passes through (the identity).
    The backward selects the kept rows again from ``data`` (deterministic). For NumPy and CuPy
    arrays it is :func:`nms_backward`.
    """
    return run("frcnn_nms", dict(data=data), _nms_attrs(locals()))


def nms_backward(grad: Tensor, data: Tensor, overlap_thresh: float = 0.5,
                 valid_thresh: float = 0.0, topk: int = -1, coord_start: int = 2,
                 score_index: int = 1, id_index: int = -1, background_id: int = -1,
                 force_suppress: bool = False, in_format: str = "corner",
                 out_format: str = "corner") -> Tensor:
    """Gradient of :func:`nms` w.r.t. ``data`` for NumPy and CuPy arrays (MXNet computes it
    itself through the registered op): ``grad``'s row k goes to the input row of the k-th
    kept row, every other row is 0 (box_nms's gradient, see :func:`nms`).

    Args:
        grad (Tensor[..., n, k]): gradient w.r.t. nms's output.
        data, overlap_thresh, ...: the forward call's input and attributes.

    Returns:
        Tensor[..., n, k]: gradient w.r.t. ``data``.
    """
    return run_backward("frcnn_nms", "nms_backward", grad, dict(data=data),
                        _nms_attrs(locals()))


def _nms_attrs(args: dict) -> dict:
    return {k: v for k, v in args.items() if k not in ("data", "grad")}
