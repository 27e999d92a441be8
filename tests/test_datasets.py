"""frcnn_model.data.datasets and frcnn_model.data.transforms: SyntheticShapes, VOC read/write, the
GluonCV-parity transforms, batchify and the loader."""
import os

import numpy as np
import pytest

from frcnn_model.data.datasets import (SHAPE_CLASSES, SyntheticShapes, VOCDetection, read_image,
                                  write_voc)
from frcnn_model.data.transforms import (FasterRCNNTrainTransform, FasterRCNNValTransform,
                                    batch_order, batchify, iterate_batches)


class ListDataset:
    """A dataset from lists of images and labels (the common interface)."""

    def __init__(self, images, labels, classes):
        self.images, self.labels, self.classes = images, labels, tuple(classes)
        self.transform = None

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], np.asarray(self.labels[i], np.float32).reshape(-1, 6)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    """A VOCdevkit holding SyntheticShapes(12, seed=3) as VOC2007 trainval, varied sizes."""
    root = str(tmp_path_factory.mktemp("vocdevkit"))
    ds = SyntheticShapes(12, seed=3, size=(160, 224), size_jitter=0.3)
    write_voc(ds, root)
    return root, ds


def _gluoncv_voc(root, classes):
    from gluoncv.data import VOCDetection as GVOC

    class Shapes(GVOC):
        CLASSES = tuple(classes)

    return Shapes(root=root, splits=((2007, "trainval"),))


# ----------------------------------------------------------------------------- SyntheticShapes

def test_synthetic_deterministic():
    a, b = SyntheticShapes(20, seed=5), SyntheticShapes(20, seed=5)
    for i in (0, 7, 19, 7):
        (ia, la), (ib, lb) = a[i], b[i]
        assert ia.dtype == np.uint8 and ia.shape == (256, 256, 3)
        assert la.dtype == np.float32 and la.shape[1] == 6
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
    c = SyntheticShapes(20, seed=6)
    assert not np.array_equal(a[3][0], c[3][0])
    assert not np.array_equal(a[3][0], a[4][0])
    np.testing.assert_array_equal(a[-1][0], a[19][0])
    with pytest.raises(IndexError):
        a[20]


def test_synthetic_labels_valid():
    ds = SyntheticShapes(100, seed=1, size=(192, 256), objects=(1, 4), object_size=(20, 80))
    counts = []
    for i in range(len(ds)):
        img, label = ds[i]
        H, W = img.shape[:2]
        assert (H, W) == (192, 256)
        assert 1 <= len(label) <= 4
        counts.append(len(label))
        np.testing.assert_array_equal(label, np.round(label))  # integer-valued boxes
        assert (label[:, 5] == 0).all()
        assert (label[:, 0] >= 0).all() and (label[:, 1] >= 0).all()
        assert (label[:, 2] <= W - 1).all() and (label[:, 3] <= H - 1).all()
        wh = label[:, 2:4] - label[:, :2] + 1
        assert (wh >= 20 - 2).all() and (wh <= 80).all()
        for a in range(len(label)):
            for b in range(a):
                x1, y1 = np.maximum(label[a, :2], label[b, :2])
                x2, y2 = np.minimum(label[a, 2:4], label[b, 2:4])
                inter = max(x2 - x1 + 1, 0) * max(y2 - y1 + 1, 0)
                union = wh[a].prod() + wh[b].prod() - inter
                assert inter / union < 0.3
    assert len(set(counts)) > 1


def test_synthetic_boxes_tight_around_drawn_pixels():
    """With one object per image, the pixels that differ from the background alone all lie in
    the box and reach each of its four edges."""
    ds = SyntheticShapes(60, seed=2, size=(128, 160), objects=(1, 1), object_size=(8, 60))
    for i in range(len(ds)):
        img, label, masks = ds.render(i, return_masks=True)
        bg = ds._background(np.random.default_rng([ds.seed, i]), 128, 160)
        changed = (img != bg).any(axis=2)
        x1, y1, x2, y2 = label[0, :4].astype(int)
        inside = np.zeros_like(changed)
        inside[y1:y2 + 1, x1:x2 + 1] = True
        assert not (changed & ~inside).any(), i
        box = changed[y1:y2 + 1, x1:x2 + 1]
        assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any(), i
        (mbox, mask), = masks
        assert tuple(mbox) == (x1, y1, x2, y2) and mask.shape == (y2 - y1 + 1, x2 - x1 + 1)


