"""CUDA-only checks: kernel selection at the threshold, every docs/spec.md workload on every kernel in both layouts
(also with per-row sparse lengths), large B, many parts, wide batches."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jax_mla_meta as mm
from conftest import assert_same, ref
from jax_mla_meta import workloads
from lengths import between, lengths, topk_lengths


def run(dev, lens, P, topk=None, kernel="auto", layout="2025", topk_length=None):
    x = jax.device_put(np.asarray(lens, np.int32), dev)
    t = None if topk_length is None else jax.device_put(np.asarray(topk_length, np.int32), dev)
    meta, splits = jax.jit(lambda s, t: mm.schedule(s, num_sm_parts=P, topk=topk, kernel=kernel, layout=layout,
                                                    topk_length=t))(x, t)
    return np.asarray(meta), np.asarray(splits)


def test_plan_reads_the_device_limit(gpus):
    dev = gpus[0]
    p = mm.plan(1000, 132, device=dev)
    assert p.optin_limit is not None and p.optin_limit >= 48 * 1024
    assert p.kernel == "smem"
    big = mm.plan(p.max_smem_rows + 1, 132, device=dev)
    assert big.kernel == "low_smem" and big.smem_bytes > big.optin_limit
    assert mm.plan(p.max_smem_rows, 132, device=dev).kernel == "smem"


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_auto_on_both_sides_of_the_threshold(mode, gpus):
    dev = gpus[0]
    P = 132 if mode == "dense" else 66
    topk = 2048 if mode == "sparse" else None
    edge = mm.plan(0, P, device=dev).max_smem_rows
    for B in (edge, edge + 1):
        lens = workloads.lengths("causal", B, seed=B)
        want = ref(lens, P, topk)
        assert_same(run(dev, lens, P, topk, "auto"), want, f"auto B={B}")
        assert_same(run(dev, lens, P, topk, "low_smem"), want, f"low_smem B={B}")
    assert_same(run(dev, lens[:edge], P, topk, "smem"), ref(lens[:edge], P, topk), f"smem B={edge}")
    with pytest.raises(ValueError, match="smem"):
        mm.schedule(jax.device_put(lens, dev), num_sm_parts=P, kernel="smem")


@pytest.mark.parametrize("w", workloads.spec_workloads(), ids=lambda w: w.label.replace(" ", "_"))
def test_spec_workloads_every_kernel(w, rng, gpus):
    """Every workload of docs/spec.md section 8: each kernel that can run, bit-identical to the reference in both
    layouts; sparse workloads also with per-row lengths (topk_length uniform in [0, topk])."""
    dev = gpus[0]
    lens = w.seqlens(seed=1)
    cases = [(layout, None) for layout in ("2025", "2026")]
    if w.topk is not None:
        cases.append(("2026", topk_lengths(rng, w.B, w.topk, "uniform")))
    for layout, tl in cases:
        want = ref(lens, w.num_sm_parts, w.topk, layout=layout, topk_length=tl)
        for kernel in ("auto", "smem", "low_smem"):
            p = mm.plan(w.B, w.num_sm_parts, kernel=kernel, device=dev, topk=w.topk, per_row=tl is not None)
            if p.kernel == "error":
                continue
            assert_same(run(dev, lens, w.num_sm_parts, w.topk, kernel, layout, tl), want,
                        f"{w.label} {kernel} {layout} per_row={tl is not None} seed {rng.seed}")


def test_fallback_million_rows_random(rng, gpus):
    dev = gpus[0]
    lens = between(rng, 1 << 20, -10, 300_000)
    for P, topk, layout in ((132, None, "2025"), (4096, None, "2026"), (66, 2048, "2025")):
        assert_same(run(dev, lens, P, topk, "low_smem", layout), ref(lens, P, topk, layout=layout),
                    f"1M P={P} topk={topk} {layout} seed {rng.seed}")
    tl = topk_lengths(rng, 1 << 20, 2048)
    assert_same(run(dev, lens, 66, 2048, "low_smem", "2026", tl), ref(lens, 66, 2048, layout="2026", topk_length=tl),
                f"1M per-row sparse seed {rng.seed}")


def test_many_parts(rng, gpus):
    dev = gpus[0]
    for B, P in ((3000, 4096), (100_000, 4096), (50, 20_000)):
        lens = between(rng, B, 0, 5000)
        for layout in ("2025", "2026"):
            want = ref(lens, P, layout=layout)
            for kernel in ("auto", "low_smem"):
                assert_same(run(dev, lens, P, None, kernel, layout), want,
                            f"B={B} P={P} {kernel} {layout} seed {rng.seed}")


def test_small_block_size_goes_to_low_smem(gpus):
    """block_size_n < 64 can overflow the smem kernel's 31-bit group offsets: auto avoids it, forcing fails."""
    dev = gpus[0]
    assert not mm.smem_supported(16, 5) and mm.smem_supported(64, 5)
    assert mm.plan(100, 8, device=dev, block_size_n=16).kernel == "low_smem"
    lens = np.full(100, 2**31 - 1, np.int32)
    lens[::5] = 0
    x = jax.device_put(lens, dev)
    got = mm.schedule(x, num_sm_parts=8, block_size_n=16)
    assert_same(tuple(np.asarray(v) for v in got), ref(lens, 8, bs=16))
    with pytest.raises(ValueError, match="block_size_n=16"):
        mm.schedule(x, num_sm_parts=8, block_size_n=16, kernel="smem")


