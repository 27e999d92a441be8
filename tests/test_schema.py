"""Each op's attribute schema is declared once (csrc/<op>/<op>.cpp) and every path reads it:
the Python functions' signatures agree with it, and the NumPy, CUDA-harness and MXNet paths
refuse the same attributes with the same message."""
import inspect

import numpy as np
import pytest

import frcnn_ops
from frcnn_ops import _C, _dispatch
from frcnn_ops._mxnet_api import SIGNATURES, _default

SCHEMA = _dispatch.schema()

# Python function -> its op; the inputs it takes before the attributes.
FUNCTIONS = {
    "box_decode": ("frcnn_box_decode", ["data", "anchors"]),
    "box_decode_backward": ("frcnn_box_decode", ["grad", "data", "anchors"]),
    "clip_boxes": ("frcnn_clip_boxes", ["boxes", "im_info"]),
    "clip_boxes_backward": ("frcnn_clip_boxes", ["grad", "boxes", "im_info"]),
    "proposal": ("frcnn_proposal", ["scores", "deltas", "anchors", "im_info"]),
    "multilevel_proposal": ("frcnn_multilevel_proposal",
                            ["scores", "deltas", "anchors", "im_info"]),
    "nms": ("frcnn_nms", ["data"]),
    "nms_backward": ("frcnn_nms", ["grad", "data"]),
    "roi_align": ("frcnn_roi_align", ["data", "rois"]),
    "roi_align_backward": ("frcnn_roi_align", ["grad", "rois", "data_shape"]),
    "multilevel_roi_align": ("frcnn_multilevel_roi_align", ["rois", "features"]),
    "multilevel_roi_align_backward": ("frcnn_multilevel_roi_align",
                                      ["grad", "rois", "feature_shapes"]),
}


# Attributes the Python function derives from its inputs (MXNet needs them to count inputs).
DERIVED = {"frcnn_multilevel_proposal": ["num_levels"]}


def test_every_op_has_its_python_functions():
    assert {op for op, _ in FUNCTIONS.values()} == set(SCHEMA)
    assert set(SIGNATURES) == set(SCHEMA)


@pytest.mark.parametrize("fn", sorted(FUNCTIONS))
def test_signature_follows_the_schema(fn):
    op, inputs = FUNCTIONS[fn]
    params = inspect.signature(getattr(frcnn_ops, fn)).parameters
    assert list(params)[:len(inputs)] == inputs
    attrs = [a for a in SCHEMA[op]["attrs"] if a["name"] not in DERIVED.get(op, [])]
    assert list(params)[len(inputs):] == [a["name"] for a in attrs]
    for a in attrs:
        p = params[a["name"]]
        assert p.default == (inspect.Parameter.empty if a["default"] is None else _default(a)), (
            fn, a["name"])
        assert p.annotation is not inspect.Parameter.empty, (fn, a["name"])


def test_schema_lists_types_defaults_and_docs():
    for op, s in SCHEMA.items():
        assert s["inputs"], op
        for a in s["attrs"]:
            assert a["type"] in ("float", "double", "int", "bool", "choice", "int_pair",
                                 "float_list", "int_list"), a
            assert a["doc"], (op, a["name"])
            assert (a["type"] == "choice") == bool(a["choices"]), a


def _shapes(op):
    return {
        "frcnn_box_decode": [[1, 3, 4], [1, 3, 4]],
        "frcnn_clip_boxes": [[1, 3, 4], [1, 3]],
        "frcnn_proposal": [[1, 3, 1], [1, 3, 4], [1, 3, 4], [1, 3]],
        "frcnn_multilevel_proposal": [[1, 3, 4], [1, 3], [1, 2, 1], [1, 1, 1], [1, 2, 4],
                                      [1, 1, 4]],
        "frcnn_nms": [[3, 6]],
        "frcnn_roi_align": [[1, 2, 4, 4], [3, 5]],
        "frcnn_multilevel_roi_align": [[3, 5], [1, 2, 8, 8], [1, 2, 4, 4], [1, 2, 2, 2],
                                       [1, 2, 1, 1]],
    }[op]


def _required(op):
    return {"frcnn_roi_align": {"pooled_size": "2", "spatial_scale": "0.5"},
            "frcnn_multilevel_proposal": {"num_levels": "2"},
            "frcnn_multilevel_roi_align": {"pooled_size": "2",
                                           "spatial_scales": "(0.25, 0.125, 0.0625, 0.03125)"},
            }.get(op, {})


BAD = [
    ({"no_such_attr": "1"}, "unknown attribute 'no_such_attr'"),
    ({"std0": "abc"}, "attribute std0 must be a number, got 'abc'"),
    ({"topk": "2.5"}, "attribute topk must be an integer, got '2.5'"),
    ({"force_suppress": "maybe"}, "attribute force_suppress must be a boolean"),
    ({"format": "xyxy"}, "attribute format must be one of 'center', 'corner', got 'xyxy'"),
    ({"threshold": "1.5"}, "threshold must be in [0, 1], got 1.5"),
    ({"rpn_post_nms_top_n": "0"}, "rpn_post_nms_top_n must be >= 1, got 0"),
    ({"pooled_size": "(2, 2, 2)"}, "attribute pooled_size must be an integer or 2 integers"),
]


def _cases():
    for attrs, msg in BAD:
        for op, s in SCHEMA.items():
            names = [a["name"] for a in s["attrs"]]
            key = next(iter(attrs))
            if key in names or key == "no_such_attr":
                yield op, dict(_required(op), **attrs), msg


@pytest.mark.parametrize("op,attrs,msg", list(_cases()))
def test_bad_attributes_refused_alike_on_every_path(op, attrs, msg):
    shapes = _shapes(op)
    with pytest.raises(ValueError) as e:
        _C.infer_shape(op, shapes, attrs)
    assert str(e.value).startswith(op + ": ") and msg in str(e.value)
    arrays = [np.zeros(s, np.float32) for s in shapes]
    with pytest.raises(ValueError) as e:
        _C.forward(op, arrays, attrs)
    assert msg in str(e.value)
    try:
        from frcnn_ops import _C_emu
    except ImportError:
        _C_emu = None
    if _C_emu is not None:
        with pytest.raises(ValueError) as e:
            _C_emu.workspace_gpu(op, False, 0, shapes, attrs)
        assert msg in str(e.value)


@pytest.mark.parametrize("op,attrs,msg", list(_cases()))
def test_bad_attributes_refused_alike_by_mxnet(mx, op, attrs, msg):
    shapes = _shapes(op)
    generated = getattr(mx.nd.op, op).__wrapped_generated__
    with pytest.raises(mx.base.MXNetError) as e:
        generated(*[mx.nd.zeros(s) for s in shapes], **attrs).wait_to_read()
    assert op + ": " + msg in str(e.value)
