"""Training / validation transforms, batching and a simple loader (GluonCV presets.rcnn).

The transforms are GluonCV's ``FasterRCNNDefaultTrainTransform`` / ``...ValTransform`` without
the RPN target generation (the trainer does that on the padded batch), in NumPy + OpenCV:

1. resize: short side to ``short``, long side capped at ``max_size``
   (``gluoncv.data.transforms.image.resize_short_within`` with ``interp=1``: bilinear; note the
   inference preset in ``data.py`` uses GluonCV's default ``interp=2``, bicubic);
2. boxes scaled by (new_w / w, new_h / h) in float64 (``gluoncv...bbox.resize``);
3. train only: horizontal flip with probability ``flip_p``, boxes ``x1' = w - x2``,
   ``x2' = w - x1`` (``bbox.flip``; see the note in ``flip_boxes``);
4. ``x = (img / 255 - mean) / std`` as float32, HWC -> CHW (``to_tensor`` + ``normalize``).

Labels are ``ndarray[M, 6] float32`` ``[x1, y1, x2, y2, class_id, difficult]`` (any extra
columns after the 4 coordinates are carried unchanged).
"""
from __future__ import annotations

import collections
import inspect
import multiprocessing
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .presets import MEAN, STD, resized_shape

__all__ = ["FasterRCNNTrainTransform", "FasterRCNNValTransform", "resize_boxes", "flip_boxes",
           "normalize", "batchify", "batch_order", "iterate_batches"]


def _as_uint8_hwc(img):
    if hasattr(img, "asnumpy"):  # mx.nd.NDArray
        img = img.asnumpy()
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError("expected an image [H, W, 3], got shape %s" % (img.shape,))
    return img.astype(np.uint8, copy=False)


def resize_boxes(label: np.ndarray, in_wh: Tuple[float, float],
                 out_wh: Tuple[float, float]) -> np.ndarray:
    """Scales columns 0..3 of label (N, 4+) from an image of size in_wh = (w, h) to out_wh, in
    float64, as ``gluoncv.data.transforms.bbox.resize``."""
    out = np.array(label, dtype=np.float64, copy=True).reshape(-1, np.shape(label)[-1])
    sx = out_wh[0] / in_wh[0]
    sy = out_wh[1] / in_wh[1]
    out[:, [0, 2]] *= sx
    out[:, [1, 3]] *= sy
    return out


def flip_boxes(label: np.ndarray, width: float) -> np.ndarray:
    """Horizontal flip of columns 0..3 as ``gluoncv.data.transforms.bbox.flip``:
    ``x1' = width - x2``, ``x2' = width - x1``.

    With the VOC label convention (x2 = index of the last pixel column) the pixel-exact flip
    would be ``width - 1 - x``; GluonCV's boxes move one pixel right instead. Kept as is for
    parity with GluonCV-trained models (it is a sub-pixel effect after the resize)."""
    out = np.array(label, copy=True)
    x1 = width - out[:, 2]
    x2 = width - out[:, 0]
    out[:, 0], out[:, 2] = x1, x2
    return out


