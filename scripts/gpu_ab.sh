#!/usr/bin/env bash
# Same-call A/B on a GPU machine (for changes to the kernels; the benchmark itself is benchmarks/bench.py).
# Builds the working tree ("new"), another source tree ("old": e.g. `git archive REV | tar -x -C .ab/old` made
# beforehand on a machine with the history) and optionally the working tree with extra compiler definitions
# ("var", VARIANT_DEFS), each into its own folder under .ab/pkgs, in parallel; then times the cases of
# benchmarks/ab.py for each build in turn, in one call on one card, and prints them side by side.
#   bash scripts/gpu_ab.sh build            # build what is missing
#   ONLY=threshold,1048576 ROUNDS=2 bash scripts/gpu_ab.sh bench
# Results: $OUT/ab.json and $OUT/ab.txt (or ./gpu_out).
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
ROOT=$PWD
PKGS=$ROOT/.ab/pkgs
ARCH=${ARCH:-90}

build() {   # build <name> <source dir> [extra -C options...]
  local name=$1 src=$2; shift 2
  [ -d "$PKGS/$name/jax_mla_meta" ] && return 0
  mkdir -p "$PKGS/$name"
  (cd "$src" && python3 -m pip install --no-build-isolation --no-deps -q --target "$PKGS/$name" \
      -Cbuild-dir="/tmp/jax_mla_meta_build_$name" -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="$ARCH" "$@" .) \
    > "$OUT/build_$name.log" 2>&1 || { echo "build $name failed:"; tail -20 "$OUT/build_$name.log"; return 1; }
}

case "${1:-all}" in
  build|all)
    t0=$(date +%s)
    build new "$ROOT" & pids=$!
    if [ -d "$ROOT/.ab/old" ]; then build old "$ROOT/.ab/old" & pids="$pids $!"; fi
    if [ -n "${VARIANT_DEFS:-}" ]; then
      build var "$ROOT" -Ccmake.define.CMAKE_CUDA_FLAGS="$VARIANT_DEFS" -Ccmake.define.CMAKE_CXX_FLAGS="$VARIANT_DEFS" &
      pids="$pids $!"
    fi
    for p in $pids; do wait "$p" || exit 1; done
    echo "built in $(( $(date +%s) - t0 )) s: $(ls "$PKGS")"
    ;;&
  bench|all)
    rm -f "$OUT/ab.json"
    for r in $(seq 1 "${ROUNDS:-1}"); do
      for name in $(ls "$PKGS"); do
        (cd /tmp && PYTHONPATH="$PKGS/$name" python3 "$ROOT/benchmarks/ab.py" --tag "$name$r" --out "$OUT/ab.json" \
           --only "${ONLY:-}" --kernels "${KERNELS:-auto,smem,low_smem}") 2>&1 | grep -v "^WARNING\|^I0000\|^E0000"
      done
    done
    python3 - "$OUT/ab.json" <<'EOF' | tee "$OUT/ab.txt"
import collections, json, sys
rows = json.load(open(sys.argv[1]))
tags = sorted({r["tag"] for r in rows})
table = collections.defaultdict(dict)
for r in rows:
    table[(r["case"], r["kernel"])][r["tag"]] = r["median"]
print(f"{'case':<48} {'kernel':<9} " + " ".join(f"{t:>8}" for t in tags))
for (case, kernel), v in table.items():
    print(f"{case:<48} {kernel:<9} " + " ".join(f"{v[t]:8.2f}" if t in v else f"{'-':>8}" for t in tags))
EOF
    ;;
esac
