"""The consumer-side checker (`reference.check_schedule`): it accepts every reference schedule in both layouts and
catches each kind of corrupted metadata with a message that names the field at fault, and every single-field
corruption of any part (the fuzz test). Pure NumPy, no JAX calls."""

from __future__ import annotations

import time

import numpy as np
import pytest

from jax_mla_meta import reference, to_2026
from jax_mla_meta.layouts import COLUMNS
from jax_mla_meta.reference import ScheduleError, check_schedule
from lengths import between, lengths, topk_lengths

INT32_MAX = 2**31 - 1
BS, F = 64, 5


def _accept(lens, P, topk=None, num_valid=None, bs=BS, f=F, **rows):
    for layout in ("2025", "2026"):
        meta, splits = reference.schedule(lens, P, bs, f, topk=topk, num_valid=num_valid, layout=layout, **rows)
        check_schedule(meta, splits, lens, block_size_n=bs, fixed_overhead_num_blocks=f, topk=topk,
                       num_valid=num_valid, layout=layout, **rows)


# ---------------------------------------------------------------------------------------------------------------
# The checker accepts the reference.


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_accepts_random_reference_schedules(seed, mode):
    rng = np.random.default_rng(seed)
    for _ in range(150):
        B = int(rng.choice([0, 1, 2, 5, 17, 64, 131, 132, 133, 300, 1000]))
        P = int(rng.choice([1, 2, 7, 66, 132, 500, 4096]))
        lens = lengths(rng, B)
        topk = None if mode == "dense" else int(rng.choice([0, 1, 63, 64, 65, 2048, INT32_MAX]))
        nv = None if rng.random() < 0.5 else int(rng.integers(-2, B + 3))
        _accept(lens, P, topk, nv)


@pytest.mark.parametrize("bs,f", [(1, 0), (16, 1), (64, 5), (128, 40)])
def test_accepts_other_block_sizes_and_overheads(bs, f):
    rng = np.random.default_rng(bs * 100 + f)
    for _ in range(60):
        B = int(rng.integers(0, 400))
        _accept(lengths(rng, B), int(rng.integers(1, 300)), bs=bs, f=f)


EDGE = {
    "B = 0": (np.zeros(0), 132),
    "B = 0, P = 1": (np.zeros(0), 1),
    "all zeros": (np.zeros(1000), 132),
    "all zeros, P = 1": (np.zeros(50), 1),
    "negative lengths": (np.array([-1, -5, -(2**31), 100, -64, 0, 7] * 20), 9),
    "one row": (np.array([4096]), 132),
    "one zero row": (np.array([0]), 3),
    "P = 1": (np.arange(1, 5000), 1),
    "P > B": (np.array([5, 50000, 12]), 500),
    "P = B": (np.full(132, 4096), 132),
    "near int32 max": (INT32_MAX - np.arange(300), 132),
    "near int32 max, P = 1": (INT32_MAX - np.arange(30), 1),
    "block boundaries": (np.array([0, 1, 2, 63, 64, 65, 127, 128, 129] * 37), 33),
    "one 128k among ones": (np.r_[np.ones(511), 131072, np.ones(512)], 132),
}


@pytest.mark.parametrize("case", sorted(EDGE))
@pytest.mark.parametrize("topk", [None, 0, 1, 2048])
def test_accepts_edge_cases(case, topk):
    lens, P = EDGE[case]
    _accept(np.asarray(lens, np.int64).astype(np.int32), P, topk)


def test_b0_reference_shape():
    meta, splits = reference.schedule(np.zeros(0, np.int32), 4)
    assert (meta == np.array([-1, 0, -1, 0, 0, 0, 0, 0])).all() and splits.tolist() == [0]
    check_schedule(meta, splits, np.zeros(0, np.int32))


def test_accepts_num_valid_padding():
    rng = np.random.default_rng(7)
    lens = between(rng, 257, 0, 50000)
    for nv in [0, 1, 2, 39, 40, 41, 128, 256, 257, -5, 1000]:
        _accept(lens, 40, num_valid=nv)


def test_accepts_overflowing_total_and_is_fast():
    """100k rows near 2^31 tokens: the block total is far past 32 bits; the check takes well under a second."""
    lens = np.full(100_000, INT32_MAX, dtype=np.int32)
    lens[::7] = 0
    meta, splits = reference.schedule(lens, 132)
    t = time.perf_counter()
    check_schedule(meta, splits, lens)
    assert time.perf_counter() - t < 3.0