def normalize(img: np.ndarray, mean: Sequence[float] = MEAN,
              std: Sequence[float] = STD) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [3, H, W], (img / 255 - mean) / std (mx.nd.image.to_tensor +
    normalize)."""
    x = img.astype(np.float32) * np.float32(1.0 / 255.0)
    x -= np.asarray(mean, np.float32)
    x /= np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _resize(img, short, max_size):
    h, w = img.shape[:2]
    nh, nw = resized_shape(h, w, short, max_size)
    # OpenCV's bilinear resize; the same pixels as mx.image.imresize(interp=1) (tested)
    out = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out.reshape(nh, nw, -1)


class FasterRCNNTrainTransform:
    """GluonCV's FasterRCNNDefaultTrainTransform(net=None): resize, random flip, normalize.

    Args:
        short (int or (int, int)): target short side; a pair (lo, hi) draws an integer from
            [lo, hi] inclusive per call, as GluonCV (``random.randint(lo, hi)``; GluonCV would
            silently ignore entries after the second, here that is an error).
        max_size (int): cap on the long side.
        mean, std (3 floats): normalization in [0, 1] pixel units.
        flip_p (float): probability of a horizontal flip (0 never, 1 always).

    ``__call__(img, label, rng=None) -> (x ndarray[3, h, w] float32, label ndarray[M, 6]
    float32)``; ``img`` is uint8 [H, W, 3] (NumPy or NDArray). ``rng`` (np.random.Generator)
    draws the scale then the flip; None uses a fresh unseeded generator.
    """

    def __init__(self, short: int = 600, max_size: int = 1000, mean: Sequence[float] = MEAN,
                 std: Sequence[float] = STD, flip_p: float = 0.5) -> None:
        if isinstance(short, (tuple, list)):
            if len(short) != 2 or int(short[0]) > int(short[1]):
                raise ValueError("short must be an int or a (lo, hi) range, got %r" % (short,))
            short = (int(short[0]), int(short[1]))
        else:
            short = int(short)
        self.short = short
        self.max_size = int(max_size)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.flip_p = float(flip_p)

    def __call__(self, img: np.ndarray, label: np.ndarray,
                 rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng() if rng is None else rng
        img = _as_uint8_hwc(img)
        h, w = img.shape[:2]
        # 1. resize the image and scale the boxes
        short = self.short
        if isinstance(short, tuple):
            short = int(rng.integers(short[0], short[1] + 1))
        img = _resize(img, short, self.max_size)
        nh, nw = img.shape[:2]
        bbox = resize_boxes(label, (w, h), (nw, nh))
        # 2. random horizontal flip
        if self.flip_p > 0 and rng.random() < self.flip_p:
            img = img[:, ::-1]
            bbox = flip_boxes(bbox, nw)
        # 3. normalize, CHW
        return normalize(img, self.mean, self.std), bbox.astype(np.float32)


class FasterRCNNValTransform:
    """GluonCV's FasterRCNNDefaultValTransform without the im_scale output: resize (bilinear),
    boxes scaled, normalize. ``__call__(img, label, rng=None) -> (x [3, h, w] float32,
    label [M, 6] float32)``; rng is accepted and ignored (one signature for the loader).

    The original image size is ``label``-independent: ``im_scale = H / h`` as GluonCV."""

    def __init__(self, short: int = 600, max_size: int = 1000, mean: Sequence[float] = MEAN,
                 std: Sequence[float] = STD) -> None:
        self.short = int(short)
        self.max_size = int(max_size)
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __call__(self, img: np.ndarray, label: np.ndarray,
                 rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, np.ndarray]:
        img = _as_uint8_hwc(img)
        h, w = img.shape[:2]
        img = _resize(img, self.short, self.max_size)
        nh, nw = img.shape[:2]
        bbox = resize_boxes(label, (w, h), (nw, nh))
        return normalize(img, self.mean, self.std), bbox.astype(np.float32)


def batchify(samples: Sequence[Tuple[np.ndarray, np.ndarray]],
             stride: int = 1) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pads a list of (x [3, h, w], label [M, K]) samples into one batch.

    Returns:
        data (ndarray[B, 3, Hmax, Wmax] float32): zeros at the bottom / right; Hmax, Wmax the
            largest h, w rounded up to a multiple of ``stride``.
        labels (ndarray[B, Mmax, K] float32): rows of -1 after each image's M boxes
            (Mmax >= 1 so an all-empty batch still has one -1 row per image).
        im_hw (ndarray[B, 2] float32): each image's (h, w) before padding.
    """
    if not samples:
        raise ValueError("batchify needs at least one sample")
    stride = int(stride)
    xs = [np.asarray(s[0], np.float32) for s in samples]
    ls = [np.asarray(s[1], np.float32) for s in samples]
    ks = {lab.shape[-1] for lab in ls if lab.ndim == 2 and lab.shape[0] > 0}
    k = ks.pop() if len(ks) == 1 else (6 if not ks else None)
    if k is None:
        raise ValueError("labels have different widths: %s" % sorted({lab.shape[-1] for lab in ls}))
    ls = [lab.reshape(-1, k) for lab in ls]
    hmax = max(x.shape[1] for x in xs)
    wmax = max(x.shape[2] for x in xs)
    hmax = -(-hmax // stride) * stride
    wmax = -(-wmax // stride) * stride
    mmax = max(1, max(lab.shape[0] for lab in ls))
    data = np.zeros((len(xs), xs[0].shape[0], hmax, wmax), np.float32)
    labels = np.full((len(xs), mmax, k), -1, np.float32)
    im_hw = np.zeros((len(xs), 2), np.float32)
    for i, (x, lab) in enumerate(zip(xs, ls)):
        data[i, :, :x.shape[1], :x.shape[2]] = x
        labels[i, :lab.shape[0]] = lab
        im_hw[i] = x.shape[1:3]
    return data, labels, im_hw


def batch_order(n: int, batch_size: int, shuffle: bool, seed: int, epoch: int,
                drop_last: bool = False) -> List[np.ndarray]:
    """The list of index arrays iterate_batches visits: a permutation from
    ``np.random.default_rng([seed, epoch])`` when shuffle, else 0..n-1, cut into batches."""
    order = (np.random.default_rng([seed, epoch]).permutation(n) if shuffle
             else np.arange(n))
    stop = n - n % batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def _takes_rng(transform):
    try:
        return "rng" in inspect.signature(transform).parameters
    except (TypeError, ValueError):
        return False


def _load(dataset, transform, takes_rng, seed, epoch, i):
    img, label = dataset[int(i)]
    if transform is None:
        return (np.asarray(img, np.float32).transpose(2, 0, 1),
                np.asarray(label, np.float32))
    if takes_rng:
        # per-sample generator: the same (seed, epoch, index) gives the same augmentation,
        # whatever the batch size, order or worker
        return transform(img, label, rng=np.random.default_rng([seed, epoch, int(i)]))
    return transform(img, label)


_WORKER = {}


def _worker_init(dataset, transform, takes_rng, seed, epoch, stride):
    cv2.setNumThreads(1)
    _WORKER.update(dataset=dataset, transform=transform, takes_rng=takes_rng, seed=seed,
                   epoch=epoch, stride=stride)


def _worker_batch(indices):
    w = _WORKER
    return batchify([_load(w["dataset"], w["transform"], w["takes_rng"], w["seed"], w["epoch"],
                           i) for i in indices], w["stride"])


def iterate_batches(dataset: Any, transform: Optional[Callable], batch_size: int,
                    shuffle: bool = False, seed: int = 0, epoch: int = 0,
                    drop_last: bool = False, num_workers: int = 0, stride: int = 1,
                    start: int = 0) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yields ``batchify`` outputs ``(data, labels, im_hw)`` over one epoch of ``dataset``.

    The order is ``batch_order(len(dataset), batch_size, shuffle, seed, epoch, drop_last)``; a
    transform with an ``rng`` argument gets ``np.random.default_rng([seed, epoch, index])`` for
    each sample, so an epoch is reproducible from (seed, epoch) alone, with or without workers.
    ``transform=None`` passes images through as float32 CHW (0..255). ``start`` skips the
    epoch's first ``start`` batches without loading them (a resumed run goes on where it
    stopped; the rest of the epoch is the same batches as without the stop).

    ``num_workers > 0`` loads batches in a pool of *spawned* processes (dataset and transform
    are pickled once per worker; at most 2 * num_workers batches in flight, yielded in order).
    Not fork: a child forked after OpenCV ran a parallel loop in the parent (cv2.resize of a
    large image, also inside MXNet) hangs in its first OpenCV call.
    """
    batches = batch_order(len(dataset), int(batch_size), shuffle, seed, epoch,
                          drop_last)[int(start):]
    takes_rng = transform is not None and _takes_rng(transform)
    if num_workers <= 0:
        for idx in batches:
            yield batchify([_load(dataset, transform, takes_rng, seed, epoch, i) for i in idx],
                           stride)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(num_workers, initializer=_worker_init,
                  initargs=(dataset, transform, takes_rng, seed, epoch, stride)) as pool:
        pending = collections.deque()
        for idx in batches:
            pending.append(pool.apply_async(_worker_batch, (idx,)))
            if len(pending) >= 2 * num_workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
