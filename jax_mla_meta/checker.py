"""An independent validity checker for scheduler metadata, written from the consumer's side.

`reference.schedule` says what the bits must be; this module says whether a given
``(tile_scheduler_metadata, num_splits)`` pair is *usable*: it walks the metadata the way FlashMLA's split-KV
decode kernel and its combine kernel read it and raises :class:`ScheduleError` at the first thing that would make
them compute a wrong answer (a KV block read twice or never, a split slot written twice or never, a part
carrying more work than the schedule allows, a malformed field). It never re-runs the scheduling algorithm, so a
bug shared by the reference and an implementation cannot hide from it.

How a consumer reads part ``p`` (row ``[begin_req, begin_block, end_req, end_block, begin_split, 0, 0, 0]``):

* ``begin_req == -1``: the part has no work (every such part comes after all parts with work).
* otherwise it processes rows ``begin_req .. end_req`` (inclusive); in row ``begin_req`` it starts at KV block
  ``begin_block``, in every other row at block 0; in row ``end_req`` it stops before block ``end_block``
  (exclusive), in every other row after the row's last block. The piece of row ``begin_req`` writes split slot
  ``num_splits[begin_req] + begin_split``, the piece of any later row writes slot ``num_splits[row]``.
* the combine kernel merges slots ``num_splits[r] .. num_splits[r + 1] - 1`` of row ``r``.

Units are the scheduler's KV blocks: ``nblk = max(len - 1, 0) // block_size_n + 1``, so a zero or negative length
still costs one block. One quirk of the SPEC (section 3) is accepted exactly as written there: a part that ends
after the whole of a zero-length row writes ``end_block = 0`` for it (the consumer's ``ceil(0 / block_size_n)``),
although the row counts as one block; ``end_block = 1`` is rejected for such a row.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ScheduleError", "check_schedule"]

_FIELDS = ("begin_req", "begin_block", "end_req", "end_block", "begin_split")


class ScheduleError(AssertionError):
    """The metadata would make FlashMLA's decode or combine kernel compute a wrong result (or it breaks the
    format of SPEC.md section 2). The message names the part, the row and the field, with expected vs got."""


def _int_array(name: str, x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise ScheduleError(f"{name} must be an integer array, got dtype {a.dtype}")
    return a.astype(np.int64)


def _part_str(meta: np.ndarray, p: int) -> str:
    return f"part {p} = {meta[p].tolist()}"


def check_schedule(
    tile_scheduler_metadata,
    num_splits,
    seqlens,
    *,
    block_size_n: int = 64,
    fixed_overhead_num_blocks: int = 5,
    topk: int | None = None,
    num_valid: int | None = None,
) -> None:
    """Raise :class:`ScheduleError` unless the metadata of one batch is a valid FlashMLA decode schedule.

    Args:
      tile_scheduler_metadata: integer ``[P, 8]`` (``P >= 1``).
      num_splits: integer ``[B + 1]``.
      seqlens: integer ``[B]``, the KV length of each row (only its length matters when ``topk`` is given).
      block_size_n: KV block size.
      fixed_overhead_num_blocks: F, the fixed cost of every piece, in blocks.
      topk: sparse mode: every row's length is ``topk``.
      num_valid: only the first ``num_valid`` rows (clamped to ``[0, B]``) are scheduled; default B.

    Checks, in this order: shapes; reserved columns 5-7 are zero; ``num_splits`` starts at 0, gives each valid
    row at least one piece and is constant past ``num_valid``; parts with ``begin_req == -1`` come last and have
    ``begin_block == begin_split == 0``; every field of a part with work is in range; the parts' block ranges
    cover every KV block of every valid row exactly once; ``num_splits`` counts exactly the pieces each row is
    cut into; each part's ``begin_split`` is the number of pieces of its first row that come before it (so the
    pieces of row r use slots ``num_splits[r] .. num_splits[r+1]-1`` once each, in block order); and no part
    carries more than ``payload = ceil(total / P) + F`` units, where ``total = sum(nblk_i + F)`` and a part's
    load is the blocks it covers plus F per piece. Python ints (or int64 well inside range) for all sums.
    """
    meta = _int_array("tile_scheduler_metadata", tile_scheduler_metadata)
    splits = _int_array("num_splits", num_splits)
    lens_all = _int_array("seqlens", seqlens)
    bs, F = int(block_size_n), int(fixed_overhead_num_blocks)
    if bs < 1 or F < 0:
        raise ValueError(f"need block_size_n >= 1 and fixed_overhead_num_blocks >= 0, got {bs}, {F}")

    # --- shapes -------------------------------------------------------------------------------------------
    if lens_all.ndim != 1:
        raise ScheduleError(f"seqlens must be 1-D (one batch), got shape {lens_all.shape}")
    B = int(lens_all.shape[0])
    if meta.ndim != 2 or meta.shape[1] != 8 or meta.shape[0] < 1:
        raise ScheduleError(f"tile_scheduler_metadata must have shape [P >= 1, 8], got {meta.shape}")
    P = int(meta.shape[0])
    if splits.shape != (B + 1,):
        raise ScheduleError(f"num_splits must have shape [B + 1] = [{B + 1}], got {splits.shape}")
    n = B if num_valid is None else min(max(int(num_valid), 0), B)

    # --- reserved columns ---------------------------------------------------------------------------------
    bad = np.argwhere(meta[:, 5:] != 0)
    if bad.size:
        p, c = int(bad[0, 0]), int(bad[0, 1]) + 5
        raise ScheduleError(
            f"{_part_str(meta, p)}: column {c} (reserved) must be 0, got {int(meta[p, c])}")

    # --- num_splits structure -----------------------------------------------------------------------------
    if splits[0] != 0:
        raise ScheduleError(f"num_splits[0] must be 0, got {int(splits[0])}")
    d = np.diff(splits[: n + 1])
    bad = np.flatnonzero(d < 1)
    if bad.size:
        r = int(bad[0])
        raise ScheduleError(
            f"num_splits: row {r} (< num_valid = {n}) must have >= 1 piece, but "
            f"num_splits[{r + 1}] - num_splits[{r}] = {int(splits[r + 1])} - {int(splits[r])} = {int(d[r])}")
    bad = np.flatnonzero(splits[n + 1:] != splits[n])
    if bad.size:
        i = n + 1 + int(bad[0])
        raise ScheduleError(
            f"num_splits[{i}]: rows past num_valid = {n} are not scheduled, so it must repeat "
            f"num_splits[{n}] = {int(splits[n])}; got {int(splits[i])}")

    # --- blocks of every valid row and the payload --------------------------------------------------------
    lens = np.full(n, int(topk), dtype=np.int64) if topk is not None else lens_all[:n]
    from .reference import num_blocks   # here, not at the top: reference imports this module

    nblk = num_blocks(lens, bs)
    G = np.zeros(n + 1, dtype=np.int64)          # G[r]: first global block of row r; G[n]: all blocks
    np.cumsum(nblk, out=G[1:])
    total = int(G[n]) + F * n
    payload = -(-total // P) + F

    # --- empty parts (begin_req == -1) --------------------------------------------------------------------
    br = meta[:, 0]
    empty = br == -1
    if empty.any():
        first = int(np.argmax(empty))
        later = np.flatnonzero(~empty[first:])
        if later.size:
            p = first + int(later[0])
            raise ScheduleError(
                f"{_part_str(meta, p)}: begin_req = {int(br[p])} (a part with work) comes after part {first}, "
                f"which is empty (begin_req = -1); expected begin_req = -1 for every part after the first empty one")
        for col in (1, 4):
            bad = np.flatnonzero(empty & (meta[:, col] != 0))
            if bad.size:
                p = int(bad[0])
                raise ScheduleError(
                    f"{_part_str(meta, p)}: an empty part (begin_req = -1) must have {_FIELDS[col]} = 0, "
                    f"got {int(meta[p, col])}")
    k = P - int(empty.sum())                       # parts with work: 0 .. k-1
    if n == 0:
        if k:
            raise ScheduleError(
                f"{_part_str(meta, 0)}: there are no rows to schedule (num_valid = 0), so every part must "
                f"be empty: expected begin_req = -1, got {int(br[0])}")
        return
    if k == 0:
        raise ScheduleError(f"every part is empty (begin_req = -1) but {n} rows need scheduling: expected "
                            f"part 0 to begin at begin_req = 0, begin_block = 0")

    # --- fields of the parts with work --------------------------------------------------------------------
    b, bb, e, eb, bsp = (meta[:k, c] for c in range(5))
    bad = np.flatnonzero((b < 0) | (b >= n))
    if bad.size:
        p = int(bad[0])
        raise ScheduleError(f"{_part_str(meta, p)}: begin_req = {int(b[p])} is out of range: expected -1 "
                            f"(empty part) or a valid row in [0, {n})")
    bad = np.flatnonzero((e < b) | (e >= n))
    if bad.size:
        p = int(bad[0])
        raise ScheduleError(f"{_part_str(meta, p)}: end_req = {int(e[p])} is out of range: expected "
                            f"begin_req ({int(b[p])}) <= end_req < {n}")
    bad = np.flatnonzero((bb < 0) | (bb >= nblk[b]))
    if bad.size:
        p = int(bad[0])
        r = int(b[p])
        raise ScheduleError(f"{_part_str(meta, p)}: begin_block = {int(bb[p])} is out of range for begin_req "
                            f"row {r} (length {int(lens[r])}, {int(nblk[r])} blocks): expected 0 <= begin_block "
                            f"< {int(nblk[r])}")
    zero_end = lens[e] == 0
    bad = np.flatnonzero(zero_end & (eb != 0))
    if bad.size:
        p = int(bad[0])
        raise ScheduleError(f"{_part_str(meta, p)}: end_req row {int(e[p])} has length 0, and a part ending "
                            f"on it writes end_block = 0 (SPEC section 3); got end_block = {int(eb[p])}")
    bad = np.flatnonzero(~zero_end & ((eb < 1) | (eb > nblk[e])))
    if bad.size:
        p = int(bad[0])
        r = int(e[p])
        raise ScheduleError(f"{_part_str(meta, p)}: end_block = {int(eb[p])} is out of range for end_req row "
                            f"{r} (length {int(lens[r])}, {int(nblk[r])} blocks): expected 1 <= end_block <= "
                            f"{int(nblk[r])} (exclusive end)")
    eff_end = np.where(zero_end, 1, eb)          # the zero-length quirk: end_block 0 means "after its one block"
    bad = np.flatnonzero((b == e) & (eff_end <= bb))
    if bad.size:
        p = int(bad[0])
        raise ScheduleError(f"{_part_str(meta, p)}: covers no block of row {int(b[p])}: begin_block = "
                            f"{int(bb[p])}, end_block = {int(eb[p])}; expected end_block > begin_block")

    # --- every KV block exactly once ----------------------------------------------------------------------
    start = G[b] + bb                             # global block ranges [start, end), each non-empty
    end = G[e] + eff_end
    order = np.argsort(start, kind="stable")
    s_sorted, e_sorted = start[order], end[order]

    def where(x: int) -> tuple[int, int]:
        r = int(np.searchsorted(G, x, side="right")) - 1
        return r, int(x - G[r])

    if s_sorted[0] != 0:
        p = int(order[0])
        r, blk = where(int(s_sorted[0]))
        raise ScheduleError(
            f"gap: block 0 of row 0 is covered by no part; the earliest part, {_part_str(meta, p)}, begins at "
            f"begin_req = {r}, begin_block = {blk}; expected begin_req = 0, begin_block = 0")
    seam = np.flatnonzero(e_sorted[:-1] != s_sorted[1:])
    if seam.size:
        q = int(seam[0])
        a, c = int(order[q]), int(order[q + 1])
        ea, sc = int(e_sorted[q]), int(s_sorted[q + 1])
        er, eblk = where(ea)
        if ea < sc:
            gr, gblk = where(ea)
            kind = f"gap: block {gblk} of row {gr} is covered by no part"
        else:
            gr, gblk = where(sc)
            kind = f"overlap: block {gblk} of row {gr} is covered twice"
        ends = f"{_part_str(meta, a)} ends (end_req = {int(meta[a, 2])}, end_block = {int(meta[a, 3])})"
        if ea >= G[n]:
            raise ScheduleError(
                f"{kind}: {ends} after the last block of row {n - 1}, yet {_part_str(meta, c)} begins later in "
                f"block order (begin_req = {int(meta[c, 0])}, begin_block = {int(meta[c, 1])})")
        raise ScheduleError(
            f"{kind}: {ends} just before row {er} block {eblk}, so the next part in block order, "
            f"{_part_str(meta, c)}, must begin there: expected begin_req = {er}, begin_block = {eblk}; got "
            f"begin_req = {int(meta[c, 0])}, begin_block = {int(meta[c, 1])}")
    if e_sorted[-1] != G[n]:
        p = int(order[-1])
        r, blk = where(int(e_sorted[-1]))
        raise ScheduleError(
            f"gap: blocks from row {r} block {blk} to the end of row {n - 1} are covered by no part; the last "
            f"part in block order, {_part_str(meta, p)}, ends there; expected end_req = {n - 1}")

    # --- pieces: num_splits counts and split slots --------------------------------------------------------
    # With the ranges a partition, the pieces of row r are the parts (in block order) from the one holding the
    # row's first block to the one holding its last.
    first_pos = np.searchsorted(s_sorted, G[:-1], side="right") - 1
    last_pos = np.searchsorted(s_sorted, G[1:] - 1, side="right") - 1
    count = last_pos - first_pos + 1
    want = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(count, out=want[1:])
    bad = np.flatnonzero(want != splits[: n + 1])
    if bad.size:
        i = int(bad[0])
        r = i - 1
        parts = order[first_pos[r]: last_pos[r] + 1].tolist()
        shown = parts if len(parts) <= 8 else parts[:8] + ["..."]
        raise ScheduleError(
            f"num_splits[{i}]: expected {int(want[i])}, got {int(splits[i])} (row {r} is cut into "
            f"{int(count[r])} piece(s), by parts {shown}; num_splits[{r}] = {int(splits[r])})")
    pos = np.empty(k, dtype=np.int64)
    pos[order] = np.arange(k)
    rank = pos - first_pos[b]                     # pieces of row begin_req that come before this part's
    bad = np.flatnonzero(bsp != rank)
    if bad.size:
        p = int(bad[0])
        r = int(b[p])
        raise ScheduleError(
            f"{_part_str(meta, p)}: begin_split: expected {int(rank[p])}, got {int(bsp[p])} (its piece of row "
            f"{r} is piece {int(rank[p])} of {int(count[r])} in block order, so it must write split slot "
            f"num_splits[{r}] + {int(rank[p])} = {int(splits[r] + rank[p])}; row {r} owns slots "
            f"{int(splits[r])} .. {int(splits[r + 1]) - 1})")

    # --- payload ------------------------------------------------------------------------------------------
    load = (end - start) + F * (e - b + 1)
    bad = np.flatnonzero(load > payload)
    if bad.size:
        p = int(bad[0])
        raise ScheduleError(
            f"{_part_str(meta, p)}: carries {int(load[p])} units ({int(end[p] - start[p])} blocks + F = {F} for "
            f"each of {int(e[p] - b[p] + 1)} piece(s)), more than payload = ceil({total} / {P}) + {F} = {payload}")
