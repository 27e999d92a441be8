"""pytest plugin of tools/gpu_check.sh (loaded with ``-p gpu_check_pytest``).

The GPU check runs without MXNet (the GPU machine has none, and an installed one is hidden by a
stub ``mxnet`` that raises ImportError with HIDDEN in its message). Test modules that import
MXNet, GluonCV or frcnn_model at module level then fail to import: such a collection error
(an ImportError that names HIDDEN or mxnet) is reported as
a skipped module, not an error. So is a module that needs frcnn_model's compiled parts
(frcnn_model.training._targets, evaluation._metrics: the model is not part of the GPU check,
which builds frcnn_ops only). Any other collection error stays an error.
"""
import pytest

HIDDEN = "hidden by tools/gpu_check.sh"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    text = str(rep.longrepr)
    if HIDDEN in text or ("ImportError" in text and "mxnet" in text.lower()):
        why = "needs MXNet (" + HIDDEN + ")"
    elif "ImportError" in text and "from 'frcnn_model" in text:
        why = "needs frcnn_model's compiled modules (not built by tools/gpu_check.sh)"
    else:
        return
    rep.outcome = "skipped"
    rep.longrepr = (str(collector.path), 0, "Skipped: " + why)
