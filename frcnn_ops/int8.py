"""int8 inference: the C4 backbone quantized with MXNet's oneDNN quantization, calibrated.

:func:`quantize` swaps a float32 C4 Faster R-CNN's backbone blocks, ``features`` (conv1..layer3)
and ``top_features`` (layer4, run on every roi), for int8 SymbolBlocks made by
``mx.contrib.quantization.quantize_net_v2`` (``MKLDNN_QUANTIZE`` backend: convolution +
BatchNorm + ReLU (+ residual add) fused, uint8/int8 activations, int8 weights, VNNI kernels).
Each block is calibrated on what the float32 net feeds it over a few batches of images
(``calib_data``, normally training-set images with the inference transform): the image batches
for ``features``, the ROIAlign outputs for ``top_features``. Everything else stays float32: the
RPN and RCNN heads (convolutions and dense layers), the frcnn_* ops (proposals, ROIAlign,
decoding, NMS) and the pooling between them.

int8 needs calibration data and weights, so it is not a build-time option: quantize a loaded
float32 net (``quantize(net, calib_data)``) or load one quantized
(``frcnn_model.load_model(path, precision='int8', calib_data=...)``). Checkpoints stay float32;
an int8 net refuses ``save_parameters`` (its int8 weights would not load into a float32 net).

:func:`check_int8_cpu` refuses a CPU without AVX512-VNNI (``avx512_vnni`` in /proc/cpuinfo),
the instruction set MXNet 1.9.1's oneDNN (v2.4) runs its int8 convolutions on
(``avx512_core_vnni``); without it oneDNN falls back to slower int8 kernels, not measured here.
``FRCNN_FAKE_NO_INT8=1`` (test-only) makes it behave as on such a CPU.
"""
import os

__all__ = ["INT8_FLAG", "int8_supported", "check_int8_cpu", "quantize", "CALIB_MODES"]

INT8_FLAG = "avx512_vnni"
CALIB_MODES = ("naive", "entropy")
QUANTIZED_DTYPES = ("auto", "int8", "uint8")
BLOCKS = ("features", "top_features")


def int8_supported() -> bool:
    """True when the CPU has AVX512-VNNI (and FRCNN_FAKE_NO_INT8 is not set)."""
    from .bf16 import has_cpu_flag
    return has_cpu_flag(INT8_FLAG, "FRCNN_FAKE_NO_INT8")


def check_int8_cpu() -> None:
    """Raises RuntimeError naming the missing instruction set unless the CPU has AVX512-VNNI.

    ``FRCNN_FAKE_NO_INT8=1`` (for tests only) makes it refuse as on a CPU without it."""
    from .bf16 import require_cpu_flag
    require_cpu_flag("int8", INT8_FLAG, "AVX512-VNNI", "int8 convolutions", "FRCNN_FAKE_NO_INT8")


class _Capture:
    """Forward pre-hook that keeps a copy of a block's first input."""

    def __init__(self):
        self.inputs = []

    def __call__(self, block, args):
        self.inputs.append(args[0].copy())


def _batches(calib_data, num_batches):
    """The image batches of ``calib_data`` as float32 NDArrays (B, 3, H, W)."""
    import mxnet as mx
    import numpy as np
    out = []
    for item in calib_data:
        if num_batches is not None and len(out) >= num_batches:
            break
        if isinstance(item, (tuple, list)):  # (data, labels, ...) as iterate_batches yields
            item = item[0]
        if not isinstance(item, mx.nd.NDArray):
            item = mx.nd.array(np.asarray(item, dtype=np.float32))
        if item.ndim != 4 or item.shape[1] != 3 or min(item.shape) == 0:
            raise ValueError("quantize: calib_data must yield image batches (B, 3, H, W) (or "
                             "tuples whose first item is one), got one of shape %s"
                             % (item.shape,))
        out.append(item.astype("float32", copy=False).as_in_context(mx.cpu()))
    if not out:
        raise ValueError("quantize: calib_data yielded no batches (calibration needs images)")
    return out


