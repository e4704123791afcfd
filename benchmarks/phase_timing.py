"""Cycles spent in each phase of the smem kernel (needs a build with -Ccmake.define.JAX_MLA_META_PHASE_TIMING=ON).

python3 benchmarks/phase_timing.py [B ...]"""

import sys

import jax
import numpy as np

from jax_mla_meta import workloads
from jax_mla_meta._primitive import schedule_p

NAMES = ["A: tape", "B: row_lo", "C: walker", "D: finish", "E: splits"]
for B in [int(a) for a in sys.argv[1:]] or [1, 512, 4096, 20000, 50000]:
    for P, topk in ((132, -1), (66, 2048)):
        lens = jax.device_put(workloads.lengths("lognormal", B, seed=B))
        f = jax.jit(lambda s: schedule_p.bind(s, np.int32(B), num_sm_parts=P, block_size_n=64,
                                              fixed_overhead_num_blocks=5, topk=topk, kernel=1))
        for _ in range(3):
            ws = np.asarray(f(lens)[2])
        t = ws[:48].view(np.int64)
        d = np.diff(t[:6])
        print(f"B={B:>6} P={P:>3} total={t[5] - t[0]:>7} cycles  " + "  ".join(f"{n}={v}" for n, v in zip(NAMES, d)), flush=True)
