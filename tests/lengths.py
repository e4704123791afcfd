"""The one module of length families for the tests: every test that draws row lengths (or per-row sparse lengths)
draws them from here, seeded by the caller's generator."""

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