def quantize(net: "mxnet.gluon.HybridBlock", calib_data, calib_mode: str = "naive",
             num_batches: "int | None" = None, quantized_dtype: str = "auto",
             blocks: "tuple[str, ...]" = BLOCKS, logger=None) -> "mxnet.gluon.HybridBlock":
    """Quantizes the float32 C4 Faster R-CNN ``net`` (frcnn_model's, or a patched GluonCV
    one with the same block names) in place: its ``blocks`` (default ``features`` and
    ``top_features``) become oneDNN int8 SymbolBlocks calibrated on ``calib_data``.

    Args:
        net: a float32 detector with its weights loaded, on the CPU.
        calib_data: an iterable of normalized image batches (B, 3, H, W), NumPy or NDArray,
            or of tuples whose first item is one (what ``iterate_batches`` yields); use
            training-set images with the inference transform. 8 batches of 4 is plenty for
            'naive' (measured: mAP within 0.001 of float32 on the synthetic demo).
        calib_mode: 'naive' (min/max of each layer's output, default) or 'entropy' (KL
            thresholds).
        num_batches: use at most this many batches of ``calib_data`` (default: all).
        quantized_dtype: 'auto' (uint8 after ReLU, else int8; default), 'int8' or 'uint8'.
        blocks: which of ``features``, ``top_features`` to quantize.
        logger: a logging.Logger for MXNet's quantization messages (default: silent).

    Returns ``net``, now with ``net.precision == 'int8'``; hybridize it (or not) as before.
    """
    import mxnet as mx
    from mxnet.gluon import HybridBlock, nn

    check_int8_cpu()
    if calib_mode not in CALIB_MODES:
        raise ValueError("quantize: calib_mode must be one of %s, got %r"
                         % (", ".join(map(repr, CALIB_MODES)), calib_mode))
    if quantized_dtype not in QUANTIZED_DTYPES:
        raise ValueError("quantize: quantized_dtype must be one of %s, got %r"
                         % (", ".join(map(repr, QUANTIZED_DTYPES)), quantized_dtype))
    blocks = tuple(blocks)
    if not blocks or any(b not in BLOCKS for b in blocks) or len(set(blocks)) != len(blocks):
        raise ValueError("quantize: blocks must be distinct names of %s, got %r"
                         % (", ".join(map(repr, BLOCKS)), blocks))
    precision = getattr(net, "precision", "fp32")
    if precision != "fp32" or getattr(net, "_frcnn_bf16_installed", False):
        raise ValueError("quantize: the net is precision %r; quantize a float32 net"
                         % (precision if precision != "fp32" else "bf16"))
    for name in BLOCKS:
        if not isinstance(getattr(net, name, None), HybridBlock):
            raise TypeError("quantize: %s has no '%s' block: only a C4 Faster R-CNN (features "
                            "+ top_features) is supported (the FPN model runs in fp32 or bf16)"
                            % (type(net).__name__, name))
    for p in net.collect_params().values():
        if p._data is not None and any(c.device_type != "cpu" for c in p.list_ctx()):
            raise ValueError("quantize: the net's parameters must be on the CPU (oneDNN), "
                             "%s is on %s" % (p.name, p.list_ctx()))
    batches = _batches(calib_data, num_batches)

    # 1. what each block sees in the float32 net: an eager pass with pre-hooks on the blocks
    caps = {name: _Capture() for name in blocks}
    hooks = [getattr(net, name).register_forward_pre_hook(caps[name]) for name in blocks]
    active = net._active
    net._active = False  # eager, so that the children's hooks run; restored below
    try:
        with mx.autograd.predict_mode():
            for x in batches:
                net(x)
    finally:
        net._active = active
        for h in hooks:
            h.detach()
    # 2. quantize each block, calibrated on its own inputs, and swap it in
    for name in blocks:
        block = getattr(net, name)
        hybridized, flags = block._active, dict(block._flags)
        qblock = _quantize_block(block, caps[name].inputs, calib_mode, quantized_dtype, logger)
        wrapper = nn.HybridSequential(prefix=block.prefix)
        wrapper.add(qblock)
        if hybridized:
            wrapper.hybridize(True, **flags)
        setattr(net, name, wrapper)
    net.precision = "int8"
    net._frcnn_int8 = dict(calib_mode=calib_mode, quantized_dtype=quantized_dtype,
                           blocks=list(blocks), calib_batches=len(batches),
                           calib_images=int(sum(b.shape[0] for b in batches)))
    net._clear_cached_op()

    def save_parameters(self, *args, **kwargs):
        raise RuntimeError("this net runs in int8 (frcnn_ops.int8.quantize); its int8 weights "
                           "would not load into a float32 net: save the float32 net and "
                           "quantize it again after loading (load_model(path, "
                           "precision='int8', calib_data=...))")

    import types
    net.save_parameters = types.MethodType(save_parameters, net)
    return net


def _quantize_block(block, inputs, calib_mode, quantized_dtype, logger):
    """``block`` (float32 HybridBlock, one input) as an int8 SymbolBlock calibrated on
    ``inputs`` (NDArrays, any mix of shapes): what ``quantize_net_v2`` does, with one
    calibration executor per input shape (it binds one shape only)."""
    import tempfile
    import warnings
    from collections import OrderedDict

    import mxnet as mx
    from mxnet.contrib import quantization as q
    from mxnet.gluon import SymbolBlock

    block.hybridize()
    block(inputs[0])
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "fp32")
        block.export(prefix, epoch=0)
        sym, args, auxs = mx.model.load_checkpoint(prefix, 0)
    block.hybridize(False)
    sym = sym.get_backend_symbol("MKLDNN_QUANTIZE")
    qsym, _, _, collector = q.quantize_graph(
        sym=sym, arg_params=args, aux_params=auxs, ctx=mx.cpu(), excluded_sym_names=[],
        excluded_op_names=[], calib_mode=calib_mode, quantized_dtype=quantized_dtype,
        quantize_mode="full", logger=logger)
    groups = OrderedDict()
    for x in inputs:
        groups.setdefault(tuple(x.shape), []).append(x)
    for shape, xs in groups.items():
        mod = mx.mod.Module(symbol=sym, context=mx.cpu(), data_names=["data"], label_names=None)
        mod.bind(for_training=False, data_shapes=[("data", shape)])
        mod.set_params(args, auxs, allow_missing=False, force_init=True)
        it = mx.io.NDArrayIter(data=mx.nd.concat(*xs, dim=0), batch_size=shape[0],
                               data_name="data")
        q._collect_layer_statistics(mod, it, collector, None, logger)
    qsym, qargs, qauxs = q.calib_graph(qsym=qsym, arg_params=args, aux_params=auxs,
                                       collector=collector, calib_mode=calib_mode,
                                       quantized_dtype=quantized_dtype, logger=logger)
    qsym = qsym.get_backend_symbol("MKLDNN_QUANTIZE")
    with warnings.catch_warnings():  # "Cannot decide type for ... data": it is float32
        warnings.filterwarnings("ignore", message="Cannot decide type")
        net = SymbolBlock(qsym, [mx.sym.var("data")])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "int8.params")
        saved = {"arg:%s" % k: v.as_in_context(mx.cpu()) for k, v in qargs.items()}
        saved.update({"aux:%s" % k: v.as_in_context(mx.cpu()) for k, v in qauxs.items()})
        mx.nd.save(path, saved)
        net.collect_params().load(path, ctx=mx.cpu(), cast_dtype=True, dtype_source="saved")
    return net
