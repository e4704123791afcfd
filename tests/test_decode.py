"""Tests of :func:`jax_mla_meta.decode.flash_mla_with_kvcache`, the metadata-driven split-KV MLA decode.

Every output is compared with plain unsplit attention computed directly in NumPy float64 (``reference_attention``)
on random paged caches (shuffled pages, block-table entries past a row's end pointing anywhere, -1 included). The
metadata comes from :func:`jax_mla_meta.reference.schedule`, and in one test from the op itself on the CPU backend
(:func:`jax_mla_meta.schedule` jitted together with the decode, and :func:`jax_mla_meta.get_mla_metadata` with its
host-rule ``P`` and ``F``), in both layouts, dense and sparse. Covered: dense (causal and not, ``s_q`` 1 and 2) and
sparse (with and without ``topk_length``, zeros in it, -1 and out-of-range indices), both layouts, ``P`` of 1, 3, 7
and ``2 B + 5``; every workload of :func:`jax_mla_meta.workloads.spec_workloads` scaled down (a seeded window of at
most 24 consecutive rows of the workload's own lengths, dense lengths divided by 32 rounding up, sparse ``topk``
2048 kept, the workload's ``P``) so each runs in well under a second after compiling; ``jax.jit`` with traced
metadata and lengths (one trace for two schedules); corrupted schedules (``end_block`` +/- 1 in both layouts, so a
block is dropped or read twice; a 2026 flag flipped) that must give a different output; and errors for bad shapes.
Each case compiles once, so the whole file takes about a minute and a half at most on two CPU cores. Every RNG is
seeded and every failure message names its seed.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_mla_meta as mm
from jax_mla_meta.decode import flash_mla_with_kvcache
from jax_mla_meta.layouts import COLUMNS
from jax_mla_meta.reference import schedule
from jax_mla_meta.workloads import spec_workloads
from lengths import between, topk_lengths, with_edges

PAGE = 64
LAYOUTS = ("2025", "2026")
D, DV, H_Q = 48, 32, 4        # small stand-ins for MLA's 576 / 512 and the head count


def make_case(seed: int, lengths, *, s_q: int = 1, h_k: int = 1, topk: int | None = None, topk_length=None,
              invalid_indices: bool = True, pages_per_row: int | None = None) -> dict:
    """Random q and paged cache for the given lengths (dense) or ``topk`` index lists (sparse), as NumPy arrays.

    ``pages_per_row`` (the block table's width; default: just enough) also sets ``num_pages = B * it + 3``."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int32)
    B = lengths.shape[0]
    pages_per_row = pages_per_row or max(1, max(math.ceil(int(n) / PAGE) for n in lengths))
    num_pages = B * pages_per_row + 3
    block_table = rng.permutation(num_pages)[:B * pages_per_row].reshape(B, pages_per_row).astype(np.int32)
    for b in range(B):  # entries past the row's last page: garbage, -1 included
        used = math.ceil(max(int(lengths[b]), 0) / PAGE)
        block_table[b, used:] = rng.integers(-1, num_pages, pages_per_row - used)
    case = dict(q=rng.standard_normal((B, s_q, H_Q, D)).astype(np.float32),
                k_cache=rng.standard_normal((num_pages, PAGE, h_k, D)).astype(np.float32),
                block_table=block_table, cache_seqlens=lengths, indices=None, topk_length=None)
    if topk is not None:
        tokens = num_pages * PAGE
        idx = rng.integers(0, tokens, (B, s_q, topk))
        if invalid_indices:
            u = rng.random(idx.shape)
            idx[u < 0.15] = -1
            idx[(u >= 0.15) & (u < 0.2)] = tokens + rng.integers(0, 100)  # out of range: no token either
            idx[0, 0, :] = -1  # one query with no token at all
        case["indices"] = idx.astype(np.int32)
        if topk_length is not None:
            case["topk_length"] = np.asarray(topk_length, dtype=np.int32)
    return case


def reference_attention(case: dict, *, causal: bool = False, softmax_scale: float | None = None):
    """Plain unsplit attention in float64: ``(out [B, s_q, h_q, DV], lse [B, h_q, s_q])``; no token: 0 and +inf."""
    q = case["q"].astype(np.float64)
    B, s_q, h_q, d = q.shape
    h_k = case["k_cache"].shape[2]
    flat = case["k_cache"].astype(np.float64).reshape(-1, h_k, d)
    scale = d ** -0.5 if softmax_scale is None else softmax_scale
    out = np.zeros((B, s_q, h_q, DV))
    lse = np.full((B, h_q, s_q), np.inf)
    for b in range(B):
        for i in range(s_q):
            if case["indices"] is None:
                n = int(case["cache_seqlens"][b])
                if causal:
                    n = min(n, n - s_q + i + 1)
                t = np.arange(max(n, 0))
                pos = case["block_table"][b, t // PAGE].astype(np.int64) * PAGE + t % PAGE
            else:
                m = case["indices"].shape[2] if case["topk_length"] is None else int(case["topk_length"][b])
                pos = case["indices"][b, i, :max(m, 0)]
                pos = pos[(pos >= 0) & (pos < flat.shape[0])]
            if pos.size == 0:
                continue
            keys = flat[pos][:, np.arange(h_q) // (h_q // h_k)]  # [n, h_q, d]
            s = scale * np.einsum("nhd,hd->hn", keys, q[b, i])
            mx = s.max(axis=-1, keepdims=True)
            p = np.exp(s - mx)
            out[b, i] = np.einsum("hn,nhv->hv", p, keys[..., :DV]) / p.sum(-1)[:, None]
            lse[b, :, i] = mx[:, 0] + np.log(p.sum(-1))
    return out, lse


def metadata(case: dict, P: int, layout: str):
    """``reference.schedule`` for the case (in sparse mode the lengths only give B)."""
    if case["indices"] is None:
        return schedule(case["cache_seqlens"], P, PAGE, 5, layout=layout)
    return schedule(case["cache_seqlens"], P, PAGE, 5, topk=case["indices"].shape[2], layout=layout,
                    topk_length=case["topk_length"])


def decode(case: dict, meta, splits, *, layout: str, causal: bool = False, softmax_scale: float | None = None):
    out, lse = flash_mla_with_kvcache(case["q"], case["k_cache"], case["block_table"], case["cache_seqlens"], DV,
                                      meta, splits, softmax_scale, causal, layout=layout, indices=case["indices"],
                                      topk_length=case["topk_length"])
    return np.asarray(out), np.asarray(lse)


def assert_matches(got, want, what: str) -> None:
    (out, lse), (ref_out, ref_lse) = got, want
    assert out.shape == ref_out.shape and lse.shape == ref_lse.shape, f"{what}: shapes {out.shape} {lse.shape}"
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5, err_msg=f"{what}: out")
    empty = np.isinf(ref_lse)
    np.testing.assert_array_equal(lse[empty], ref_lse[empty], err_msg=f"{what}: lse of rows with no token")
    np.testing.assert_allclose(lse[~empty], ref_lse[~empty], rtol=1e-5, atol=1e-5, err_msg=f"{what}: lse")


def differs(got, want) -> bool:
    return not np.allclose(got[0], want[0], rtol=1e-4, atol=1e-4, equal_nan=False)


# (layout, flag, s_q, P), flag being causal (dense) or "topk_length given" (sparse). One P per case (each P is a
# compile): over a layout's four cases, each of 1, 3, 7 and 2 B + 5 appears once, in both modes.
B_RANDOM = 7
P_VALUES = (1, 3, 7, 2 * B_RANDOM + 5)
FLAGS = [(layout, a, s_q, P_VALUES[(2 * a + s_q - 1 + k) % 4])
         for k, layout in enumerate(("2025", "2026")) for a in (False, True) for s_q in (1, 2)]


@pytest.mark.parametrize("n", range(len(FLAGS)), ids=[f"{lay}-causal{c}-sq{s}-P{P}" for lay, c, s, P in FLAGS])
def test_dense_matches_plain_attention(n: int) -> None:
    layout, causal, s_q, P = FLAGS[n]
    seed = 1000 + n
    rng = np.random.default_rng(seed)
    case = make_case(seed, with_edges(rng, B_RANDOM, 700), s_q=s_q, h_k=1 + n % 2)  # zeros, block boundaries
    want = reference_attention(case, causal=causal)
    meta, splits = metadata(case, P, layout)
    got = decode(case, meta, splits, layout=layout, causal=causal)
    assert_matches(got, want, f"seed={seed} dense layout={layout} causal={causal} s_q={s_q} P={P}")


@pytest.mark.parametrize("n", range(len(FLAGS)), ids=[f"{lay}-topk_length{t}-sq{s}-P{P}" for lay, t, s, P in FLAGS])
def test_sparse_matches_plain_attention(n: int) -> None:
    layout, with_lengths, s_q, P = FLAGS[n]
    seed = 2000 + n
    rng = np.random.default_rng(seed)
    B, topk = B_RANDOM, 192
    topk_length = None
    if with_lengths:
        topk_length = topk_lengths(rng, B, topk, "uniform")
        topk_length[0] = topk
        topk_length[1 + rng.permutation(B - 1)[:2]] = 0
    case = make_case(seed, np.zeros(B), s_q=s_q, h_k=1 + n % 2, topk=topk, topk_length=topk_length)
    want = reference_attention(case, causal=True)  # causal is ignored in sparse mode
    meta, splits = metadata(case, P, layout)
    got = decode(case, meta, splits, layout=layout, causal=True)
    assert_matches(got, want, f"seed={seed} sparse layout={layout} topk_length={with_lengths} s_q={s_q} P={P}")


WORKLOADS = spec_workloads()
SCALE = 32             # dense lengths divided by this: at most 131072 / 32 = 4096 tokens, 64 pages


@pytest.mark.parametrize("n", range(len(WORKLOADS)), ids=[w.label.replace(" ", "_") for w in WORKLOADS])
def test_spec_workloads_scaled_down(n: int) -> None:
    """A seeded window of at most 24 consecutive rows of the workload's lengths, scaled down, at its P. Every
    case has the same cache shapes, so workloads of the same mode, B, P and layout share one compile."""
    w = WORKLOADS[n]
    seed = 3000 + n
    rng = np.random.default_rng(seed)
    full = w.seqlens(seed)
    B = min(w.B, 24)
    start = int(rng.integers(0, w.B - B + 1))
    lengths = -(-full[start:start + B].astype(np.int64) // SCALE)  # rounding up: zeros stay zero
    layout = ("2025", "2026")[n % 2]
    topk = w.topk  # sparse: 2048 as in the workload (a piece's cost does not grow with the lengths)
    case = make_case(seed, lengths, topk=topk, invalid_indices=False, pages_per_row=131072 // SCALE // PAGE)
    meta, splits = metadata(case, w.num_sm_parts, layout)
    assert_matches(decode(case, meta, splits, layout=layout), reference_attention(case),
                   f"seed={seed} workload={w.label} B={B} layout={layout}")


def test_jit_with_traced_metadata_and_lengths() -> None:
    seed, traces = 4000, []

    @jax.jit
    def run(q, k_cache, block_table, lengths, meta, splits):
        traces.append(1)
        return flash_mla_with_kvcache(q, k_cache, block_table, lengths, DV, meta, splits, 0.1, True, layout="2026")

    rng = np.random.default_rng(seed)
    base = make_case(seed, np.full(6, 400), s_q=2)
    for trial in range(2):
        case = dict(base, cache_seqlens=between(rng, 6, 0, 401))
        meta, splits = metadata(case, 5, "2026")
        got = run(*(jnp.asarray(case[k]) for k in ("q", "k_cache", "block_table", "cache_seqlens")),
                  jnp.asarray(meta), jnp.asarray(splits))
        assert_matches(tuple(np.asarray(x) for x in got), reference_attention(case, causal=True, softmax_scale=0.1),
                       f"seed={seed} trial={trial}")
    assert len(traces) == 1, f"seed={seed}: traced {len(traces)} times for two schedules of the same shape"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_metadata_from_the_op_drives_the_decode(sparse: bool, layout: str) -> None:
    """The handler's own metadata, not the reference's, fed to the decode: (1) jax_mla_meta.schedule on the CPU
    backend jitted together with flash_mla_with_kvcache, the lengths traced (two sets of them, one trace);
    (2) get_mla_metadata with FlashMLA's host rule for P and F (the CPU is taken as an H100). Each must give
    plain unsplit attention; the jitted metadata must also be the reference's bits."""
    seed = 8000 + 2 * sparse + (layout == "2026")
    rng = np.random.default_rng(seed)
    B, s_q, P, topk = 7, 2, 5, 192
    cpu = jax.devices("cpu")[0]
    traces = []

    @jax.jit
    def run(q, k_cache, block_table, lengths, indices, topk_length):
        traces.append(1)
        meta, splits = mm.schedule(lengths, num_sm_parts=P, block_size_n=PAGE, fixed_overhead_num_blocks=5,
                                   topk=topk if sparse else None, topk_length=topk_length, layout=layout)
        out = flash_mla_with_kvcache(q, k_cache, block_table, lengths, DV, meta, splits, None, True, layout=layout,
                                     indices=indices, topk_length=topk_length)
        return out, (meta, splits)

    for trial in range(2):
        what = f"seed={seed} {'sparse' if sparse else 'dense'} layout={layout} trial={trial}"
        if sparse:
            tl = topk_lengths(rng, B, topk, "uniform")
            tl[trial] = 0        # a row with no token
            tl[trial + 1] = topk
            case = make_case(seed + 100 * trial, np.zeros(B), s_q=s_q, topk=topk, topk_length=tl,
                             pages_per_row=2)
        else:
            case = make_case(seed + 100 * trial, with_edges(rng, B, 700), s_q=s_q, pages_per_row=11)
        want = reference_attention(case, causal=True)  # causal is ignored in sparse mode
        args = [jax.device_put(case[k], cpu) if case[k] is not None else None
                for k in ("q", "k_cache", "block_table", "cache_seqlens", "indices", "topk_length")]
        out, (meta, splits) = run(*args)
        assert_matches(tuple(np.asarray(x) for x in out), want, f"{what}: jitted schedule + decode")
        ref_meta, ref_splits = metadata(case, P, layout)
        assert np.array_equal(np.asarray(meta), ref_meta) and np.array_equal(np.asarray(splits), ref_splits), (
            f"{what}: the op's metadata differs from reference.schedule")

        # the rule's heads are a DeepSeek deployment's (128 query heads, one KV head, an fp8 cache when sparse):
        # the metadata depends on P and F only, not on the decode's heads
        meta, splits = mm.get_mla_metadata(args[3], s_q * 128, 1, 128, sparse, topk if sparse else None,
                                           topk_length=args[5], layout=layout, device=cpu)
        assert_matches(decode(case, meta, splits, layout=layout, causal=True), want,
                       f"{what}: get_mla_metadata (P={meta.shape[0]})")
    assert len(traces) == 1, f"seed={seed}: traced {len(traces)} times for two inputs of the same shape"


def corruption_case(seed: int, sparse: bool) -> dict:
    """Rows long enough that P = 7 splits some of them (sparse: the lengths are topk_length, every index valid)."""
    lengths = between(np.random.default_rng(seed), 6, 300, 700)
    if sparse:
        return make_case(seed, lengths, topk=704, topk_length=lengths, invalid_indices=False)
    return make_case(seed, lengths)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_end_block_off_by_one_changes_the_output(sparse: bool, layout: str) -> None:
    """end_block - 1 drops a block of a part's last row, end_block + 1 (mid-row) reads the next part's first block
    twice: either must change the output, in both layouts (2026: the flags left as they are)."""
    seed = 5000 + sparse  # the same inputs in both layouts: the same parts, packed two ways
    case = corruption_case(seed, sparse)
    want = reference_attention(case)
    meta, splits = metadata(case, 7, layout)
    assert_matches(decode(case, meta, splits, layout=layout), want, f"seed={seed} {layout} uncorrupted")
    c = COLUMNS[layout]
    B = len(splits) - 1
    row_len = case["cache_seqlens"]  # also topk_length in the sparse case
    tried = {-1: 0, +1: 0}
    busy = (meta[:, c["begin_req"]] >= 0) & (meta[:, c["begin_req"]] < B)  # idle parts: 2025 -1, 2026 B
    for p in np.flatnonzero(busy):
        end_req, end_block = meta[p, c["end_req"]], meta[p, c["end_block"]]
        mid_row = end_block * PAGE < row_len[end_req]  # the row continues in the next part
        for delta in (-1, +1):
            if delta == -1 and end_block <= meta[p, c["begin_block"]] * (meta[p, c["begin_req"]] == end_req):
                continue  # nothing to drop
            if delta == +1 and not mid_row:
                continue  # one past the row's end reads nothing
            bad = meta.copy()
            bad[p, c["end_block"]] += delta
            tried[delta] += 1
            assert differs(decode(case, bad, splits, layout=layout), want), (
                f"seed={seed} {layout}: part {p} end_block {end_block} -> {end_block + delta} gave the reference "
                "output")
    assert tried[-1] and tried[+1], f"seed={seed} {layout}: no part to corrupt ({tried}); metadata {meta.tolist()}"


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_flipped_2026_flag_changes_the_output(sparse: bool) -> None:
    seed = 6000 + sparse
    case = corruption_case(seed, sparse)
    want = reference_attention(case)
    meta, splits = metadata(case, 7, "2026")
    assert_matches(decode(case, meta, splits, layout="2026"), want, f"seed={seed} uncorrupted")
    c = COLUMNS["2026"]
    flips = 0
    for p in np.flatnonzero(meta[:, c["begin_req"]] < len(splits) - 1):
        for flag in ("first_split", "last_split"):
            if flag == "last_split" and meta[p, c["begin_req"]] == meta[p, c["end_req"]]:
                continue  # the first flag decides a part's only row
            bad = meta.copy()
            bad[p, c[flag]] ^= 1
            flips += 1
            assert differs(decode(case, bad, splits, layout="2026"), want), (
                f"seed={seed}: part {p} {flag} flipped to {bad[p, c[flag]]} gave the reference output")
    assert flips >= 3, f"seed={seed}: only {flips} flags flipped"


def bad_inputs(mutate):
    """Valid dense arguments of B = 2, s_q = 1, P = 3, then ``mutate(kwargs)``."""
    case = make_case(7000, [100, 5])
    meta, splits = metadata(case, 3, "2025")
    kw = dict(q=case["q"], k_cache=case["k_cache"], block_table=case["block_table"],
              cache_seqlens=case["cache_seqlens"], head_dim_v=DV, tile_scheduler_metadata=meta, num_splits=splits)
    mutate(kw)
    return kw


BAD = {
    "q rank 3": (lambda kw: kw.update(q=kw["q"][0]), ValueError, "q"),
    "k_cache page size": (lambda kw: kw.update(k_cache=kw["k_cache"][:, :32]), ValueError, "k_cache"),
    "k_cache d": (lambda kw: kw.update(k_cache=kw["k_cache"][..., :40]), ValueError, "k_cache"),
    "h_q % h_k": (lambda kw: kw.update(k_cache=np.repeat(kw["k_cache"], 3, axis=2)), ValueError, "h_k"),
    "block_table rank": (lambda kw: kw.update(block_table=kw["block_table"][0]), ValueError, "block_table"),
    "block_table B": (lambda kw: kw.update(block_table=kw["block_table"][:1]), ValueError, "block_table"),
    "block_table float": (lambda kw: kw.update(block_table=kw["block_table"] * 1.0), TypeError, "block_table"),
    "cache_seqlens B": (lambda kw: kw.update(cache_seqlens=np.zeros(3, np.int32)), ValueError, "cache_seqlens"),
    "cache_seqlens float": (lambda kw: kw.update(cache_seqlens=np.zeros(2, np.float32)), TypeError,
                            "cache_seqlens"),
    "head_dim_v > d": (lambda kw: kw.update(head_dim_v=D + 1), ValueError, "head_dim_v"),
    "metadata [P, 7]": (lambda kw: kw.update(tile_scheduler_metadata=kw["tile_scheduler_metadata"][:, :7]),
                        ValueError, "tile_scheduler_metadata"),
    "metadata float": (lambda kw: kw.update(tile_scheduler_metadata=kw["tile_scheduler_metadata"] * 1.0),
                       TypeError, "tile_scheduler_metadata"),
    "num_splits [B]": (lambda kw: kw.update(num_splits=kw["num_splits"][:2]), ValueError, "num_splits"),
    "indices [B, s_q + 1, topk]": (lambda kw: kw.update(indices=np.zeros((2, 2, 64), np.int32)), ValueError,
                                   "indices"),
    "topk_length [B + 1]": (lambda kw: kw.update(indices=np.zeros((2, 1, 64), np.int32),
                                                 topk_length=np.zeros(3, np.int32)), ValueError, "topk_length"),
    "topk_length without indices": (lambda kw: kw.update(topk_length=np.zeros(2, np.int32)), ValueError,
                                    "topk_length"),
    "layout": (lambda kw: kw.update(layout="2024"), ValueError, "layout"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_arguments_raise_naming_the_argument(name: str) -> None:
    mutate, error, argument = BAD[name]
    with pytest.raises(error, match=argument):
        flash_mla_with_kvcache(**bad_inputs(mutate))
