#!/usr/bin/env bash
# The whole GPU verification as one command (docs/GPU.md): builds frcnn_ops for this machine's
# GPU only and runs, in priority order, each step under its own time cap inside one budget:
#   smoke      import, build_info, one call of each op on CuPy against the CPU kernels
#   pytest     pytest -m gpu tests (the CuPy path; MXNet-only modules are skipped)
#   memcheck, racecheck, synccheck, initcheck
#              compute-sanitizer over tools/gpu_driver.py (every kernel, fwd and bwd,
#              float32/64/16, edge sizes; CuPy's memory pool off)
#   bench      benchmarks/bench_gpu.py: CUDA-event timings against torchvision -> bench.json
# A step that no longer fits the budget is skipped and reported. Needs an NVIDIA GPU, Python
# >= 3.11 with numpy (1 or 2), CuPy, pybind11, cmake, nvcc (PATH or /usr/local/cuda/bin);
# optional: compute-sanitizer, torch + torchvision with CUDA, pytest. No MXNet, no network.
#
#   tools/gpu_check.sh [--dry-run] [--no-build] [--steps a,b,...]
#     --dry-run    no GPU needed: CPU-only build, NumPy stands in for CuPy (smoke, driver,
#                  bench at small sizes), pytest -m gpu reports its tests skipped, the
#                  sanitizer steps are skipped with the command lines they would run
#     --no-build   use the frcnn_ops that Python imports (an in-place build of this checkout,
#                  else the installed one) instead of building
#     --steps      a subset, e.g. --steps smoke,bench (default: all, in the order above)
#   environment: OUT (output folder; default a new folder under /tmp, printed),
#     GPU_CHECK_BUDGET_S (total seconds, default 420), PYTHON (default python3),
#     FRCNN_CUDA_ARCHS (default: the local GPU's, e.g. 90)
# Outputs (<= 3 files): summary.txt (one line per step: passed/failed/skipped, counts, key
# timings), gpu_check.log (everything), bench.json. Exit status 1 if any step failed, 2 on
# bad usage or no GPU without --dry-run.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
ALL_STEPS="smoke pytest memcheck racecheck synccheck initcheck bench"
dry=0
nobuild=0
steps="$ALL_STEPS"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --no-build) nobuild=1 ;;
    --steps) shift; steps="${1//,/ }" ;;
    --steps=*) steps="${1#--steps=}"; steps="${steps//,/ }" ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for s in $steps; do
  case " $ALL_STEPS " in *" $s "*) ;; *) echo "gpu_check: unknown step $s" >&2; exit 2 ;; esac
done

budget="${GPU_CHECK_BUDGET_S:-420}"
PY="${PYTHON:-python3}"
start=$SECONDS

if [ -n "${OUT:-}" ]; then
  outdir="$OUT"
  mkdir -p "$outdir"
else
  outdir="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
