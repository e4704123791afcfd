"""Per-kernel device durations from a JAX profiler trace (CUPTI), for the timing notes in benchmarks/README.md.

python3 benchmarks/trace_kernels.py [B ...]   (prints kernel durations and the device span per call)"""

import glob
import gzip
import json
import os
import statistics
import sys
import tempfile

import jax
import numpy as np

import jax_mla_meta as mm
from jax_mla_meta import workloads

OURS = ("mla_smem_kernel", "tile_scan_kernel", "part_search_kernel", "splits_kernel")
K = 16


def trace(fn, *args):
    d = tempfile.mkdtemp()
    with jax.profiler.trace(d, create_perfetto_trace=True):
        jax.block_until_ready(fn(*args))
    path = glob.glob(os.path.join(d, "**", "perfetto_trace.json.gz"), recursive=True)[0]
    with gzip.open(path) as f:
        ev = json.load(f)
    ev = ev["traceEvents"] if isinstance(ev, dict) else ev
    return [e for e in ev if e.get("ph") == "X" and any(k in e.get("name", "") for k in OURS)]


for B in [int(a) for a in sys.argv[1:]] or [1, 4096, 65536, 1048576]:
    lens = workloads.lengths("lognormal", B, seed=B)
    xs = [jax.device_put(lens, jax.devices()[0]) for _ in range(K)]
    for kernel in ("smem", "low_smem"):
        if kernel == "smem" and mm.plan(B, 132).kernel != "smem":
            continue
        f = jax.jit(lambda *ins: [mm.schedule(x, num_sm_parts=132, kernel=kernel) for x in ins])
        jax.block_until_ready(f(*xs))
        ev = sorted(trace(f, *xs), key=lambda e: e["ts"])
        per = {}
        for e in ev:
            name = next(k for k in OURS if k in e["name"])
            per.setdefault(name, []).append(e["dur"])
        nk = 1 if kernel == "smem" else 3
        spans = [ev[i + nk - 1]["ts"] + ev[i + nk - 1]["dur"] - ev[i]["ts"] for i in range(0, len(ev) - nk + 1, nk)]
        gaps = [ev[i + nk]["ts"] - (ev[i + nk - 1]["ts"] + ev[i + nk - 1]["dur"]) for i in range(0, len(ev) - nk, nk)]
        print(f"B={B:>8} {kernel:<9} calls={len(spans)} span/call median={statistics.median(spans):7.1f}us "
              f"gap between calls={statistics.median(gaps) if gaps else 0:6.1f}us  "
              + "  ".join(f"{k}={statistics.median(v):.1f}" for k, v in per.items()), flush=True)
