"""box_decode and clip_boxes."""
from . import _dispatch
from ._lib import _C

__all__ = ["box_decode", "clip_boxes", "box_decode_backward", "clip_boxes_backward"]


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
        (float32/float64/float16) or CuPy arrays (float32/float64/float16, on CuPy's current
        stream). float16 on the CPU (MXNet or NumPy) is computed in float32 and rounded once.
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
    dev = _dispatch.device(kind)
    (data, anchors), code = dev.inputs(op, data=data, anchors=anchors)
    out = dev.empty(data.shape, data.dtype)
    dev.lib.box_decode_gpu(code, dev.ptr(data), dev.ptr(anchors), dev.ptr(out), list(data.shape),
                           list(anchors.shape), stds, float(clip), str(format), dev.stream())
    return out


def box_decode_backward(grad, data, anchors, std0=1.0, std1=1.0, std2=1.0, std3=1.0, clip=-1.0,
                        format="center"):
    """Gradient of :func:`box_decode` w.r.t. ``data`` (the deltas), for NumPy and CuPy arrays
    (MXNet computes it itself through the registered op).

    Args:
        grad (Tensor[B, N, 4]): gradient w.r.t. the decoded boxes.
        data, anchors, std0..std3, clip, format: the forward call's inputs and attributes.

    Returns:
        Tensor[B, N, 4]: gradient w.r.t. ``data`` (zero where ``clip`` capped dw or dh).
    """
    op = "frcnn_box_decode"
    kind = _dispatch.backward_kind(op, "box_decode_backward", grad=grad, data=data,
                                   anchors=anchors)
    stds = [float(std0), float(std1), float(std2), float(std3)]
    if kind == "numpy":
        grad, data, anchors = _dispatch.numpy_inputs(grad, data, anchors)
        return _C.box_decode_backward(grad, data, anchors, stds, float(clip), str(format))
    dev = _dispatch.device(kind)
    (data, anchors, grad), code = dev.inputs(op, data=data, anchors=anchors, grad=grad)
    if grad.shape != data.shape:
        raise ValueError("%s: grad must have the shape of data %s, got %s" % (
            op, tuple(data.shape), tuple(grad.shape)))
    out = dev.empty(data.shape, data.dtype)
    dev.lib.box_decode_backward_gpu(code, dev.ptr(grad), dev.ptr(data), dev.ptr(anchors),
                                    dev.ptr(out), list(data.shape), list(anchors.shape), stds,
                                    float(clip), str(format), dev.stream())
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
    dev = _dispatch.device(kind)
    (boxes, im_info), code = dev.inputs(op, boxes=boxes, im_info=im_info)
    out = dev.empty(boxes.shape, boxes.dtype)
    dev.lib.clip_boxes_gpu(code, dev.ptr(boxes), dev.ptr(im_info), dev.ptr(out),
                           list(boxes.shape), list(im_info.shape), dev.stream())
    return out


def clip_boxes_backward(grad, boxes, im_info):
    """Gradient of :func:`clip_boxes` w.r.t. ``boxes`` for NumPy and CuPy arrays: ``grad``
    where the coordinate was not clipped (0 <= x <= width, NaN included), else 0.

    Args:
        grad (Tensor[B, N, 4]): gradient w.r.t. the clipped boxes.
        boxes (Tensor[B, N, 4]), im_info (Tensor[B, K]): the forward call's inputs.
    """
    op = "frcnn_clip_boxes"
    kind = _dispatch.backward_kind(op, "clip_boxes_backward", grad=grad, boxes=boxes,
                                   im_info=im_info)
    if kind == "numpy":
        grad, boxes, im_info = _dispatch.numpy_inputs(grad, boxes, im_info)
        return _C.clip_boxes_backward(grad, boxes, im_info)
    dev = _dispatch.device(kind)
    (boxes, im_info, grad), code = dev.inputs(op, boxes=boxes, im_info=im_info, grad=grad)
    if grad.shape != boxes.shape:
        raise ValueError("%s: grad must have the shape of boxes %s, got %s" % (
            op, tuple(boxes.shape), tuple(grad.shape)))
    out = dev.empty(boxes.shape, boxes.dtype)
    dev.lib.clip_boxes_backward_gpu(code, dev.ptr(grad), dev.ptr(boxes), dev.ptr(im_info),
                                    dev.ptr(out), list(boxes.shape), list(im_info.shape),
                                    dev.stream())
    return out

