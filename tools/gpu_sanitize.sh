#!/usr/bin/env bash
# GPU memory and race checks of every CUDA kernel, for a machine with an NVIDIA GPU, CUDA
# (nvcc, compute-sanitizer) and CuPy: builds the NumPy/CuPy module with CUDA (no MXNet op
# library: FRCNN_MXNET=0) into a scratch virtual environment and runs the `gpu`-marked tests
# (the CuPy path of box_decode, clip_boxes, proposal, nms, roi_align forward and backward, both
# backward kernels) under compute-sanitizer's memcheck and racecheck tools.
#   tools/gpu_sanitize.sh [pytest args...]     default: -m gpu tests
# Runs in the active Python environment, which needs numpy (1.x or 2), pytest, hypothesis,
# pybind11, cmake, Cython and cupy (e.g. the README's test environment plus `pip install
# cupy-cuda12x`, or the no-MXNet environment of the README); the
# build goes to a scratch folder, nothing is installed into the environment. Not runnable without a GPU:
# the development machine has none (docs/HARDENING.md).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer not on PATH" >&2; exit 2; }
python -c "import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0" \
  || { echo "no GPU visible to CuPy" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$root" ls-files -z | (cd "$root" && xargs -0 cp --parents -t "$work")
cd "$work"
# the CuPy path only: a stub `mxnet` that fails to import hides an installed MXNet (the
# library is built without its op library, FRCNN_MXNET=0; MXNet tests skip)
mkdir -p "$work/site" "$work/nomx/mxnet"
echo 'raise ImportError("hidden by tools/gpu_sanitize.sh")' >"$work/nomx/mxnet/__init__.py"
FRCNN_CUDA=1 FRCNN_MXNET=0 FRCNN_BUILD_TYPE=RelWithDebInfo \
  pip install --no-build-isolation --no-deps --target "$work/site" . >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log"; exit 1; }
export PYTHONPATH="$work/nomx:$work/site"
if [ $# -eq 0 ]; then set -- -m gpu tests; fi
rm -rf "$work/frcnn_ops"   # import the installed package, not the source folder
status=0
for tool in memcheck racecheck; do
  echo "== compute-sanitizer --tool $tool"
  extra=()
  [ "$tool" = memcheck ] && extra=(--leak-check full)
  compute-sanitizer --tool "$tool" "${extra[@]}" --error-exitcode 99 --target-processes all \
    python -m pytest -q -p no:cacheprovider "$@" || status=$?
done
exit $status
