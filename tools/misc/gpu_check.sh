#!/usr/bin/env bash
# `make gpu-check [GPU_CHECK_DIR=DIR]`, i.e. tools/misc/gpu_check.sh [DIR]: what one short lease
# of a GPU machine can prove, in one command, for a machine with torch (2.11 or newer) with CUDA,
# nvcc, pytest and no network. mmcv, mmengine and mmdet are needed only by the steps marked
# "kit": they come from gpu-kit/ (`make gpu-kit`, installed here with pip --no-index), or from
# the environment where they are installed already; without them those steps are skipped.
#
# Steps, most informative first, each under its own time limit (limit; estimate on one H200
# with 16 cores, from what ran on 2 CPU cores and the sizes involved):
#   build      150 s; ~90 s. mmdeform._C in place for the local GPU's architecture, with
#              CUDA_HOME from tools/misc/cuda_home.sh (as `make check-cuda-build`); the kit
#              (limit 30 s; ~5 s) is installed after it.
#   tests       75 s; ~30 s. pytest tests/test_ops -k cuda: the kernels against the fp64
#              reference in every dtype, gradcheck, no host sync, bit-identical deterministic
#              backward, bad input; fails unless at least GPU_CHECK_MIN_CUDA_TESTS (90) passed
#              and none skipped.
#   no-sync     60 s; ~30 s. (kit) pytest tests/test_models/test_no_host_sync.py: the
#              detector's training step and inference wait for the device as few times as
#              those tests allow.
#   benchmark   60 s; ~25 s. benchmark_msda.py --device cuda: forward, fast and deterministic
#              backward, grid_sample reference, fp32/bf16/fp16, CUDA events.
#   training   150 s; ~110 s. (kit) tools/misc/gpu_training_check.py --device cuda: the demo
#              trained 300 iterations in fp32 and bf16 (losses finite and falling), twice 50
#              iterations --deterministic (bit for bit), R50 two-stage at 800x1333 (training
#              step, peak memory, inference batch 1 and 8, fp32 and bf16) next to Hugging Face's
#              model.
#   memcheck   what is left of GPU_CHECK_BUDGET (540 s), at least 30 s; ~60 s.
#              compute-sanitizer memcheck over a selection of the CUDA tests (22 of them),
#              with PYTORCH_NO_CUDA_MEMORY_CACHING=1 so that every tensor is its own allocation
#              and a read past its end is seen; "unavailable" where the sanitizer refuses the
#              device or is absent.
# The limits before memcheck add up to 525 s; memcheck gets the rest of GPU_CHECK_BUDGET (540 s)
# and at least 30 s, so the check ends within about 9.5 minutes whatever happens; the estimates
# add up to about 6 minutes.
#
# DIR (default $OUT where set, else gpu-check) receives at most 7 files: summary.md and
# summary.json (every step's status and time, the benchmark's and the training's figures) and
# the logs build.log, tests.log (tests and no-sync), benchmark.log, training.log, memcheck.log.
# Exits non-zero unless every step passed, was skipped for want of the kit, or found the
# sanitizer unavailable.
#
# For the CPU rehearsal (tests/test_tools/test_gpu_check_rehearsal.py) only:
#   GPU_CHECK_PROBE=CMD           prints the GPU's compute capability in place of torch;
#   GPU_CHECK_PREBUILT=1          uses the op already built instead of building it;
#   GPU_CHECK_TRAINING_ARGS=ARGS  in place of --device cuda (e.g. "--device cpu --tiny").
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
out=${1:-${OUT:-gpu-check}}
python=${PYTHON:-python3}
kit=${GPU_KIT_DIR:-gpu-kit}
min_cuda_tests=${GPU_CHECK_MIN_CUDA_TESTS:-90}
budget=${GPU_CHECK_BUDGET:-540}
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/steps.tsv"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
pytest=("$python" -m pytest -p no:cacheprovider -q -rs)
memcheck_selection='cuda and (float32 or bfloat16 or synchronizes) and not paper and not batch'

# record NAME STATUS SECONDS LIMIT NOTE
record() {
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$tmp/steps.tsv"
  echo "STEP $1: $2${5:+ ($5)}"
}

# run_step NAME LIMIT LOG COMMAND...: runs COMMAND under LIMIT seconds, its output in
# $tmp/step.log, appended to $out/LOG; sets rc and seconds.
run_step() {
  local name=$1 limit=$2 log=$3
  shift 3
  printf '\n== %s (limit %s s, %s)\n' "$name" "$limit" "$(date +%T)" | tee -a "$out/$log"
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$tmp/step.log" 2>&1
  rc=$?
  seconds=$((SECONDS - start))
  cat "$tmp/step.log" >>"$out/$log"
  tail -n 12 "$tmp/step.log"
}

# judge [JUNIT [MINIMUM]]: sets status and note for the step just run, from rc, its log and
# (pytest steps) its junit report.
judge() {
  local junit=${1:-} minimum=${2:-1} verdict
  note=""
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status="timed out"; return; fi
  if [ -n "$junit" ]; then
    if [ ! -f "$junit" ]; then status=failed note="pytest wrote no report"; return; fi
    note=$("$python" tools/misc/gpu_check_report.py junit "$junit" --min "$minimum")
    verdict=$?
    case $verdict in
      0) if [ "$rc" -eq 0 ]; then status=passed; else status=failed; fi ;;
      3) status="needs a GPU" ;;
      *) status=failed ;;
    esac
  elif [ "$rc" -eq 0 ]; then status=passed
  elif grep -q "needs a CUDA GPU" "$tmp/step.log"; then status="needs a GPU"
  else status=failed; fi
}

