#!/usr/bin/env bash
# The one GPU check: run as is on a machine with an NVIDIA GPU (H100/H200), one argument.
#
#   bash benchmarks/gpu_check.sh OUTDIR            # run every stage, write <= 8 files into OUTDIR
#   bash benchmarks/gpu_check.sh --dry-run OUTDIR  # print the stages and their commands, run nothing
#   bash benchmarks/gpu_check.sh --stages hopper OUTDIR   # only issue 16's checks (below); or a comma list of names
#
# Stages: environment; install in place (pip -e, builds fastconv._emu and, with nvcc, fastconv._C);
# fastconv._C import (rebuilds in place to show the error if the install did not build it); the GPU
# tests (pytest -m gpu); compute-sanitizer memcheck, racecheck, synccheck and initcheck over a small
# run of every fastconv GPU op with the memory pools off; the benchmarks against cuDNN and cuBLAS with bounded sizes (the
# ResNet-50, VGG-16 and MobileNet convs in bf16, fprop/dgrad/wgrad, against cuDNN channels_last and NCHW with
# benchmark=True; the predictions of scripts/predict_sm90_convs.py beside what was measured; the seed model's and
# ResNet-18's training steps in bf16, eager and CUDA graph; GEMMs and max-pools); a tuning run; a profile with its
# Nsight Compute run; ncu's memory counters beside the emulator's for a few small kernels; the pytest-benchmark suites' GPU variants; the results file.
# --stages hopper = env,install,build_C,bench_conv,predictions,train_step,results: issue 16's checks, sized for one
# 15-minute device lease (machine start ~1-2 min, then install ~2-4 min, bench_conv <= 180 s, train_step <= 150 s,
# all inside the 450 s budget).
# Each stage has a timeout and the whole run a budget (GPU_CHECK_BUDGET seconds, default 450: under
# 8 minutes); a failing stage does not stop the later ones; exit 1 when any failed or timed out.
# A short summary table is printed last.
#
# Files written into OUTDIR (at most 9): check.log (every stage's output), summary.txt (with the predictions table),
# <date>-<gpu>.json (all benchmark figures: copy it to benchmarks/results/), bench-conv.png,
# bench-gemm-pool.png, train-step.png, profile.json, tuning.json (fastconv tune of ResNet-50's fp32 fprop),
# ncu-counters.json (ncu's and the emulator's counters per kernel and metric, where ncu ran).
set -u -o pipefail

DRY=0
OUT=""
ONLY=""
want_stages=0
for arg in "$@"; do
  if [ "$want_stages" = 1 ]; then ONLY="$arg"; want_stages=0; continue; fi
  case "$arg" in
    --dry-run) DRY=1 ;;
    --stages) want_stages=1 ;;
    --stages=*) ONLY="${arg#--stages=}" ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $arg" >&2; exit 2 ;;
    *) if [ -n "$OUT" ]; then echo "gpu_check.sh: one output directory, got '$OUT' and '$arg'" >&2; exit 2; fi
       OUT="$arg" ;;
  esac
done
if [ "$want_stages" = 1 ]; then echo "gpu_check.sh: --stages needs a comma-separated list (or 'hopper')" >&2; exit 2; fi
if [ -z "$OUT" ]; then
  echo "usage: bash benchmarks/gpu_check.sh [--dry-run] [--stages LIST] OUTDIR" >&2
  exit 2
fi
ALL_STAGES=",env,install,build_C,pytest_gpu,memcheck,racecheck,synccheck,initcheck,bench_conv,predictions,train_step,bench_gemm_pool,tune,profile,pytest_bench,results,"
[ "$ONLY" = hopper ] && ONLY="env,install,build_C,bench_conv,predictions,train_step,results"
for name in ${ONLY//,/ }; do
  case "$ALL_STAGES" in *",$name,"*) ;; *) echo "gpu_check.sh: unknown stage '$name'; stages: ${ALL_STAGES//,/ }" >&2; exit 2 ;; esac
