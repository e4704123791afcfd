"""The pure-Python reference itself: the cost rule of docs/spec.md (section 3, in C int arithmetic), the 2026 packing
(FlashMLA's flags, and their equivalence with "the row has more than one piece"), and the relation between the two
layouts. Pure NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from jax_mla_meta import costs, layouts, reference
from jax_mla_meta.reference import check_schedule
from lengths import INT32_MAX, INT32_MIN, between, extra_lengths, lengths, topk_lengths


def c_sparse_len(cur: int, extra_on: bool, extra: int) -> int:
    """Section 8 written with explicit 32-bit wrap-around after every operation (independent of costs.py)."""
    def wrap(x):
        x &= 0xFFFFFFFF
        return x - (1 << 32) if x >> 31 else x

    def cdiv(a, b):   # C's truncating division
        q = abs(a) // b
        return q if a >= 0 else -q

    if cur == 0:
        cur = 1
    if extra_on:
        cur = wrap(wrap(cdiv(wrap(cur + 63), 64)) * 64)
        cur = wrap(cur + extra)
    return cur


@pytest.mark.parametrize("cur", [0, 1, 63, 64, 65, 2048, -1, -63, -64, -65, -126, -127, -128, INT32_MAX, INT32_MAX - 63,
                                 INT32_MAX - 64, INT32_MIN, INT32_MIN + 1])
@pytest.mark.parametrize("extra", [0, 1, 64, -64, INT32_MAX, INT32_MIN])
def test_sparse_length_is_c_int_arithmetic(cur, extra):
    for on in (False, True):
        got = int(costs.sparse_length(np.array([cur]), on, np.array([extra]))[0])
        assert got == c_sparse_len(cur, on, extra), (cur, extra, on)


def test_valid_domain_blocks_are_flashmla_counts(rng):
    """On the valid domain the cost is ceil(max(tl, 1) / 64) + ceil(etl / 64) blocks, FlashMLA's own count."""
    tl = between(rng, 5000, 0, 2049).astype(np.int64)
    etl = between(rng, 5000, 0, 9000).astype(np.int64)
    blocks = costs.num_blocks(costs.sparse_length(tl, True, etl), 64)
    want = -(-np.maximum(tl, 1) // 64) + -(-etl // 64)
    assert np.array_equal(blocks, want), f"seed {rng.seed}"
    blocks = costs.num_blocks(costs.sparse_length(tl, False, 0), 64)
    assert np.array_equal(blocks, -(-np.maximum(tl, 1) // 64)), f"seed {rng.seed}"


def test_2025_topk_only_rows_keep_the_seed_contract():
    """With the 2025 layout and topk alone, a row's length is topk (0 stays a zero length: end_block 0); with the
    2026 layout, or any per-row or extra input, 0 counts as 1."""
    B = np.zeros(3, np.int32)
    assert reference.schedule(B, 2, topk=0)[0][0, 3] == 0
    m26 = reference.schedule(B, 2, topk=0, layout="2026")[0]
    assert m26[0, 3] == 1 and m26[0, 1] == 1
    assert reference.schedule(B, 2, topk=0, topk_length=np.zeros(3, np.int32))[0][0, 3] == 1


@pytest.mark.parametrize("seed", range(5))
def test_2026_flags_are_split_rows_and_2026_is_2025_repacked(seed):
    """The reference computes the 2026 flags as FlashMLA's scheduler does (begin_block != 0; end_block short of
    the row; OR for a part of one row). They equal "the row has more than one piece" from num_splits, and the
    2026 output is the 2025 output repacked, for every input whose row costs agree in both layouts."""
    rng = np.random.default_rng(seed)
    for _ in range(300):
        B = int(rng.choice([0, 1, 2, 3, 7, 33, 100, 300]))
        P = int(rng.choice([1, 2, 3, 7, 66, 132, 400]))
        F = int(rng.choice([0, 3, 5, 9]))
        lens = lengths(rng, B)
        kw = {}
        if rng.random() < 0.5:
            topk = int(rng.choice([1, 64, 2048]))
            kw = dict(topk=topk, topk_length=topk_lengths(rng, B, topk))
            if rng.random() < 0.4:
                kw["extra_topk"] = int(rng.choice([0, 64, 512]))
            if rng.random() < 0.3:
                kw["extra_topk_length"] = extra_lengths(rng, B)
        nv = None if rng.random() < 0.5 else int(rng.integers(-1, B + 2))
        m5, s5 = reference.schedule(lens, P, 64, F, num_valid=nv, layout="2025", **kw)
        m6, s6 = reference.schedule(lens, P, 64, F, num_valid=nv, layout="2026", **kw)
        n = B if nv is None else min(max(nv, 0), B)
        assert np.array_equal(s5, s6)
        assert np.array_equal(layouts.to_2026(m5, s5[: n + 1], B), m6), (seed, B, P, F, nv, kw)
        check_schedule(m6, s6, lens, fixed_overhead_num_blocks=F, num_valid=nv, layout="2026", **kw)


def test_trailing_parts_of_a_padded_batch():
    """num_valid < B: parts with no work begin at B (2026) or -1 (2025) and end with the last valid row."""
    lens = np.array([100, 200, 300, 400, 500], np.int32)
    m5, _ = reference.schedule(lens, 6, num_valid=2)
    m6, _ = reference.schedule(lens, 6, num_valid=2, layout="2026")
    assert m5[-1].tolist() == [-1, 0, 1, 4, 0, 0, 0, 0]
    assert m6[-1].tolist() == [5, 1, 0, 4, 0, 0, 0, 0]


def test_one_request_split_at_both_ends_takes_the_or_rule():
    """A part that begins inside a row and ends inside the same row: both flags 1."""
    m6, s6 = reference.schedule(np.array([100, 300000, 100], np.int32), 9, layout="2026")
    inner = [p for p in range(9) if m6[p, 0] == m6[p, 1] == 1 and m6[p, 2] > 0 and m6[p, 3] < 4688]
    assert inner and all(m6[p, 5] == m6[p, 6] == 1 for p in inner)