def test_accepts_python_lists_and_other_int_dtypes():
    lens = np.array([5, 300, 0, 70], np.int32)
    meta, splits = reference.schedule(lens, 3)
    check_schedule(meta.astype(np.int64).tolist(), splits.tolist(), lens.tolist())


# ---------------------------------------------------------------------------------------------------------------
# The checker catches corruptions. The base schedule cuts many rows, has zero-length rows and trailing empty parts.


def _base():
    rng = np.random.default_rng(12345)
    lens = between(rng, 60, 0, 2000)
    lens[1::9] = 0
    lens[0] = 1000
    lens[5] = 131072                                    # a row cut into several pieces
    meta, splits = reference.schedule(lens, 150)
    check_schedule(meta, splits, lens)
    return lens, meta.copy(), splits.copy()


def _nblk(lens):
    return reference.num_blocks(lens, BS)


def _nonempty(meta):
    return [p for p in range(meta.shape[0]) if meta[p, 0] != -1]


def _continuations(meta):
    """Parts that start inside a row (begin_block > 0), whose predecessor ends there."""
    return [p for p in _nonempty(meta) if meta[p, 1] > 0]


def _expect(meta, splits, lens, *words, **kw):
    with pytest.raises(ScheduleError) as ei:
        check_schedule(meta, splits, lens, **kw)
    msg = str(ei.value)
    for w in words:
        assert w in msg, f"{w!r} not in message: {msg}"
    return msg


def test_base_has_what_the_corruptions_need():
    lens, meta, splits = _base()
    assert len(_continuations(meta)) >= 5
    assert (meta[:, 0] == -1).sum() >= 1
    assert (np.diff(splits) > 1).sum() >= 3


@pytest.mark.parametrize("delta", [-1, +1])
def test_catches_shifted_begin_block(delta):
    lens, meta, splits = _base()
    p = _continuations(meta)[2]
    meta[p, 1] += delta
    msg = _expect(meta, splits, lens, "begin_block", f"part {p} ")
    assert ("overlap" if delta < 0 else "gap") in msg


def test_catches_begin_block_past_the_row():
    lens, meta, splits = _base()
    p = _nonempty(meta)[3]
    meta[p, 1] = _nblk(lens)[meta[p, 0]]
    _expect(meta, splits, lens, "begin_block", "out of range", f"part {p} ")


@pytest.mark.parametrize("delta", [-1, +1])
def test_catches_end_block_off_by_one_inside_a_row(delta):
    lens, meta, splits = _base()
    p = _continuations(meta)[2] - 1                  # ends where its successor begins, inside a row
    meta[p, 3] += delta
    msg = _expect(meta, splits, lens, "end_block", f"part {p} ")
    assert ("gap" if delta < 0 else "overlap") in msg


def test_catches_end_block_past_a_whole_row():
    lens, meta, splits = _base()
    nb = _nblk(lens)
    p = next(p for p in _nonempty(meta) if lens[meta[p, 2]] != 0 and meta[p, 3] == nb[meta[p, 2]])
    meta[p, 3] += 1
    _expect(meta, splits, lens, "end_block", "out of range", f"part {p} ")


def test_catches_end_block_quirk_violations():
    """A part ending on a zero-length row must write end_block 0 (docs/spec.md section 4), and 0 only there."""
    lens, meta, splits = _base()
    p = next(p for p in _nonempty(meta) if lens[meta[p, 2]] == 0)
    bad = meta.copy()
    bad[p, 3] = 1
    _expect(bad, splits, lens, "end_block", "length 0")
    q = next(q for q in _nonempty(meta) if lens[meta[q, 2]] != 0)
    bad = meta.copy()
    bad[q, 3] = 0
    _expect(bad, splits, lens, "end_block", f"part {q} ")


def test_catches_overlapping_parts():
    lens, meta, splits = _base()
    p = _continuations(meta)[3]
    meta[p, 0:2] = meta[p - 1, 0:2]                  # part p now starts where part p-1 starts
    _expect(meta, splits, lens, "overlap", "begin_req", "begin_block")


def test_catches_duplicated_part():
    lens, meta, splits = _base()
    k = len(_nonempty(meta))
    meta[k] = meta[k - 1]                            # the first empty part repeats the last part with work
    _expect(meta, splits, lens, "overlap")