done

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PY="${PYTHON:-python3}"
export OUT
export PYTHONUNBUFFERED=1
export FASTCONV_CUDA_ARCHS="${FASTCONV_CUDA_ARCHS:-sm_90a}"   # H100/H200 only: half the nvcc time
export FASTCONV_BUILD_JOBS="${FASTCONV_BUILD_JOBS:-$(nproc 2>/dev/null || echo 8)}"
export FASTCONV_BUILD_CUDA="${FASTCONV_BUILD_CUDA:-1}"   # build _C even if libcuda is not where setup.py looks
BUDGET="${GPU_CHECK_BUDGET:-450}"
START=$SECONDS

if [ "$DRY" = 1 ]; then
  export WORK="<tmpdir>"
else
  mkdir -p "$OUT" || exit 2
  OUT=$(cd "$OUT" && pwd)
  export OUT
  WORK=$(mktemp -d)
  export WORK
  LOG="$OUT/check.log"
  : > "$LOG"
fi

NAMES=()
STATES=()
TIMES=()
NOTES=()

# stage NAME CAP_SECONDS COMMAND: run COMMAND (bash -c) with timeout min(CAP, budget left - 10);
# exit 0 PASS, 3 or (pytest) 5 SKIP, 124/137 TIMEOUT, anything else FAIL. STAGE_T holds the timeout
# so a command can size itself (the benchmarks' --time-budget).
stage() {
  local name=$1 cap=$2 cmd=$3
  case ",$ONLY," in ",,"|*",$name,"*) ;; *) return 0 ;; esac   # --stages: the others are left out
  if [ "$DRY" = 1 ]; then
    printf '[%s] timeout %ss\n    %s\n' "$name" "$cap" "$cmd"
    return 0
  fi
  local left=$((BUDGET - (SECONDS - START) - 10))
  local t=$cap
  [ "$left" -lt "$t" ] && t=$left
  if [ "$t" -lt 15 ]; then
    NAMES+=("$name"); STATES+=("SKIP"); TIMES+=(0); NOTES+=("out of the ${BUDGET}s budget")
    echo "=== $name: skipped, out of the ${BUDGET}s budget ===" >> "$LOG"
    return 0
  fi
  echo "=== $name (timeout ${t}s) $(date -u +%H:%M:%S) ===" >> "$LOG"
  echo "\$ $cmd" >> "$LOG"
  local t0=$SECONDS rc
  STAGE_T=$t timeout --kill-after=10 "$t" bash -c "$cmd" >> "$LOG" 2>&1
  rc=$?
  local dt=$((SECONDS - t0)) state note=""
  case $rc in
    0) state=PASS ;;
    3) state=SKIP; note=$(grep -o 'SKIP: .*' "$LOG" | tail -n1 | cut -c7-80) ;;
    124|137) state=TIMEOUT; note="killed after ${t}s" ;;
    *) state=FAIL; note="exit $rc" ;;
  esac
  echo "=== $name: $state ($rc) in ${dt}s ===" >> "$LOG"
  echo "[$name] $state in ${dt}s ${note}"
  NAMES+=("$name"); STATES+=("$state"); TIMES+=("$dt"); NOTES+=("$note")
}

# Exit 5 from pytest means no test was collected (none marked gpu yet): a SKIP, not a failure.
PYTEST_SKIP5='rc=$?; if [ $rc = 5 ]; then echo "SKIP: no tests collected"; exit 3; fi; exit $rc'

# compute-sanitizer over the small run of every fastconv GPU op; SKIP when there is nothing to check
# or the tool cannot run here (exported: the stages run in child shells).
run_sanitizer() {
  local tool=$1
  if ! command -v compute-sanitizer >/dev/null; then echo "SKIP: compute-sanitizer is not on PATH"; return 3; fi
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 30 \
    "$PY" -m fastconv.bench.sanitize_check 2>&1 | tee "$WORK/sanitizer-$tool.txt"
  local rc=${PIPESTATUS[0]}
  if grep -q "Device not supported" "$WORK/sanitizer-$tool.txt"; then
    echo "SKIP: compute-sanitizer: device not supported here"; return 3
  fi
  return "$rc"
}
export -f run_sanitizer

