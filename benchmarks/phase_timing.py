"""Cycles spent in each phase of both kernels (needs a build with -Ccmake.define.JAX_MLA_META_PHASE_TIMING=ON).

python3 benchmarks/phase_timing.py [B ...]
python3 benchmarks/phase_timing.py --ranks [B ...]   (the dense mid path, 1,793 <= B <= 12,288: every rank's
                                                     %globaltimer stamps, ns from the first rank's start)

Thread 0 of rank 0 stamps clock64() into the workspace; phases (stamp:: in ffi/cuda/common.cuh,
taken where ffi/cuda/general_path.cuh, row_path.cuh, warp_path.cuh and mid_path.cuh say MLA_STAMP):
  start: reading num_valid, scan: costs and prefix sums of the rank's rows (dense only; sparse mode has a closed form),
  rows: rank sums exchanged, each lo_q's row found and broadcast, cluster barrier,
  walk: the walker (window walker, P <= 512: the chain of restarts and the per-window masks), out: metadata
  and num_splits (window walker: per-window cut rows and metadata, a barrier, then num_splits).
On the dense row path (one CTA, 512 < B <= 1,792, P <= 256) the same stamps mean: rows = the tape, S mod Q and the
candidate lists, then a barrier; walk.chain = warp 0's walk and the m/D pass; out.windows = nothing (thread 0
owns no rows there); out.barrier = the cut counts of warps 1-7 and their block scan; out.splits = num_splits
and the metadata.
On the dense warp path (B <= 512, P <= 256) the stamps are 7 (entry), 0 (loads), 1 (window scans), 2 (Q and
S = g Q + t), 9 (the walk), 3 (the per-row entries, num_splits and the barrier), 4 (metadata): read them as
benchmarks/README.md's warp-path table does (this script's phase names do not fit that path).
On wide batches (low_smem past 8,192 rows per CTA: three launches) the stamps are the cluster kernel's: start
includes waiting for mla_chunk_sums_kernel, scan = the scan of the sums it stored (no loads, no first chunk),
and out.splits = handing the cut rows to mla_splits_kernel."""

import sys

import jax
import numpy as np

from jax_mla_meta import _ffi, plan, workloads
from jax_mla_meta._primitive import schedule_p

dev = jax.devices()[0]
if dev.platform != "gpu":
    sys.exit("phase_timing.py reads the CUDA kernels' stamps: it needs a GPU (and a JAX_MLA_META_PHASE_TIMING build)")


def workspace(lens, B: int, P: int, topk: int, kernel: int) -> np.ndarray:
    """The kernels' workspace after a few calls (the stamps of the last one)."""
    f = jax.jit(lambda s: schedule_p.bind(s, np.int32(B), num_sm_parts=P, block_size_n=64,
                                          fixed_overhead_num_blocks=5, topk=topk, extra_topk=0, row_inputs=0,
                                          layout=0, kernel=kernel)[2])
    for _ in range(4):
        ws = np.asarray(f(lens))
    return ws

# The mid path's per-rank stamps (MLA_MID_STAMP in ffi/cuda/mid_path.cuh), in the order they are taken.
# From cand.scan on, the two ways of mid_path: by tables (listed, table sent, tables landed, chain followed
# through them, own walk) or by lists (sent, counts landed, lists landed, laid out, walk).
MID_STAMPS = [(5, "start"), (0, "loaded"), (1, "scan"), (13, "phase0"), (10, "sums"), (2, "cand.scan"),
              (14, "listed"), (15, "sent"), (8, "landed"), (12, "combined"), (9, "walk"), (3, "bar"),
              (6, "out"), (4, "exit")]


def rank_timeline(B: int, P: int = 132) -> None:
    offs = _ffi._cpu.workspace_offsets(B, P)
    for kernel, name in ((1, "smem"), (2, "low_smem")):
        K = plan(B, P, kernel=name, device=dev).cluster_size
        lens = jax.device_put(workloads.lengths("lognormal", B, seed=B), dev)
        ws = workspace(lens, B, P, -1, kernel)
        g = ws[offs["chunks"]:offs["chunks"] + 8 * 16 * K].view(np.uint64).reshape(K, 16).astype(np.int64)
        t0 = g[:, 5].min()
        print(f"B={B} P={P} dense {name} K={K} (ns from the first rank's start)")
        print("        " + " ".join(f"{n:>9s}" for _, n in MID_STAMPS))
        for r in range(K):
            print(f"rank {r:>2} " + " ".join(f"{g[r, i] - t0:9d}" for i, _ in MID_STAMPS), flush=True)


if sys.argv[1:2] == ["--ranks"]:
    for B in [int(a) for a in sys.argv[2:]] or [4096, 11622]:
        rank_timeline(B)
    sys.exit(0)
for B in [int(a) for a in sys.argv[1:]] or [1, 512, 4096, 20000, 65536, 1 << 20]:
    for P, topk in ((132, -1), (66, 2048)):
        off = _ffi._cpu.workspace_offsets(B, P)["scalars"]
        lens = jax.device_put(workloads.lengths("lognormal", B, seed=B), dev)
        for kernel, name in ((1, "smem"), (2, "low_smem")):
            pl = plan(B, P, kernel=name, device=dev, topk=None if topk < 0 else topk)
            if pl.kernel == "error":
                continue
            ws = workspace(lens, B, P, topk, kernel)
            t = ws[off:off + 128].view(np.int64)
            t1 = t[1] if topk < 0 else t[0]
            d = dict(start=t[0] - t[7], scan=t1 - t[0], rows=t[2] - t1, walk=t[3] - t[2], out=t[4] - t[3])
            if topk < 0:
                if name == "smem" or pl.cluster_size * 8192 >= B:   # not a wide batch: the kernel streams lengths
                    d["loads"] = t[6] - t[0]
                    d["first_chunk"] = t[5] - t[0]
                d["rows.exchange"] = t[12] - t1
                d["rows.search"] = t[13] - t[12]
            if P <= 512:   # the window walker's sub-phases
                d["walk.chain"] = t[9] - t[2]
                d["out.windows"] = t[10] - t[3]
                d["out.barrier"] = t[11] - t[10]
                d["out.splits"] = t[4] - t[11]
            print(f"B={B:>7} P={P:>3} {'dense' if topk < 0 else 'sparse':<6} {name:<8} K={pl.cluster_size:<2} "
                  f"total={t[4] - t[7]:>7} cycles  " + "  ".join(f"{k}={v}" for k, v in d.items()), flush=True)
