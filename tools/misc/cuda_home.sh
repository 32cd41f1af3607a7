#!/usr/bin/env bash
# Prints the CUDA toolkit's own folder (its lib64 holds libcudart), for CUDA_HOME: CUDA_HOME
# itself when set, else /usr/local/cuda when it has nvcc, else the folder the nvcc on PATH
# reports as its TOP (right also where that nvcc is a wrapper script living elsewhere), else two
# folders above that nvcc. Exits 1, printing nothing, when there is no nvcc.
# Used by `make check-cuda-build` and tools/misc/gpu_check.sh.
set -u
if [ -n "${CUDA_HOME:-}" ]; then echo "$CUDA_HOME"; exit 0; fi
if [ -x /usr/local/cuda/bin/nvcc ]; then echo /usr/local/cuda; exit 0; fi
nvcc=$(command -v nvcc) || exit 1
top=$(nvcc --dryrun -x cu -E /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)
if [ -n "$top" ] && [ -d "$top" ]; then readlink -f "$top"; else dirname "$(dirname "$nvcc")"; fi