stage env 30 'nvidia-smi || true; "$PY" -c "import torch, sys; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"cudnn\", torch.backends.cudnn.version(), \"gpu\", torch.cuda.is_available() and torch.cuda.get_device_name(0)); sys.exit(0 if torch.cuda.is_available() else 1)"; rc=$?; "$PY" -c "import cupy; print(\"cupy\", cupy.__version__)" || true; command -v nvcc && nvcc --version | tail -n2; exit $rc'

# No package registry on the GPU machine: build against what is installed there (no isolation, no deps);
# if pip cannot (an old setuptools, say), build the extensions in place; the checkout is on PYTHONPATH.
stage install 240 '{ "$PY" -m pip install --no-build-isolation --no-deps -e . || { echo "pip install failed: building in place"; "$PY" setup.py build_ext --inplace; }; } && "$PY" -m fastconv info'

stage build_C 150 'if ! ls csrc/launch/*.cu >/dev/null 2>&1; then echo "SKIP: no CUDA sources (csrc/launch/*.cu)"; exit 3; fi
if "$PY" -c "import fastconv._C as c; print(\"fastconv._C:\", len(c.kernel_names()), \"kernels\")"; then exit 0; fi
echo "fastconv._C was not built by the install; building in place to show why:"
"$PY" setup.py build_ext --inplace && "$PY" -c "import fastconv._C as c; print(\"fastconv._C:\", len(c.kernel_names()), \"kernels\")"'

stage pytest_gpu 90 '"$PY" -m pytest -m gpu -q -p no:cacheprovider tests; '"$PYTEST_SKIP5"

stage memcheck 45 'run_sanitizer memcheck'
stage racecheck 45 'run_sanitizer racecheck'
stage synccheck 30 'run_sanitizer synccheck'
stage initcheck 30 'run_sanitizer initcheck'

# bench_conv: issue 16's suites in bf16, ordered fprop -> dgrad -> wgrad (a time-budget cut drops wgrad first)
stage bench_conv 180 '"$PY" -m fastconv.bench --device gpu --suite resnet50,vgg16,mobilenet_v1 --op conv2d_fprop,conv2d_dgrad,conv2d_wgrad --dtype bf16 --batch 32 --baseline cudnn --repeats 15 --time-budget $((STAGE_T > 50 ? STAGE_T - 30 : 20)) --json "$WORK/bench-conv.json" --plot "$OUT/bench-conv.png"'

# predictions: what scripts/predict_sm90_convs.py expected (benchmarks/NOTES.md) beside what bench_conv measured;
# the table goes into summary.txt
stage predictions 20 '[ -f "$WORK/bench-conv.json" ] || { echo "SKIP: bench_conv wrote no JSON"; exit 3; }
"$PY" scripts/predict_sm90_convs.py --batch 32 --compare "$WORK/bench-conv.json" | tee "$WORK/predictions.md"'

# train_step: the seed model (batch 128) and ResNet-18 CIFAR (batch 256) in bf16: fastconv under the bf16 policy
# (eager and CUDA graph) against PyTorch eager with bf16 autocast (channels_last for ResNet-18), one JSON;
# torch.compile left out to fit the lease (--compile adds it).
stage train_step 150 '"$PY" -m fastconv.bench --device gpu --op train_step --model seed,resnet18 --dtype bf16 --no-compile --repeats 20 --time-budget $((STAGE_T > 45 ? STAGE_T - 25 : 20)) --json "$WORK/train-step.json" --plot "$OUT/train-step.png"'

