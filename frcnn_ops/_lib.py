"""Loading the compiled parts: the pybind11 module `_C` and the MXNet op library."""
import ctypes
import os
import re

_HERE = os.path.dirname(os.path.abspath(__file__))
MX_LIB_NAME = "libfrcnn_ops_mx.so"

try:
    from . import _build_config as config
except ImportError as e:  # pragma: no cover - only in a source tree that was never built
    raise ImportError(
        "frcnn_ops is not built: install it with `pip install .` (or build in place with "
        "`python setup.py build_ext --inplace`)") from e

from . import _C  # noqa: E402  (NumPy / raw-pointer kernels; needs no MXNet)

_mx_state = {"loaded": False, "error": None}


def mx_lib_path():
    return os.path.join(_HERE, MX_LIB_NAME)


def _running_lib_api_version(mx):
    """MX_LIBRARY_VERSION of the running MXNet, read from the header it ships."""
    try:
        for inc in [mx.libinfo.find_include_path()]:
            header = os.path.join(inc, "mxnet", "lib_api.h")
            with open(header) as f:
                m = re.search(r"^#define MX_LIBRARY_VERSION (\d+)", f.read(), re.M)
            if m:
                return int(m.group(1))
    except (OSError, RuntimeError, AttributeError):
        pass
    return None


def load_into_mxnet():
    """Loads libfrcnn_ops_mx.so into MXNet once. Returns the mxnet module.

    Raises ImportError with a clear message when MXNet is missing, the library was built
    without MXNet, or the library's lib_api version or MXNet version does not match.
    """
    import mxnet as mx

    if _mx_state["loaded"]:
        return mx
    if _mx_state["error"] is not None:
        raise ImportError(_mx_state["error"])
    path = mx_lib_path()
    if not os.path.exists(path):
        _mx_state["error"] = (
            "frcnn_ops was built without the MXNet op library (mxnet was not installed at "
            "build time); install mxnet==1.9.1 and reinstall frcnn_ops")
        raise ImportError(_mx_state["error"])
    running = _running_lib_api_version(mx)
    built = config.lib_api_version
    if running is not None and running != built:
        _mx_state["error"] = (
            "frcnn_ops: lib_api version mismatch: the library was built against lib_api %d "
            "(MXNet %s) but the running MXNet %s has lib_api %d; rebuild frcnn_ops "
            "(pip install --force-reinstall .)" % (built, config.mxnet_version or "?",
                                                   mx.__version__, running))
        raise ImportError(_mx_state["error"])
    built_mm = ".".join((config.mxnet_version or "").split(".")[:2])
    running_mm = ".".join(mx.__version__.split(".")[:2])
    if built_mm and built_mm != running_mm:
        _mx_state["error"] = (
            "frcnn_ops: built against MXNet %s but running MXNet %s; rebuild frcnn_ops"
            % (config.mxnet_version, mx.__version__))
        raise ImportError(_mx_state["error"])
    if not hasattr(mx.nd, "frcnn_box_decode"):
        _load_keeping_op_functions(mx, path)
    from . import _mxnet_api
    _mxnet_api.install(mx)  # the contrib twins' calling conventions
    _mx_state["loaded"] = True
    return mx


def _load_keeping_op_functions(mx, path):
    """mx.library.load(path), keeping MXNet's existing operator functions: the load
    regenerates every function of mx.nd and mx.sym (new objects, same behaviour), and code
    that took one earlier and compares by identity breaks (GluonCV's FPN builds its
    SyncBatchNorm layers only if ``norm_layer is mxnet.symbol.contrib.SyncBatchNorm``, so
    gluoncv imported before frcnn_ops could not build a syncbn model). The library's new ops
    are added."""
    import sys
    import types

    modules = [m for n, m in list(sys.modules.items())
               if n.startswith(("mxnet.ndarray", "mxnet.symbol"))
               and isinstance(m, types.ModuleType)]
    before = [(m, dict(vars(m))) for m in modules]
    mx.library.load(path, verbose=False)
    for module, old in before:
        for name, value in old.items():
            new = getattr(module, name, None)
            if (new is not value and isinstance(value, types.FunctionType)
                    and isinstance(new, types.FunctionType) and new.__name__ == value.__name__):
                setattr(module, name, value)


def mx_lib_handle():
    """ctypes handle of the op library (for its C helper functions)."""
    return ctypes.CDLL(mx_lib_path())
