"""NumPy references of box_decode and clip_boxes (computed in the input dtype, like the kernels)."""
import numpy as np


def box_decode(data, anchors, std0=1.0, std1=1.0, std2=1.0, std3=1.0, clip=-1.0,
               format="center"):
    data = np.asarray(data)
    anchors = np.broadcast_to(np.asarray(anchors, dtype=data.dtype), data.shape)
    t = data.dtype.type
    # attributes are float32, as in MXNet's BoxDecodeParam, whatever the data dtype
    std0, std1, std2, std3, clip = (float(np.float32(v)) for v in (std0, std1, std2, std3, clip))
    if format == "corner":
        wa = anchors[..., 2] - anchors[..., 0]
        ha = anchors[..., 3] - anchors[..., 1]
        xa = anchors[..., 0] + wa * t(0.5)
        ya = anchors[..., 1] + ha * t(0.5)
    elif format == "center":
        xa, ya, wa, ha = (anchors[..., k] for k in range(4))
    else:
        raise ValueError(format)
    ox = data[..., 0] * t(std0) * wa + xa
    oy = data[..., 1] * t(std1) * ha + ya
    dw = data[..., 2] * t(std2)
    dh = data[..., 3] * t(std3)
    if clip > 0:
        dw = np.where(dw < t(clip), dw, t(clip))
        dh = np.where(dh < t(clip), dh, t(clip))
    with np.errstate(over="ignore", invalid="ignore"):
        # exp in float64, rounded once (as MXNet's CPU kernel does for float32)
        ow = np.exp(dw.astype(np.float64)).astype(data.dtype) * wa * t(0.5)
        oh = np.exp(dh.astype(np.float64)).astype(data.dtype) * ha * t(0.5)
        return np.stack([ox - ow, oy - oh, ox + ow, oy + oh], axis=-1).astype(data.dtype)


def clip_boxes(boxes, im_info):
    boxes = np.asarray(boxes)
    im_info = np.asarray(im_info, dtype=boxes.dtype)
    out = boxes.copy()
    for b in range(boxes.shape[0]):
        h, w = im_info[b, 0], im_info[b, 1]
        for k, hi in enumerate((w, h, w, h)):
            x = boxes[b, :, k]
            y = np.where(x < 0, 0, x)
            out[b, :, k] = np.where(y > hi, hi, y)
    return out
