"""Same-call A/B of builds: the device time of chosen cases, measured the way bench.py measures "device" (the span
of one call's kernels in a profiler trace, median over 32 calls of one executable), for whichever build of
jax_mla_meta is first on sys.path. It uses only schedule(..., num_sm_parts, topk, kernel), so it also times
builds from before the 2026 layout; cases that need newer arguments are skipped there.

    PYTHONPATH=/tmp/build_a python3 benchmarks/ab.py --tag A --out results/ab.json [--only threshold,1M]
    PYTHONPATH=/tmp/build_b python3 benchmarks/ab.py --tag B --out results/ab.json

Each run appends its rows (tag, case, kernel, median, p10, p90) to the JSON file and prints them; build the
packages side by side (pip install --target) and run them in one call on one card."""

from __future__ import annotations

import argparse
import glob
import gzip
import inspect
import json
import os
import statistics
import sys
import tempfile

import jax
import numpy as np

import jax_mla_meta as mm
from jax_mla_meta import workloads

NAMES = ("mla_smem_kernel", "mla_low_smem_kernel", "mla_chunk_sums_kernel", "mla_splits_kernel")
NEW_API = "layout" in inspect.signature(mm.schedule).parameters


def cases():
    """(label, lengths, P, topk, extra schedule kwargs) of every case; per-row sparse cases need the new API."""
    out = []
    for w in workloads.spec_workloads():
        out.append((w.label, w.seqlens(seed=0), w.num_sm_parts, w.topk, {}))
    for B in (1, 512, 513, 1024, 1792, 4096, 11622, 20000, 65536, 1 << 20):
        lens = workloads.lengths("lognormal", B, seed=B)
        out.append((f"sweep dense B={B}", lens, 132, None, {}))
        out.append((f"sweep sparse B={B}", lens, 66, workloads.TOPK, {}))
        if B in (513, 1024, 1792):   # the row path's sizes: per-row sparse lengths, and short rows (Q <= 138: the
            rng = np.random.default_rng(B)   # mid path would decline those to the general path)
            tl = rng.integers(0, workloads.TOPK + 1, B).astype(np.int32)
            out.append((f"sweep sparse rows B={B}", lens, 66, workloads.TOPK, dict(topk_length=tl)))
            out.append((f"sweep short B={B}", rng.integers(0, 400, B).astype(np.int32), 132, None, {}))
    for w in workloads.spec_workloads():   # per-row sparse lengths, uniform in [0, topk]
        if w.topk is not None:
            tl = np.random.default_rng(w.B).integers(0, w.topk + 1, w.B).astype(np.int32)
            out.append((f"{w.label} topk_length 2026", w.seqlens(seed=0), w.num_sm_parts, w.topk,
                        dict(topk_length=tl, layout="2026")))
    for w in workloads.spec_workloads(max_B=65536):
        out.append((f"{w.label} 2026", w.seqlens(seed=0), w.num_sm_parts, w.topk, dict(layout="2026")))
    return out


def device_spans(lens, P, topk, kernel, extra, K: int) -> list[float]:
    dev = jax.devices()[0]
    xs = [jax.device_put(lens, dev) for _ in range(K)]
    rows = {k: jax.device_put(v, dev) for k, v in extra.items() if isinstance(v, np.ndarray)}
    static = {k: v for k, v in extra.items() if not isinstance(v, np.ndarray)}

    @jax.jit
    def many(xs, rows):
        return [mm.schedule(x, num_sm_parts=P, topk=topk, kernel=kernel, **static, **rows) for x in xs]

    jax.block_until_ready(many(xs, rows))
    jax.block_until_ready(many(xs, rows))
    d = tempfile.mkdtemp(prefix="jax_mla_meta_ab_")
    with jax.profiler.trace(d, create_perfetto_trace=True):
        jax.block_until_ready(many(xs, rows))
    path = glob.glob(os.path.join(d, "**", "perfetto_trace.json.gz"), recursive=True)[0]
    with gzip.open(path) as f:
        ev = json.load(f)
    ev = ev["traceEvents"] if isinstance(ev, dict) else ev
    ks = sorted((float(e["ts"]), float(e["dur"]), e["name"]) for e in ev
                if e.get("ph") == "X" and any(n in e.get("name", "") for n in NAMES))
    # one call = its main kernel, with the chunk-sums kernel before it and the num_splits kernel after it when wide
    calls, pending = [], False
    for ts, dur, name in ks:
        if "chunk_sums" in name:
            calls.append([ts, ts + dur])
            pending = True
        elif "splits_kernel" in name or pending:
            calls[-1][1] = ts + dur
            pending = False
        else:
            calls.append([ts, ts + dur])
    spans = [e - s for s, e in calls]
    return spans


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tag", required=True, help="name of this build in the output")
    ap.add_argument("--out", required=True, help="JSON file the rows are appended to")
    ap.add_argument("--only", default="", help="comma-separated label fragments; one ending in '$' must end the "
                    "label (default: every case)")
    ap.add_argument("--kernels", default="auto,smem,low_smem")
    args = ap.parse_args(argv)
    if jax.devices()[0].platform != "gpu":
        print("ab.py times CUDA kernels: run it where the default JAX device is a GPU", file=sys.stderr)
        return 2
    only = [o for o in args.only.split(",") if o]
    picked = lambda label: not only or any(label.endswith(o[:-1]) if o.endswith("$") else o in label for o in only)
    rows = json.load(open(args.out)) if os.path.exists(args.out) else []
    for label, lens, P, topk, extra in cases():
        if not picked(label):
            continue
        if extra and not NEW_API:
            continue
        for kernel in args.kernels.split(","):
            if NEW_API:
                p = mm.plan(len(lens), P, kernel=kernel, topk=topk, per_row="topk_length" in extra)
            else:
                p = mm.plan(len(lens), P, kernel=kernel, topk=topk)
            if p.kernel == "error":
                continue
            K = 32 if len(lens) <= 65536 else 8
            spans = device_spans(lens, P, topk, kernel, extra, K)
            q = sorted(spans)
            row = dict(tag=args.tag, case=label, kernel=kernel, ran=p.kernel, n=len(spans),
                       median=statistics.median(q), p10=q[len(q) // 10], p90=q[(9 * len(q)) // 10])
            rows.append(row)
            print(f"{args.tag:>6} {label:<48} {kernel:<9} {p.kernel:<9} {row['median']:8.2f} us "
                  f"({row['p10']:.2f}-{row['p90']:.2f}, {len(spans)} calls)", flush=True)
            with open(args.out, "w") as f:   # after every row: a run cut short keeps what it measured
                json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
