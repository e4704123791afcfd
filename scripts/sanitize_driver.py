#!/usr/bin/env python3
"""Driver for scripts/sanitize.sh: runs both CUDA kernels on the docs/spec.md section 8 workloads (and a few edge
cases) so that compute-sanitizer can watch them, and checks every output against the reference.

Each workload runs with kernel="smem" (where the forced smem kernel fits the device) and kernel="low_smem".
`--dry-run` runs the same driver on the CPU (no GPU, no sanitizer): the "kernel" choice is then ignored by the
CPU handler, but every other step is exercised. The last line printed is a machine-readable summary:

    DRIVER SUMMARY: runs=<n> ok=<n> mismatches=<n> skipped=<n> max_b=<B> device=<name>

Exit status: 0 if every output matched, 1 otherwise, 2 on a usage/setup error."""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-b", type=int, default=None,
                    help="largest workload B to run (default: all, up to 1,048,576 rows)")
    ap.add_argument("--kernels", default="smem,low_smem",
                    help="comma-separated kernels to force (smem, low_smem, auto); default smem,low_smem")
    ap.add_argument("--dry-run", action="store_true", help="run on the CPU instead of a GPU (no sanitizer)")
    ap.add_argument("--no-extras", action="store_true", help="skip the edge cases (B=0, zeros, negatives, ...)")
    ap.add_argument("--repeat", type=int, default=1, help="calls per workload and kernel (default 1)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the workload lengths")
    ap.add_argument("--only", default="", help="run only the cases whose label contains this text")
    ap.add_argument("--tag", default="", help="label printed with every line (e.g. the sanitizer tool)")
    args = ap.parse_args(argv)
    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    bad = [k for k in kernels if k not in ("smem", "low_smem", "auto")]
    if bad or not kernels:
        ap.error(f"--kernels: unknown kernel(s) {bad or kernels}")
    args.kernels = kernels
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    return args


def lognormal(np, B: int, seed: int):
    """B lengths, lognormal around 4k (capped at 128k), as the benchmark's dense sweep."""
    return np.minimum(np.random.default_rng(seed).lognormal(np.log(4096), 1.0, B), 131072).astype(np.int32)