finish() {
  "$python" tools/misc/gpu_check_report.py summary "$tmp/steps.tsv" "$out" \
    --attach "benchmark=$tmp/benchmark_msda_cuda.json" --attach "training=$tmp/training.json" \
    --section "Op benchmark (CUDA events)=$tmp/benchmark.md" \
    --section "Training path=$tmp/training.md"
  cat "$out/summary.md"
  if cut -f2 "$tmp/steps.tsv" | grep -qvE '^(passed|skipped|unavailable)$'; then
    echo "gpu-check: FAILED (summary and logs in $out)"
    exit 1
  fi
  echo "gpu-check: passed (summary and logs in $out)"
  exit 0
}

# The GPU: torch's capability answer, e.g. 9.0 on an H100 or H200.
if [ -n "${GPU_CHECK_PROBE:-}" ]; then arch=$($GPU_CHECK_PROBE)
else arch=$("$python" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())"); fi
if [ -z "$arch" ]; then record gpu failed 0 0 "no CUDA GPU visible to torch"; finish; fi
echo "torch $("$python" -c 'import torch; print(torch.__version__)'), sm_${arch/./}, $(nproc) cores"
cuda_home=$(tools/misc/cuda_home.sh)

if [ "${GPU_CHECK_PREBUILT:-0}" = 1 ]; then
  run_step build 150 build.log "$python" -c \
    "from mmdeform.ops import KERNEL_DEVICES; print('prebuilt op, kernels:', sorted(KERNEL_DEVICES))"
  judge
  record build "$status" "$seconds" 150 "prebuilt (GPU_CHECK_PREBUILT=1)"
elif [ -z "$cuda_home" ]; then
  record build failed 0 150 "no nvcc found (tools/misc/cuda_home.sh)"
else
  run_step build 150 build.log env CUDA_HOME="$cuda_home" FORCE_CUDA=1 \
    TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="$(nproc)" "$python" setup.py build_ext --inplace
  judge
  record build "$status" "$seconds" 150 "sm_${arch/./}, CUDA_HOME=$cuda_home"
fi
grep -q "^build	passed" "$tmp/steps.tsv" || finish

# The kit: training needs mmengine, mmcv-lite and mmdet, which such a machine lacks.
have_kit() { "$python" -c "import mmdeform, mmengine, mmcv, mmdet"; }
if compgen -G "$kit/*.whl" >/dev/null; then
  export PYTHONPATH="$PYTHONPATH:$tmp/site"
  run_step kit 30 build.log "$python" -m pip install -q --no-index --no-deps --no-compile \
    --target "$tmp/site" "$kit"/*.whl
  have_kit >>"$out/build.log" 2>&1 || rc=1
  judge
  record kit "$status" "$seconds" 30 "$(ls "$kit"/*.whl | wc -l) wheels from $kit"
elif have_kit 2>/dev/null; then
  record kit passed 0 30 "mmengine, mmcv and mmdet installed"
else
  record kit skipped 0 30 "no mmengine, mmcv and mmdet: make gpu-kit where PyPI is reachable"
fi
grep -q "^kit	passed" "$tmp/steps.tsv" && kit_ready=1 || kit_ready=0

run_step tests 75 tests.log "${pytest[@]}" tests/test_ops -k cuda --junitxml "$tmp/tests.xml"
judge "$tmp/tests.xml" "$min_cuda_tests"
record tests "$status" "$seconds" 75 "$note"

if [ "$kit_ready" = 1 ]; then
  run_step no-sync 60 tests.log "${pytest[@]}" tests/test_models/test_no_host_sync.py \
    --junitxml "$tmp/no_sync.xml"
  judge "$tmp/no_sync.xml"
  record no-sync "$status" "$seconds" 60 "$note"
else
  record no-sync skipped 0 60 "needs the kit (mmengine)"
fi

run_step benchmark 60 benchmark.log "$python" tools/analysis_tools/benchmark_msda.py \
  --device cuda --out "$tmp"
grep '^|' "$tmp/step.log" >"$tmp/benchmark.md"
judge
record benchmark "$status" "$seconds" 60 ""

if [ "$kit_ready" = 1 ]; then
  # shellcheck disable=SC2086  # the arguments are words
  run_step training 150 training.log "$python" tools/misc/gpu_training_check.py \
    ${GPU_CHECK_TRAINING_ARGS:---device cuda} --json "$tmp/training.json" \
    --markdown "$tmp/training.md"
  judge
  record training "$status" "$seconds" 150 ""
else
  record training skipped 0 150 "needs the kit (mmengine, mmcv, mmdet)"
fi

sanitizer=$(command -v compute-sanitizer || ls "$cuda_home/bin/compute-sanitizer" 2>/dev/null)
limit=$((budget - SECONDS > 30 ? budget - SECONDS : 30))
if [ -z "$sanitizer" ]; then
  record memcheck unavailable 0 "$limit" "compute-sanitizer not found"
else
  run_step memcheck "$limit" memcheck.log env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$sanitizer" \
    --tool memcheck --error-exitcode 99 "${pytest[@]}" tests/test_ops/test_kernels.py \
    -k "$memcheck_selection" --junitxml "$tmp/memcheck.xml"
  refusal=$(grep -iE -m1 'device not supported|not supported on this' "$tmp/step.log" \
    | sed -E 's/^[= ]*(Error: )?//')
  if [ -n "$refusal" ]; then
    record memcheck unavailable "$seconds" "$limit" "the sanitizer refuses the device: ${refusal//	/ }"
  elif [ "$rc" -eq 99 ] || grep -qE 'ERROR SUMMARY: [1-9]' "$tmp/step.log"; then
    record memcheck failed "$seconds" "$limit" "memcheck found errors: see memcheck.log"
  else
    judge "$tmp/memcheck.xml"
    record memcheck "$status" "$seconds" "$limit" "$note"
  fi
fi
finish