def test_catches_a_gap_of_whole_rows():
    lens, meta, splits = _base()
    nb = _nblk(lens)
    # a part covering several whole rows, ending on a row boundary: drop its last row
    p = next(p for p in _nonempty(meta) if meta[p, 2] > meta[p, 0] and meta[p, 3] in (0, nb[meta[p, 2]])
             and meta[p, 1] == 0 and p + 1 < meta.shape[0] and meta[p + 1, 1] == 0)
    r = meta[p, 2]
    meta[p, 2] = r - 1
    meta[p, 3] = 0 if lens[r - 1] == 0 else nb[r - 1]
    _expect(meta, splits, lens, "gap", f"row {r} ", "end_req", "begin_req")


def test_catches_uncovered_tail():
    lens, meta, splits = _base()
    k = len(_nonempty(meta))
    meta[k - 1, 0] = -1                              # the last part with work is dropped
    meta[k - 1, 1] = meta[k - 1, 4] = 0
    _expect(meta, splits, lens, "gap", "end_req")


def test_catches_uncovered_head():
    lens, meta, splits = _base()
    meta[0, 1] = 1                                   # row 0 is long enough to have a block 1
    assert _nblk(lens)[0] > 1
    _expect(meta, splits, lens, "gap", "begin_block")


@pytest.mark.parametrize("delta", [-1, +1])
def test_catches_wrong_begin_split_of_a_continuation(delta):
    lens, meta, splits = _base()
    p = _continuations(meta)[1]
    meta[p, 4] += delta
    _expect(meta, splits, lens, "begin_split", f"part {p} ", f"expected {meta[p, 4] - delta}")


def test_catches_nonzero_begin_split_on_a_row_boundary():
    lens, meta, splits = _base()
    p = next(p for p in _nonempty(meta) if meta[p, 1] == 0)
    meta[p, 4] = 1
    _expect(meta, splits, lens, "begin_split", "expected 0, got 1")


@pytest.mark.parametrize("delta", [-1, +1])
def test_catches_num_splits_off_by_one(delta):
    lens, meta, splits = _base()
    d = np.diff(splits)
    i = int(np.flatnonzero((d[:-1] > 1) & (d[1:] > 1))[0]) + 1   # both neighbours leave room: still monotone
    splits[i] += delta
    _expect(meta, splits, lens, f"num_splits[{i}]", f"got {splits[i]}")


def test_catches_num_splits_row_without_piece():
    lens, meta, splits = _base()
    i = int(np.flatnonzero(np.diff(splits) == 1)[3]) + 1
    splits[i] -= 1                                   # row i-1 has no piece left
    _expect(meta, splits, lens, "num_splits", f"row {i - 1} ", ">= 1 piece")


def test_catches_num_splits_last_entry():
    lens, meta, splits = _base()
    splits[-1] += 1
    _expect(meta, splits, lens, f"num_splits[{len(splits) - 1}]", "expected")


def test_catches_num_splits_not_constant_past_num_valid():
    lens, meta, splits = _base()
    nv = 30
    meta, splits = (a.copy() for a in reference.schedule(lens, 150, num_valid=nv))
    check_schedule(meta, splits, lens, num_valid=nv)
    splits[nv + 3] += 1
    _expect(meta, splits, lens, f"num_splits[{nv + 3}]", "num_valid", num_valid=nv)


def test_catches_wrong_num_splits_0():
    lens, meta, splits = _base()
    splits[0] = 1
    _expect(meta, splits, lens, "num_splits[0]", "got 1")
    _expect(meta, splits + 1, lens, "num_splits[0]")


def test_catches_nonempty_part_after_an_empty_one():
    lens, meta, splits = _base()
    k = len(_nonempty(meta))
    meta[[k - 1, k]] = meta[[k, k - 1]]              # swap the last part with work and the first empty part
    _expect(meta, splits, lens, "begin_req", "empty", f"part {k} ")


def test_catches_empty_part_with_nonzero_begin_block():
    """What the original smem kernel writes into trailing parts (docs/spec.md section 5): must be 0 here."""
    lens, meta, splits = _base()
    k = len(_nonempty(meta))
    meta[k, 1] = (int(lens[0]) - 1) // 64
    _expect(meta, splits, lens, "begin_block", "empty", f"part {k} ")


def test_catches_part_over_payload():
    lens, meta, splits = _base()
    nb = _nblk(lens)
    # part p-1 ends inside row r where part p begins; move that seam one block later: coverage and pieces
    # stay valid, but part p-1 (which was cut at exactly the payload) now carries one unit too many
    p = next(p for p in _continuations(meta)
             if meta[p, 1] + 1 < (meta[p, 3] if meta[p, 2] == meta[p, 0] else nb[meta[p, 0]]))
    meta[p - 1, 3] += 1
    meta[p, 1] += 1
    _expect(meta, splits, lens, "payload", f"part {p - 1} ")


