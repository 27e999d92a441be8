"""Detection datasets: Pascal VOC (read and write) and a procedural SyntheticShapes set.

Every dataset here has one interface:
  ``len(ds)``; ``ds[i] -> (img, label)`` with ``img (ndarray[H, W, 3] uint8, RGB)`` and
  ``label (ndarray[M, 6] float32)`` rows ``[x1, y1, x2, y2, class_id, difficult]``;
  ``ds.classes`` (tuple of names, class_id indexes it); ``transform(img, label)`` applied
  in ``__getitem__`` when given.

Box convention (GluonCV's VOCDetection): a VOC xml holds 1-based inclusive pixel indices
(``xmin`` = first column, ``xmax`` = last column); the label holds them minus 1, i.e. 0-based
*inclusive* indices: ``x1`` = first pixel column, ``x2`` = last pixel column, so the box is
``x2 - x1 + 1`` pixels wide. No +1 is added anywhere downstream (GluonCV's resize/flip treat the
numbers as continuous coordinates). ``write_voc`` adds the 1 back.
"""
from __future__ import annotations

import math
import os
import warnings
import xml.etree.ElementTree as ET
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

__all__ = ["VOCDetection", "SyntheticShapes", "SHAPE_CLASSES", "write_voc", "read_image",
           "preview", "BadDataError", "voc_class_names"]

SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "diamond")


def _voc_classes():
    from .classes import VOC_CLASSES  # frcnn_model.modeling.faster_rcnn's, without importing MXNet
    return tuple(VOC_CLASSES)


