"""CUDA-only checks: kernel selection at the threshold, both kernels against each other, large B."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jax_mla_meta as mm
from conftest import assert_same, need_gpus, random_lengths, ref
from jax_mla_meta import workloads


def run(dev, lens, P, topk=None, kernel="auto"):
    x = jax.device_put(np.asarray(lens, np.int32), dev)
    meta, splits = jax.jit(lambda s: mm.schedule(s, num_sm_parts=P, topk=topk, kernel=kernel))(x)
    return np.asarray(meta), np.asarray(splits)


def test_plan_reads_the_device_limit():
    dev = need_gpus(1)[0]
    p = mm.plan(1000, 132, device=dev)
    assert p.optin_limit is not None and p.optin_limit >= 48 * 1024
    assert p.kernel == "smem"
    big = mm.plan(p.max_smem_rows + 1, 132, device=dev)
    assert big.kernel == "low_smem" and big.smem_bytes > big.optin_limit
    assert mm.plan(p.max_smem_rows, 132, device=dev).kernel == "smem"


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_auto_on_both_sides_of_the_threshold(mode):
    dev = need_gpus(1)[0]
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
def test_spec_workloads_every_kernel(w):
    """Every workload of SPEC.md section 6: each kernel that can run, bit-identical to the reference."""
    dev = need_gpus(1)[0]
    lens = w.seqlens(seed=1)
    want = ref(lens, w.num_sm_parts, w.topk)
    for kernel in ("auto", "smem", "low_smem"):
        p = mm.plan(w.B, w.num_sm_parts, kernel=kernel, device=dev)
        if p.kernel == "error":
            continue
        assert_same(run(dev, lens, w.num_sm_parts, w.topk, kernel), want, f"{w.label} {kernel}")


def test_fallback_million_rows_random():
    dev = need_gpus(1)[0]
    rng = np.random.default_rng()
    lens = rng.integers(-10, 300_000, 1 << 20).astype(np.int32)
    for P, topk in ((132, None), (4096, None), (66, 2048)):
        assert_same(run(dev, lens, P, topk, "low_smem"), ref(lens, P, topk), f"1M P={P} topk={topk}")


def test_many_parts():
    dev = need_gpus(1)[0]
    rng = np.random.default_rng()
    for B, P in ((3000, 4096), (100_000, 4096), (50, 20_000)):
        lens = rng.integers(0, 5000, B).astype(np.int32)
        want = ref(lens, P)
        for kernel in ("auto", "low_smem"):
            assert_same(run(dev, lens, P, None, kernel), want, f"B={B} P={P} {kernel}")


def test_small_block_size_goes_to_low_smem():
    """block_size_n < 64 can overflow the smem kernel's 31-bit group offsets: auto avoids it, forcing fails."""
    dev = need_gpus(1)[0]
    assert not mm.smem_supported(16, 5) and mm.smem_supported(64, 5)
    assert mm.plan(100, 8, device=dev, block_size_n=16).kernel == "low_smem"
    lens = np.full(100, 2**31 - 1, np.int32)
    lens[::5] = 0
    x = jax.device_put(lens, dev)
    got = mm.schedule(x, num_sm_parts=8, block_size_n=16)
    assert_same(tuple(np.asarray(v) for v in got), ref(lens, 8, bs=16))
    with pytest.raises(ValueError, match="block_size_n=16"):
        mm.schedule(x, num_sm_parts=8, block_size_n=16, kernel="smem")


def test_wide_batches_vmapped():
    """low_smem batches of more than 8,192 rows per CTA run as three launches (chunk sums, the cluster,
    num_splits): vmapped batches with num_valid from 0 to B, dense (P = 132 and 3,000) and sparse."""
    dev = need_gpus(1)[0]
    rng = np.random.default_rng()
    B, G = 140_001, 4
    wide = mm.plan(B, 132, kernel="low_smem", device=dev)
    assert wide.cluster_size * 8192 < B and "num_splits launch" in wide.reason   # several chunks per CTA
    assert "num_splits launch" not in mm.plan(wide.cluster_size * 8192, 132, kernel="low_smem", device=dev).reason
    lens = np.stack([random_lengths(rng, B) for _ in range(G)]).astype(np.int32)
    nv = np.array([B, 0, int(rng.integers(1, 9000)), int(rng.integers(0, B + 1))], np.int32)
    x, n = jax.device_put(lens, dev), jax.device_put(nv, dev)
    for P, topk in ((132, None), (3000, None), (66, 2048)):
        f = jax.jit(jax.vmap(lambda s, v: mm.schedule(s, num_sm_parts=P, topk=topk, kernel="low_smem", num_valid=v)))
        meta, splits = (np.asarray(a) for a in f(x, n))
        for g in range(G):
            assert_same((meta[g], splits[g]), ref(lens[g], P, topk, nv[g]), f"wide P={P} topk={topk} num_valid={nv[g]}")


def test_wide_batch_of_more_than_32_chunks_per_cta():
    """Over 4M dense rows (8 CTAs on an H100): a CTA's chunk positions no longer fit its shared memory, so they
    go to the workspace."""
    dev = need_gpus(1)[0]
    B = 4_300_000
    if mm.plan(B, 132, kernel="low_smem", device=dev).cluster_size * 32 * 8192 >= B:
        pytest.skip("this device's clusters give every CTA at most 32 chunks")
    lens = workloads.lengths("stress", B, seed=7)
    assert_same(run(dev, lens, 132, None, "low_smem"), ref(lens, 132), "wide B=4.3M")
