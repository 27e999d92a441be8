"""box_decode and clip_boxes."""
from . import _dispatch
from ._lib import _C

__all__ = ["box_decode", "clip_boxes"]


def box_decode(data, anchors, std0=1.0, std1=1.0, std2=1.0, std3=1.0, clip=-1.0,
               format="center"):
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
        (float32/float64) or CuPy arrays (float32/float64/float16, on CuPy's current stream).
    """
    op = "frcnn_box_decode"
    kind = _dispatch.array_kind(op, data=data, anchors=anchors)
    if kind in ("ndarray", "symbol"):
        F = _dispatch.mx_namespace(kind)
        return F.frcnn_box_decode(data, anchors, std0=std0, std1=std1, std2=std2, std3=std3,
                                  clip=clip, format=format)
    stds = [float(std0), float(std1), float(std2), float(std3)]
    if kind == "numpy":
        _C.box_decode_check(list(data.shape), list(anchors.shape), stds, float(clip), str(format))
        data, anchors = _dispatch.numpy_inputs(data, anchors)
        return _C.box_decode(data, anchors, stds, float(clip), str(format))
    (data, anchors), code = _dispatch.cupy_inputs(op, data=data, anchors=anchors)
    import cupy as cp
    out = cp.empty_like(data)
    _C.box_decode_gpu(code, data.data.ptr, anchors.data.ptr, out.data.ptr, list(data.shape),
                      list(anchors.shape), stds, float(clip), str(format),
                      _dispatch.cupy_stream())
    return out


def clip_boxes(boxes, im_info):
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
    op = "frcnn_clip_boxes"
    kind = _dispatch.array_kind(op, boxes=boxes, im_info=im_info)
    if kind in ("ndarray", "symbol"):
        return _dispatch.mx_namespace(kind).frcnn_clip_boxes(boxes, im_info)
    if kind == "numpy":
        _C.clip_boxes_check(list(boxes.shape), list(im_info.shape))
        boxes, im_info = _dispatch.numpy_inputs(boxes, im_info)
        return _C.clip_boxes(boxes, im_info)
    (boxes, im_info), code = _dispatch.cupy_inputs(op, boxes=boxes, im_info=im_info)
    import cupy as cp
    out = cp.empty_like(boxes)
    _C.clip_boxes_gpu(code, boxes.data.ptr, im_info.data.ptr, out.data.ptr, list(boxes.shape),
                      list(im_info.shape), _dispatch.cupy_stream())
    return out

