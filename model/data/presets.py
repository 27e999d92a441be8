"""Image pre- and post-processing as GluonCV's Faster R-CNN presets (presets.rcnn).

MXNet is imported by the functions that take NDArrays only: the sizes, constants and
``boxes_to_original`` (used by the NumPy/OpenCV transforms) work without it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:
    import mxnet as mx

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def resized_shape(h: int, w: int, short: int = 600, max_size: int = 1000) -> Tuple[int, int]:
    """(new_h, new_w): short side to `short`, the long side capped at `max_size`."""
    lo, hi = (h, w) if w > h else (w, h)
    scale = float(short) / float(lo)
    if np.round(scale * hi) > max_size:
        scale = float(max_size) / float(hi)
    return int(np.round(h * scale)), int(np.round(w * scale))


def resize_short_within(img: mx.nd.NDArray, short: int = 600,
                        max_size: int = 1000) -> mx.nd.NDArray:
    """Resizes an HxWx3 uint8 NDArray like GluonCV's transform_test: interp=2, which is OpenCV
    bicubic (GluonCV's docstring calls 2 "area"; area is 3). The training and validation
    presets (frcnn_model.data.transforms) use interp=1, bilinear, as GluonCV's."""
    import mxnet as mx
    from mxnet.image.image import _get_interp_method
    h, w, _ = img.shape
    nh, nw = resized_shape(h, w, short, max_size)
    interp = _get_interp_method(_get_interp_method(2, (h, w, nh, nw)), (h, w, nh, nw))
    return mx.image.imresize(img, nw, nh, interp=interp)


def transform_test(img: mx.nd.NDArray, short: int = 600, max_size: int = 1000,
                   mean: Sequence[float] = MEAN, std: Sequence[float] = STD
                   ) -> Tuple[mx.nd.NDArray, np.ndarray]:
    """HxWx3 uint8 NDArray -> ((1, 3, h, w) normalized float32 NDArray, resized uint8 image)."""
    import mxnet as mx
    img = resize_short_within(img, short, max_size)
    shown = img.asnumpy().astype(np.uint8)
    x = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=mean, std=std)
    return x.expand_dims(0), shown


def load_test(path: str, short: int = 600,
              max_size: int = 1000) -> Tuple[mx.nd.NDArray, np.ndarray]:
    """Reads a JPEG/PNG file and applies transform_test."""
    import mxnet as mx
    return transform_test(mx.image.imread(path), short, max_size)


def boxes_to_original(bboxes: np.ndarray, resized_hw: Tuple[int, int],
                      original_hw: Tuple[int, int]) -> np.ndarray:
    """Scales (..., 4) boxes from the network input size back to the image's own size and
    clips them to it ([0, width] x [0, height])."""
    bboxes = np.asarray(bboxes, dtype=np.float32).copy()
    sy = original_hw[0] / float(resized_hw[0])
    sx = original_hw[1] / float(resized_hw[1])
    bboxes[..., [0, 2]] = np.clip(bboxes[..., [0, 2]] * sx, 0, original_hw[1])
    bboxes[..., [1, 3]] = np.clip(bboxes[..., [1, 3]] * sy, 0, original_hw[0])
    return bboxes
