"""Bit-identity with the pure-Python reference on every backend (the CPU handler, both CUDA kernels), in both
layouts, for dense rows, sparse rows of one length and sparse rows with per-row lengths, on every path of the
kernels (warp, row, mid, general, wide), on fresh seeded inputs and into poisoned output buffers."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jax_mla_meta as mm
from conftest import INT32_MAX, assert_same, ref
from jax_mla_meta.api import _schedule_into
from lengths import between, extra_lengths, lengths, mixed, topk_lengths

LAYOUTS = ["2025", "2026"]


def sparse_inputs(rng, B: int, topk: int, G: int | None = None) -> dict:
    """Random per-row sparse inputs for B rows (G batches when given): topk_length always, an extra cache
    (per-row or one size) half of the time."""
    shape = (B,) if G is None else (G, B)
    tl = np.stack([topk_lengths(rng, B, topk) for _ in range(G or 1)]).reshape(shape)
    kw = dict(topk=topk, topk_length=tl)
    u = rng.random()
    if u < 0.25:
        kw["extra_topk"] = int(rng.choice([64, 512, 2048]))
    elif u < 0.5:
        kw["extra_topk"] = int(rng.choice([0, 512]))
        kw["extra_topk_length"] = np.stack([extra_lengths(rng, B) for _ in range(G or 1)]).reshape(shape)
    return kw


def check_vmapped(backend, lens, nv, P: int, *, F: int = 5, bs: int = 64, layout: str = "2025",
                  what: str = "", **sparse) -> int:
    """One vmapped call over the batches `lens` [G, B] with num_valid `nv` (and per-batch sparse inputs),
    each batch checked against the reference; returns G."""
    topk = sparse.get("topk")
    extra = sparse.get("extra_topk")
    rows = {k: sparse[k] for k in ("topk_length", "extra_topk_length") if k in sparse}
    names = tuple(rows)

    def one(s, n, *r):
        return mm.schedule(s, num_sm_parts=P, kernel=backend.kernel, num_valid=n, block_size_n=bs,
                           fixed_overhead_num_blocks=F, device=backend.device, layout=layout, topk=topk,
                           extra_topk=extra, **dict(zip(names, r)))

    put = backend.put
    meta, splits = (np.asarray(a) for a in jax.jit(jax.vmap(one))(put(lens), put(nv), *(put(v) for v in rows.values())))
    for g in range(len(lens)):
        per_row = {k: v[g] for k, v in rows.items()}
        want = ref(lens[g], P, topk, nv[g], bs=bs, F=F, layout=layout, extra_topk=extra, **per_row)
        assert_same((meta[g], splits[g]), want,
                    f"{what} {backend.name} B={lens.shape[1]} P={P} F={F} bs={bs} layout={layout} topk={topk} "
                    f"extra={extra} num_valid={nv[g]} lens={lens[g][:6].tolist()} "
                    + " ".join(f"{k}={v[:6].tolist()}" for k, v in per_row.items()))
    return len(lens)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", ["dense", "sparse", "sparse rows"])
def test_random_parity(backend, mode, layout, rng):
    """Fresh random batches per mode: P in 1..200, B in 0..20,000 (vmapped batches of 4)."""
    shapes = [(0, 1), (1, 1), (3, 200), (40, 7), (131, 132), (500, 66), (2000, 132), (7000, 17), (20000, 200)]
    shapes += [(int(rng.integers(0, 20001)), int(rng.integers(1, 201))) for _ in range(6)]
    tried = 0
    for B, P in shapes:
        if not backend.fits(B, P):
            continue
        G = 4
        lens = np.stack([lengths(rng, B) for _ in range(G)])
        nv = rng.integers(0, B + 1, G).astype(np.int32)
        nv[0] = B
        if mode == "dense":
            sparse = {}
        elif mode == "sparse":
            sparse = dict(topk=int(rng.choice([0, 1, 64, 2048, 5000])))
            if rng.random() < 0.3:
                sparse["extra_topk"] = int(rng.choice([64, 2048]))
        else:
            sparse = sparse_inputs(rng, B, int(rng.choice([64, 2048, 5000])), G)
        tried += check_vmapped(backend, lens, nv, P, layout=layout, what=f"seed {rng.seed}", **sparse)
    assert tried >= 40


# Lengths at the boundaries of the paths and rules (dense, sparse, per-row sparse): (lengths, P)
BOUNDARY_CASES = {
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
    # short rows, so many restarts that the row path's candidate filter gives way to its walk over every row
    "many restarts": ("small", 1500, 132),
    "many restarts, P = 256": ("small", 1700, 256),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", sorted(BOUNDARY_CASES))
@pytest.mark.parametrize("mode", ["dense", "sparse", "sparse rows"])
def test_boundary_cases(backend, case, mode, layout, rng):
    spec = BOUNDARY_CASES[case]
    if isinstance(spec[0], str):
        lens, P = lengths(rng, spec[1], spec[0]), spec[2]
    else:
        lens, P = spec
    lens = np.asarray(lens, dtype=np.int64).astype(np.int32)
    B = len(lens)
    kw = {}
    if mode == "sparse":
        kw = dict(topk=2048)
    elif mode == "sparse rows":   # the lengths themselves as per-row top-k counts, cost rule and all
        kw = dict(topk=2048, topk_length=lens, extra_topk=64 if B % 2 else None)
    if not backend.fits(B, P):
        pytest.skip("smem kernel does not fit")
    assert_same(backend.run(lens, P, layout=layout, **kw), ref(lens, P, layout=layout, **kw),
                f"{backend.name} {case} seed {rng.seed}")


# Edge cases of the contract (docs/spec.md sections 3-5): (lengths, P, F, sparse inputs)
EDGE_CASES = {
    "B = 1 sparse, P = 132 (100+ trailing parts)": (np.array([7]), 132, 5, dict(topk=2048)),
    "dense all-zero lengths": (np.zeros(50), 16, 5, {}),
    "one request split at both ends": (np.array([100, 200000, 100]), 9, 5, {}),
    "topk_length zeros": (np.zeros(40), 7, 5, dict(topk=2048, topk_length=np.zeros(40))),
    "topk_length not multiples of 64": (np.zeros(60), 11, 5,
                                        dict(topk=2048, topk_length=np.arange(60) * 37 % 2049)),
    "extra lengths 0 and large": (np.zeros(30), 5, 5, dict(topk=2048, topk_length=np.arange(30) * 70,
                                                           extra_topk_length=np.r_[np.zeros(15), np.full(15, 9000)])),
    "F = 3": (np.zeros(64), 37, 3, dict(topk=2048, topk_length=np.arange(64) * 31)),
    "F = 5 on the same input": (np.zeros(64), 37, 5, dict(topk=2048, topk_length=np.arange(64) * 31)),
    "B = 11,622": ("lognormal", 11622, 132, 5, {}),
    "B = 11,623": ("lognormal", 11623, 132, 5, {}),
    "B = 20,000": ("lognormal", 20000, 132, 5, {}),
    "B = 11,623 sparse rows": ("zeros", 11623, 66, 5, "rows"),
    "B = 20,000 sparse rows": ("zeros", 20000, 66, 5, "rows"),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases(backend, case, layout, rng):
    spec = EDGE_CASES[case]
    if isinstance(spec[0], str):
        family, B, P, F, kw = spec
        lens = lengths(rng, B, family)
        if kw == "rows":
            kw = dict(topk=2048, topk_length=topk_lengths(rng, B, 2048, "uniform"))
    else:
        lens, P, F, kw = spec
    lens = np.asarray(lens).astype(np.int32)
    kw = {k: (np.asarray(v).astype(np.int32) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    if not backend.fits(len(lens), P, F=F):
        pytest.skip("smem kernel does not fit")
    assert_same(backend.run(lens, P, F=F, layout=layout, **kw), ref(lens, P, F=F, layout=layout, **kw),
                f"{backend.name} {case} seed {rng.seed}")


def test_overflowing_total_is_exact(backend):
    """The sum of blocks overflows 32 bits: 70,000 rows of ~2^31 tokens (2^25 blocks each)."""
    B = 70_000 if backend.kernel != "smem" else 50_000
    if not backend.fits(B, 132):
        pytest.skip("smem kernel does not fit")
    lens = np.full(B, INT32_MAX, dtype=np.int32)
    lens[::7] = 1
    assert sum(int(x) for x in mm.reference.num_blocks(lens, 64)) > 2**31
    assert_same(backend.run(lens, 132), ref(lens, 132), backend.name)
    assert_same(backend.run(lens, 132, layout="2026", topk=64, topk_length=lens),
                ref(lens, 132, layout="2026", topk=64, topk_length=lens), backend.name + " sparse rows")


@pytest.mark.parametrize("bs,F", [(1, 0), (16, 1), (64, 5), (128, 40)])
def test_other_block_sizes_and_overheads(backend, bs, F, rng):
    lens = between(rng, 777, 0, 20000)
    if not backend.fits(777, 50, bs=bs, F=F):
        pytest.skip("the smem kernel does not support this block size")
    for layout in LAYOUTS:
        assert_same(backend.run(lens, 50, bs=bs, F=F, layout=layout), ref(lens, 50, bs=bs, F=F, layout=layout),
                    f"{backend.name} bs={bs} F={F} {layout} seed {rng.seed}")


@pytest.mark.parametrize("F,hi,B,P", [(40, 64, 100, 132), (9, 200, 300, 132), (0, 100, 500, 200),
                                     (5, 3000, 1792, 256), (7, 9000, 1000, 132), (8, 9000, 1000, 132)])
def test_row_path_walks(backend, F, hi, B, P, rng):
    """The row path in its shapes: Q <= 64 with F >= Q (every later row is hit; num_splits by a block scan) or
    with residues that wrap; F < Q (num_splits in closed form) with the candidate bound L below Q - 1 (F = 5, 7,
    8) and F = 0. Both layouts, dense and per-row sparse lengths."""
    lens = between(rng, B, 0, hi)
    for layout in LAYOUTS:
        assert_same(backend.run(lens, P, F=F, layout=layout), ref(lens, P, F=F, layout=layout),
                    f"{backend.name} F={F} B={B} P={P} {layout} seed {rng.seed}")
        kw = dict(topk=hi, topk_length=lens)
        assert_same(backend.run(lens, P, F=F, layout=layout, **kw), ref(lens, P, F=F, layout=layout, **kw),
                    f"{backend.name} sparse rows F={F} B={B} P={P} {layout} seed {rng.seed}")


def _path_cases(backend, rng, sizes, reps, Ps, Fs, bss, G, what):
    tried = 0
    for B in sizes:
        for _ in range(reps):
            P, F, bs = int(rng.choice(Ps)), int(rng.choice(Fs)), int(rng.choice(bss))
            if not backend.fits(B, P, bs=bs, F=F):   # the smem kernel with a small block size
                continue
            layout = str(rng.choice(LAYOUTS))
            lens = np.stack([mixed(rng, B) for _ in range(G)])   # a family, short, equal or lognormal rows
            nv = rng.integers(0, B + 1, G).astype(np.int32)
            nv[: G // 2] = B
            sparse = sparse_inputs(rng, B, int(rng.choice([64, 2048])), G) if rng.random() < 0.4 else {}
            tried += check_vmapped(backend, lens, nv, P, F=F, bs=bs, layout=layout, what=f"{what} seed {rng.seed}",
                                   **sparse)
    return tried


def test_warp_path_shapes(backend, rng):
    """Small batches with per-row lengths (B <= 512, P <= 256: the warp path, 1, 2, 4, 8 or 16 rows per lane)
    on both sides of every size step, with F < Q (a walk of restarts) and Q <= F (every row restarts), short
    rows (many restarts), padding (num_valid), other block sizes, and tapes of 2^30 blocks or more or rows of
    2^26 blocks or more (both sent to the general path); both layouts, dense and sparse rows."""
    sizes = [1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 400, 511, 512, 513]
    tried = _path_cases(backend, rng, sizes, 3, [1, 2, 7, 66, 132, 255, 256], [0, 5, 5, 64, 2**20],
                        [64, 64, 1, 3, 128], 6, "warp path")
    assert tried >= 100


def test_mid_path_shapes(backend, rng):
    """Mid-size batches with per-row lengths (the mid path: a cluster of 512-thread CTAs, 1-8 of them with 4 rows
    a thread on an H100, restarts falling in any CTA's slice) on both sides of every size step and of the
    threshold pair, with padding (num_valid), odd B (unaligned batches of a vmap), equal lengths (long chains of
    restarts, which may outgrow the candidate bound), short rows (more candidates than the path keeps), and inputs
    the path hands to the general path (Q <= F, totals of 2^30 blocks or more, other block sizes)."""
    lo, hi = mm._ffi.MID_PATH_ROWS
    sizes = sorted({lo - 1, lo, 2048, 2049, 4095, 4096, 4097, 6001, 8192, 8193, 8195, 11622, 11623, hi, hi + 1})
    tried = _path_cases(backend, rng, sizes, 2, [1, 7, 66, 132, 132, 255, 256], [0, 5, 5, 5, 64, 2**20],
                        [64, 64, 64, 128, 3], 4, "mid path")
    assert tried >= 60


def poison_case(rng, B: int, kind) -> dict:
    """The sparse inputs of a poisoned-output case: as given (a dict), or per-row ones drawn for ``kind``: "rows"
    (topk_length), "rows+extra" (topk_length, extra_topk, extra_topk_length) or "extra rows" (extra_topk and
    extra_topk_length without topk_length)."""
    if isinstance(kind, dict):
        return kind
    kw = dict(topk=2048)
    if kind in ("rows", "rows+extra"):
        kw["topk_length"] = topk_lengths(rng, B, 2048)
    if kind in ("rows+extra", "extra rows"):
        kw["extra_topk"] = 512 if kind == "rows+extra" else 2048
        kw["extra_topk_length"] = extra_lengths(rng, B)
    return kw


@pytest.mark.parametrize("layout", LAYOUTS)
def test_poisoned_outputs_are_fully_written(backend, layout, rng):
    """Outputs alias buffers pre-filled with poison: every element must be overwritten, on every path, dense and
    sparse (one length, with an extra cache, per-row topk_length and extra_topk_length)."""
    cases = [(0, 5, {}), (1, 132, {}), (300, 66, dict(topk=2048)), (5000, 132, {}), (700, 132, {}),
             (20000, 132, {}), (300, 66, "rows"), (3000, 66, "rows"), (20000, 66, "rows"), (1, 132, "rows"),
             (300, 66, dict(topk=2048, extra_topk=512)), (1, 132, "rows+extra"), (300, 66, "rows+extra"),
             (3000, 66, "rows+extra"), (20000, 66, "rows+extra"), (0, 5, "extra rows"), (700, 132, "extra rows"),
             (5000, 66, "extra rows")]
    for B, P, kind in cases:
        lens = between(rng, B, 0, 10000)
        kw = poison_case(rng, B, kind)
        if not backend.fits(B, P):
            continue
        put = backend.put
        rows = {k: put(kw[k]) for k in ("topk_length", "extra_topk_length") if k in kw}
        f = jax.jit(lambda a, b, s, r: _schedule_into(a, b, s, num_sm_parts=P, kernel=backend.kernel, layout=layout,
                                                      topk=kw.get("topk"), extra_topk=kw.get("extra_topk"), **r))
        meta, splits = (np.asarray(v) for v in f(put(np.full((P, 8), -777)), put(np.full((B + 1,), -777)),
                                                 put(lens), rows))
        assert_same((meta, splits), ref(lens, P, layout=layout, **kw),
                    f"{backend.name} poisoned B={B} P={P} {layout} {sorted(kw)} seed {rng.seed}")


def test_num_valid_padding(backend, rng):
    """Padded batches: one executable serves every num_valid; rows past it are ignored."""
    B, P = 257, 40
    lens = between(rng, B, 0, 50000)
    tl = topk_lengths(rng, B, 2048)
    x, t = backend.put(lens), backend.put(tl)
    for layout in LAYOUTS:
        f = jax.jit(lambda s, n, tl: mm.schedule(s, num_sm_parts=P, kernel=backend.kernel, num_valid=n,
                                                 layout=layout))
        g = jax.jit(lambda s, n, tl: mm.schedule(s, num_sm_parts=P, kernel=backend.kernel, num_valid=n,
                                                 layout=layout, topk=2048, topk_length=tl))
        for n in [0, 1, 2, 39, 40, 41, 128, 256, 257, -5, 1000]:
            nv = backend.put(np.int32(n))
            assert_same(tuple(np.asarray(v) for v in f(x, nv, t)), ref(lens, P, num_valid=n, layout=layout),
                        f"{backend.name} num_valid={n} {layout}")
            assert_same(tuple(np.asarray(v) for v in g(x, nv, t)),
                        ref(lens, P, num_valid=n, layout=layout, topk=2048, topk_length=tl),
                        f"{backend.name} sparse rows num_valid={n} {layout} seed {rng.seed}")
        assert f._cache_size() == 1 and g._cache_size() == 1


def test_jit_matches_eager_and_does_not_recompile(backend, rng):
    f = jax.jit(lambda s: mm.schedule(s, num_sm_parts=66, topk=None, kernel=backend.kernel))
    for _ in range(3):
        lens = between(rng, 1000, 0, 100000)
        got = tuple(np.asarray(v) for v in f(backend.put(lens)))
        assert_same(got, ref(lens, 66), f"{backend.name} seed {rng.seed}")
    assert f._cache_size() == 1


def test_vmap_in_axes_and_nested(backend, rng):
    lens = between(rng, (3, 50, 4), 0, 30000)   # batch axes 0 and 2, rows on axis 1
    x = backend.put(lens)
    f = jax.vmap(jax.vmap(lambda s: mm.schedule(s, num_sm_parts=10, kernel=backend.kernel, layout="2026"),
                          in_axes=1), in_axes=0)
    meta, splits = (np.asarray(v) for v in jax.jit(f)(x))
    assert meta.shape == (3, 4, 10, 8) and splits.shape == (3, 4, 51)
    for i in range(3):
        for j in range(4):
            assert_same((meta[i, j], splits[i, j]), ref(lens[i, :, j], 10, layout="2026"),
                        f"{backend.name} [{i},{j}] seed {rng.seed}")


def test_vmap_over_per_row_inputs_only(backend, rng):
    """vmap over topk_length alone: seqlens and num_valid are broadcast to every batch."""
    B, G = 300, 5
    lens = np.zeros(B, np.int32)
    tl = np.stack([topk_lengths(rng, B, 2048) for _ in range(G)])
    f = jax.jit(jax.vmap(lambda t: mm.schedule(backend.put(lens), num_sm_parts=66, kernel=backend.kernel, topk=2048,
                                               topk_length=t, layout="2026")))
    meta, splits = (np.asarray(v) for v in f(backend.put(tl)))
    for g in range(G):
        assert_same((meta[g], splits[g]), ref(lens, 66, topk=2048, topk_length=tl[g], layout="2026"),
                    f"{backend.name} batch {g} seed {rng.seed}")
