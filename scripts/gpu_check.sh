#!/usr/bin/env bash
# One call on a GPU machine: build (no isolation, no network), run the whole suite with the GPU required,
# then the benchmark; logs and results land in $OUT (or ./gpu_out). Usage: bash scripts/gpu_check.sh [pytest args]
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
ARCH=${ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)}   # e.g. 90
python3 -m pip install --no-build-isolation --no-deps -q . -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="$ARCH" 2>&1 | tail -5
cd /tmp   # import the installed package, not the source tree
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  JAX_MLA_META_REQUIRE_GPU=1 python3 -m pytest -q -p no:cacheprovider "$OLDPWD/tests" "$@" 2>&1 | tee "$OUT/pytest.log" | tail -25
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  python3 "$OLDPWD/benchmarks/bench.py" --out "$OUT" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" | tail -70
fi
