"""Run each kernel a few times on chosen B (for `ncu`, which reports per-kernel device durations).

ncu --metrics gpu__time_duration.sum python3 benchmarks/profile_kernels.py 1 20000 1048576"""

import sys

import jax

import jax_mla_meta as mm
from jax_mla_meta import workloads

for B in [int(a) for a in sys.argv[1:]] or [1, 20000, 1048576]:
    lens = workloads.lengths("lognormal", B, seed=B)
    x = jax.device_put(lens, jax.devices()[0])
    for kernel in ("smem", "low_smem"):
        if kernel == "smem" and mm.plan(B, 132).kernel != "smem":
            continue
        f = jax.jit(lambda s: mm.schedule(s, num_sm_parts=132, kernel=kernel))
        for _ in range(3):
            jax.block_until_ready(f(x))
        print("done", B, kernel, flush=True)
