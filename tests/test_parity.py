"""Bit-identity with the pure-Python reference on every backend (CPU handler, both CUDA kernels)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_mla_meta as mm
from conftest import INT32_MAX, assert_same, random_lengths, ref
from jax_mla_meta.api import _schedule_into


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_random_parity(backend, mode):
    """Hundreds of fresh random inputs per mode: P in 1..200, B in 0..20,000 (vmapped batches of 8)."""
    rng = np.random.default_rng()   # fresh every run; the failing input is printed on mismatch
    shapes = [(0, 1), (1, 1), (3, 200), (40, 7), (131, 132), (500, 66), (2000, 132), (7000, 17), (20000, 200)]
    shapes += [(int(rng.integers(0, 20001)), int(rng.integers(1, 201))) for _ in range(16)]
    tried = 0
    for B, P in shapes:
        if not backend.fits(B, P):
            continue
        G = 8
        lens = np.stack([random_lengths(rng, B) for _ in range(G)]).astype(np.int32)
        topk = int(rng.choice([0, 1, 64, 2048, 5000])) if mode == "sparse" else None
        nv = rng.integers(0, B + 1, G).astype(np.int32)
        nv[0] = B
        x = jax.device_put(lens, backend.device)
        f = jax.jit(jax.vmap(lambda s, n: mm.schedule(s, num_sm_parts=P, topk=topk, kernel=backend.kernel,
                                                        num_valid=n, device=backend.device)))
        meta, splits = (np.asarray(a) for a in f(x, jax.device_put(nv, backend.device)))
        for g in range(G):
            assert_same((meta[g], splits[g]), ref(lens[g], P, topk, nv[g]),
                        f"{backend.name} B={B} P={P} topk={topk} num_valid={nv[g]} lens={lens[g][:8].tolist()}...")
            tried += 1
    assert tried >= 100


EDGE_CASES = {
    "all zeros": (np.zeros(1000), 132),
    "one 128k among 1023 ones": (np.r_[np.ones(511), 131072, np.ones(512)], 132),
    "lengths 63/64/65": (np.tile([63, 64, 65], 100), 66),
    "B = P - 1": (np.full(131, 4096), 132),
    "B = P": (np.full(132, 4096), 132),
    "B = P + 1": (np.full(133, 4096), 132),
    "B = 0": (np.zeros(0), 132),
    "negative lengths": (np.array([-1, -5, -(2**31), 100, -64, 0, 7] * 20), 9),
    "near int32 max": (np.full(300, INT32_MAX - np.arange(300)), 132),
    "P = 1": (np.arange(1, 5000), 1),
    "P > B": (np.array([5, 50000, 12]), 500),
    "single row": (np.array([4096]), 132),
    "block-size boundaries": (np.array([0, 1, 2, 63, 64, 65, 127, 128, 129] * 37), 33),
    # short rows, so many restarts that the dense row path's candidate filter gives way to its walk over every row
    "many restarts": (np.random.default_rng(0).integers(0, 500, 1500), 132),
    "many restarts, P = 256": (np.random.default_rng(1).integers(0, 2000, 1700), 256),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_edge_cases(backend, case, mode):
    lens, P = EDGE_CASES[case]
    lens = np.asarray(lens, dtype=np.int64).astype(np.int32)
    topk = 2048 if mode == "sparse" else None
    if not backend.fits(len(lens), P):
        pytest.skip("smem kernel does not fit")
    assert_same(backend.run(lens, P, topk=topk), ref(lens, P, topk), f"{backend.name} {case}")


def test_overflowing_total_is_exact(backend):
    """The sum of blocks overflows 32 bits: 70,000 rows of ~2^31 tokens (2^25 blocks each)."""
    B = 70_000 if backend.kernel != "smem" else 50_000
    if not backend.fits(B, 132):
        pytest.skip("smem kernel does not fit")
    lens = np.full(B, INT32_MAX, dtype=np.int32)
    lens[::7] = 1
    assert sum(int(x) for x in mm.reference.num_blocks(lens, 64)) > 2**31
    assert_same(backend.run(lens, 132), ref(lens, 132), backend.name)


@pytest.mark.parametrize("bs,F", [(1, 0), (16, 1), (64, 5), (128, 40)])
def test_other_block_sizes_and_overheads(backend, bs, F):
    rng = np.random.default_rng()
    lens = rng.integers(0, 20000, 777).astype(np.int32)
    if not backend.fits(777, 50, bs=bs, F=F):
        pytest.skip("the smem kernel does not support this block size")
    assert_same(backend.run(lens, 50, bs=bs, F=F), ref(lens, 50, bs=bs, F=F), f"{backend.name} bs={bs} F={F}")


@pytest.mark.parametrize("F,hi,B,P", [(40, 64, 100, 132), (9, 200, 300, 132), (0, 100, 500, 200),
                                     (5, 3000, 1792, 256), (7, 9000, 1000, 132), (8, 9000, 1000, 132)])
def test_row_path_walks(backend, F, hi, B, P):
    """The dense row path in its shapes: Q <= 64 with F >= Q (every later row is hit; num_splits by a block
    scan) or with residues that wrap; F < Q (num_splits in closed form) with the candidate bound L below
    Q - 1 (F = 5, 7, 8) and F = 0."""
    lens = np.random.default_rng().integers(0, hi, B).astype(np.int32)
    assert_same(backend.run(lens, P, F=F), ref(lens, P, F=F), f"{backend.name} F={F} B={B} P={P}")


def check_vmapped(backend, lens, nv, P: int, F: int, bs: int) -> int:
    """One vmapped call over the batches `lens` [G, B] with num_valid `nv`, each checked against the reference;
    returns G."""
    f = jax.jit(jax.vmap(lambda s, n: mm.schedule(s, num_sm_parts=P, kernel=backend.kernel, num_valid=n,
                                                    block_size_n=bs, fixed_overhead_num_blocks=F,
                                                    device=backend.device)))
    meta, splits = (np.asarray(a) for a in f(jax.device_put(lens, backend.device), jax.device_put(nv, backend.device)))
    for g in range(len(lens)):
        assert_same((meta[g], splits[g]), ref(lens[g], P, num_valid=nv[g], bs=bs, F=F),
                    f"{backend.name} B={lens.shape[1]} P={P} F={F} bs={bs} num_valid={nv[g]} "
                    f"lens={lens[g][:8].tolist()}")
    return len(lens)


def test_warp_path_shapes(backend):
    """Small dense batches (B <= 512, P <= 256: the kernels' warp path, 1, 2, 4, 8 or 16 rows per lane) on both
    sides of every size step, with F < Q (a walk of restarts) and Q <= F (every row restarts), short rows (many
    restarts), padding (num_valid), other block sizes, and tapes of 2^30 blocks or more or rows of 2^26 blocks
    or more (both sent to the general path)."""
    rng = np.random.default_rng()   # fresh every run; the failing input is printed on mismatch
    tried = 0
    for B in [1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 400, 511, 512, 513]:
        for _ in range(3):
            P = int(rng.choice([1, 2, 7, 66, 132, 255, 256]))
            F = int(rng.choice([0, 5, 5, 64, 2**20]))
            bs = int(rng.choice([64, 64, 1, 3, 128]))
            if not backend.fits(B, P, bs=bs, F=F):   # the smem kernel with bs = 1 or 3
                continue
            G = 8
            lens = np.stack([random_lengths(rng, B) if g % 2 else rng.integers(-2, 400, B)
                             for g in range(G)]).astype(np.int32)
            nv = rng.integers(0, B + 1, G).astype(np.int32)
            nv[:4] = B
            tried += check_vmapped(backend, lens, nv, P, F, bs)
    assert tried >= 100


def test_mid_path_shapes(backend):
    """Mid-size dense batches (1,792 < B <= 12,288, P <= 256, block_size_n 64 or 128: the kernels' mid path,
    a cluster of 512-thread CTAs, 1-8 of them with 4 rows a thread on an H100, restarts falling in any CTA's
    slice) on both sides of every size step and of the threshold pair, with
    padding (num_valid), odd B (unaligned batches of a vmap), equal lengths (long chains of restarts, which may
    outgrow the candidate bound), short rows (more candidates than the path keeps), and inputs the path hands
    to the general path (Q <= F, totals of 2^30 blocks or more, other block sizes)."""
    rng = np.random.default_rng()   # fresh every run; the failing input is printed on mismatch
    tried = 0
    for B in [1792, 1793, 2048, 2049, 4095, 4096, 4097, 6001, 8192, 8193, 8195, 11622, 11623, 12287, 12288,
              12289]:
        for _ in range(2):
            P = int(rng.choice([1, 7, 66, 132, 132, 255, 256]))
            F = int(rng.choice([0, 5, 5, 5, 64, 2**20]))
            bs = int(rng.choice([64, 64, 64, 128, 3]))
            if not backend.fits(B, P, bs=bs, F=F):   # the smem kernel with bs = 3
                continue
            G = 4
            kinds = [lambda: random_lengths(rng, B), lambda: rng.integers(-2, 400, B),
                     lambda: np.full(B, rng.integers(1, 3000)),
                     lambda: np.minimum(rng.lognormal(8.3, 1.2, B), 131072)]
            lens = np.stack([kinds[int(rng.integers(0, 4))]() for _ in range(G)]).astype(np.int32)
            nv = rng.integers(0, B + 1, G).astype(np.int32)
            nv[:2] = B
            tried += check_vmapped(backend, lens, nv, P, F, bs)
    assert tried >= 60


def test_poisoned_outputs_are_fully_written(backend):
    """Outputs alias buffers pre-filled with poison: every element must be overwritten."""
    rng = np.random.default_rng()
    for B, P, topk in [(0, 5, None), (1, 132, None), (300, 66, 2048), (5000, 132, None)]:
        lens = rng.integers(0, 10000, B).astype(np.int32)
        poison_m = jax.device_put(np.full((P, 8), -777, np.int32), backend.device)
        poison_s = jax.device_put(np.full((B + 1,), -777, np.int32), backend.device)
        x = jax.device_put(lens, backend.device)
        f = jax.jit(lambda a, b, s: _schedule_into(a, b, s, num_sm_parts=P, topk=topk, kernel=backend.kernel))
        meta, splits = (np.asarray(v) for v in f(poison_m, poison_s, x))
        assert_same((meta, splits), ref(lens, P, topk), f"{backend.name} poisoned B={B}")


def test_num_valid_padding(backend):
    """Padded batches: one executable serves every num_valid; rows past it are ignored."""
    rng = np.random.default_rng()
    B, P = 257, 40
    lens = rng.integers(0, 50000, B).astype(np.int32)
    x = jax.device_put(lens, backend.device)
    f = jax.jit(lambda s, n: mm.schedule(s, num_sm_parts=P, kernel=backend.kernel, num_valid=n))
    for n in [0, 1, 2, 39, 40, 41, 128, 256, 257, -5, 1000]:
        meta, splits = (np.asarray(v) for v in f(x, jax.device_put(np.int32(n), backend.device)))
        assert_same((meta, splits), ref(lens, P, num_valid=n), f"{backend.name} num_valid={n}")
    assert f._cache_size() == 1


def test_jit_matches_eager_and_does_not_recompile(backend):
    rng = np.random.default_rng()
    f = jax.jit(lambda s: mm.schedule(s, num_sm_parts=66, topk=None, kernel=backend.kernel))
    for _ in range(3):
        lens = rng.integers(0, 100000, 1000).astype(np.int32)
        got = tuple(np.asarray(v) for v in f(jax.device_put(lens, backend.device)))
        assert_same(got, ref(lens, 66), backend.name)
    assert f._cache_size() == 1


def test_vmap_in_axes_and_nested(backend):
    rng = np.random.default_rng()
    lens = rng.integers(0, 30000, (3, 50, 4)).astype(np.int32)   # batch axes 0 and 2, rows on axis 1
    x = jax.device_put(lens, backend.device)
    f = jax.vmap(jax.vmap(lambda s: mm.schedule(s, num_sm_parts=10, kernel=backend.kernel), in_axes=1), in_axes=0)
    meta, splits = (np.asarray(v) for v in jax.jit(f)(x))
    assert meta.shape == (3, 4, 10, 8) and splits.shape == (3, 4, 51)
    for i in range(3):
        for j in range(4):
            assert_same((meta[i, j], splits[i, j]), ref(lens[i, :, j], 10), f"{backend.name} [{i},{j}]")