stage bench_gemm_pool 60 '"$PY" -m fastconv.bench --device gpu --suite all --op gemm,maxpool --dtype bf16,fp16,tf32,fp32 --batch 128 --repeats 15 --time-budget $((STAGE_T > 45 ? STAGE_T - 25 : 20)) --json "$WORK/bench-gemm-pool.json" --plot "$OUT/bench-gemm-pool.png"'

# tune: fill a tuning file for ResNet-50's fp32 fprop convs (the file is saved after every shape, so a
# timeout keeps what was tuned); copy it to benchmarks/results/ with the JSON.
stage tune 40 '"$PY" -m fastconv tune --suite resnet50 --op fprop --dtype float32 --batch 32 --file "$OUT/tuning.json"'

stage profile 45 'args="--device gpu --op conv2d_fprop --suite resnet50 --shape res2_3x3 --batch 32 --dtype fp32 --steps 3"
"$PY" -m fastconv.bench profile $args --json "$OUT/profile.json" || { echo "(fastconv has no GPU path here: profiling the cuDNN baseline)"; "$PY" -m fastconv.bench profile $args --backend torch --json "$OUT/profile.json"; } || exit 1
if command -v ncu >/dev/null; then "$PY" -m fastconv.bench profile $args --backend torch --ncu --run --ncu-out - --ncu-set basic --ncu-launches 2 | tail -n 40; else echo "(ncu is not on PATH)"; fi; exit 0'

# ncu_counters: the emulator's memory counters (profile --emulated) beside Nsight Compute's for the same few
# small kernels and launches; optional (SKIP without ncu), never run on a GPU yet.
stage ncu_counters 45 'if ! command -v ncu >/dev/null; then echo "SKIP: ncu is not on PATH"; exit 3; fi
"$PY" benchmarks/ncu_compare.py --out "$OUT/ncu-counters.json"'

stage pytest_bench 35 '"$PY" -m pytest benchmarks -q -m gpu -p no:cacheprovider --benchmark-max-time=0.05 --benchmark-min-rounds=5 --benchmark-columns=median,iqr,rounds; '"$PYTEST_SKIP5"

stage results 20 'files=$(ls "$WORK"/bench-conv.json "$WORK"/bench-gemm-pool.json "$WORK"/train-step.json 2>/dev/null); [ -n "$files" ] || { echo "no benchmark JSON was written"; exit 1; }
"$PY" -m fastconv.bench.results merge "$OUT" $files'

if [ "$DRY" = 1 ]; then
  echo "dry run: the stages above (${ONLY:-all 17}); a real run of all of them writes check.log, summary.txt, <date>-<gpu>.json, bench-conv.png, bench-gemm-pool.png, train-step.png, profile.json, tuning.json, ncu-counters.json into $OUT (budget ${BUDGET}s; --stages writes the files of its stages only)"
  exit 0
fi

FAILED=0
{
  if [ -f "$WORK/predictions.md" ]; then
    echo "predicted (scripts/predict_sm90_convs.py, benchmarks/NOTES.md) beside measured, resnet50 bf16 batch 32:"
    cat "$WORK/predictions.md"; echo
  fi
  printf '%-16s %-8s %6s  %s\n' stage status secs note
  for i in "${!NAMES[@]}"; do
    printf '%-16s %-8s %6s  %s\n' "${NAMES[$i]}" "${STATES[$i]}" "${TIMES[$i]}" "${NOTES[$i]}"
    case "${STATES[$i]}" in FAIL|TIMEOUT) FAILED=$((FAILED + 1)) ;; esac
  done
  echo "total $((SECONDS - START))s of a ${BUDGET}s budget; $FAILED stage(s) failed; logs: $OUT/check.log"
  ls "$OUT"
} > "$OUT/summary.txt"
grep -hE '^(conv2d_[a-z]+|gemm|maxpool) \|.*(geomean|no ratio)|^fastconv not available' "$LOG" 2>/dev/null | sort -u | head -n 24 || true
cat "$OUT/summary.txt"
rm -rf "$WORK"
[ "$FAILED" = 0 ]