def test_wide_batches_vmapped(rng, gpus):
    """low_smem batches of more than 8,192 rows per CTA run as three launches (chunk sums, the cluster,
    num_splits): vmapped batches with num_valid from 0 to B, dense (P = 132 and 3,000) and sparse."""
    dev = gpus[0]
    B, G = 140_001, 4
    wide = mm.plan(B, 132, kernel="low_smem", device=dev)
    assert wide.cluster_size * 8192 < B and wide.launches == 3   # several chunks per CTA
    assert mm.plan(wide.cluster_size * 8192, 132, kernel="low_smem", device=dev).launches == 1
    lens = np.stack([lengths(rng, B) for _ in range(G)]).astype(np.int32)
    tl = np.stack([topk_lengths(rng, B, 2048) for _ in range(G)])
    nv = np.array([B, 0, int(rng.integers(1, 9000)), int(rng.integers(0, B + 1))], np.int32)
    x, n, t = jax.device_put(lens, dev), jax.device_put(nv, dev), jax.device_put(tl, dev)
    for P, topk, layout, per_row in ((132, None, "2025", False), (3000, None, "2026", False),
                                     (66, 2048, "2025", False), (66, 2048, "2026", True)):
        f = jax.jit(jax.vmap(lambda s, v, t: mm.schedule(s, num_sm_parts=P, topk=topk, kernel="low_smem",
                                                         num_valid=v, layout=layout,
                                                         topk_length=t if per_row else None)))
        meta, splits = (np.asarray(a) for a in f(x, n, t))
        for g in range(G):
            want = ref(lens[g], P, topk, nv[g], layout=layout, topk_length=tl[g] if per_row else None)
            assert_same((meta[g], splits[g]), want,
                        f"wide P={P} topk={topk} {layout} per_row={per_row} num_valid={nv[g]} seed {rng.seed}")


def test_wide_batch_of_more_than_32_chunks_per_cta(gpus):
    """Over 4M dense rows (8 CTAs on an H100): a CTA's chunk positions no longer fit its shared memory, so they
    go to the workspace."""
    dev = gpus[0]
    B = 4_300_000
    if mm.plan(B, 132, kernel="low_smem", device=dev).cluster_size * 32 * 8192 >= B:
        pytest.skip("this device's clusters give every CTA at most 32 chunks")
    lens = workloads.lengths("stress", B, seed=7)
    assert_same(run(dev, lens, 132, None, "low_smem"), ref(lens, 132), "wide B=4.3M")
