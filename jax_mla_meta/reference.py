"""Pure-Python/NumPy reference of the scheduler, written plainly from SPEC.md section 3.

This is the ground truth every implementation (the CPU handler, both CUDA kernels) is tested against.
It uses Python integers for all sums, so it never overflows. It is slow (a Python loop over rows)."""

from __future__ import annotations

import numpy as np

__all__ = ["schedule", "num_blocks"]


def num_blocks(lengths: np.ndarray, block_size_n: int) -> np.ndarray:
    """KV blocks of each row: ``max(len - 1, 0) // block_size_n + 1`` (a zero or negative length costs one)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.maximum(lengths - 1, 0) // block_size_n + 1


def schedule(
    seqlens,
    num_sm_parts: int,
    block_size_n: int = 64,
    fixed_overhead_num_blocks: int = 5,
    topk: int | None = None,
    num_valid: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(tile_scheduler_metadata [P, 8], num_splits [B + 1])`` as int32 NumPy arrays.

    ``num_valid`` (default B) schedules only the first rows; ``num_splits`` past it repeats its last value.
    """
    seqlens = np.asarray(seqlens)
    if seqlens.ndim != 1:
        raise ValueError("reference.schedule takes one batch: seqlens must be 1-D")
    B = int(seqlens.shape[0])
    n = B if num_valid is None else min(max(int(num_valid), 0), B)
    P, F = int(num_sm_parts), int(fixed_overhead_num_blocks)
    lens = [int(topk)] * n if topk is not None else [int(x) for x in seqlens[:n]]
    nblk = [int(v) for v in num_blocks(np.asarray(lens, dtype=np.int64), block_size_n)] if n else []

    total = sum(b + F for b in nblk)
    payload = -(-total // P) + F
    meta = np.zeros((P, 8), dtype=np.int64)
    splits = np.zeros(B + 1, dtype=np.int64)
    i = blk = split = cum = 0
    for p in range(P):
        meta[p, 0] = i if i < n else -1
        meta[p, 1] = blk
        meta[p, 4] = split
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
            meta[p, 2], meta[p, 3] = i, blk
        else:
            meta[p, 2] = i - 1
            meta[p, 3] = 0 if (n == 0 or lens[i - 1] == 0) else nblk[i - 1]
    splits[n + 1 :] = cum
    assert i == n and blk == 0 and split == 0, "scheduler invariant broken"
    return meta.astype(np.int32), splits.astype(np.int32)


from .checker import check_schedule, ScheduleError  # noqa: E402,F401  (re-exported as reference.check_schedule)
