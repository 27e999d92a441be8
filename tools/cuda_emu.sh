#!/usr/bin/env bash
# Runs every CUDA kernel without a GPU: builds frcnn_ops with the CPU execution harness
# (FRCNN_CUDA_EMULATE=1 -> frcnn_ops._C_emu, the .cu sources compiled by the host compiler)
# in a scratch copy of this checkout and runs the cuda_emu tests there. Needs the test
# environment of the README (mxnet, pytest) active. No nvcc needed.
#   tools/cuda_emu.sh [pytest args...]        default: pytest -m cuda_emu tests
#   FRCNN_SANITIZE=address,undefined tools/cuda_emu.sh    the same under ASan + UBSan
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$root" ls-files -z | (cd "$root" && xargs -0 cp --parents -t "$work")
cd "$work"
build_type=Release
if [ -n "${FRCNN_SANITIZE:-}" ]; then build_type=RelWithDebInfo; fi
FRCNN_CUDA=0 FRCNN_CUDA_EMULATE=1 FRCNN_BUILD_TYPE="$build_type" FRCNN_BUILD_DIR="$work/build" \
  python setup.py build_ext --inplace >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log"; exit 1; }
mkdir -p "$work/path" && ln -s "$work/model" "$work/path/frcnn_model"
export FRCNN_CUDA=0
if [ -n "${FRCNN_SANITIZE:-}" ]; then
  export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
  export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
if [ $# -eq 0 ]; then set -- -m cuda_emu tests; fi
# the package must be importable from here, with _C_emu: fail instead of skipping
PYTHONPATH="$work/path:$work" python -c "import frcnn_ops._C_emu"
PYTHONPATH="$work/path:$work" python -m pytest -q -p no:cacheprovider "$@"