@pytest.mark.parametrize("col", [5, 6, 7])
def test_catches_nonzero_reserved_column(col):
    lens, meta, splits = _base()
    meta[3, col] = 9
    _expect(meta, splits, lens, f"column {col}", "part 3 ")
    k = len(_nonempty(meta))
    meta[3, col] = 0
    meta[k, col] = -1                                # trailing parts too
    _expect(meta, splits, lens, f"column {col}", f"part {k} ")


def test_catches_out_of_range_rows():
    lens, meta, splits = _base()
    bad = meta.copy()
    bad[2, 0] = -2
    _expect(bad, splits, lens, "begin_req", "out of range")
    bad = meta.copy()
    bad[2, 2] = bad[2, 0] - 1
    _expect(bad, splits, lens, "end_req", "out of range")
    bad = meta.copy()
    k = len(_nonempty(meta))
    bad[k - 1, 2] = len(lens)
    _expect(bad, splits, lens, "end_req", "out of range")


def test_catches_bad_shapes():
    lens, meta, splits = _base()
    _expect(meta[:, :7], splits, lens, "[P >= 1, 8]")
    _expect(meta[:0], splits, lens, "[P >= 1, 8]")
    _expect(meta, splits[:-1], lens, "num_splits", "shape")
    _expect(meta, splits, lens[None], "seqlens", "1-D")
    _expect(meta.astype(np.float32), splits, lens, "integer")


def test_catches_work_when_nothing_to_schedule_and_nothing_when_work():
    meta, splits = reference.schedule(np.array([10, 20], np.int32), 3)
    _expect(meta, splits[:1], np.zeros(0, np.int32), "begin_req = -1")
    empty = np.tile(np.array([-1, 0, -1, 0, 0, 0, 0, 0], np.int32), (3, 1))
    _expect(empty, splits, np.array([10, 20], np.int32), "empty", "begin_req = 0")


def test_catches_sparse_mode_mismatch():
    """The same metadata read with the wrong topk: the block counts no longer agree."""
    lens = np.full(50, 4096, np.int32)
    meta, splits = reference.schedule(lens, 7, topk=2048)
    check_schedule(meta, splits, lens, topk=2048)
    with pytest.raises(ScheduleError):
        check_schedule(meta, splits, lens)


def test_catches_corruption_in_a_large_batch_quickly():
    rng = np.random.default_rng(3)
    lens = between(rng, 100_000, 0, 200_000)
    meta, splits = (a.copy() for a in reference.schedule(lens, 132))
    splits[77_777] += 1
    t = time.perf_counter()
    _expect(meta, splits, lens, "num_splits[77777]")
    assert time.perf_counter() - t < 3.0


def test_schedule_error_is_an_assertion_error():
    assert issubclass(ScheduleError, AssertionError)


# ---------------------------------------------------------------------------------------------------------------
# Sparse rows with per-row lengths, and the 2026 layout.


@pytest.mark.parametrize("seed", range(4))
def test_accepts_per_row_sparse_lengths(seed):
    rng = np.random.default_rng(1000 + seed)
    for _ in range(80):
        B = int(rng.choice([0, 1, 2, 17, 131, 300]))
        P = int(rng.choice([1, 2, 7, 66, 132, 500]))
        topk = int(rng.choice([1, 64, 2048]))
        rows = dict(topk_length=topk_lengths(rng, B, topk))
        if rng.random() < 0.5:
            rows["extra_topk"] = int(rng.choice([0, 64, 700]))
        if rng.random() < 0.3:
            rows["extra_topk_length"] = between(rng, B, -70, 5000)
        nv = None if rng.random() < 0.5 else int(rng.integers(-2, B + 3))
        _accept(np.zeros(B, np.int32), P, topk, nv, **rows)


def _base_2026():
    lens, meta, splits = _base()
    return lens, to_2026(meta, splits, len(lens)), splits


def test_b0_2026_shape():
    meta, splits = reference.schedule(np.zeros(0, np.int32), 4, layout="2026")
    assert (meta == np.array([0, -1, 0, 0, 0, 0, 0, 0])).all() and splits.tolist() == [0]
    check_schedule(meta, splits, np.zeros(0, np.int32), layout="2026")