fi
summary="$outdir/summary.txt"
log="$outdir/gpu_check.log"
bench_json="$outdir/bench.json"
rm -f "$summary" "$log" "$bench_json"
work="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_work.XXXXXX")"
teepid=""
cleanup() {
  rm -rf "$work"
  # let tee finish the log before the caller collects $OUT
  if [ -n "$teepid" ]; then exec 1>&- 2>&-; wait "$teepid" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'echo "gpu_check: interrupted" >&2; exit 130' INT TERM
# everything from here on also goes to the combined log
exec > >(tee -a "$log") 2>&1
teepid=$!
echo "gpu_check: outputs in $outdir"

say() { echo "== $*"; }
left() { echo $((budget - (SECONDS - start))); }
failed=0
record() {  # step status seconds detail
  printf '%-10s %-8s %5ss  %s\n' "$1" "$2" "$3" "$4" >>"$summary"
  printf '== %s: %s (%ss) %s\n' "$1" "$2" "$3" "$4"
  [ "$2" != failed ] || failed=1
}

# ---- environment ---------------------------------------------------------------------------
command -v "$PY" >/dev/null || { echo "gpu_check: no $PY (set PYTHON)" >&2; exit 2; }
# the tools of Python's environment (cmake, pytest) and CUDA's, if not on PATH already
PATH="$(dirname "$(command -v "$PY")"):$PATH"
for d in /usr/local/cuda/bin /usr/local/cuda/compute-sanitizer; do
  [ -d "$d" ] && PATH="$PATH:$d"
done
export PATH
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "gpu_check: needs Python >= 3.11 ($PY is $("$PY" -V 2>&1))" >&2; exit 2; }
say "environment"
date -u '+%Y-%m-%dT%H:%M:%SZ'
echo "mode: $([ $dry = 1 ] && echo 'dry run (no GPU)' || echo GPU), budget ${budget}s, steps: $steps"
"$PY" - <<'EOF' || true
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for m in ("numpy", "cupy", "torch", "torchvision", "pytest", "pybind11"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:  # noqa: BLE001
        print(m, "-", type(e).__name__)
EOF
if [ $dry = 0 ]; then
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader \
    2>/dev/null || echo "nvidia-smi: not available"
  command -v nvcc >/dev/null && nvcc --version | tail -2 || echo "nvcc: not found"
fi
sanitizer="$(command -v compute-sanitizer || true)"
[ -n "$sanitizer" ] && echo "compute-sanitizer: $sanitizer" || echo "compute-sanitizer: not found"

if [ $dry = 0 ]; then
  "$PY" -c 'import cupy, sys; sys.exit(cupy.cuda.runtime.getDeviceCount() < 1)' 2>/dev/null || {
    echo "gpu_check: no GPU visible to CuPy (or no CuPy): run with --dry-run on a CPU machine" >&2
    exit 2
  }
fi

# Python sees: a stub mxnet that fails to import (the CuPy path only, as on a machine without
# MXNet; tools/gpu_check_pytest.py turns the resulting collection errors into skips), then
# the package under test; PYTHONSAFEPATH keeps the unbuilt source folder off sys.path.
mkdir -p "$work/nomx/mxnet" "$work/path"
echo 'raise ImportError("mxnet is hidden by tools/gpu_check.sh")' >"$work/nomx/mxnet/__init__.py"
export PYTHONSAFEPATH=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
pkgpath=""

# ---- build ---------------------------------------------------------------------------------
if [ $nobuild = 1 ]; then
  if [ -f "$root/frcnn_ops/_build_config.py" ]; then
    pkgpath="$root"                                  # in-place build of this checkout
    ln -sfn "$root/model" "$work/path/frcnn_model"
  fi
  record build skipped 0 "--no-build: $( PYTHONPATH="$work/nomx:$pkgpath" "$PY" -c \
    'import frcnn_ops, os; i = frcnn_ops.build_info(); print("using %s (cuda %s%s)" % (os.path.dirname(frcnn_ops.__file__), i["cuda"], (" " + i["cuda_archs"]) if i["cuda_archs"] else ""))' 2>&1 | tail -1)"
else
  t=$SECONDS
  if [ $dry = 1 ]; then
    cuda=0; archs=""; flavour=cpu
  else
    cuda=1; flavour=cuda
    archs="${FRCNN_CUDA_ARCHS:-}"
    if [ -z "$archs" ]; then
      cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 || true)"
      [ -n "$cap" ] || cap="$("$PY" -c 'import cupy; print(cupy.cuda.Device(0).compute_capability)' 2>/dev/null || true)"
      archs="${cap//./}"
      archs="${archs//[[:space:]]/}"
    fi
    [ -n "$archs" ] || { echo "gpu_check: cannot tell the GPU's compute capability: set FRCNN_CUDA_ARCHS" >&2; exit 2; }
  fi
  # an ignored folder of the checkout: a second run on the same machine rebuilds incrementally
  bdir="$root/build/gpu_check-$flavour${archs:+-sm$archs}"
  site="$bdir/site"
  mkdir -p "$site/frcnn_ops" "$site/frcnn_model"
  (cd "$root" && find frcnn_ops -name '*.py' -not -path '*/__pycache__/*' -print0 \
    | xargs -0 cp --parents -t "$site")
  (cd "$root/model" && find . -name '*.py' -not -path '*/__pycache__/*' -print0 \
    | xargs -0 cp --parents -t "$site/frcnn_model")
  gen=()
  if command -v ninja >/dev/null && { [ ! -f "$bdir/cmake/CMakeCache.txt" ] \
      || grep -q 'CMAKE_GENERATOR:INTERNAL=Ninja' "$bdir/cmake/CMakeCache.txt"; }; then
    gen=(-G Ninja)
  fi
  build_cmd=(cmake -S "$root" -B "$bdir/cmake" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release
    -DFRCNN_CUDA=$cuda -DFRCNN_MXNET=0 -DFRCNN_OUTPUT_DIR="$site/frcnn_ops"
    -DFRCNN_VERSION=0.1.0 -DPython_EXECUTABLE="$(command -v "$PY")")
  [ -n "$archs" ] && build_cmd+=(-DCMAKE_CUDA_ARCHITECTURES="$archs")
  say "build (FRCNN_CUDA=$cuda${archs:+, sm_$archs}) into $bdir"
  cap=$(( $(left) - 10 ))
  [ $cap -gt 600 ] && cap=600
  rc=0
  if [ $cap -lt 20 ]; then
    rc=124
  else
    pb="$("$PY" -m pybind11 --cmakedir)" || rc=$?
    [ $rc = 0 ] && { timeout -k 10 "$cap" "${build_cmd[@]}" -Dpybind11_DIR="$pb" >"$work/build.log" 2>&1 \
      && timeout -k 10 "$(( cap - (SECONDS - t) > 10 ? cap - (SECONDS - t) : 10 ))" \
           cmake --build "$bdir/cmake" --parallel "$(nproc)" >>"$work/build.log" 2>&1; } || rc=$?
  fi
  if [ $rc != 0 ]; then
    [ -f "$work/build.log" ] && tail -40 "$work/build.log"
    record build failed $((SECONDS - t)) "$([ $rc = 124 ] && echo "no time left / timeout" || echo "rc $rc") (cmake, see gpu_check.log)"
    for s in $steps; do record "$s" skipped 0 "build failed"; done
    cat "$summary"
    exit 1
  fi
  tail -3 "$work/build.log"
  pkgpath="$site"
  record build passed $((SECONDS - t)) "FRCNN_CUDA=$cuda${archs:+ archs $archs}, $bdir"
