"""Quick bit-identity sweep of both CUDA kernels against the CPU handler (itself tested against the
pure-Python reference), with poisoned outputs, over a grid of B, P, modes (dense, sparse, sparse with per-row
lengths), both layouts, num_valid and batch shapes.

Usage (on a GPU machine, package installed): python3 scripts/gpu_smoke.py [--max-b N]
Prints one line per failure and a summary; exits 1 on any failure. The full suite (pytest with
JAX_MLA_META_REQUIRE_GPU=1) remains the test of record; this is the fast loop while changing kernels."""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

import jax_mla_meta as mm
from jax_mla_meta import api


def lengths(rng, B, kind):
    if kind == "decode":
        return rng.integers(1, 8192, B)
    if kind == "short":   # many rows inside or near the overhead window
        return rng.integers(0, 200, B)
    if kind == "mixed":
        x = rng.integers(0, 70000, B)
        x[rng.random(B) < 0.2] = 0
        return x
    if kind == "huge":
        return rng.integers(1, 2**31 - 1, B)
    raise ValueError(kind)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-b", type=int, default=1 << 20)
    args = ap.parse_args()
    gpu = jax.devices("gpu")[0]
    cpu = jax.devices("cpu")[0]
    print("device:", gpu.device_kind, "plan(65536):", mm.plan(65536, 132, device=gpu))
    rng = np.random.default_rng(1234)
    Bs = [b for b in (0, 1, 2, 31, 33, 100, 1000, 4096, 4097, 8192, 8193, 20000, 65535, 65536, 131072,
                      300001, 1 << 20) if b <= args.max_b]
    fails = runs = 0
    t0 = time.time()

    def check(lens, P, topk, nv, kernel, tag, layout="2025", tl=None):
        nonlocal fails, runs
        x = np.asarray(lens, np.int32)
        kw = dict(num_sm_parts=P, topk=topk, layout=layout)
        want = jax.jit(lambda s, v, t: mm.schedule(s, num_valid=v, topk_length=t, **kw))(
            jax.device_put(x, cpu), jax.device_put(np.int32(nv), cpu), None if tl is None else jax.device_put(tl, cpu))
        want = [np.asarray(w) for w in want]
        batch = x.shape[:-1]
        poison_m = np.full(batch + (P, 8), -777, np.int32)
        poison_s = np.full(x.shape[:-1] + (x.shape[-1] + 1,), -777, np.int32)
        args = [None if v is None else jax.device_put(v, gpu) for v in (poison_m, poison_s, x, np.int32(nv), tl)]
        got = jax.jit(lambda m, s_, l, v, t: api._schedule_into(m, s_, l, kernel=kernel, num_valid=v, topk_length=t,
                                                                **kw))(*args)
        got = [np.asarray(g) for g in got]
        runs += 1
        for name, g, w in zip(("meta", "splits"), got, want):
            if not np.array_equal(g, w):
                fails += 1
                bad = np.argwhere(g != w)
                print(f"FAIL {tag} kernel={kernel} {name}: {len(bad)} differ, first {bad[0].tolist()} "
                      f"got {g[tuple(bad[0])]} want {w[tuple(bad[0])]}", flush=True)
                return

    for B in Bs:
        for P in (1, 66, 132, 160, 161, 1500):   # up to 161: the window walker (5 and 6 windows); 1500: the other
            if P in (160, 161, 1500) and B > 70000 and not (P == 160 and B == Bs[-1]):
                continue
            for mode in ("dense", "sparse", "rows"):
                kinds = ("decode", "short", "mixed") if mode == "dense" else (2048, 0, 64)
                for kind in kinds:
                    if mode != "sparse" and B > 200000 and kind not in ("decode", 2048):
                        continue
                    lens = lengths(rng, B, kind) if mode == "dense" else rng.integers(0, 5000, B)
                    topk = None if mode == "dense" else kind
                    tl = rng.integers(-2, kind + 70, B).astype(np.int32) if mode == "rows" else None
                    nv = B if rng.random() < 0.7 else int(rng.integers(0, B + 1))
                    layout = "2026" if rng.random() < 0.5 else "2025"
                    for kernel in ("smem", "low_smem", "auto"):
                        if kernel == "smem" and mm.plan(B, P, kernel="smem", device=gpu).kernel == "error":
                            continue
                        check(lens, P, topk, nv, kernel, f"B={B} P={P} {mode}/{kind} nv={nv} {layout}", layout, tl)
        print(f"B={B} done, {runs} runs, {fails} failures, {time.time() - t0:.0f} s", flush=True)
    # batched (vmap-like leading dims), misaligned rows per batch, and huge lengths
    for B, G in ((5, 3), (4097, 2), (20001, 3), (150001, 2)):
        lens = lengths(rng, G * B, "mixed").reshape(G, B)
        for kernel in ("smem", "low_smem"):
            check(lens, 132, None, B - 1, kernel, f"batched G={G} B={B}")
    for B in (1, 64, 5000):
        for kernel in ("smem", "low_smem"):
            if kernel == "smem" and mm.plan(B, 132, kernel="smem", device=gpu).kernel == "error":
                continue
            check(lengths(rng, B, "huge"), 132, None, B, kernel, f"huge B={B}")
    print(f"SMOKE {runs} runs, {fails} failures, {time.time() - t0:.0f} s")
    return 1 if fails else 0


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", False)
    sys.exit(main())
