"""Pure-Python reference of the scheduler, written plainly from ``docs/spec.md`` (sections 3 to 5).

This is the ground truth every implementation (the CPU handler, both CUDA kernels, every path of them) is tested
against. It sums in Python integers, so it never overflows, and it is slow (a Python loop over rows).
``check_schedule`` (re-exported here from :mod:`jax_mla_meta.checker`) judges metadata the way FlashMLA's
consumers read it, without re-running this walk.
"""

from __future__ import annotations

import numpy as np

from . import _ffi
from ._args import int32_array, is_traced
from .checker import ScheduleError, check_schedule, valid_row_lengths, workload_args
from .costs import num_blocks
from .layouts import Layout

__all__ = ["ScheduleError", "check_schedule", "num_blocks", "schedule"]


def schedule(
    seqlens,
    num_sm_parts: int,
    block_size_n: int = 64,
    fixed_overhead_num_blocks: int = 5,
    topk: int | None = None,
    num_valid: int | None = None,
    *,
    layout: Layout = "2025",
    topk_length=None,
    extra_topk: int | None = None,
    extra_topk_length=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(tile_scheduler_metadata [P, 8], num_splits [B + 1])`` of one batch as int32 NumPy arrays.

    ``seqlens [B]`` are the row lengths (dense) or only give B (sparse, ``topk`` given). Sparse rows may have
    their own lengths (``topk_length [B]``) and an extra KV cache (``extra_topk``, ``extra_topk_length [B]``).
    ``num_valid`` (default B) schedules only the first rows; ``num_splits`` past it repeats its last value.

    The arguments are checked as :func:`jax_mla_meta.schedule` checks them (same limits; int32 arrays), and a bad
    one raises TypeError/ValueError naming it.
    """
    # Arguments (as jax_mla_meta.schedule takes them).
    if is_traced(seqlens):
        raise TypeError("seqlens must be a concrete array: the reference runs in Python, outside jax.jit")
    seqlens = np.asarray(int32_array("seqlens", seqlens))
    if seqlens.ndim != 1:
        raise ValueError(f"reference.schedule takes one batch: seqlens must be 1-D [B], got shape {seqlens.shape}")
    B = int(seqlens.shape[0])
    B, P = _ffi.check_rows_parts(B, num_sm_parts)
    args = workload_args(B, block_size_n=block_size_n, fixed_overhead_num_blocks=fixed_overhead_num_blocks,
                         topk=topk, num_valid=num_valid, layout=layout, topk_length=topk_length,
                         extra_topk=extra_topk, extra_topk_length=extra_topk_length, int32_only=True)
    block_size, F, n, layout = (args[k] for k in ("block_size_n", "fixed_overhead_num_blocks", "num_valid",
                                                  "layout"))

    # The cost of each valid row (section 3).
    lens = [int(x) for x in valid_row_lengths(seqlens, args)]
    nblk = [int(v) for v in num_blocks(np.asarray(lens, dtype=np.int64), block_size)] if n else []

    # The walk of section 4: where each part begins and ends.
    total = sum(b + F for b in nblk)
    payload = -(-total // P) + F
    parts = []          # (begin_req or None, begin_block, begin_split, end_req, end_block)
    splits = np.zeros(B + 1, dtype=np.int64)
    i = blk = split = cum = 0
    for p in range(P):
        begin = (i if i < n else None, blk, split)
        rem = payload
        while i < n:
            left = nblk[i] - blk
            if rem >= left + F:
                cum += split + 1
                splits[i + 1] = cum
                rem -= left + F
                i += 1
                blk = split = 0
            else:
                if rem - F > 0:
                    blk += rem - F
                    split += 1
                    rem = 0
                break
        if blk > 0:
            end = (i, blk)
        else:
            end = (i - 1, 0 if (n == 0 or lens[i - 1] == 0) else nblk[i - 1])
        parts.append(begin + end)
    splits[n + 1:] = cum
    assert i == n and blk == 0 and split == 0, "scheduler invariant broken"

    # Packing (section 5).
    meta = np.zeros((P, 8), dtype=np.int64)
    for p, (b, bb, bs, e, eb) in enumerate(parts):
        if layout == "2025":
            meta[p] = [-1 if b is None else b, bb, e, eb, bs, 0, 0, 0]
        elif b is None:
            meta[p] = [B, e, 0, eb, 0, 0, 0, 0]
        else:
            # the flags as FlashMLA's scheduler computes them
            first = bb != 0
            last = eb != nblk[e] and lens[e] != 0
            if b == e:
                first = last = first or last
            meta[p] = [b, e, bb, eb, bs, int(first), int(last), 0]
    return meta.astype(np.int32), splits.astype(np.int32)