def test_synthetic_shapes_distinct_and_classes_balanced():
    ds = SyntheticShapes(400, seed=0)
    cls = []
    i = 0
    while len(cls) < 500:
        cls += ds[i][1][:, 4].astype(int).tolist()
        i += 1
    counts = np.bincount(cls[:500], minlength=5)
    assert (counts >= 60).all() and (counts <= 140).all(), counts  # expected 100 each
    # the five masks at one small size are pairwise different
    from frcnn_model.data.datasets import _shape_mask
    masks = [_shape_mask(k, 24, 24) > 127 for k in SHAPE_CLASSES]
    for a in range(5):
        for b in range(a):
            assert (masks[a] != masks[b]).mean() > 0.08, (SHAPE_CLASSES[a], SHAPE_CLASSES[b])


def test_synthetic_options():
    ds = SyntheticShapes(30, seed=4, size=200, classes=("cross", "circle"), size_jitter=0.5,
                         object_size=(16, 40))
    shapes = {ds[i][0].shape for i in range(30)}
    assert len(shapes) > 5 and all(s[2] == 3 for s in shapes)
    assert ds.classes == ("cross", "circle")
    assert {int(c) for i in range(30) for c in ds[i][1][:, 4]} == {0, 1}
    with pytest.raises(ValueError, match="classes"):
        SyntheticShapes(1, classes=("hexagon",))
    with pytest.raises(ValueError, match="does not fit"):
        SyntheticShapes(1, size=64, object_size=(24, 96))
    ds = SyntheticShapes(2, transform=lambda img, label: (img.shape, len(label)))
    assert ds[0][0] == (256, 256, 3)


# ----------------------------------------------------------------------------- VOC

def test_voc_round_trip(voc_root):
    root, ds = voc_root
    voc = VOCDetection(root, classes=ds.classes)
    assert len(voc) == len(ds) == 12
    assert voc.ids == ["%06d" % i for i in range(12)]
    assert voc.image_path(3) == os.path.join(root, "VOC2007", "JPEGImages", "000003.jpg")
    for i in range(len(ds)):
        img, label = voc[i]
        ref_img, ref_label = ds[i]
        assert label.dtype == np.float32 and img.dtype == np.uint8
        np.testing.assert_array_equal(label, ref_label)
        assert img.shape == ref_img.shape and voc.image_hw(i) == img.shape[:2]
        assert np.abs(img.astype(int) - ref_img).mean() < 4.0  # JPEG quality 95


def test_voc_matches_gluoncv(voc_root, gluoncv):
    import mxnet as mx
    root, ds = voc_root
    ours = VOCDetection(root, splits=((2007, "trainval"),), classes=ds.classes)
    ref = _gluoncv_voc(root, ds.classes)
    assert len(ref) == len(ours)
    for i in range(len(ours)):
        img, label = ours[i]
        rimg, rlabel = ref[i]
        np.testing.assert_array_equal(label, np.asarray(rlabel, np.float64).reshape(-1, 6))
        np.testing.assert_array_equal(img, rimg.asnumpy())
        np.testing.assert_array_equal(img, mx.image.imread(ours.image_path(i)).asnumpy())


def test_voc_difficult_and_float_boxes(tmp_path, gluoncv):
    img = np.full((50, 60, 3), 128, np.uint8)
    labels = [[[0, 0, 59, 49, 1, 0], [10.5, 5, 20, 30.25, 0, 1]], np.zeros((0, 6))]
    ds = ListDataset([img, img], labels, ("a", "b"))
    write_voc(ds, str(tmp_path), year=2012, split="val", image_ids=["x1", "x2"])
    voc = VOCDetection(str(tmp_path), splits=((2012, "val"),), classes=("A", "b"))
    np.testing.assert_array_equal(voc.label(0), np.array(labels[0], np.float32))
    assert voc.label(1).shape == (0, 6)
    assert voc.ids == ["x1", "x2"]
    easy = VOCDetection(str(tmp_path), splits=((2012, "val"),), classes=("a", "b"),
                        keep_difficult=False)
    np.testing.assert_array_equal(easy.label(0), np.array(labels[0][:1], np.float32))
    from gluoncv.data import VOCDetection as GVOC

    class AB(GVOC):
        CLASSES = ("a", "b")
    ref = AB(root=str(tmp_path), splits=((2012, "val"),))
    np.testing.assert_array_equal(voc.label(0), ref[0][1])
    assert ref[1][1].shape == (0,)  # GluonCV: an empty label is shape (0,), ours (0, 6)


