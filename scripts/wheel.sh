#!/usr/bin/env bash
# Portable wheels: for each Python given (default python3.11 and python3.12), an isolated build (pip downloads
# scikit-build-core, nanobind and jax 0.10.2, whose FFI headers, API 0.3, suit every supported jaxlib) with the CUDA
# module for sm_90, sm_100 and sm_120 (SASS for each, PTX for sm_120) and a static CUDA runtime. The wheels install
# with `pip install --no-deps` where no compiler is available, and need nvcc only here.
#   bash scripts/wheel.sh            ->  dist/jax_mla_meta-<version>-cp311-...whl, ...-cp312-...whl
#   PYTHONS=python3.12 OUT=/tmp/wheels bash scripts/wheel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-dist}
command -v nvcc >/dev/null || { echo "wheel.sh: nvcc not found: these wheels carry the CUDA module" >&2; exit 2; }
for py in ${PYTHONS:-python3.11 python3.12}; do
  "$py" -c "" 2>/dev/null || { echo "wheel.sh: '$py' does not run here: name the interpreters, e.g." \
    "PYTHONS='/path/to/python3.11 /path/to/python3.12' bash scripts/wheel.sh" >&2; exit 2; }
  echo "wheel.sh: building with $py ($($py --version 2>&1))"
  "$py" -m pip wheel --no-deps -w "$OUT" . \
    -Ccmake.define.JAX_MLA_META_CUDA=ON \
    -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="90-real;100-real;120" \
    -Cbuild-dir="build/wheel-{wheel_tag}"
done
ls -l "$OUT"/jax_mla_meta-*.whl
