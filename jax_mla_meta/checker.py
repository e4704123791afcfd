"""Consumer-contract checker: is this metadata *usable*? It reads the metadata the way FlashMLA's split-KV decode
kernel and its combine kernel read it, in either layout, and raises :class:`ScheduleError` at the first thing that
would make them compute a wrong answer (a KV block read twice or never, a split slot written twice or never, a wrong
"is this request split" flag, a part carrying more work than the schedule allows) or that breaks the contract of
``docs/spec.md`` (a malformed field, including every field of the parts with no work). It never re-runs the
scheduling walk, so a bug shared by the reference and an implementation cannot hide from it.

How a consumer reads part ``p`` (field names as in :mod:`jax_mla_meta.layouts`):

* A part has no work when ``begin_req == -1`` (2025) or ``begin_req >= B`` (2026); the contract pins such a part
  to ``begin_req = -1`` / ``B``, ``begin_block = begin_split = 0``, ``end_req = num_valid - 1`` and the
  ``end_block`` the walk leaves there, flags 0. Every such part comes after all parts with work.
* Otherwise it processes rows ``begin_req .. end_req`` (inclusive); in row ``begin_req`` it starts at KV block
  ``begin_block``, in every other row at block 0; in row ``end_req`` it stops before block ``end_block``
  (exclusive, taken at face value), in every other row after the row's last block. The piece of row ``begin_req``
  writes split slot ``num_splits[begin_req] + begin_split``, the piece of any later row writes slot
  ``num_splits[row]``.
* 2026: ``is_first_req_splitted`` / ``is_last_req_splitted`` tell whether rows ``begin_req`` / ``end_req`` have
  more than one piece (a consumer writes an unsplit row's output directly, a split one into its slot).
* The combine kernel merges slots ``num_splits[r] .. num_splits[r + 1] - 1`` of row ``r``.

Units are the scheduler's KV blocks of each row's cost length (:mod:`jax_mla_meta.costs`), so a zero or negative
length still costs one block. One quirk of the contract is accepted exactly as written: a part that ends after the
whole of a zero-length row writes ``end_block = 0`` for it (nothing to read there), although the row counts as one
block; ``end_block = 1`` is rejected for such a row.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _ffi
from ._args import (INT32_MAX, INT32_MIN, as_int, check_extra_topk, check_sparse_inputs, concrete_int_values,
                    int32_array, is_traced)
from .costs import num_blocks, row_lengths
from .layouts import COLUMNS, Layout, check_layout

__all__ = ["ScheduleError", "ScheduleStats", "check_schedule"]


class ScheduleError(AssertionError):
    """The metadata would make FlashMLA's decode or combine kernel compute a wrong result, or it breaks the
    contract of ``docs/spec.md``. The message names the part, the row and the field, with expected vs got."""


@dataclasses.dataclass(frozen=True)
class ScheduleStats:
    """What :func:`check_schedule` measured on a valid schedule (arrays are per part, int64)."""

    B: int
    num_valid: int
    num_sm_parts: int
    block_size_n: int
    fixed_overhead_num_blocks: int
    row_blocks: np.ndarray        # [n]: blocks of each valid row
    total_blocks: int
    total_units: int              # total_blocks + F * n
    payload: int                  # ceil(total_units / P) + F
    busy: np.ndarray              # [P] bool: the part has work
    first_block: np.ndarray       # [P]: global block where the part starts (rows laid end to end)
    end_block: np.ndarray         # [P]: global block where it ends (exclusive)
    pieces: np.ndarray            # [P]: rows it touches
    load: np.ndarray              # [P]: blocks + F * pieces
    ends_mid_row: np.ndarray      # [P] bool: it ends strictly inside a row (that row continues in the next part)
    row_pieces: np.ndarray        # [n]: pieces of each valid row

    @property
    def split_rows(self) -> int:
        return int((self.row_pieces > 1).sum())

    @property
    def total_pieces(self) -> int:
        return int(self.row_pieces.sum())

    @property
    def idle_parts(self) -> int:
        return int((~self.busy).sum())


def _row_array(name: str, x, B: int, int32_only: bool) -> np.ndarray | None:
    """``topk_length`` / ``extra_topk_length`` as an int64 ``[B]`` array, or a TypeError/ValueError naming it.
    ``int32_only``: as :func:`jax_mla_meta.schedule` takes them (int32 arrays); else any integer array-like whose
    values fit in int32."""
    if x is None:
        return None
    if int32_only and not is_traced(x):
        int32_array(name, x)
    a = concrete_int_values(name, x)
    if a.shape != (B,):
        raise ValueError(f"{name} must have the shape of seqlens {(B,)}, got {a.shape}")
    return a


def workload_args(B: int, *, block_size_n, fixed_overhead_num_blocks, topk, num_valid, layout, topk_length,
                  extra_topk, extra_topk_length, int32_only: bool = False) -> dict:
    """The arguments that describe one batch of ``B`` rows, checked with :func:`jax_mla_meta.schedule`'s limits and
    messages (each error names the argument): returned as a dict of Python ints / int64 arrays, with ``num_valid``
    clamped to ``[0, B]``. Shared by :func:`check_schedule` and :func:`jax_mla_meta.reference.schedule`."""
    bs = as_int("block_size_n", block_size_n, 1, INT32_MAX)
    F = as_int("fixed_overhead_num_blocks", fixed_overhead_num_blocks, 0, _ffi.MAX_OVERHEAD)
    tk = None if topk is None else as_int("topk", topk, 0, INT32_MAX)
    nv = None if num_valid is None else as_int("num_valid", num_valid, INT32_MIN, INT32_MAX)
    layout = check_layout(layout)
    et = check_extra_topk(extra_topk)
    tl = _row_array("topk_length", topk_length, B, int32_only)
    etl = _row_array("extra_topk_length", extra_topk_length, B, int32_only)
    check_sparse_inputs(tk, et, tl is not None, etl is not None)
    n = B if nv is None else min(max(nv, 0), B)
    return dict(block_size_n=bs, fixed_overhead_num_blocks=F, topk=tk, num_valid=n,
                layout=layout, topk_length=tl, extra_topk=et, extra_topk_length=etl)


def valid_row_lengths(seqlens, args: dict) -> np.ndarray:
    """The lengths that cost the first ``num_valid`` rows, for arguments checked by :func:`workload_args`."""
    return row_lengths(seqlens, args["topk"], topk_length=args["topk_length"], extra_topk=args["extra_topk"],
                       extra_topk_length=args["extra_topk_length"], layout=args["layout"])[:args["num_valid"]]


def _int_array(name: str, x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise ScheduleError(f"{name} must be an integer array, got dtype {a.dtype}")
    return a.astype(np.int64)


def check_schedule(
    tile_scheduler_metadata,
    num_splits,
    seqlens,
    *,
    block_size_n: int = 64,
    fixed_overhead_num_blocks: int = 5,
    topk: int | None = None,
    num_valid: int | None = None,
    layout: Layout = "2025",
    topk_length=None,
    extra_topk: int | None = None,
    extra_topk_length=None,
) -> ScheduleStats:
    """Raise :class:`ScheduleError` unless the metadata of one batch is a valid FlashMLA decode schedule; return
    its :class:`ScheduleStats` if it is.

    Args:
      tile_scheduler_metadata: integer ``[P, 8]`` (``P >= 1``), packed in ``layout``.
      num_splits: integer ``[B + 1]``.
      seqlens: integer ``[B]``, the KV length of each row (only its length matters when ``topk`` is given).
      block_size_n: KV block size.
      fixed_overhead_num_blocks: F, the fixed cost of every piece, in blocks.
      topk, topk_length, extra_topk, extra_topk_length: sparse rows, as :func:`jax_mla_meta.schedule` takes them.
      num_valid: only the first ``num_valid`` rows (clamped to ``[0, B]``) are scheduled; default B.
      layout: ``"2025"`` or ``"2026"`` (see :mod:`jax_mla_meta.layouts`).

    The keyword arguments are checked first, with :func:`jax_mla_meta.schedule`'s limits: a bad one raises
    TypeError/ValueError naming it (``topk_length`` / ``extra_topk_length``: integer ``[B]``, values inside int32).
    The metadata is checked in this order: shapes; the pad columns are zero; ``num_splits`` starts at 0, gives
    each valid row at least one piece and is constant past ``num_valid``; parts with no work come last and every
    field of theirs is the contract's; every field of a part with work is in range; the parts' block ranges cover
    every KV block of every valid row exactly once; ``num_splits`` counts exactly the pieces each row is cut into;
    each part's ``begin_split`` is the number of pieces of its first row that come before it; 2026: the two flags
    say whether the part's first and last rows are split; and no part carries more than
    ``payload = ceil(total / P) + F`` units, where ``total = sum(nblk_i + F)`` and a part's load is the blocks it
    covers plus F per piece.
    """
    meta = _int_array("tile_scheduler_metadata", tile_scheduler_metadata)
    splits = _int_array("num_splits", num_splits)
    lens_all = _int_array("seqlens", seqlens)
    if lens_all.ndim != 1:
        raise ScheduleError(f"seqlens must be 1-D (one batch), got shape {lens_all.shape}")
    B = int(lens_all.shape[0])
    args = workload_args(B, block_size_n=block_size_n, fixed_overhead_num_blocks=fixed_overhead_num_blocks,
                         topk=topk, num_valid=num_valid, layout=layout, topk_length=topk_length,
                         extra_topk=extra_topk, extra_topk_length=extra_topk_length)
    bs, F, n, layout = (args[k] for k in ("block_size_n", "fixed_overhead_num_blocks", "num_valid", "layout"))
    cols = COLUMNS[layout]

    def col(name: str) -> int:
        return cols[name]

    def part_str(p: int) -> str:
        return f"part {p} = {meta[p].tolist()}"

    # --- shapes -------------------------------------------------------------------------------------------
    if meta.ndim != 2 or meta.shape[1] != 8 or meta.shape[0] < 1:
        raise ScheduleError(f"tile_scheduler_metadata must have shape [P >= 1, 8], got {meta.shape}")
    P = int(meta.shape[0])
    if splits.shape != (B + 1,):
        raise ScheduleError(f"num_splits must have shape [B + 1] = [{B + 1}], got {splits.shape}")

    # --- pad columns --------------------------------------------------------------------------------------
    pad = (5, 6, 7) if layout == "2025" else (7,)
    bad = np.argwhere(meta[:, list(pad)] != 0)
    if bad.size:
        p, c = int(bad[0, 0]), pad[int(bad[0, 1])]
        raise ScheduleError(f"{part_str(p)}: column {c} (pad) must be 0, got {int(meta[p, c])}")

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
    lens = valid_row_lengths(lens_all, args)
    nblk = num_blocks(lens, bs)
    G = np.zeros(n + 1, dtype=np.int64)          # G[r]: first global block of row r; G[n]: all blocks
    np.cumsum(nblk, out=G[1:])
    total = int(G[n]) + F * n
    payload = -(-total // P) + F

    def last_block(r: int) -> int:               # end_block of a part ending on the boundary after row r
        return 0 if r < 0 or lens[r] == 0 else int(nblk[r])

    # --- parts with no work -------------------------------------------------------------------------------
    br = meta[:, col("begin_req")]
    idle_value = -1 if layout == "2025" else B
    idle = br == -1 if layout == "2025" else br >= B
    if layout == "2026":
        bad = np.flatnonzero(br > B)
        if bad.size:
            p = int(bad[0])
            raise ScheduleError(f"{part_str(p)}: begin_req = {int(br[p])} is out of range: a part with no work has "
                                f"begin_req = B = {B}, a part with work a valid row in [0, {n})")
    if idle.any():
        first = int(np.argmax(idle))
        later = np.flatnonzero(~idle[first:])
        if later.size:
            p = first + int(later[0])
            raise ScheduleError(
                f"{part_str(p)}: begin_req = {int(br[p])} (a part with work) comes after part {first}, "
                f"which is empty (begin_req = {idle_value}); expected begin_req = {idle_value} for every part "
                f"after the first empty one")
    k = P - int(idle.sum())                       # parts with work: 0 .. k-1
    if n == 0 and k:
        raise ScheduleError(
            f"{part_str(0)}: there are no rows to schedule (num_valid = 0), so every part must be empty: "
            f"expected begin_req = {idle_value}, got {int(br[0])}")
    if n > 0 and k == 0:
        raise ScheduleError(f"every part is empty (begin_req = {idle_value}) but {n} rows need scheduling: "
                            f"expected part 0 to begin at begin_req = 0, begin_block = 0")

    if idle.any():
        want = dict(begin_block=0, begin_split=0, end_req=n - 1, end_block=last_block(n - 1),
                    first_split=0, last_split=0)
        for name, value in want.items():
            if cols[name] is None:
                continue
            bad = np.flatnonzero(idle & (meta[:, cols[name]] != value))
            if bad.size:
                p = int(bad[0])
                raise ScheduleError(
                    f"{part_str(p)}: an empty part (begin_req = {idle_value}) must have {name} = {value}, "
                    f"got {int(meta[p, cols[name]])}")

    # --- fields of the parts with work --------------------------------------------------------------------
    b, bb, e, eb, bsp = (meta[:k, col(c)] for c in ("begin_req", "begin_block", "end_req", "end_block",
                                                    "begin_split"))
    bad = np.flatnonzero((b < 0) | (b >= n))
    if bad.size:
        p = int(bad[0])
        raise ScheduleError(f"{part_str(p)}: begin_req = {int(b[p])} is out of range: expected {idle_value} "
                            f"(empty part) or a valid row in [0, {n})")
    bad = np.flatnonzero((e < b) | (e >= n))
    if bad.size:
        p = int(bad[0])
        raise ScheduleError(f"{part_str(p)}: end_req = {int(e[p])} is out of range: expected "
                            f"begin_req ({int(b[p])}) <= end_req < {n}")
    bad = np.flatnonzero((bb < 0) | (bb >= nblk[b]))
    if bad.size:
        p = int(bad[0])
        r = int(b[p])
        raise ScheduleError(f"{part_str(p)}: begin_block = {int(bb[p])} is out of range for begin_req row {r} "
                            f"(length {int(lens[r])}, {int(nblk[r])} blocks): expected 0 <= begin_block "
                            f"< {int(nblk[r])}")
    zero_end = lens[e] == 0
    bad = np.flatnonzero(zero_end & (eb != 0))
    if bad.size:
        p = int(bad[0])
        raise ScheduleError(f"{part_str(p)}: end_req row {int(e[p])} has length 0, and a part ending on it "
                            f"writes end_block = 0; got end_block = {int(eb[p])}")
    bad = np.flatnonzero(~zero_end & ((eb < 1) | (eb > nblk[e])))
    if bad.size:
        p = int(bad[0])
        r = int(e[p])
        raise ScheduleError(f"{part_str(p)}: end_block = {int(eb[p])} is out of range for end_req row {r} "
                            f"(length {int(lens[r])}, {int(nblk[r])} blocks): expected 1 <= end_block <= "
                            f"{int(nblk[r])} (exclusive end)")
    eff_end = np.where(zero_end, 1, eb)          # the zero-length quirk: end_block 0 means "after its one block"
    bad = np.flatnonzero((b == e) & (eff_end <= bb))
    if bad.size:
        p = int(bad[0])
        raise ScheduleError(f"{part_str(p)}: covers no block of row {int(b[p])}: begin_block = {int(bb[p])}, "
                            f"end_block = {int(eb[p])}; expected end_block > begin_block")

    # --- every KV block exactly once ----------------------------------------------------------------------
    start = G[b] + bb                             # global block ranges [start, end), each non-empty
    end = G[e] + eff_end
    order = np.argsort(start, kind="stable")
    s_sorted, e_sorted = start[order], end[order]
    if k:
        _check_cover(meta, part_str, order, s_sorted, e_sorted, G, n, cols)

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
            f"{part_str(p)}: begin_split: expected {int(rank[p])}, got {int(bsp[p])} (its piece of row {r} is "
            f"piece {int(rank[p])} of {int(count[r])} in block order, so it must write split slot "
            f"num_splits[{r}] + {int(rank[p])} = {int(splits[r] + rank[p])}; row {r} owns slots "
            f"{int(splits[r])} .. {int(splits[r + 1]) - 1})")

    # --- 2026: the split flags ----------------------------------------------------------------------------
    if layout == "2026":
        for name, rows in (("first_split", b), ("last_split", e)):
            got = meta[:k, cols[name]]
            want_flag = (count[rows] > 1).astype(np.int64)
            bad = np.flatnonzero(got != want_flag)
            if bad.size:
                p = int(bad[0])
                r = int(rows[p])
                what = "is_first_req_splitted" if name == "first_split" else "is_last_req_splitted"
                raise ScheduleError(
                    f"{part_str(p)}: {what} (column {cols[name]}) must be {int(want_flag[p])}: row {r} is cut "
                    f"into {int(count[r])} piece(s); got {int(got[p])}")

    # --- payload ------------------------------------------------------------------------------------------
    load = (end - start) + F * (e - b + 1)
    bad = np.flatnonzero(load > payload)
    if bad.size:
        p = int(bad[0])
        raise ScheduleError(
            f"{part_str(p)}: carries {int(load[p])} units ({int(end[p] - start[p])} blocks + F = {F} for each of "
            f"{int(e[p] - b[p] + 1)} piece(s)), more than payload = ceil({total} / {P}) + {F} = {payload}")

    busy = np.zeros(P, bool)
    busy[:k] = True
    idle_zeros = np.zeros(P - k, np.int64)
    ends_mid = np.zeros(P, bool)
    ends_mid[:k] = eff_end < nblk[e]
    return ScheduleStats(
        B=B, num_valid=n, num_sm_parts=P, block_size_n=bs, fixed_overhead_num_blocks=F, row_blocks=nblk,
        total_blocks=int(G[n]), total_units=total, payload=int(payload), busy=busy,
        first_block=np.concatenate([start, idle_zeros]), end_block=np.concatenate([end, idle_zeros]),
        pieces=np.concatenate([e - b + 1, idle_zeros]), load=np.concatenate([load, idle_zeros]),
        ends_mid_row=ends_mid, row_pieces=count)


def _check_cover(meta, part_str, order, s_sorted, e_sorted, G, n, cols) -> None:
    """The parts' block ranges, sorted by start, tile [0, G[n]) with no gap and no overlap."""
    bcol, bbcol, ecol, ebcol = cols["begin_req"], cols["begin_block"], cols["end_req"], cols["end_block"]

    def where(x: int) -> tuple[int, int]:
        r = int(np.searchsorted(G, x, side="right")) - 1
        return r, int(x - G[r])

    if s_sorted[0] != 0:
        p = int(order[0])
        r, blk = where(int(s_sorted[0]))
        raise ScheduleError(
            f"gap: block 0 of row 0 is covered by no part; the earliest part, {part_str(p)}, begins at "
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
        ends = f"{part_str(a)} ends (end_req = {int(meta[a, ecol])}, end_block = {int(meta[a, ebcol])})"
        if ea >= G[n]:
            raise ScheduleError(
                f"{kind}: {ends} after the last block of row {n - 1}, yet {part_str(c)} begins later in "
                f"block order (begin_req = {int(meta[c, bcol])}, begin_block = {int(meta[c, bbcol])})")
        raise ScheduleError(
            f"{kind}: {ends} just before row {er} block {eblk}, so the next part in block order, "
            f"{part_str(c)}, must begin there: expected begin_req = {er}, begin_block = {eblk}; got "
            f"begin_req = {int(meta[c, bcol])}, begin_block = {int(meta[c, bbcol])}")
    if e_sorted[-1] != G[n]:
        p = int(order[-1])
        r, blk = where(int(e_sorted[-1]))
        raise ScheduleError(
            f"gap: blocks from row {r} block {blk} to the end of row {n - 1} are covered by no part; the last "
            f"part in block order, {part_str(p)}, ends there; expected end_req = {n - 1}")
