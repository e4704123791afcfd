"""Per-kernel device durations from a JAX profiler trace (CUPTI), for the timing notes in benchmarks/README.md.

python3 benchmarks/trace_kernels.py [B ...]   (prints each kernel's median duration and the span per call)"""

import statistics
import sys

import jax

import jax_mla_meta as mm
from jax_mla_meta import workloads
from jax_mla_meta.bench import call_spans_us, kernel_events

K = 16
for B in [int(a) for a in sys.argv[1:]] or [1, 4096, 65536, 1048576]:
    lens = workloads.lengths("lognormal", B, seed=B)
    xs = [jax.device_put(lens, jax.devices()[0]) for _ in range(K)]
    for kernel in ("smem", "low_smem"):
        if kernel == "smem" and mm.plan(B, 132).kernel != "smem":
            continue
        f = jax.jit(lambda *ins: [mm.schedule(x, num_sm_parts=132, kernel=kernel) for x in ins])
        jax.block_until_ready(f(*xs))
        ev = kernel_events(f, *xs)
        per = {}
        for e in ev:
            per.setdefault(e["name"], []).append(e["dur"])
        spans = call_spans_us(ev, kernel)
        print(f"B={B:>8} {kernel:<9} calls={len(spans)} span/call median={statistics.median(spans):7.1f}us  "
              + "  ".join(f"{k}={statistics.median(v):.1f}" for k, v in per.items()), flush=True)
