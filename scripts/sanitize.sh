#!/usr/bin/env bash
# Run NVIDIA compute-sanitizer (memcheck, racecheck, synccheck, initcheck) over scripts/sanitize_driver.py,
# which runs both CUDA kernels ("smem" where it fits, and "low_smem") on the workloads of docs/spec.md (both
# layouts, dense and sparse, per-row sparse lengths) and checks every output against the reference. Prints a summary table last; logs go to $OUT (default ./sanitize_out).
#
# Needs: a CUDA GPU, compute-sanitizer on PATH, the package installed (with its CUDA module).
#
# Usage: bash scripts/sanitize.sh [options] [-- extra driver args]
#   --tools "memcheck racecheck synccheck initcheck"   tools to run, in order (default: all four)
#   --max-b N                 largest workload B for every tool (overrides the per-tool defaults below)
#   --max-b-TOOL N            per tool, e.g. --max-b-racecheck 2048 ("all" = every workload, up to 1M rows)
#                             defaults: memcheck all, synccheck 131072, initcheck 65536, racecheck 16384
#   --filter-all              restrict every tool (memcheck too) to our kernels
#   --out DIR                 where the logs go
#   --timeout S               kill a tool's run after S seconds (0 = no limit, the default)
#   --dry-run                 no GPU, no sanitizer: run the driver on the CPU once per tool (checks this script)
# Environment: PYTHON (default python3); SANITIZER (default compute-sanitizer); SANITIZE_KERNEL_FILTER, the
# sanitizer's kernel filter arguments (default: --kernel-name kns=mla_meta, which matches all of our kernels,
# mla_smem_kernel<N, W, M> and mla_low_smem_kernel<N, W, M> (N threads; W > 0: the warp path's instances,
# M > 0: the mid path's; see ffi/cuda/kernel_table.h), mla_chunk_sums_kernel and mla_splits_kernel: they live
# in namespace mla_meta). compute-sanitizer filters
# take key=value (kns = substring, kne = exact name), not ncu's "regex:".
set -uo pipefail

TOOLS="memcheck racecheck synccheck initcheck"
declare -A MAXB=([memcheck]=all [synccheck]=131072 [initcheck]=65536 [racecheck]=16384)
FILTER_ALL=0
DRY=0
TIMEOUT=0
OUT=${OUT:-$PWD/sanitize_out}
PY=${PYTHON:-python3}
SAN=${SANITIZER:-compute-sanitizer}
DRIVER_ARGS=()

while (($#)); do
  case "$1" in
    --tools) TOOLS=$2; shift 2 ;;
    --max-b) for t in memcheck racecheck synccheck initcheck; do MAXB[$t]=$2; done; shift 2 ;;
    --max-b-memcheck|--max-b-racecheck|--max-b-synccheck|--max-b-initcheck) MAXB[${1#--max-b-}]=$2; shift 2 ;;
    --filter-all) FILTER_ALL=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --) shift; DRIVER_ARGS=("$@"); break ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "sanitize.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

for t in $TOOLS; do
  case "$t" in memcheck|racecheck|synccheck|initcheck) ;; *) echo "sanitize.sh: unknown tool $t" >&2; exit 2 ;; esac
done

# One cudaMalloc per buffer (so memcheck sees the bounds of each one, not of a big pool), and no preallocation.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export XLA_PYTHON_CLIENT_ALLOCATOR=${XLA_PYTHON_CLIENT_ALLOCATOR:-platform}
export PYTHONUNBUFFERED=1
read -r -a FILTER <<< "${SANITIZE_KERNEL_FILTER:---kernel-name kns=mla_meta}"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DRIVER="$HERE/sanitize_driver.py"
mkdir -p "$OUT"

if ((DRY == 0)) && ! command -v "$SAN" >/dev/null 2>&1; then
  echo "sanitize.sh: $SAN not found on PATH (add the CUDA toolkit's compute-sanitizer, or use --dry-run)" >&2
  exit 2
fi
if ((DRY == 0)); then
  "$SAN" --version 2>&1 | tail -1 | tee "$OUT/sanitizer-version.txt"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"
fi

ROWS=()
status=0
for tool in $TOOLS; do
  log="$OUT/sanitize-$tool.log"
  maxb=${MAXB[$tool]:-all}
  args=(--tag "$tool" "${DRIVER_ARGS[@]}")
  [[ "$maxb" != all ]] && args+=(--max-b "$maxb")
  cmd=()
  ((TIMEOUT > 0)) && cmd+=(timeout --kill-after=30 "$TIMEOUT")
  if ((DRY)); then
    cmd+=("$PY" "$DRIVER" --dry-run "${args[@]}")
  else
    san=("$SAN" --tool "$tool" --error-exitcode 99 --target-processes all)
    # XLA's own kernels are not ours to judge under racecheck/initcheck (and slow them down a lot).
    if [[ "$tool" == racecheck || "$tool" == initcheck || "$tool" == synccheck ]] || ((FILTER_ALL)); then
      san+=("${FILTER[@]}")
    fi
    cmd+=("${san[@]}" "$PY" "$DRIVER" "${args[@]}")
  fi
  echo "=== $tool (max B: $maxb): ${cmd[*]}"
  t0=$(date +%s)
  "${cmd[@]}" > "$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  tail -4 "$log"

  # "========= ERROR SUMMARY: N errors" (one per process the sanitizer attached to): add them up.
  if ((DRY)); then
    errors="-"
  else
    # racecheck reports "RACECHECK SUMMARY: N hazards displayed (E errors, W warnings)" instead
    errors=$( { grep -Eo 'ERROR SUMMARY: [0-9]+ error' "$log" | awk '{print $3}';
                grep -Eo 'RACECHECK SUMMARY: [0-9]+ hazards displayed \([0-9]+ error' "$log" | awk '{print $6}' | tr -d '(' ; } |
              awk '{s += $1; n++} END {print n ? s : "?"}')
  fi
  drv=$(grep -E '^DRIVER SUMMARY:' "$log" | tail -1)
  runs=$(sed -nE 's/.*runs=([0-9]+).*/\1/p' <<< "$drv"); runs=${runs:-?}
  mism=$(sed -nE 's/.*mismatches=([0-9]+).*/\1/p' <<< "$drv"); mism=${mism:-?}
  skip=$(sed -nE 's/.*skipped=([0-9]+).*/\1/p' <<< "$drv"); skip=${skip:-?}
  verdict=ok
  if [[ "$errors" == "?" || "$mism" != 0 || $rc -ne 0 ]] || { [[ "$errors" != "-" ]] && ((errors > 0)); }; then
    verdict=FAIL
    status=1
  fi
  ROWS+=("$(printf '%-10s %-8s %6s %7s %8s %7s %5s %6s %6s  %s' \
    "$tool" "$maxb" "$runs" "$skip" "$mism" "$errors" "$rc" "${secs}s" "$verdict" "$log")")
done

echo
echo "compute-sanitizer summary (runs = workload x kernel calls checked against the reference)"
printf '%-10s %-8s %6s %7s %8s %7s %5s %6s %6s  %s\n' \
  tool max_B runs skipped mismatch "errors" exit time result log
for r in "${ROWS[@]}"; do echo "$r"; done
exit $status
