#!/usr/bin/env bash
# `make gpu-check [GPU_CHECK_DIR=gpu-check]`: what a machine with a GPU can tell about the CUDA
# op, in one command, for a machine that has torch (2.11 or newer) with CUDA, nvcc and no
# network (no mmcv, mmengine or mmdet needed):
#   1. builds mmdeform._C in place for the local GPU's architecture;
#   2. runs tests/test_ops on CUDA (the emulated-kernel tests ran on the CPU already);
#   3. runs a small forward and backward under compute-sanitizer's memcheck, when present;
#   4. runs it under torch.cuda.set_sync_debug_mode('error') (any host sync raises);
#   5. times the forward, both backwards and the grid_sample reference
#      (tools/analysis_tools/benchmark_msda_cuda.py), as a table and as JSON.
# Logs and the JSON go to the folder given as the argument. Exits non-zero if a step failed.
set -uo pipefail
out="${1:-gpu-check}"
python="${PYTHON:-python3}"
mkdir -p "$out"
failed=()
step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

step build
arch=$("$python" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())") \
  || { echo "no CUDA GPU visible to torch"; exit 1; }
echo "torch $("$python" -c 'import torch; print(torch.__version__)'), sm_${arch/./}"
if ! FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="$(nproc)" \
    "$python" setup.py build_ext --inplace >"$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  exit 1
fi
echo "built (log: $out/build.log)"

step "tests/test_ops on CUDA"
"$python" -m pytest tests/test_ops -k "not emulated" -q -p no:cacheprovider -rs 2>&1 \
  | tee "$out/tests.log" | tail -25
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=(tests)

step "compute-sanitizer memcheck"
if command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck --error-exitcode 99 "$python" tools/misc/msda_cuda_smoke.py \
    >"$out/memcheck.log" 2>&1
  status=$?
  tail -15 "$out/memcheck.log"
  [ "$status" -eq 0 ] || failed+=(memcheck)
else
  echo "compute-sanitizer not found: skipped"
fi

step "no host sync (set_sync_debug_mode('error'))"
"$python" tools/misc/msda_cuda_smoke.py || failed+=(sync)

step benchmark
"$python" tools/analysis_tools/benchmark_msda_cuda.py --out "$out" 2>&1 \
  | tee "$out/benchmark.log" | grep -v '^  '
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=(benchmark)

if [ "${#failed[@]}" -gt 0 ]; then
  echo "gpu-check: FAILED: ${failed[*]} (logs in $out)"
  exit 1
fi
echo "gpu-check: all steps passed (logs in $out)"
