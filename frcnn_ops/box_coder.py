"""box_decode and clip_boxes."""
from __future__ import annotations

from ._dispatch import Tensor, run, run_backward

__all__ = ["box_decode", "clip_boxes", "box_decode_backward", "clip_boxes_backward"]


def box_decode(data: Tensor, anchors: Tensor, std0: float = 1.0, std1: float = 1.0,
               std2: float = 1.0, std3: float = 1.0, clip: float = -1.0,
               format: str = "center") -> Tensor:
    """Decodes box regression deltas against anchors (drop-in for ``mx.nd.contrib.box_decode``).

    With the anchor in center form ``(xa, ya, wa, ha)`` (no +1: ``wa = x2 - x1``)::

        ox = d0 * std0 * wa + xa           oy = d1 * std1 * ha + ya
        dw = d2 * std2, dh = d3 * std3     (each min'ed with clip when clip > 0)
        w  = exp(dw) * wa / 2              h  = exp(dh) * ha / 2
        out = (ox - w, oy - h, ox + w, oy + h)

    No clipping to the image (see :func:`clip_boxes`). NaN or inf deltas give NaN or inf
    coordinates; nothing is silently replaced.

    Args:
        data (Tensor[B, N, 4]): deltas (dx, dy, dw, dh).
        anchors (Tensor[1, N, 4] or Tensor[B, N, 4]): anchors, in ``format``. With batch B
            each image uses its own anchors.
        std0, std1, std2, std3 (float): scales of the four deltas.
        clip (float): upper bound of dw and dh before ``exp`` when > 0; -1 disables it.
        format (str): 'center' (anchors are (cx, cy, w, h)) or 'corner' (x1, y1, x2, y2).

    Returns:
        Tensor[B, N, 4]: boxes in corner format (x1, y1, x2, y2), of the kind and dtype of
        ``data``. Tensors are MXNet NDArrays or Symbols (the registered op
        ``frcnn_box_decode``; gradient w.r.t. data, zero for anchors), NumPy arrays
        (float32/float64/float16) or CuPy arrays (float32/float64/float16, on CuPy's current
        stream). float16 on the CPU (MXNet or NumPy) is computed in float32 and rounded once.
    """
    return run("frcnn_box_decode", dict(data=data, anchors=anchors),
               dict(std0=std0, std1=std1, std2=std2, std3=std3, clip=clip, format=format))


def box_decode_backward(grad: Tensor, data: Tensor, anchors: Tensor, std0: float = 1.0,
                        std1: float = 1.0, std2: float = 1.0, std3: float = 1.0,
                        clip: float = -1.0, format: str = "center") -> Tensor:
    """Gradient of :func:`box_decode` w.r.t. ``data`` (the deltas), for NumPy and CuPy arrays
    (MXNet computes it itself through the registered op).

    Args:
        grad (Tensor[B, N, 4]): gradient w.r.t. the decoded boxes.
        data, anchors, std0..std3, clip, format: the forward call's inputs and attributes.

    Returns:
        Tensor[B, N, 4]: gradient w.r.t. ``data`` (zero where ``clip`` capped dw or dh).
    """
    return run_backward("frcnn_box_decode", "box_decode_backward", grad,
                        dict(data=data, anchors=anchors),
                        dict(std0=std0, std1=std1, std2=std2, std3=std3, clip=clip,
                             format=format))


def clip_boxes(boxes: Tensor, im_info: Tensor) -> Tensor:
    """Clips boxes to their image (GluonCV ``BBoxClipToImage`` with per-image sizes).

    x coordinates are clipped to ``[0, width]`` and y to ``[0, height]`` (not width - 1):
    ``min(max(x, 0), width)``. NaN policy: NaN coordinates stay NaN (never moved into the
    image); +inf clips to the width or height and -inf to 0.

    Args:
        boxes (Tensor[B, N, 4]): corner boxes (x1, y1, x2, y2).
        im_info (Tensor[B, K]), K >= 2: per image ``[height, width, ...]``; same dtype as boxes.

    Returns:
        Tensor[B, N, 4]: the clipped boxes. MXNet op ``frcnn_clip_boxes``: the gradient passes
        where a coordinate was not clipped (0 <= x <= width), zero for im_info.
    """
    return run("frcnn_clip_boxes", dict(boxes=boxes, im_info=im_info), {})


def clip_boxes_backward(grad: Tensor, boxes: Tensor, im_info: Tensor) -> Tensor:
    """Gradient of :func:`clip_boxes` w.r.t. ``boxes`` for NumPy and CuPy arrays: ``grad``
    where the coordinate was not clipped (0 <= x <= width, NaN included), else 0.

    Args:
        grad (Tensor[B, N, 4]): gradient w.r.t. the clipped boxes.
        boxes (Tensor[B, N, 4]), im_info (Tensor[B, K]): the forward call's inputs.
    """
    return run_backward("frcnn_clip_boxes", "clip_boxes_backward", grad,
                        dict(boxes=boxes, im_info=im_info), {})
