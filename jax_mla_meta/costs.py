"""The cost of a row: the one Python statement of how long each row is and how many KV blocks it costs.

``docs/spec.md`` section 3 defines it; ``ffi/core/costs.h`` is the same rule in C++ (CPU handler and CUDA
kernels). The reference, the checker, the statistics and the decode consumer all call this module.

* Dense rows: a row's length is its ``seqlens`` entry.
* Sparse rows (``topk`` given), the 2026 rule: ``cur = topk_length[i]`` if given, else ``topk``; a ``cur`` of 0
  becomes 1; with an extra KV cache, ``cur = ceil_to_64(cur) + extra`` where ``extra`` is ``extra_topk_length[i]``
  if given, else ``extra_topk``. The arithmetic is FlashMLA's C ``int``: 32-bit two's complement and truncating
  division, so out-of-domain values (negative or near 2**31) give defined results instead of errors.
* The 2025 contract knows only ``topk``: with the 2025 layout and none of the per-row or extra inputs, a sparse
  row's length is ``topk`` itself (``topk = 0`` is a zero length, not 1). Everywhere else the 2026 rule holds.
* Blocks: ``max(len - 1, 0) // block_size_n + 1``; a zero or negative length still costs one block.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["extra_enabled", "num_blocks", "row_lengths", "rule_2026", "sparse_length", "uniform_sparse_too_long",
           "wrap_int32"]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def wrap_int32(x):
    """Two's-complement wrap to int32 (elementwise on int64 arrays, or a Python int)."""
    if isinstance(x, (int, np.integer)):
        return (int(x) + 2**31) % 2**32 - 2**31
    x = np.asarray(x, dtype=np.int64)
    return ((x + 2**31) % 2**32 - 2**31).astype(np.int64)


def _trunc_div64(x: np.ndarray) -> np.ndarray:
    """C's ``x / 64`` for int32 values: the quotient rounded toward zero."""
    return np.where(x >= 0, x // 64, -((-x) // 64))


def extra_enabled(extra_topk: int | None, extra_topk_length) -> bool:
    """Whether sparse rows have an extra KV cache: ``extra_topk > 0`` or per-row extra lengths given."""
    return (extra_topk is not None and int(extra_topk) > 0) or extra_topk_length is not None


def rule_2026(layout: str, topk_length, extra_on: bool) -> bool:
    """Whether sparse rows follow the 2026 rule (0 becomes 1, the extra cache): always but for the 2025 layout with
    ``topk`` alone, the seed's contract."""
    return layout == "2026" or topk_length is not None or extra_on


def sparse_length(cur, extra_on: bool, extra, zero_is_one: bool = True):
    """The length a sparse row is costed by (``cur``: topk or topk_length; ``extra``: the extra cache's length;
    ``zero_is_one``: the 2026 rule's 0 -> 1). Elementwise on int64 arrays holding int32 values; returns int64 values
    inside int32."""
    cur = np.asarray(cur, dtype=np.int64)
    if zero_is_one:
        cur = np.where(cur == 0, 1, cur)
    if extra_on:
        up = wrap_int32(_trunc_div64(wrap_int32(cur + 63)) * 64)
        cur = wrap_int32(up + np.asarray(extra, dtype=np.int64))
    return cur


def row_lengths(seqlens, topk: int | None = None, *, topk_length=None, extra_topk: int | None = None,
                extra_topk_length=None, layout: str = "2025") -> np.ndarray:
    """int64 ``[B]``: the length every row of one batch is costed by (``seqlens`` gives B in sparse mode)."""
    seqlens = np.asarray(seqlens)
    B = int(seqlens.shape[-1])
    if topk is None:
        return seqlens.astype(np.int64)
    cur = np.asarray(topk_length, dtype=np.int64) if topk_length is not None else np.full(B, int(topk), np.int64)
    extra_on = extra_enabled(extra_topk, extra_topk_length)
    extra = (np.asarray(extra_topk_length, dtype=np.int64) if extra_topk_length is not None
             else np.full(B, int(extra_topk or 0), np.int64))
    return sparse_length(cur, extra_on, extra, rule_2026(layout, topk_length, extra_on))


def uniform_sparse_too_long(topk: int, extra_topk: int) -> bool:
    """Whether sparse rows of one length (``topk`` with an extra cache of ``extra_topk`` > 0, no per-row inputs)
    would be longer than 2**31 - 1 under the 2026 rule, ``ceil_to_64(max(topk, 1)) + extra_topk``: such a call is
    refused before it runs (``length_spec`` in costs.h refuses it too)."""
    up = (max(int(topk), 1) + 63) // 64 * 64
    return up + int(extra_topk) > INT32_MAX


def num_blocks(lengths, block_size_n: int):
    """KV blocks of each row: ``max(len - 1, 0) // block_size_n + 1`` (a zero or negative length costs one).
    Array-likes give int64 NumPy arrays; a JAX array (traced inside ``jit`` too) gives a JAX array of its dtype."""
    if isinstance(lengths, jax.Array):   # int32: max first, so that INT32_MIN - 1 does not wrap
        return (jnp.maximum(lengths, 1) - 1) // block_size_n + 1
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.maximum(lengths - 1, 0) // block_size_n + 1