fi
export PYTHONPATH="$work/nomx:${pkgpath:+$pkgpath:}$work/path:$root/tools${PYTHONPATH:+:$PYTHONPATH}"
cd "$work"

# ---- steps ---------------------------------------------------------------------------------
np_flag=()
[ $dry = 1 ] && np_flag=(--numpy)
driver=("$PY" "$root/tools/gpu_driver.py" "${np_flag[@]}")
san_cmd() {  # the compute-sanitizer command line of a tool
  local tool=$1 extra=()
  case "$tool" in
    memcheck) extra=(--leak-check full) ;;
    racecheck) extra=(--racecheck-report all) ;;
  esac
  echo compute-sanitizer --tool "$tool" "${extra[@]}" --error-exitcode 99 --print-limit 100 \
    "$PY" "$root/tools/gpu_driver.py"
}

# step name: cap (s), minimum to start (s) on a GPU, minimum in a dry run
declare -A CAP=([smoke]=90 [pytest]=180 [memcheck]=150 [racecheck]=150 [synccheck]=90
                [initcheck]=120 [bench]=150)
declare -A MIN=([smoke]=20 [pytest]=40 [memcheck]=45 [racecheck]=45 [synccheck]=30
                [initcheck]=40 [bench]=60)
declare -A MIN_DRY=([smoke]=5 [pytest]=10 [memcheck]=5 [racecheck]=5 [synccheck]=5
                    [initcheck]=5 [bench]=10)

