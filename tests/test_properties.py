"""Property tests (hypothesis): on every backend, random and adversarial inputs give exactly the reference
schedule in both layouts, and that schedule passes the consumer-side checker. Per-row sparse lengths include
zeros, negatives and values past topk, which the cost rule still defines.

Every distinct (B, P, topk, block_size_n, F) compiles once per backend, so B and P are drawn from a few buckets
(num_valid, an operand, varies the number of scheduled rows without recompiling), and each test is bounded
with max_examples. Inputs a backend cannot take (the smem kernel where it does not fit) are discarded with
``assume``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from conftest import assert_same, ref
from jax_mla_meta.reference import check_schedule, num_blocks
from lengths import ADVERSARIAL, FAMILIES, INT32_MAX, INT32_MIN
from lengths import lengths as family_lengths

B_BUCKETS = [0, 1, 2, 3, 7, 32, 33, 131, 132, 133, 500, 2048, 4999]
P_BUCKETS = [1, 2, 3, 66, 132, 1000, 4096]
TOPKS = [None, 0, 1, 2048]
LAYOUTS = ["2025", "2026"]

PROPS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)


@st.composite
def lengths(draw, B: int) -> np.ndarray:
    """B lengths: a seeded family plus a few hypothesis-chosen adversarial rows (which shrink well); for small
    B, sometimes a list drawn element by element."""
    if 0 < B <= 33 and draw(st.booleans()):
        vals = draw(st.lists(st.one_of(st.sampled_from(ADVERSARIAL), st.integers(INT32_MIN, INT32_MAX)),
                             min_size=B, max_size=B))
        return np.asarray(vals, dtype=np.int32)
    family = draw(st.sampled_from(FAMILIES))
    x = family_lengths(np.random.default_rng(draw(st.integers(0, 2**32 - 1))), B, family)
    if B:
        for i, v in draw(st.lists(st.tuples(st.integers(0, B - 1), st.sampled_from(ADVERSARIAL)), max_size=6)):
            x[i] = v
    return x


@st.composite
def row_counts(draw, B: int, topk: int) -> np.ndarray:
    """B per-row counts around [0, topk]: zeros, negatives and values past topk included."""
    edge = [0, -1, -63, -64, -65, -127, 1, 63, 64, 65, topk - 1, topk, topk + 1, INT32_MAX, INT32_MIN]
    vals = draw(st.lists(st.one_of(st.sampled_from(edge), st.integers(-300, topk + 300)), min_size=B, max_size=B))
    return np.asarray(vals, dtype=np.int64).clip(INT32_MIN, INT32_MAX).astype(np.int32)


def run_and_check(backend, lens, P, *, topk=None, num_valid=None, bs=64, F=5, layout="2025", **rows):
    got = backend.run(lens, P, topk=topk, num_valid=num_valid, bs=bs, F=F, layout=layout, **rows)
    want = ref(lens, P, topk, num_valid, bs=bs, F=F, layout=layout, **rows)
    what = (f"{backend.name} B={len(lens)} P={P} topk={topk} num_valid={num_valid} bs={bs} F={F} {layout} "
            f"lens[:8]={np.asarray(lens)[:8].tolist()} "
            + " ".join(f"{k}={np.asarray(v)[:8].tolist() if hasattr(v, '__len__') else v}" for k, v in rows.items()))
    assert_same(got, want, what)
    check_schedule(*got, lens, block_size_n=bs, fixed_overhead_num_blocks=F, topk=topk, num_valid=num_valid,
                   layout=layout, **rows)


@PROPS
@given(data=st.data())
def test_random_inputs_match_reference(backend, data):
    B = data.draw(st.sampled_from(B_BUCKETS), label="B")
    P = data.draw(st.sampled_from(P_BUCKETS), label="P")
    assume(backend.fits(B, P))
    topk = data.draw(st.sampled_from(TOPKS), label="topk")
    lens = data.draw(lengths(B), label="lengths")
    nv = data.draw(st.one_of(st.none(), st.integers(-3, B + 3)), label="num_valid")
    layout = data.draw(st.sampled_from(LAYOUTS), label="layout")
    run_and_check(backend, lens, P, topk=topk, num_valid=nv, layout=layout)


@PROPS
@given(data=st.data())
def test_per_row_sparse_lengths_match_reference(backend, data):
    """topk_length (and extra caches) with zeros, negatives and values past topk, both layouts."""
    B = data.draw(st.sampled_from([1, 2, 7, 32, 33, 131, 600, 2048]), label="B")
    P = data.draw(st.sampled_from([1, 3, 66, 132, 1000]), label="P")
    assume(backend.fits(B, P))
    topk = data.draw(st.sampled_from([1, 64, 2048]), label="topk")
    tl = data.draw(row_counts(B, topk), label="topk_length")
    extra = data.draw(st.sampled_from([None, 0, 64, 2047]), label="extra_topk")
    etl = data.draw(st.one_of(st.none(), row_counts(B, 4096)), label="extra_topk_length")
    nv = data.draw(st.one_of(st.none(), st.integers(-2, B + 2)), label="num_valid")
    layout = data.draw(st.sampled_from(LAYOUTS), label="layout")
    run_and_check(backend, np.zeros(B, np.int32), P, topk=topk, num_valid=nv, layout=layout, topk_length=tl,
                  extra_topk=extra, extra_topk_length=etl)


@PROPS
@given(B=st.sampled_from([1, 2, 3, 7, 32, 33, 64, 65]), P=st.sampled_from([1, 2, 3, 7, 66, 132]),
       data=st.data())
@example(B=1, P=1, data=None)
def test_adversarial_lengths_match_reference(backend, B, P, data):
    """Only boundary values (zeros, negatives, 1, 63/64/65, 2^31-1, ...), dense mode."""
    if data is None:
        lens = np.array([INT32_MAX], np.int32)
    else:
        lens = np.asarray(data.draw(st.lists(st.sampled_from(ADVERSARIAL), min_size=B, max_size=B)), np.int32)
    assume(backend.fits(B, P))
    run_and_check(backend, lens, P)
    run_and_check(backend, lens, P, layout="2026")


@settings(PROPS, max_examples=40)
@given(data=st.data())
def test_other_block_sizes_and_overheads(backend, data):
    """Small block sizes with lengths near 2^31-1 make per-row costs near 2^31 (bs=1) and large F adds to
    every piece: sums of a few rows already leave 32 bits."""
    bs = data.draw(st.sampled_from([1, 16, 32, 64, 128]), label="block_size_n")
    F = data.draw(st.sampled_from([0, 1, 5, 40, 2**20]), label="F")
    B = data.draw(st.sampled_from([1, 33, 100, 1000]), label="B")
    P = data.draw(st.sampled_from([1, 7, 132]), label="P")
    assume(backend.fits(B, P, bs=bs, F=F))
    lens = data.draw(lengths(B), label="lengths")
    topk = data.draw(st.sampled_from([None, None, 0, INT32_MAX]), label="topk")
    run_and_check(backend, lens, P, topk=topk, bs=bs, F=F, layout=data.draw(st.sampled_from(LAYOUTS)))


@pytest.mark.parametrize("family", ["uniform", "skew", "near_max", "sparse_zeros", "adversarial"])
def test_large_batch(backend, family, rng):
    """~200k rows (past every shared-memory limit) on the backends that can take them."""
    if backend.kernel == "smem":
        pytest.skip("200k rows never fit the smem kernel")
    B = 200_003
    lens = family_lengths(rng, B, family)
    for P, topk, layout in ((132, None, "2025"), (66, 2048, "2026"), (4096, None, "2026")):
        run_and_check(backend, lens, P, topk=topk, layout=layout)
    run_and_check(backend, lens, 66, topk=2048, layout="2026", topk_length=lens)


@pytest.mark.parametrize("P", [1, 132, 4096])
def test_totals_past_32_bits_are_exact(backend, P):
    """Block totals (and, with P = 1, the payload itself) far past 2^32: no wrap anywhere."""
    B = 70_000 if backend.fits(70_000, P) else 40_000
    if not backend.fits(B, P):
        pytest.skip("smem kernel does not fit")
    lens = np.full(B, INT32_MAX, dtype=np.int32)
    lens[::7] = 1
    lens[3::11] = 0
    total = sum(int(b) + 5 for b in num_blocks(lens, 64))
    assert total > 2**32 and (P > 1 or total + 5 > 2**32)
    run_and_check(backend, lens, P)
    # sparse: every row topk = 2^31 - 1
    run_and_check(backend, lens[:5000], P, topk=INT32_MAX, layout="2026")


@pytest.mark.parametrize("bs", [1, 16, 32])
def test_small_block_sizes_near_int32_max(backend, bs):
    """Per-row costs near 2^31 / bs blocks: 32 rows (one shared-memory group of the smem kernel) sum past 2^31
    (bs = 32), 2^32 (bs = 16) and 2^36 (bs = 1); zero rows in between exercise the end_block quirk."""
    lens = np.full(100, INT32_MAX, dtype=np.int32)
    lens[::5] = 0
    for P in (1, 7, 132):
        if backend.fits(len(lens), P, bs=bs):
            run_and_check(backend, lens, P, bs=bs)
            run_and_check(backend, lens, P, bs=bs, layout="2026")