def extra_cases(np):
    """(label, lengths, P, topk, num_valid) edge cases of docs/spec.md (correctness-only extras); a sixth item, when
    present, holds more schedule() arguments (per-row sparse lengths, the 2026 layout)."""
    i32max = 2**31 - 1
    return [
        ("B = 0", np.zeros(0, np.int32), 132, None, None),
        ("all zeros", np.zeros(1000, np.int32), 132, None, None),
        ("one 128k among 1023 ones", np.r_[np.ones(511), 131072, np.ones(512)].astype(np.int32), 132, None, None),
        ("lengths 63/64/65", np.tile(np.array([63, 64, 65], np.int32), 100), 66, None, None),
        ("negative lengths", np.array([-1, -5, -(2**31), 100, -64, 0, 7] * 20, np.int32), 9, None, None),
        ("near int32 max", (i32max - np.arange(300)).astype(np.int32), 132, None, None),
        ("P = 1", np.arange(1, 5000, dtype=np.int32), 1, None, None),
        ("P > B", np.array([5, 50000, 12], np.int32), 500, None, None),
        ("sparse topk 0", np.zeros(777, np.int32), 66, 0, None),
        ("num_valid padding", np.full(4096, 3000, np.int32), 132, None, 1234),
        ("num_valid 0", np.full(4096, 3000, np.int32), 132, None, 0),
        # the mid path's three ways of finding the chain (cuda/mid_path.cuh): one CTA; a cluster
        # that exchanges candidate lists (many candidates a rank); a cluster that exchanges tables, with
        # rows past num_valid in several ranks
        ("mid path, one CTA", lognormal(np, 2000, 1), 132, None, None),
        ("mid path, lists", lognormal(np, 4096, 2), 132, None, None),
        ("mid path, tables, num_valid", np.full(11000, 9000, np.int32), 132, None, 7000),
        # low_smem runs batches of more than 8,192 rows per CTA as three launches (cuda/wide_kernels.cu)
        ("wide batch, dense", np.random.default_rng(5).integers(0, 20000, 140_001).astype(np.int32), 132, None,
         None),
        ("wide batch, dense, num_valid", np.random.default_rng(6).integers(0, 20000, 140_001).astype(np.int32), 132,
         None, 100_000),
        ("wide batch, sparse", np.zeros(140_001, np.int32), 66, 2048, None),
        # per-row sparse lengths (docs/spec.md section 3) and the 2026 layout on every path: warp, row, mid,
        # general, wide
        *[(f"per-row sparse {B} rows, 2026", np.zeros(B, np.int32), P, 2048, nv,
           dict(layout="2026", topk_length=np.random.default_rng(B).integers(-3, 2100, B).astype(np.int32)))
          for B, P, nv in ((300, 66, None), (1500, 66, None), (11622, 66, 9000), (20000, 66, None),
                           (140_001, 66, None))],
        ("2026 layout, dense mid path", lognormal(np, 4096, 3), 132, None, None, dict(layout="2026")),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        os.environ["JAX_PLATFORMS"] = "cpu"       # before jax is imported
    import jax
    import numpy as np

    import jax_mla_meta as mm
    from jax_mla_meta import reference, workloads

    if args.dry_run:
        dev = jax.devices("cpu")[0]
    else:
        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if not gpus:
            print("sanitize_driver: no CUDA device (use --dry-run to run on the CPU)", file=sys.stderr)
            return 2
        if not mm.HAS_CUDA:
            print("sanitize_driver: jax_mla_meta was built without its CUDA module", file=sys.stderr)
            return 2
        dev = gpus[0]
    tag = f"[{args.tag}] " if args.tag else ""

    cases = []   # (label, lengths, P, topk, num_valid, more schedule() arguments)
    for w in workloads.spec_workloads(args.max_b):
        cases.append((w.label, w.seqlens(seed=args.seed), w.num_sm_parts, w.topk, None, {}))
    if not args.no_extras:
        cases += [(*c[:5], c[5] if len(c) > 5 else {}) for c in extra_cases(np)
                  if args.max_b is None or len(c[1]) <= args.max_b]
    cases = [c for c in cases if args.only in c[0]]

    runs = ok = mismatches = skipped = 0
    fns: dict = {}
    for label, lens, P, topk, nv, more in cases:
        B = len(lens)
        want = reference.schedule(lens, P, topk=topk, num_valid=nv, **more)
        layout = more.get("layout", "2025")
        tl = more.get("topk_length")
        tl_dev = None if tl is None else jax.device_put(tl, dev)
        x = jax.device_put(lens, dev)
        nv_dev = None if nv is None else jax.device_put(np.int32(nv), dev)
        for kernel in args.kernels:
            plan = mm.plan(B, P, kernel=kernel, device=dev, topk=topk, per_row=tl is not None)
            if plan.kernel == "error":                # forced smem does not fit this device
                skipped += 1
                print(f"{tag}SKIP {label:<42} kernel={kernel:<8} B={B} P={P}: {plan.reason}", flush=True)
                continue
            key = (B, P, topk, kernel, layout)
            if key not in fns:
                fns[key] = jax.jit(lambda s, n, t, P=P, topk=topk, kernel=kernel, layout=layout: mm.schedule(
                    s, num_sm_parts=P, topk=topk, kernel=kernel, num_valid=n, device=dev, layout=layout,
                    topk_length=t))
            f = fns[key]
            for rep in range(args.repeat):
                runs += 1
                t = time.perf_counter()
                try:
                    out = f(x, nv_dev, tl_dev)
                    meta, splits = (np.asarray(a) for a in out)
                except Exception as e:  # noqa: BLE001 - a failed call is a finding, keep going
                    mismatches += 1
                    print(f"{tag}FAIL {label:<42} kernel={kernel:<8} B={B} P={P}: {type(e).__name__}: {e}",
                          flush=True)
                    continue
                dt = time.perf_counter() - t
                problems = []
                if not np.array_equal(meta, want[0]):
                    bad = np.argwhere(meta != want[0])[:3].tolist()
                    problems.append(f"tile_scheduler_metadata differs at {bad}")
                if not np.array_equal(splits, want[1]):
                    bad = np.flatnonzero(splits != want[1])[:3].tolist()
                    problems.append(f"num_splits differs at {bad}")
                try:
                    reference.check_schedule(meta, splits, lens, topk=topk, num_valid=nv, **more)
                except reference.ScheduleError as e:
                    problems.append(f"check_schedule: {e}")
                if problems:
                    mismatches += 1
                    print(f"{tag}FAIL {label:<42} kernel={kernel:<8} B={B} P={P} ({plan.kernel}): "
                          + "; ".join(problems), flush=True)
                else:
                    ok += 1
                    if rep == 0:
                        print(f"{tag}OK   {label:<42} kernel={kernel:<8} B={B} P={P} ran {plan.kernel} "
                              f"({dt * 1e3:.1f} ms incl. compile)", flush=True)
    max_b = "all" if args.max_b is None else args.max_b
    print(f"DRIVER SUMMARY: runs={runs} ok={ok} mismatches={mismatches} skipped={skipped} max_b={max_b} "
          f"device={str(dev).replace(' ', '_')}", flush=True)
    return 0 if mismatches == 0 and runs > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