def test_voc_errors(tmp_path):
    img = np.zeros((40, 40, 3), np.uint8)
    ds = ListDataset([img, img], [[[1, 2, 30, 30, 0, 0]], [[1, 2, 30, 30, 1, 0]]], ("a", "b"))
    root = str(tmp_path / "devkit")
    write_voc(ds, root)
    with pytest.raises(ValueError, match=r"unknown class 'b' in .*000001\.xml"):
        VOCDetection(root, classes=("a",))
    with pytest.raises(FileNotFoundError, match=r"test\.txt"):
        VOCDetection(root, splits=((2007, "test"),), classes=("a", "b"))
    with pytest.raises(FileNotFoundError, match="VOC2012"):
        VOCDetection(root, splits=((2012, "trainval"),), classes=("a", "b"))
    os.remove(os.path.join(root, "VOC2007", "JPEGImages", "000001.jpg"))
    voc = VOCDetection(root, classes=("a", "b"))
    voc[0]
    with pytest.raises(FileNotFoundError, match=r"000001\.jpg"):
        voc[1]
    os.remove(os.path.join(root, "VOC2007", "Annotations", "000000.xml"))
    with pytest.raises(FileNotFoundError, match=r"000000\.xml"):
        VOCDetection(root, classes=("a", "b"))
    with pytest.raises(ValueError, match="distinct"):
        write_voc(ds, root, image_ids=["a", "a"])


def test_voc_invalid_box_dropped_like_gluoncv(tmp_path):
    img = np.zeros((40, 40, 3), np.uint8)
    ds = ListDataset([img], [[[5, 5, 5, 20, 0, 0], [1, 2, 30, 30, 0, 0]]], ("a",))
    write_voc(ds, str(tmp_path))
    with pytest.warns(UserWarning, match="invalid box"):
        voc = VOCDetection(str(tmp_path), classes=("a",))
    np.testing.assert_array_equal(voc.label(0), np.array([[1, 2, 30, 30, 0, 0]], np.float32))


def test_default_classes_are_voc():
    from frcnn_model import VOC_CLASSES
    assert SyntheticShapes(1).classes == SHAPE_CLASSES
    assert VOCDetection.__init__.__defaults__[1] is None
    from frcnn_model.data.datasets import _voc_classes
    assert _voc_classes() == tuple(VOC_CLASSES)
    assert len(VOC_CLASSES) == 20 and VOC_CLASSES[14] == "person"


def test_default_classes_are_the_models(mx):
    from frcnn_model.modeling.faster_rcnn import DEFAULTS, VOC_CLASSES
    from frcnn_model.data.datasets import _voc_classes
    assert _voc_classes() == tuple(VOC_CLASSES) == tuple(DEFAULTS["classes"])


# ----------------------------------------------------------------------------- transforms

SIZES = [((256, 256), 600, 1000), ((200, 300), 600, 1000), ((300, 120), 600, 1000),
         ((500, 375), 300, 1000), ((128, 256), 600, 800), ((333, 500), 333, 500)]


