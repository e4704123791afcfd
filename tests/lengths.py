"""The one module of length families for the tests: every test that draws row lengths (or per-row sparse lengths)
draws them from here, seeded by the caller's generator.

* ``lengths``: the named families (``FAMILIES``; a random one by default), from zeros to int32 limits.
* ``between``: uniform lengths in a range, any shape, for tests whose arithmetic needs a cap (a loop that derives
  the next lengths from these, a paged cache of bounded size, a path's 32-bit tape) or a share of zero rows.
* ``with_edges``: bounded lengths with block-boundary values planted; ``equal``: one length for every row;
  ``mixed``: one of several kinds (a family, short rows, equal rows, lognormal), for the kernels' path tests.
* ``topk_lengths`` / ``extra_lengths``: per-row sparse counts (``topk_length``, ``extra_topk_length``)."""

from __future__ import annotations

import numpy as np

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)

# Values that sit on the edges of the cost rule: zero and negative lengths, block boundaries, int32 limits.
ADVERSARIAL = [0, -1, -64, INT32_MIN, 1, 2, 63, 64, 65, 127, 128, 129, 2048, 4096, 131072,
               INT32_MAX - 64, INT32_MAX - 1, INT32_MAX]

FAMILIES = ("uniform", "small", "lognormal", "zeros", "ones", "adversarial", "skew", "near_max", "sparse_zeros",
            "boundaries")


def lengths(rng: np.random.Generator, B: int, family: str | None = None) -> np.ndarray:
    """int32 lengths of B rows from a named family (a random one when ``family`` is None)."""
    if family is None:
        family = FAMILIES[int(rng.integers(0, len(FAMILIES)))]
    if family == "uniform":
        x = rng.integers(0, 200_000, B)
    elif family == "small":
        x = rng.integers(-3, 300, B)
    elif family == "lognormal":       # median 4k, max 128k (graph-max decode)
        x = np.minimum(rng.lognormal(np.log(4096), 1.0, B), 131072).astype(np.int64)
    elif family == "zeros":
        x = np.zeros(B, np.int64)
    elif family == "ones":
        x = np.ones(B, np.int64)
    elif family == "adversarial":
        x = rng.choice(ADVERSARIAL, B)
    elif family == "skew":            # a few huge rows among tiny ones: one row cut into many pieces
        x = rng.integers(0, 3, B)
        if B:
            x[rng.integers(0, B, size=max(1, B // 1000))] = rng.choice([131072, INT32_MAX])
    elif family == "near_max":
        x = rng.integers(INT32_MAX - 100_000, INT32_MAX, B, endpoint=True)
    elif family == "sparse_zeros":
        x = rng.integers(1, 9000, B)
        x[rng.random(B) < 0.5] = 0
    elif family == "boundaries":
        x = rng.choice([0, 1, 63, 64, 65, 128, 129], B)
    else:
        raise ValueError(f"unknown length family {family!r}")
    return np.asarray(x, dtype=np.int64).astype(np.int32)


def between(rng: np.random.Generator, shape, low: int, high: int, zeros: float = 0.0) -> np.ndarray:
    """int32 lengths uniform in [low, high) of any shape (``B`` or a batch ``(G, B)``); with ``zeros`` > 0, that
    share of the rows (on average) set to 0."""
    x = rng.integers(low, high, shape)
    if zeros:
        x[rng.random(np.shape(x)) < zeros] = 0
    return np.asarray(x, dtype=np.int64).astype(np.int32)


EDGES = (0, 1, 63, 64, 65, 128)


def with_edges(rng: np.random.Generator, B: int, high: int, edges=EDGES) -> np.ndarray:
    """B int32 lengths in [0, high) with the block-boundary values ``edges`` planted (as many as fit), the rows in
    random order."""
    x = rng.integers(0, high, B)
    k = min(B, len(edges))
    x[:k] = rng.permutation(list(edges))[:k]
    return rng.permutation(x).astype(np.int32)


def equal(rng: np.random.Generator, B: int, high: int = 3000) -> np.ndarray:
    """B rows of one length drawn from [1, high): long chains of restarts across the kernels' slices."""
    return np.full(B, int(rng.integers(1, high)), np.int32)


MIXED_KINDS = ("family", "short", "equal", "lognormal")


def mixed(rng: np.random.Generator, B: int, kinds=MIXED_KINDS, p=None, short_high: int = 400) -> np.ndarray:
    """B lengths of one kind drawn from ``kinds`` (uniformly, or with probabilities ``p``): "family" (any of
    FAMILIES), "short" (rows of -2 .. short_high - 1 tokens: many restarts), "equal" (see ``equal``) or
    "lognormal"."""
    kind = kinds[int(rng.integers(0, len(kinds)))] if p is None else kinds[int(rng.choice(len(kinds), p=p))]
    if kind == "family":
        return lengths(rng, B)
    if kind == "short":
        return between(rng, B, -2, short_high)
    if kind == "equal":
        return equal(rng, B)
    if kind == "lognormal":
        return lengths(rng, B, "lognormal")
    raise ValueError(f"unknown kind of mixed lengths {kind!r}")


SPARSE_FAMILIES = ("uniform", "zeros", "full", "negative", "boundaries", "mixed")


def topk_lengths(rng: np.random.Generator, B: int, topk: int, family: str | None = None) -> np.ndarray:
    """int32 per-row top-k counts for sparse rows: mostly in [0, topk] (the valid domain), with some families
    that leave it (negative counts, counts past topk), which the cost rule still defines."""
    if family is None:
        family = SPARSE_FAMILIES[int(rng.integers(0, len(SPARSE_FAMILIES)))]
    if family == "uniform":
        x = rng.integers(0, topk + 1, B)
    elif family == "zeros":
        x = np.zeros(B, np.int64)
    elif family == "full":
        x = np.full(B, topk)
    elif family == "negative":
        x = rng.integers(-200, topk + 200, B)
    elif family == "boundaries":
        x = rng.choice([0, 1, 63, 64, 65, topk - 1, topk], B)
    elif family == "mixed":
        x = rng.integers(0, topk + 1, B)
        x[rng.random(B) < 0.3] = 0
        x[rng.random(B) < 0.05] = rng.choice([-1, INT32_MAX, INT32_MIN], int((rng.random(B) < 0.05).sum()) or 1)[0]
    else:
        raise ValueError(f"unknown per-row length family {family!r}")
    return np.asarray(x, dtype=np.int64).clip(INT32_MIN, INT32_MAX).astype(np.int32)


def extra_lengths(rng: np.random.Generator, B: int) -> np.ndarray:
    """int32 per-row extra-cache counts: 0, small, block boundaries and large, a few negative."""
    x = rng.choice([0, 1, 63, 64, 65, 512, 4096], B)
    x[rng.random(B) < 0.05] = -64
    return x.astype(np.int32)