run_capped() {  # step cap cmd... -> output in $work/$step.log, rc in $rc
  local step=$1 cap=$2
  shift 2
  set +e
  timeout -k 10 "$cap" "$@" 2>&1 | tee "$work/$step.log"
  rc=${PIPESTATUS[0]}
  set -e
}

for step in $ALL_STEPS; do
  case " $steps " in *" $step "*) ;; *) continue ;; esac
  l=$(left)
  need=${MIN[$step]}
  [ $dry = 1 ] && need=${MIN_DRY[$step]}
  case "$step" in memcheck|racecheck|synccheck|initcheck)
    if [ $dry = 1 ] || [ -z "$sanitizer" ]; then
      why="no GPU (dry run)"
      [ $dry = 1 ] || why="compute-sanitizer not found"
      say "$step: would run: $(san_cmd "$step")"
      record "$step" skipped 0 "$why; would run: $(san_cmd "$step" | sed "s#$root/##")"
      continue
    fi ;;
  esac
  if [ "$l" -lt "$need" ]; then
    record "$step" skipped 0 "budget: ${l}s left of ${budget}s, the step needs >= ${need}s"
    continue
  fi
  cap=${CAP[$step]}
  [ $cap -gt $((l - 2)) ] && cap=$((l - 2))
  say "$step (cap ${cap}s, ${l}s left)"
  t=$SECONDS
  case "$step" in
    smoke)
      run_capped smoke "$cap" "${driver[@]}" --smoke
      ops=$(grep -cE '^  [a-z0-9_]+( det)? +ok ' "$work/smoke.log" || true)
      bad=$(grep -cE '^  [a-z0-9_]+( det)? +FAIL ' "$work/smoke.log" || true)
      detail="$ops ops match the CPU kernels, $bad differ$([ $dry = 1 ] && echo ' (NumPy stands in for CuPy)')" ;;
    pytest)
      run_capped pytest "$cap" "$PY" -m pytest -q -p no:cacheprovider -p gpu_check_pytest \
        -m gpu "$root/tests"
      detail="$(grep -E '(passed|failed|skipped|deselected|error|no tests ran).* in [0-9.]+s' \
        "$work/pytest.log" | tail -1 | tr -d '=' | sed 's/^ *//; s/ *$//')"
      [ $dry = 1 ] && detail="$detail (no GPU: the gpu tests skip)" ;;
    memcheck|racecheck|synccheck|initcheck)
      read -r -a cmd <<<"$(san_cmd "$step")"
      run_capped "$step" "$cap" "${cmd[@]}"
      detail="$(grep -E '^driver: [0-9]+ calls' "$work/$step.log" | tail -1 | sed 's/^driver: //'); $(grep -E 'SUMMARY' "$work/$step.log" | tail -1 | sed 's/^=* *//')" ;;
    bench)
      run_capped bench "$cap" "$PY" "$root/benchmarks/bench_gpu.py" --json "$bench_json" "${np_flag[@]}"
      detail="$(grep -E '^SUMMARY: ' "$work/bench.log" | tail -1 | sed 's/^SUMMARY: //')"
      [ $dry = 1 ] && detail="$detail (NumPy dry run, not GPU figures)" ;;
  esac
  dt=$((SECONDS - t))
  if [ $rc = 0 ]; then
    record "$step" passed "$dt" "$detail"
  elif [ $rc = 124 ] || [ $rc = 137 ]; then
    record "$step" failed "$dt" "timeout after ${cap}s; $detail"
  else
    record "$step" failed "$dt" "rc $rc; $detail"
  fi
done

say "summary ($((SECONDS - start))s of ${budget}s)"
cat "$summary"
echo "gpu_check: outputs in $outdir"
exit $failed