@pytest.mark.parametrize("hw,short,max_size", SIZES)
@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_train_transform_matches_gluoncv(hw, short, max_size, flip, gluoncv):
    import mxnet as mx
    from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultTrainTransform
    ds = SyntheticShapes(2, seed=9, size=hw, object_size=(8, min(hw) // 2))
    img, label = ds[1]
    label[0, 5] = 1
    ref = FasterRCNNDefaultTrainTransform(short, max_size, net=None, flip_p=flip)
    rx, rb = ref(mx.nd.array(img, dtype="uint8"), label.astype(np.float64))
    x, b = FasterRCNNTrainTransform(short, max_size, flip_p=flip)(img, label,
                                                                 np.random.default_rng(0))
    assert x.dtype == np.float32 and x.shape == rx.shape
    np.testing.assert_allclose(x, rx.asnumpy(), rtol=0, atol=1e-5)
    assert b.dtype == np.float32
    np.testing.assert_array_equal(b, rb)


@pytest.mark.parametrize("hw,short,max_size", SIZES[:4])
def test_val_transform_matches_gluoncv(hw, short, max_size, gluoncv):
    import mxnet as mx
    from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultValTransform
    img, label = SyntheticShapes(1, seed=2, size=hw, object_size=(8, min(hw) // 2))[0]
    rx, rb, _ = FasterRCNNDefaultValTransform(short, max_size)(mx.nd.array(img, dtype="uint8"),
                                                               label.astype(np.float64))
    x, b = FasterRCNNValTransform(short, max_size)(img, label)
    np.testing.assert_allclose(x, rx.asnumpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(b, rb)


def test_train_transform_random_scale_and_flip():
    img, label = SyntheticShapes(1, seed=0, size=(100, 150))[0]
    t = FasterRCNNTrainTransform(short=(200, 204), max_size=1000, flip_p=0.5)
    shorts, flips = set(), set()
    for s in range(60):
        x, b = t(img, label, np.random.default_rng(s))
        shorts.add(x.shape[1])
        plain = FasterRCNNValTransform(x.shape[1], 1000)(img, label)[0]
        flipped = np.array_equal(x, plain[:, :, ::-1])
        assert flipped or np.array_equal(x, plain)
        flips.add(flipped)
        x2, b2 = t(img, label, np.random.default_rng(s))
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(b, b2)
    assert shorts == {200, 201, 202, 203, 204} and flips == {True, False}
    with pytest.raises(ValueError):
        FasterRCNNTrainTransform(short=(600, 700, 800))


# ----------------------------------------------------------------------------- batching

def test_batchify_pads():
    a = (np.ones((3, 5, 7), np.float32), np.arange(12, dtype=np.float32).reshape(2, 6))
    b = (2 * np.ones((3, 9, 4), np.float32), np.zeros((0, 6), np.float32))
    data, labels, im_hw = batchify([a, b])
    assert data.shape == (2, 3, 9, 7) and data.dtype == np.float32
    assert (data[0, :, :5, :7] == 1).all() and (data[0, :, 5:] == 0).all()
    assert (data[1, :, :, :4] == 2).all() and (data[1, :, :, 4:] == 0).all()
    assert labels.shape == (2, 2, 6)
    np.testing.assert_array_equal(labels[0], a[1])
    assert (labels[1] == -1).all()
    np.testing.assert_array_equal(im_hw, [[5, 7], [9, 4]])
    data, labels, im_hw = batchify([a, b], stride=16)
    assert data.shape == (2, 3, 16, 16)
    _, labels, _ = batchify([b])
    assert labels.shape == (1, 1, 6) and (labels == -1).all()
    with pytest.raises(ValueError):
        batchify([])


def test_iterate_batches_deterministic():
    ds = SyntheticShapes(10, seed=1, size=(64, 96), object_size=(8, 32))
    t = FasterRCNNTrainTransform(short=(60, 70), max_size=200)
    run = lambda **kw: list(iterate_batches(ds, t, 4, shuffle=True, seed=3, **kw))  # noqa: E731
    e0, e0b, e1 = run(epoch=0), run(epoch=0), run(epoch=1)
    assert [len(b[0]) for b in e0] == [4, 4, 2]
    for p, q in zip(e0, e0b):
        for u, v in zip(p, q):
            np.testing.assert_array_equal(u, v)
    assert not all(np.array_equal(p[2], q[2]) for p, q in zip(e0, e1))
    order = np.concatenate(batch_order(10, 4, True, 3, 0))
    assert sorted(order) == list(range(10))
    assert [len(b) for b in batch_order(10, 4, True, 3, 0, drop_last=True)] == [4, 4]
    assert len(run(epoch=0, drop_last=True)) == 2
    plain = list(iterate_batches(ds, None, 3))
    np.testing.assert_array_equal(plain[0][0][1].transpose(1, 2, 0), ds[1][0])
    workers = run(epoch=0, num_workers=2)
    assert len(workers) == len(e0)
    for p, q in zip(e0, workers):
        for u, v in zip(p, q):
            np.testing.assert_array_equal(u, v)


def test_read_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(str(tmp_path / "nope.jpg"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(IOError):
        read_image(str(bad))