def test_2026_catches_a_flipped_flag():
    lens, meta, splits = _base_2026()
    check_schedule(meta, splits, lens, layout="2026")
    busy = [p for p in range(meta.shape[0]) if meta[p, 0] < len(lens)]
    for p in busy:
        for col, name in ((5, "is_first_req_splitted"), (6, "is_last_req_splitted")):
            bad = meta.copy()
            bad[p, col] ^= 1
            _expect(bad, splits, lens, name, f"part {p} ", layout="2026")


def test_2026_pins_the_parts_with_no_work():
    lens, meta, splits = _base_2026()
    B = len(lens)
    k = int((meta[:, 0] < B).sum())
    for col, value, word in ((0, B + 1, "begin_req"), (0, -1, "begin_req"), (1, B - 2, "end_req"),
                             (2, 1, "begin_block"), (3, 0, "end_block"), (4, 1, "begin_split"), (5, 1, "first_split"),
                             (6, 1, "last_split"), (7, 3, "column 7")):
        bad = meta.copy()
        bad[k, col] = value
        _expect(bad, splits, lens, word, layout="2026")


def test_2025_layout_read_as_2026_is_rejected():
    lens, meta, splits = _base()
    with pytest.raises(ScheduleError):
        check_schedule(meta, splits, lens, layout="2026")


# ---------------------------------------------------------------------------------------------------------------
# Fuzz: every single-field corruption of every kind of part is caught.


def _part_kinds(meta, splits, B, layout):
    """Representative parts: the first, one that continues a cut row, one that cuts a row, one that ends on a row
    boundary, the one holding the end of the tape, and a part with no work."""
    c = COLUMNS[layout]
    busy = [p for p in range(meta.shape[0]) if 0 <= meta[p, c["begin_req"]] < B]
    idle = [p for p in range(meta.shape[0]) if p not in busy]
    kinds = {"first": busy[0], "tape end": busy[-1]}
    cont = [p for p in busy if meta[p, c["begin_block"]] > 0]
    if cont:
        kinds["continuation"] = cont[0]
        kinds["cutting"] = cont[0] - 1
    bound = [p for p in busy[:-1] if meta[p + 1, c["begin_block"]] == 0]
    if bound:
        kinds["row boundary"] = bound[0]
    if idle:
        kinds["no work"] = idle[0]
        kinds["last, no work"] = idle[-1]
    return kinds


@pytest.mark.parametrize("layout", ["2025", "2026"])
@pytest.mark.parametrize("mode", ["dense", "sparse rows"])
def test_fuzz_every_single_field_corruption_is_caught(layout, mode):
    rng = np.random.default_rng(4242 if layout == "2025" else 4343)
    tried = caught = 0
    missed = []
    for trial in range(12):
        B = int(rng.choice([3, 40, 150]))
        P = int(rng.choice([5, 20, 150, 300]))
        lens = lengths(rng, B, str(rng.choice(["small", "lognormal", "boundaries", "sparse_zeros"])))
        kw = dict(topk=2048, topk_length=topk_lengths(rng, B, 2048)) if mode == "sparse rows" else {}
        nv = None if trial % 3 else int(rng.integers(1, B + 1))
        meta, splits = reference.schedule(lens, P, num_valid=nv, layout=layout, **kw)
        check_schedule(meta, splits, lens, num_valid=nv, layout=layout, **kw)
        for kind, p in _part_kinds(meta, splits, B, layout).items():
            for col in range(8):
                for delta in (-2, -1, 1, 2, int(rng.integers(3, 2**20)), -(2**31) - int(meta[p, col])):
                    bad = meta.astype(np.int64)
                    bad[p, col] += delta
                    tried += 1
                    try:
                        check_schedule(bad, splits, lens, num_valid=nv, layout=layout, **kw)
                    except ScheduleError:
                        caught += 1
                    else:
                        missed.append((trial, kind, p, col, delta))
        for i in range(0, B + 1, max(1, B // 7)):   # num_splits too
            for delta in (-1, 1):
                bad = splits.astype(np.int64)
                bad[i] += delta
                tried += 1
                try:
                    check_schedule(meta, bad, lens, num_valid=nv, layout=layout, **kw)
                except ScheduleError:
                    caught += 1
                else:
                    missed.append((trial, "num_splits", i, None, delta))
    assert not missed, f"{len(missed)} of {tried} corruptions passed the checker: {missed[:10]}"
    assert tried > 1000