def read_image(path: str) -> np.ndarray:
    """Reads an image file as ndarray[H, W, 3] uint8 RGB (same pixels as mx.image.imread)."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        if not os.path.exists(path):
            raise FileNotFoundError("image file not found: %s" % path)
        raise IOError("cannot decode image file: %s" % path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _empty_label():
    return np.zeros((0, 6), dtype=np.float32)


class VOCDetection:
    """Pascal VOC detection dataset from a VOCdevkit folder, labels as GluonCV's VOCDetection.

    Args:
        root (str): the VOCdevkit folder, holding ``VOC2007/`` etc.
        splits (sequence of (year, name)): e.g. ``((2007, 'trainval'), (2012, 'trainval'))``; an
            int year means ``root/VOC<year>``, a str is taken as the subfolder name.
        classes (sequence of str, optional): class names, ``class_id`` = index in it; default
            ``frcnn_model.VOC_CLASSES``. Names are compared lower-cased and stripped.
        transform (callable, optional): ``transform(img, label)`` applied by ``__getitem__``.
        keep_difficult (bool): keep objects marked difficult (GluonCV keeps them; the flag is in
            column 5 so evaluation can ignore them).
        on_bad (None, "raise" or "skip"): None (default) behaves as described under Errors;
            "raise" and "skip" check every annotation fully (missing or malformed xml, no or a
            bad ``<size>``, an object without name or box, an unknown class, a box outside the
            image or with x2 <= x1 / y2 <= y1) and either raise one :class:`BadDataError`
            listing every bad sample, or leave the bad samples out and list them in
            ``self.bad`` (``{"file", "problem"}`` dicts). :meth:`check_images` adds the images.

    All annotations are parsed once at construction. Errors:
      * a missing ImageSets list or annotation file -> FileNotFoundError naming the path;
      * an object whose class is not in ``classes`` -> ValueError naming the xml file and the
        class (GluonCV silently skips such objects);
      * a box outside the image or empty (GluonCV's ``_validate_label``: ``0 <= x1 < width``,
        ``x1 < x2 <= width``, same for y) is dropped with a warning, as GluonCV does.

    ``__getitem__(i) -> (img ndarray[H, W, 3] uint8 RGB, label ndarray[M, 6] float32)`` rows
    ``[x1, y1, x2, y2, class_id, difficult]``, boxes as 0-based inclusive pixel indices (the
    xml's 1-based values minus 1); ``M`` may be 0 (shape ``(0, 6)``).
    """

    def __init__(self, root: str,
                 splits: Sequence[Tuple[Union[int, str], str]] = ((2007, "trainval"),),
                 classes: Optional[Sequence[str]] = None, transform: Optional[Callable] = None,
                 keep_difficult: bool = True, on_bad: Optional[str] = None) -> None:
        self.root = os.path.expanduser(root)
        self.splits = tuple(tuple(s) for s in splits)
        self.classes = tuple(classes) if classes is not None else _voc_classes()
        self.transform = transform
        self.keep_difficult = keep_difficult
        self._index = {c.strip().lower(): i for i, c in enumerate(self.classes)}
        if len(self._index) != len(self.classes):
            raise ValueError("duplicate class names in %r" % (self.classes,))
        self.items = []  # (VOC<year> folder, image id)
        for year, name in self.splits:
            folder = os.path.join(self.root, "VOC%d" % year if isinstance(year, int) else year)
            listing = os.path.join(folder, "ImageSets", "Main", name + ".txt")
            if not os.path.isfile(listing):
                raise FileNotFoundError("VOC image set list not found: %s" % listing)
            with open(listing) as f:
                self.items += [(folder, line.strip()) for line in f if line.strip()]
        if on_bad not in (None, "raise", "skip"):
            raise ValueError("on_bad must be None, 'raise' or 'skip', got %r" % (on_bad,))
        self.on_bad = on_bad
        self.bad = []
        self._labels, self._sizes = [], []
        if on_bad is None:
            for i in range(len(self.items)):
                label, hw = self._parse(self.annotation_path(i))
                self._labels.append(label)
                self._sizes.append(hw)
        else:
            keep = []
            for i in range(len(self.items)):
                path = self.annotation_path(i)
                label, hw, problems = self._parse_strict(path)
                if problems:
                    self.bad.append({"file": path, "problem": "; ".join(problems)})
                    continue
                keep.append(self.items[i])
                self._labels.append(label)
                self._sizes.append(hw)
            self.items = keep
            if self.bad and on_bad == "raise":
                raise BadDataError(self.bad, repr(self))
        self.ids = [image_id for _, image_id in self.items]

    def check_images(self, progress: bool = False, threads: int = 2) -> List[Dict[str, str]]:
        """Reads every image (as decoding it: missing, empty, not an image, truncated or
        corrupted JPEG, a size other than the annotation's) and handles the bad ones as
        ``on_bad`` says ("skip": left out and added to ``self.bad``; "raise": one
        :class:`BadDataError`; None: "raise"). Returns the list of bad images found."""
        from concurrent.futures import ThreadPoolExecutor
        paths = [self.image_path(i) for i in range(len(self))]
        with ThreadPoolExecutor(max(1, int(threads))) as pool:
            results = pool.map(image_problem, paths, self._sizes)
            if progress:
                from tqdm import tqdm
                results = tqdm(results, total=len(paths), desc="check images", leave=False,
                               dynamic_ncols=True)
            problems = list(results)
        found = [{"file": p, "problem": why} for p, why in zip(paths, problems) if why]
        if found and self.on_bad != "skip":
            raise BadDataError(found, repr(self))
        if found:
            keep = [i for i, why in enumerate(problems) if not why]
            self.items = [self.items[i] for i in keep]
            self._labels = [self._labels[i] for i in keep]
            self._sizes = [self._sizes[i] for i in keep]
            self.ids = [image_id for _, image_id in self.items]
            self.bad += found
        return found

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self):
        return "VOCDetection(%r, splits=%r, %d images)" % (self.root, self.splits, len(self))

    def image_path(self, i: int) -> str:
        folder, image_id = self.items[i]
        return os.path.join(folder, "JPEGImages", image_id + ".jpg")

    def annotation_path(self, i: int) -> str:
        folder, image_id = self.items[i]
        return os.path.join(folder, "Annotations", image_id + ".xml")

    def image_hw(self, i: int) -> Tuple[int, int]:
        """(height, width) of image i as written in its annotation."""
        return self._sizes[i]

    def label(self, i: int) -> np.ndarray:
        """The label of image i without reading the image (a copy)."""
        return self._labels[i].copy()

    def __getitem__(self, i: int) -> Any:
        img = read_image(self.image_path(i))
        label = self._labels[i].copy()
        if self.transform is not None:
            return self.transform(img, label)
        return img, label

    def _parse(self, path):
        if not os.path.isfile(path):
            raise FileNotFoundError("VOC annotation not found: %s" % path)
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            raise ValueError("cannot parse VOC annotation %s: %s" % (path, e)) from None
        size = root.find("size")
        width = float(size.find("width").text)
        height = float(size.find("height").text)
        rows = []
        for obj in root.iter("object"):
            node = obj.find("difficult")
            try:
                difficult = int(node.text) if node is not None else 0
            except (TypeError, ValueError):
                difficult = 0
            name = obj.find("name").text.strip().lower()
            if name not in self._index:
                raise ValueError("unknown class %r in %s (classes: %s)"
                                 % (name, path, ", ".join(self.classes)))
            if difficult and not self.keep_difficult:
                continue
            bb = obj.find("bndbox")
            x1, y1, x2, y2 = (float(bb.find(k).text) - 1 for k in ("xmin", "ymin", "xmax", "ymax"))
            if not (0 <= x1 < width and 0 <= y1 < height and x1 < x2 <= width
                    and y1 < y2 <= height):
                warnings.warn("invalid box %s dropped in %s (image %gx%g)"
                              % ([x1, y1, x2, y2], path, width, height))
                continue
            rows.append([x1, y1, x2, y2, self._index[name], difficult])
        label = np.array(rows, dtype=np.float32).reshape(-1, 6)
        return label, (int(height), int(width))


    def _parse_strict(self, path):
        """(label, (h, w), problems): every problem of one annotation, as sentences."""
        if not os.path.isfile(path):
            return None, None, ["annotation file missing"]
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            return None, None, ["malformed XML (%s)" % e]
        try:
            size = root.find("size")
            width = float(size.find("width").text)
            height = float(size.find("height").text)
            if not (width > 0 and height > 0):
                raise ValueError
        except (AttributeError, TypeError, ValueError):
            return None, None, ["no valid <size><width>/<height>"]
        rows, problems = [], []
        for k, obj in enumerate(root.iter("object")):
            node = obj.find("difficult")
            try:
                difficult = int(node.text) if node is not None else 0
            except (TypeError, ValueError):
                difficult = 0
            node = obj.find("name")
            name = (node.text or "").strip().lower() if node is not None else ""
            if not name:
                problems.append("object %d has no <name>" % k)
                continue
            if name not in self._index:
                problems.append("unknown class %r (classes: %s)"
                                % (name, ", ".join(self.classes)))
                continue
            try:
                bb = obj.find("bndbox")
                x1, y1, x2, y2 = (float(bb.find(t).text) - 1
                                  for t in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError):
                problems.append("object %d (%s) has no valid <bndbox>" % (k, name))
                continue
            box = "[%g, %g, %g, %g]" % (x1 + 1, y1 + 1, x2 + 1, y2 + 1)
            if not (x1 < x2 and y1 < y2):
                problems.append("object %d (%s): empty box %s (xmax <= xmin or ymax <= ymin)"
                                % (k, name, box))
                continue
            if not (0 <= x1 and 0 <= y1 and x2 <= width and y2 <= height):
                problems.append("object %d (%s): box %s outside the %gx%g image"
                                % (k, name, box, width, height))
                continue
            if difficult and not self.keep_difficult:
                continue
            rows.append([x1, y1, x2, y2, self._index[name], difficult])
        label = np.array(rows, dtype=np.float32).reshape(-1, 6)
        return label, (int(height), int(width)), problems


class BadDataError(ValueError):
    """Bad samples in a dataset; ``problems`` lists ``{"file", "problem"}`` dicts."""

    def __init__(self, problems: Sequence[Dict[str, str]], where: str = "") -> None:
        self.problems = list(problems)
        lines = ["  %s: %s" % (p["file"], p["problem"]) for p in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append("  ... and %d more" % (len(self.problems) - 20))
        super().__init__("%d bad sample%s%s:\n%s" % (
            len(self.problems), "" if len(self.problems) == 1 else "s",
            " in %s" % where if where else "", "\n".join(lines)))


def image_problem(path: str, hw: Optional[Tuple[int, int]] = None) -> Optional[str]:
    """None if ``path`` is a whole, decodable image (of ``hw`` = (height, width) if given),
    else the problem as a short sentence."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return "image file missing"
    except OSError as e:
        return "image file unreadable (%s)" % e.strerror
    if not data:
        return "image file is empty"
    if data[:2] == b"\xff\xd8" and data.rstrip(b"\0\r\n ")[-2:] != b"\xff\xd9":
        return "truncated JPEG (no end-of-image marker)"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return "not a decodable image (%d bytes)" % len(data)
    if hw is not None and tuple(img.shape[:2]) != tuple(hw):
        return "image is %dx%d, its annotation says %dx%d" % (
            img.shape[1], img.shape[0], hw[1], hw[0])
    return None


def voc_class_names(root: str, splits: Sequence[Tuple[Union[int, str], str]]) -> List[str]:
    """The sorted class names the annotations of ``splits`` use (unreadable annotations are
    passed over: the checks report them)."""
    names = set()
    root = os.path.expanduser(root)
    for year, split in splits:
        folder = os.path.join(root, "VOC%d" % year if isinstance(year, int) else year)
        listing = os.path.join(folder, "ImageSets", "Main", split + ".txt")
        if not os.path.isfile(listing):
            raise FileNotFoundError("VOC image set list not found: %s" % listing)
        with open(listing) as f:
            ids = [line.strip() for line in f if line.strip()]
        for image_id in ids:
            try:
                tree = ET.parse(os.path.join(folder, "Annotations", image_id + ".xml"))
            except (OSError, ET.ParseError):
                continue
            for node in tree.getroot().iter("object"):
                name = node.find("name")
                if name is not None and (name.text or "").strip():
                    names.add(name.text.strip().lower())
    return sorted(names)


# ----------------------------------------------------------------------------- SyntheticShapes

def _pair(v, what):
    if isinstance(v, (int, float, np.integer, np.floating)):
        return v, v
    v = tuple(v)
    if len(v) != 2:
        raise ValueError("%s must be a number or a pair, got %r" % (what, v))
    return v


def _overlaps(a, b):
    """(IoU, intersection / smaller area) of [x1, y1, x2, y2] boxes (inclusive pixel indices)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0, 0.0
    inter = float(iw * ih)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter), inter / min(area_a, area_b)


_SHIFT = 4  # cv2 sub-pixel bits for the polygon vertices
_ONE = 1 << _SHIFT


def _shape_mask(kind, h, w):
    """ndarray[h, w] uint8 coverage (anti-aliased) of a shape spanning the whole h x w patch.

    Vertices sit on the centres of the border pixels, so the shape touches all four edges."""
    mask = np.zeros((h, w), np.uint8)
    xr, yr = (w - 1) / 2.0, (h - 1) / 2.0
    if kind == "square":
        mask[:] = 255
        return mask
    if kind == "circle":
        cv2.ellipse(mask, (int(round(xr * _ONE)), int(round(yr * _ONE))),
                    (int(round(xr * _ONE)), int(round(yr * _ONE))), 0, 0, 360, 255, -1,
                    cv2.LINE_AA, _SHIFT)
        return mask
    if kind == "triangle":
        pts = [(xr, 0), (w - 1, h - 1), (0, h - 1)]
    elif kind == "diamond":
        pts = [(xr, 0), (w - 1, yr), (xr, h - 1), (0, yr)]
    elif kind == "cross":
        tx, ty = max(w * 0.17, 1.5), max(h * 0.17, 1.5)  # half arm thickness
        a, b, c, d = xr - tx, xr + tx, yr - ty, yr + ty
        pts = [(a, 0), (b, 0), (b, c), (w - 1, c), (w - 1, d), (b, d), (b, h - 1), (a, h - 1),
               (a, d), (0, d), (0, c), (a, c)]
    else:
        raise ValueError("unknown shape %r (known: %s)" % (kind, ", ".join(SHAPE_CLASSES)))
    poly = np.round(np.array(pts, np.float64) * _ONE).astype(np.int32)
    cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA, _SHIFT)
    return mask


_NOISE = []


def _noise_window(rng, H, W):
    """ndarray[H, W] float32 standard normal noise: a window at a random offset of a fixed
    768 x 768 texture (wrapped around for larger images)."""
    if not _NOISE:
        _NOISE.append(np.random.default_rng(20240607).standard_normal((768, 768), np.float32))
    tex = _NOISE[0]
    oy, ox = (int(v) for v in rng.integers(0, 256, 2))
    if H <= 512 and W <= 512:
        return tex[oy:oy + H, ox:ox + W]
    return tex[np.ix_((oy + np.arange(H)) % 768, (ox + np.arange(W)) % 768)]


class SyntheticShapes:
    """A procedural detection dataset: filled shapes on a textured background.

    Image ``i`` is rendered on demand from ``np.random.default_rng([seed, i])``: the same
    (seed, i) always gives the same image and label, no state is kept between calls.

    Content: a smooth two-colour gradient in a random direction, low-contrast smooth colour
    blobs, faint stripes, pixel noise and a few thin anti-aliased clutter lines; then ``objects``
    (min, max) shapes of a random colour that differs clearly from the background under it,
    each of width and height in ``object_size`` (aspect ratio within 0.8..1.25), fully inside
    the image, pairwise IoU < ``max_iou`` and at most half of the smaller box covered (rejection
    sampling; an object that finds no place in 50 tries is dropped, never the first one).
    Shapes are axis-aligned (no rotation, so a diamond never looks like a square): circle
    (ellipse), square (rectangle), triangle (apex up), cross (plus sign), diamond. The tight
    box can be a pixel or two smaller than the drawn patch: pixels under 25% anti-aliased
    coverage are not drawn.

    Args:
        num_images (int): ``len(ds)``.
        seed (int): the dataset seed.
        size (int or (H, W)): image size.
        classes (sequence of str): a subset of ``SHAPE_CLASSES`` in any order; class_id indexes it.
        objects ((int, int)): inclusive range of the number of objects per image.
        object_size ((int, int)): inclusive range of an object's side in pixels.
        transform (callable, optional): ``transform(img, label)`` applied by ``__getitem__``.
        size_jitter (float): when > 0, each image's aspect ratio is jittered: H * r, W / r with
            log r uniform in [-log(1 + size_jitter), log(1 + size_jitter)].
        max_iou (float): the overlap limit between objects.

    ``__getitem__(i) -> (img ndarray[H, W, 3] uint8 RGB, label ndarray[M, 6] float32)`` rows
    ``[x1, y1, x2, y2, class_id, 0]``; boxes are integer-valued, 0-based inclusive pixel
    indices of the tight bounding box of every pixel the shape covers (the VOCDetection
    convention, so ``write_voc`` / ``VOCDetection`` round-trip them exactly).
    """

    def __init__(self, num_images: int, seed: int = 0, size: Tuple[int, int] = (256, 256),
                 classes: Sequence[str] = SHAPE_CLASSES, objects: Tuple[int, int] = (1, 4),
                 object_size: Tuple[int, int] = (24, 96), transform: Optional[Callable] = None,
                 size_jitter: float = 0.0, max_iou: float = 0.3) -> None:
        self.num_images = int(num_images)
        self.seed = int(seed)
        self.size = tuple(int(s) for s in _pair(size, "size"))
        self.classes = tuple(classes)
        unknown = [c for c in self.classes if c not in SHAPE_CLASSES]
        if unknown or not self.classes:
            raise ValueError("classes must be a non-empty subset of %s, got %r"
                             % (SHAPE_CLASSES, self.classes))
        self.objects = tuple(int(n) for n in _pair(objects, "objects"))
        self.object_size = tuple(int(s) for s in _pair(object_size, "object_size"))
        self.transform = transform
        self.size_jitter = float(size_jitter)
        self.max_iou = float(max_iou)
        lo, hi = self.object_size
        if not 1 <= self.objects[0] <= self.objects[1]:
            raise ValueError("objects must be 1 <= min <= max, got %r" % (self.objects,))
        if not 4 <= lo <= hi:
            raise ValueError("object_size must be 4 <= min <= max, got %r" % (self.object_size,))
        smallest = min(self.size) / (1.0 + self.size_jitter)
        if hi > smallest:
            raise ValueError("object_size max %d does not fit in images of size %r"
                             % (hi, self.size))

    def __len__(self) -> int:
        return self.num_images

    def __repr__(self):
        return ("SyntheticShapes(%d, seed=%d, size=%r, classes=%r)"
                % (self.num_images, self.seed, self.size, self.classes))

    def __getitem__(self, i: int) -> Any:
        img, label, _ = self.render(i)
        if self.transform is not None:
            return self.transform(img, label)
        return img, label

    def render(self, i: int, return_masks: bool = False
               ) -> Tuple[np.ndarray, np.ndarray, Optional[List[Tuple[np.ndarray, np.ndarray]]]]:
        """(img, label, masks): masks is a list of (box, ndarray[h, w] uint8 coverage) per object
        when ``return_masks``, else None."""
        i = int(i)
        if not -self.num_images <= i < self.num_images:
            raise IndexError("index %d out of range for %d images" % (i, self.num_images))
        i %= self.num_images
        rng = np.random.default_rng([self.seed, i])
        H, W = self.size
        if self.size_jitter > 0:
            r = math.exp(rng.uniform(-1, 1) * math.log1p(self.size_jitter))
            H, W = max(int(round(H * r)), self.object_size[1]), \
                max(int(round(W / r)), self.object_size[1])
        img = self._background(rng, H, W)
        boxes, masks = [], []
        n = int(rng.integers(self.objects[0], self.objects[1] + 1))
        lo, hi = self.object_size
        for k in range(n):
            cls = int(rng.integers(len(self.classes)))
            side = rng.uniform(lo, hi)
            aspect = math.exp(rng.uniform(-1, 1) * math.log(1.25))
            w = int(np.clip(round(side * aspect), lo, hi))
            h = int(np.clip(round(side / aspect), lo, hi))
            for _ in range(50):
                x0 = int(rng.integers(0, W - w + 1))
                y0 = int(rng.integers(0, H - h + 1))
                cand = (x0, y0, x0 + w - 1, y0 + h - 1)
                ov = [_overlaps(cand, b) for b in boxes]
                if all(iou < self.max_iou and cover <= 0.5 for iou, cover in ov):
                    break
            else:
                continue
            mask = _shape_mask(self.classes[cls], h, w)
            # pixels under 25% coverage are left out, so every drawn pixel visibly changes;
            # the box is the tight box of the drawn pixels (the shape spans the patch, the
            # border rows / columns may end up empty)
            mask[mask < 64] = 0
            cols = np.flatnonzero(mask.any(axis=0))
            rows = np.flatnonzero(mask.any(axis=1))
            region = img[y0:y0 + h, x0:x0 + w]
            color = self._contrast_color(rng, region, mask)
            alpha = mask[..., None].astype(np.float32) * (1.0 / 255.0)
            region[:] = (region * (1.0 - alpha) + color * alpha + 0.5).astype(np.uint8)
            box = (x0 + cols[0], y0 + rows[0], x0 + cols[-1], y0 + rows[-1])
            boxes.append(box + (cls, 0))
            if return_masks:
                masks.append((box, mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]))
        label = np.array(boxes, dtype=np.float32).reshape(-1, 6)
        return img, label, (masks if return_masks else None)

    @staticmethod
    def _background(rng, H, W):
        # 1. a two-colour gradient along a random direction plus low-contrast colour blobs, both
        #    smooth: built on a coarse grid (one node per 32 px) and upsampled
        gh, gw = max(H // 32, 2) + 1, max(W // 32, 2) + 1
        c0 = rng.uniform(30, 225, 3).astype(np.float32)
        c1 = rng.uniform(30, 225, 3).astype(np.float32)
        theta = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
        t = yy * (math.sin(theta) * (H / gh)) + xx * (math.cos(theta) * (W / gw))
        t -= t.min()
        t *= 1.0 / max(float(t.max()), 1e-6)
        coarse = t[..., None] * (c1 - c0) + c0
        coarse += rng.normal(0.0, rng.uniform(4, 14), (gh, gw, 3)).astype(np.float32)
        coarse = np.clip(coarse, 0, 255, out=coarse).astype(np.uint8)
        # bicubic: bilinear upsampling leaves diamond/triangle facets that look like objects
        img = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
        # 2. faint grey stripes sin(k (x cos a + y sin a) + p), as two rank-1 products
        a, k = rng.uniform(0, math.pi), rng.uniform(0.15, 0.6)
        p, amp = rng.uniform(0, 2 * math.pi), np.float32(rng.uniform(0, 8))
        ax = np.arange(W, dtype=np.float32) * np.float32(k * math.cos(a)) + np.float32(p)
        ay = np.arange(H, dtype=np.float32) * np.float32(k * math.sin(a))
        grey = np.outer(np.sin(ay) * amp, np.cos(ax))
        grey += np.outer(np.cos(ay) * amp, np.sin(ax))
        # 3. grey pixel noise: a random window of a fixed noise texture (cheaper than drawing
        #    H * W normals per image)
        grey += _noise_window(rng, H, W) * np.float32(rng.uniform(2, 7))
        img = cv2.add(img, cv2.merge([grey, grey, grey]), dtype=cv2.CV_8U)  # saturating
        # 4. clutter: 0-3 thin anti-aliased lines of any colour
        for _ in range(int(rng.integers(0, 4))):
            p0 = rng.integers(0, (W, H)) * _ONE
            p1 = rng.integers(0, (W, H)) * _ONE
            col = rng.uniform(0, 255, 3)
            cv2.line(img, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])),
                     (float(col[0]), float(col[1]), float(col[2])), 1, cv2.LINE_AA, _SHIFT)
        return img

    @staticmethod
    def _contrast_color(rng, region, mask):
        """A random colour at least 90 (Euclidean, 0..255 RGB) from the mean background under
        the shape; after 8 tries the candidate farthest from it."""
        sel = mask > 127
        bg = (region[sel] if sel.any() else region.reshape(-1, 3)).mean(axis=0)
        best, best_d = None, -1.0
        for _ in range(8):
            c = rng.uniform(0, 255, 3).astype(np.float32)
            d = float(np.sqrt(((c - bg) ** 2).sum()))
            if d >= 90:
                return c
            if d > best_d:
                best, best_d = c, d
        return best


# ----------------------------------------------------------------------------- write_voc

def _fmt(v):
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def write_voc(dataset: Any, root: str, year: int = 2007, split: str = "trainval",
              image_ids: Optional[Sequence[str]] = None, quality: int = 95) -> List[str]:
    """Writes a dataset with the interface above as a VOCdevkit folder.

    Writes ``root/VOC<year>/JPEGImages/<id>.jpg`` (JPEG ``quality``),
    ``root/VOC<year>/Annotations/<id>.xml`` (``xmin = x1 + 1`` etc., the inverse of
    ``VOCDetection``; class names from ``dataset.classes``; the difficult flag) and
    ``root/VOC<year>/ImageSets/Main/<split>.txt`` (replaced). A dataset ``transform`` is
    bypassed when the dataset has a ``transform`` attribute (set to None while writing).

    Args:
        dataset: ``len(dataset)``, ``dataset[i] -> (img uint8 [H, W, 3] RGB, label [M, 6])``,
            ``dataset.classes``.
        root (str): the VOCdevkit folder (created).
        image_ids (sequence of str, optional): one id per image; default ``'%06d' % i``.

    Returns:
        list of str: the image ids written.
    """
    n = len(dataset)
    ids = ["%06d" % i for i in range(n)] if image_ids is None else [str(s) for s in image_ids]
    if len(ids) != n or len(set(ids)) != n:
        raise ValueError("image_ids must be %d distinct ids" % n)
    folder_name = "VOC%d" % year if isinstance(year, int) else str(year)
    folder = os.path.join(os.path.expanduser(root), folder_name)
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    classes = tuple(dataset.classes)
    saved = getattr(dataset, "transform", None)
    if saved is not None:
        dataset.transform = None
    try:
        for i, image_id in enumerate(ids):
            img, label = dataset[i]
            img = np.asarray(img)
            label = np.asarray(label, dtype=np.float64)
            label = label.reshape(-1, label.shape[-1] if label.ndim == 2 else 6)
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError("image %d must be uint8 [H, W, 3], got %s %s"
                                 % (i, img.dtype, img.shape))
            path = os.path.join(folder, "JPEGImages", image_id + ".jpg")
            if not cv2.imwrite(path, img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
                raise IOError("cannot write %s" % path)
            _write_xml(os.path.join(folder, "Annotations", image_id + ".xml"), folder_name,
                       image_id, img.shape, label, classes)
    finally:
        if saved is not None:
            dataset.transform = saved
    with open(os.path.join(folder, "ImageSets", "Main", split + ".txt"), "w") as f:
        f.writelines(s + "\n" for s in ids)
    return ids


def _write_xml(path, folder_name, image_id, shape, label, classes):
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = folder_name
    ET.SubElement(ann, "filename").text = image_id + ".jpg"
    size = ET.SubElement(ann, "size")
    for k, v in zip(("width", "height", "depth"), (shape[1], shape[0], shape[2])):
        ET.SubElement(size, k).text = str(v)
    ET.SubElement(ann, "segmented").text = "0"
    for row in label:
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = classes[int(row[4])]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(int(row[5]) if len(row) > 5 else 0)
        bb = ET.SubElement(obj, "bndbox")
        for k, v in zip(("xmin", "ymin", "xmax", "ymax"), row[:4]):
            ET.SubElement(bb, k).text = _fmt(v + 1)
    ET.indent(ann)
    ET.ElementTree(ann).write(path, encoding="utf-8", xml_declaration=False)


# ----------------------------------------------------------------------------- preview

def draw_boxes(img: np.ndarray, label: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """A copy of img (uint8 RGB) with the label's boxes and class names drawn."""
    out = np.ascontiguousarray(img).copy()
    for row in np.asarray(label):
        x1, y1, x2, y2 = (int(round(v)) for v in row[:4])
        cv2.rectangle(out, (x1, y1), (x2, y2), (255, 255, 0), 1)
        cv2.putText(out, str(classes[int(row[4])]), (x1, max(y1 - 2, 8)),
                    cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 0), 1, cv2.LINE_AA)
    return out


def preview(path: str, dataset: Any = None, rows: int = 4, cols: int = 4, tile: int = 192) -> None:
    """Saves a rows x cols grid of images with their boxes as a PNG (tiles of tile x tile,
    256-colour palette to keep the file small). Default dataset: SyntheticShapes(16)."""
    from PIL import Image
    dataset = SyntheticShapes(rows * cols) if dataset is None else dataset
    grid = np.full((rows * (tile + 2), cols * (tile + 2), 3), 255, np.uint8)
    for k in range(min(rows * cols, len(dataset))):
        img, label = dataset[k]
        s = tile / float(max(img.shape[:2]))
        small = cv2.resize(img, (int(round(img.shape[1] * s)), int(round(img.shape[0] * s))),
                           interpolation=cv2.INTER_AREA)
        small = draw_boxes(small, np.concatenate([label[:, :4] * s, label[:, 4:]], axis=1),
                           dataset.classes)
        r, c = divmod(k, cols)
        grid[r * (tile + 2):r * (tile + 2) + small.shape[0],
             c * (tile + 2):c * (tile + 2) + small.shape[1]] = small
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(grid).quantize(256).save(path, optimize=True)
    return path
