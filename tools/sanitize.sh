#!/usr/bin/env bash
# Builds the CPU library, and the CUDA kernels on the CPU execution harness (_C_emu), with
# AddressSanitizer + UndefinedBehaviorSanitizer in a scratch copy of this checkout and runs the
# op tests and the emulated CUDA kernels' tests under it (the sanitizer runtimes preloaded into
# Python): an out-of-bounds access of a CUDA kernel is caught here without a GPU. Needs the
# test environment of the README (mxnet, gluoncv, pytest) active.
#   tools/sanitize.sh [pytest args...]     default: the op tests
# No suppressions are needed (see tools/sanitizer_suppressions.md); leak checking is off
# (Python and MXNet keep their allocations until exit). Test subprocesses inherit LD_PRELOAD
# and the options, so they run under the sanitizers too.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$root" ls-files -z | (cd "$root" && xargs -0 cp --parents -t "$work")
cd "$work"
FRCNN_CUDA=0 FRCNN_CUDA_EMULATE=1 FRCNN_SANITIZE=address,undefined FRCNN_BUILD_TYPE=RelWithDebInfo \
  FRCNN_BUILD_DIR="$work/build" python setup.py build_ext --inplace >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log"; exit 1; }
mkdir -p "$work/path" && ln -s "$work/model" "$work/path/frcnn_model"
export FRCNN_CUDA=0
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [ $# -eq 0 ]; then
  # CI's selection (README ci:test): the op tests, every bad call, the property tests (short
  # profile) and the threaded calls; not the model, bench or memory-growth tests (slow under
  # ASan, and they add no kernel paths)
  set -- tests/test_box_coder.py tests/test_proposal.py tests/test_roi_align.py \
    tests/test_bad_inputs.py tests/test_properties.py tests/test_concurrency.py \
    tests/test_limits.py tests/test_gpu.py tests/test_cuda_emu.py -k "not memory_growth"
fi
# the harness must be there: its tests would otherwise skip silently
PYTHONPATH="$work/path:$work" python -c "import frcnn_ops._C_emu"
PYTHONPATH="$work/path:$work" python -m pytest -q -p no:cacheprovider "$@"
