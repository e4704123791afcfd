"""Device time of a call that schedules nothing (num_valid = 0): the launch and cluster floor of each kernel
at a given B (the cluster size follows B). python3 benchmarks/launch_floor.py [B ...]"""

import sys

import jax
import numpy as np

import jax_mla_meta as mm
from jax_mla_meta import bench

dev = jax.devices()[0]
for B in [int(a) for a in sys.argv[1:]] or [1, 4096, 8192, 20000, 65536]:
    for kernel in ("smem", "low_smem"):
        pl = mm.plan(B, 132, kernel=kernel, device=dev)
        xs = [jax.device_put(np.ones(B, np.int32), dev) for _ in range(32)]
        f = jax.jit(lambda *a: [mm.schedule(x, num_sm_parts=132, kernel=kernel, num_valid=0) for x in a])
        jax.block_until_ready(f(*xs))
        spans = bench.call_spans_us(bench.kernel_events(f, *xs), kernel)
        print(f"B={B:>6} {kernel:<8} K={pl.cluster_size:<2} empty call: {bench.quantiles(spans)[0]:.2f} µs")
