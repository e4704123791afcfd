"""The arithmetic of the CUDA kernels' fast paths (ffi/cuda/row_path.cuh, warp_path.cuh, mid_path.cuh), checked
on the CPU, in both layouts (the 2026 flags as each path derives them).

The row path never walks the batch part by part. It derives everything from S_j mod Q:
  * the chain of restarts (rows on which a part ends inside the first F units): h_0 = 0 and
    h_{k+1} = the first j > h_k with (t_j - t_{h_k}) mod Q <= F, where t_j = S_j mod Q, walked over the
    "candidates" t_j <= L only while d + F <= L, then over every row;
  * m_k = m_{k-1} + ceil((S(h_k) - S(h_{k-1}) - F) / Q) and D_k = S(h_k) - m_k Q;
  * the cut count of row j from quotients that do not depend on the hits:
    floor((S - D) / Q) = g - e - [t < d] with S = g Q + t and D = e Q + d; when F < Q the cut counts of
    the rows before p telescope to qa_p - k (k: the last hit at or before p), so num_splits needs no scan;
  * each part's row by a binary search over per-row keys (the first part a row owns: its first cut part, or
    the one before it when the row is hit).
The "warp path" (B <= 512: one warp, every row walked, no candidates) adds two identities, modelled in
warp_path_model: when F < Q the k-th restart, at row h with S_h = g Q + t, begins part m_k = g - W_k and has
D_k = t + W_k Q (W_k: restarts whose t fell below the one before), so no division per restart; when Q <= F
every row after the first restarts and row j begins part m_j = sum_{i<j} ceil(nblk_i / Q). Each part then
finds its row by a binary search over keys (the first part a row owns), which never decrease.
The "mid path" (1,793-12,288 rows, mid_path_model) walks the candidates like the row path and steps each
thread's rows past multiples of Q; every part is written by the row that holds its end.
The 2026 flags: the row and warp paths read whether a row is split off num_splits (kept per row in shared
memory); the mid path derives it from the tape (row j - 1 of a restart at row j is split iff part qa - 2, which
ends Q before part qa - 1 at the same d, cut it; row j iff its blocks exceed Q; the last row iff part qt - 1 cut
it).
This module re-states those steps in Python, step for step, and compares the result with the reference on
fresh random inputs. The GPU tests check the kernels themselves; this one keeps the identities they rely on
under test on every machine.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from jax_mla_meta import _ffi, reference
from lengths import between, mixed


def tape(lens, P: int, bs: int, F: int, n: int):
    """Blocks per row, the prefix sums S (n + 1 of them), the total and Q = ceil(total / P)."""
    nblk = [1 if x <= 1 else (int(x) - 1) // bs + 1 for x in lens[:n]]
    S = [0]
    for c in nblk:
        S.append(S[-1] + c + F)
    assert S[n] < 2**30   # the paths' 32-bit arithmetic; the kernels take the general path otherwise
    return nblk, S, S[n], -(-S[n] // P)


def store_part_rows(meta, q: int, end, nxt, layout: str = "2025", B: int = 0, split_er=False, split_nr=False):
    """Part q's rows of tile_scheduler_metadata, as the kernels' store_part_rows (cuda/meta_rows.cuh) writes
    them: its end (row, block) in row q, its successor's begin (row, block, split) in row q + 1 (row -1: no
    work left), and part 0 also row 0's begin. 2026: a cut (the successor begins in the end row) makes both
    flags 1; otherwise split_er / split_nr say whether the end row / the successor's row is split."""
    er, eb = end
    nr, nb, ns = nxt
    cut = nr == er
    if layout == "2025":
        meta[q, 2:4] = end
        if q + 1 < len(meta):
            meta[q + 1, 0], meta[q + 1, 1], meta[q + 1, 4] = nxt
        if q == 0:
            meta[0, 0:2], meta[0, 4] = (0, 0), 0
        return
    meta[q, 1], meta[q, 3], meta[q, 6] = er, eb, int(cut or split_er)
    if q + 1 < len(meta):
        idle = nr < 0
        meta[q + 1, 0], meta[q + 1, 2], meta[q + 1, 4] = B if idle else nr, nb, ns
        meta[q + 1, 5], meta[q + 1, 7] = int(not idle and (cut or split_nr)), 0
    if q == 0:
        meta[0, 0], meta[0, 2], meta[0, 4], meta[0, 5], meta[0, 7] = 0, 0, 0, int(cut and er == 0), 0


def split_of(splits):
    """Whether row j (< n) is split, from num_splits (the row and warp paths keep it per row)."""
    return lambda j: splits[j + 1] - splits[j] > 1


def row_path_model(lens, P: int, bs: int, F: int, n: int, B: int, layout: str = "2025"):
    """tile_scheduler_metadata and num_splits as the row path computes them (needs a tape total < 2^30)."""
    nblk, S, total, Q = tape(lens, P, bs, F, n)
    t = [s % Q for s in S[:n]]
    L = min(Q - 1, 48 + 2 * F, 0xFFFF)

    def hit(j, d):   # umin(t - d, t + Q - d) <= F in 32-bit unsigned arithmetic
        return min((t[j] - d) % 2**32, (t[j] + Q - d) % 2**32) <= F

    hrow, d, h = [0], 0, 0
    all_rows = L < Q - 1 and F > L
    if not all_rows:
        for j in (j for j in range(n) if t[j] <= L):
            if j > h and hit(j, d):
                h, d = j, t[j]
                hrow.append(j)
                if L < Q - 1 and d + F > L:
                    all_rows = True
                    break
    if all_rows:
        for j in range(h + 1, n):
            if hit(j, d):
                h, d = j, t[j]
                hrow.append(j)
    hm, hD = [0], [0]
    for k in range(1, len(hrow)):
        hm.append(hm[-1] + -(-(S[hrow[k]] - S[hrow[k - 1]] - F) // Q))
        hD.append(S[hrow[k]] - hm[-1] * Q)

    cuts, k, closed, key, hit, rbase = [], 0, [], [], [], []
    for j in range(n):
        if k + 1 < len(hrow) and hrow[k + 1] == j:
            k += 1
        e, dd = divmod(hD[k], Q)
        ga, ta = divmod(S[j], Q)
        gb, tb = divmod(S[j + 1] - F - 1, Q)
        qa, qb = ga - e - (ta < dd), gb - e - (tb < dd)
        cuts.append(qb - qa)
        closed.append(j + qa - k)
        hit.append(k > 0 and hrow[k] == j)
        key.append(qa - hit[-1])   # the first part row j owns
        rbase.append(hD[k] + Q - S[j])
    if F < Q:   # the kernel's num_splits without a scan: cuts of rows < p = qa_p - k_p; C from the last hit
        c, r = divmod(total - hD[-1], Q)
        C = c - (len(hrow) - 1) - (r <= F)
        splits = closed + [n + C] * (B + 1 - n)
    else:
        C = sum(cuts)
        splits = [min(p, n) + (sum(cuts[:p]) if p <= n else C) for p in range(B + 1)]
    assert C == sum(cuts) and all(x <= y for x, y in zip(key, key[1:]))

    def last_blk(j):
        return 0 if int(lens[j]) == 0 else S[j + 1] - S[j] - F

    meta = np.zeros((P, 8), np.int64)
    qt = len(hrow) - 1 + C   # parts that end inside the tape
    split = split_of(splits)
    for q in range(P):
        flags = (False, False)
        if q >= qt:   # the tape ends inside part q
            end, nxt = (n - 1, last_blk(n - 1)), (-1, 0, 0)
            flags = (q == qt and split(n - 1), False)
        else:
            j = max(i for i in range(n) if key[i] <= q)
            qa = key[j] + hit[j]
            if hit[j] and q + 1 == qa:   # part q ends in the first F units of row j
                end, nxt = (j - 1, last_blk(j - 1)), (j, 0, 0)
                flags = (split(j - 1), split(j))
            else:   # part q cuts row j
                eb = q * Q + rbase[j]
                end, nxt = (j, eb), (j, eb, q - qa + 1)
        store_part_rows(meta, q, end, nxt, layout, B, *flags)
    return meta.astype(np.int32), np.asarray(splits, np.int32)


@pytest.mark.parametrize("seed,B,hi,P", [(0, 1500, 500, 132), (1, 1700, 2000, 256)])
def test_row_path_many_restarts(seed, B, hi, P):
    """Batches whose chain of restarts outgrows the candidate bound, so the walk goes on over every row; the
    same inputs are in test_parity.BOUNDARY_CASES for the kernels."""
    lens = between(np.random.default_rng(seed), B, 0, hi)
    for layout in ("2025", "2026"):
        got = row_path_model(lens, P, 64, 5, B, B, layout)
        want = reference.schedule(lens, P, 64, 5, layout=layout)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def warp_path_model(lens, P: int, bs: int, F: int, n: int, B: int, layout: str = "2025"):
    """tile_scheduler_metadata and num_splits as the warp path computes them (needs a tape total < 2^30)."""
    M = 2**32
    nblk, S, total, Q = tape(lens, P, bs, F, n)
    if F < Q:   # the walk: per row (d, W) of the last restart at or before it
        d = W = K = 0
        qa, hit, rbase, splits = [], [], [], []
        for j in range(n):
            g, t = divmod(S[j], Q)
            h = j > 0 and min((t - d) % M, (t + Q - d) % M) <= F
            if h:
                W, d, K = W + (t < d), t, K + 1
            qa.append(g - W - (t < d))
            hit.append(h)
            rbase.append((d + W * Q + Q - S[j]) % M)
            splits.append(j + qa[-1] - K)
        c, r = divmod(total - (d + W * Q), Q)
        C = c - K - (r <= F)
    else:   # Q <= F: every row after the first restarts
        m = [0]
        for b in nblk:
            m.append(m[-1] + -(-b // Q))
        qa, hit, rbase, splits = m[:n], [j > 0 for j in range(n)], [(Q - x * Q) % M for x in m[:n]], m[:n]
        K, C = n - 1, m[n] - n
    key = [a - h for a, h in zip(qa, hit)]
    assert all(x <= y for x, y in zip(key, key[1:])), "keys must not decrease"
    qt = K + C
    assert qt <= P
    splits += [n + C] * (B + 1 - n)
    lb = [0 if int(lens[j]) == 0 else nblk[j] for j in range(n)]
    meta = np.zeros((P, 8), np.int64)
    split = split_of(splits)
    for q in range(P):
        flags = (False, False)
        if q >= qt:   # the tape ends inside part q
            end, nxt = (n - 1, lb[n - 1]), (-1, 0, 0)
            flags = (q == qt and split(n - 1), False)
        else:
            j = max(i for i in range(n) if key[i] <= q)
            if hit[j] and q + 1 == qa[j]:   # part q ends in the first F units of row j
                end, nxt = (j - 1, lb[j - 1]), (j, 0, 0)
                flags = (split(j - 1), split(j))
            else:   # part q cuts row j
                eb = (q * Q + rbase[j]) % M
                end, nxt = (j, eb), (j, eb, q - qa[j] + 1)
        store_part_rows(meta, q, end, nxt, layout, B, *flags)
    return meta.astype(np.int32), np.asarray(splits, np.int32)


def chain_by_tables(cand, t, W: int, ranks: int, F: int, dmax: int, P: int):
    """The chain of restarts as the mid path finds it on a cluster: rank r sees only its own candidates
    (rows [r W, r W + W), row 0 left out) and tabulates, for every d in [0, dmax] (d = 0 alone on one CTA),
    the restarts in its slice and the d the chain leaves it with; the ranks then follow the chain through
    the tables, and each lists its own restarts from the d it enters with (the kernel walks them, or, with at
    most 32 candidates in the rank, takes them from the hit mask of its table entry at that d: the same
    list as table[d][1] here). Returns the restarts ([0] + rows,
    [0] + their d) or None where the chain leaves the bound (d > dmax or more than P restarts)."""
    def follow(lst, d):   # table_entry (one entry) and walk_candidates (the listing) in ffi/cuda/mid_path.cuh
        hits = []
        for j in lst:
            if d > dmax:
                break
            if 0 <= t[j] - d <= F:
                d = t[j]
                hits.append(j)
        return d, hits

    slices = [[j for j in cand if r * W <= j < r * W + W] for r in range(ranks)]
    tables = [[follow(lst, x) for x in range(dmax + 1 if ranks > 1 else 1)] for lst in slices]
    d = tot = 0
    hrow, hd = [0], [0]
    for lst, table in zip(slices, tables):
        hrow += table[d][1]
        hd += [t[j] for j in table[d][1]]
        tot += len(table[d][1])
        d = table[d][0]
        if d > dmax or tot > P:
            return None
    return hrow, hd


def midpath_geometry(B: int, P: int, bs: int, kmax: int) -> tuple[int, int] | None:
    """(CTAs, rows a thread) of the mid path by the handler's launch decision (core/launch_plan.h), or None where
    the batch takes another path (a device whose clusters are too small for the instances' rows a thread)."""
    d = _ffi.plan_launch(B, min(P, _ffi.PATH_PARTS), max(bs, 64), 5, True, 1, 232448, kmax)
    return (d["cluster"], d["rows_per_thread"]) if d["path"] == 3 else None


def mid_path_model(lens, P: int, bs: int, F: int, n: int, B: int, kmax: int = 16, cap: int = 2048, T: int = 512,
                   layout: str = "2025"):
    """tile_scheduler_metadata and num_splits as the mid path computes them (a cluster of K CTAs for a device
    whose largest cluster is kmax; rank r owns rows [r W, r W + W), its T threads R consecutive rows each), or
    None where the kernel hands the batch to the general path: Q <= L + 1 (every row would be a candidate),
    more than cap / K candidates in a rank (row 0 is not one), or a chain of restarts that outgrows the
    candidate bound. Needs a tape total < 2^30. Restarts never wrap here (d + F <= L < Q), so D = d. The chain
    is walked here over all candidates at once, as the kernel does where a rank expects many candidates;
    where it follows the chain through per-rank tables instead, those must give the same restarts (checked
    for every cluster whose tables fit)."""
    nblk, S, total, Q = tape(lens, P, bs, F, n)
    L = min(128 + 2 * F, 0xFFFF)
    if Q <= L + 1 or F > L:
        return None
    t = [s % Q for s in S]
    cand = [j for j in range(n) if t[j] <= L]   # row 0 (t = 0) first
    geometry = midpath_geometry(B, P, bs, kmax)
    if geometry is None:
        return None
    ranks, R = geometry   # R: the kernel instance's rows a thread
    per = -(-B // ranks)   # rows a rank holds at most
    W = -(-per // R) * R
    if max(np.bincount(np.asarray(cand[1:], dtype=np.int64) // W, minlength=ranks)) > cap // ranks:
        return None   # a rank with more than cap / K candidates (row 0 is not one)
    hrow, hd = [0], [0]
    for j in cand[1:]:   # the chain of restarts, over the candidates only
        if (t[j] - hd[-1]) % Q <= F:
            hrow.append(j)
            hd.append(t[j])
            if hd[-1] + F > L:
                hrow = None
                break
    if ranks > 1 and L - F + 1 <= 256:   # the kernel may follow the chain by tables (kMidStates)
        by_tables = chain_by_tables(cand[1:], t, W, ranks, F, L - F, P)
        assert (by_tables is None) == (hrow is None), "the tables and the walk disagree on leaving the bound"
        assert hrow is None or by_tables == (hrow, hd), "the tables give other restarts than the walk"
    if hrow is None:
        return None
    K = len(hrow) - 1
    c, r = divmod(total - hd[-1], Q)
    C = c - K - (r <= F)
    qt = K + C
    assert ranks & (ranks - 1) == 0 and per <= T * R, (B, kmax, ranks, R)
    lb = [0 if int(lens[j]) == 0 else nblk[j] for j in range(n)]
    meta = np.full((P, 8), -7, np.int64)
    meta[:, 5:] = 0
    splits = [None] * (B + 1)

    def put(q, end, nxt, split_er=False, split_nr=False):
        if q < P:
            store_part_rows(meta, q, end, nxt, layout, B, split_er, split_nr)

    for rank, i in itertools.product(range(ranks), range(T)):   # thread i of a rank: rows [i0, i0 + R)
        i0, r1 = rank * W + i * R, rank * W + W
        if i0 >= r1:   # past the rank's slice: nothing to step
            continue
        k = max(x for x in range(K + 1) if hrow[x] < i0) if i0 > 0 else 0
        d = hd[k]
        nh = hrow[k + 1] if k < K else None
        Sc = S[min(i0, n)]
        qa = (Sc - d) // Q
        nb = (qa + 1) * Q + d
        for j in range(R):
            row = i0 + j
            if row > min(r1 - 1, B):   # the rank writes num_splits[rank W .. rank W + W - 1]
                break
            if row >= n:
                splits[row] = n + C
                continue
            if row == nh:   # a restart: part qa - 1 ended in the first F units of this row
                # row - 1 is split iff part qa - 2 (Q earlier, the same d) cut it; row iff it outgrows Q
                split_prev = qa >= 2 and (qa - 1) * Q + d > S[row - 1]
                put(qa - 1, (row - 1, lb[row - 1]), (row, 0, 0), split_prev, nblk[row] > Q)
                k += 1
                d = hd[k]
                nb = (qa + 1) * Q + d
                nh = hrow[k + 1] if k < K else None
            splits[row] = row + qa - k
            q0, Sj, Sc = qa, Sc, Sc + nblk[row] + F
            while Sc >= nb:   # part qa ends at nb + F: inside this row, or in the next row's first F units
                q, nbo = qa, nb
                qa, nb = qa + 1, nb + Q
                if nbo + F < Sc:
                    put(q, (row, nbo - Sj), (row, nbo - Sj, q - q0 + 1))
    for p in range(ranks * W, B + 1):   # the last rank: entries past every slice
        splits[p] = n + C
    split_last = qt >= 1 and qt * Q + hd[-1] > S[n - 1]   # part qt - 1 cut the last row
    for q in range(max(qt, 0), P):   # the tape ends inside part q
        put(q, (n - 1, lb[n - 1]), (-1, 0, 0), q == qt and split_last)
    return meta.astype(np.int32), np.asarray(splits, np.int32)

@pytest.mark.parametrize("model,sizes,count", [
    (row_path_model, [1, 2, 3, 31, 32, 33, 130, 512, 1000, 1792], 300),
    (warp_path_model, [1, 2, 3, 31, 32, 33, 64, 100, 128, 200, 256, 257, 400, 512], 600),
], ids=["row_path", "warp_path"])
def test_model_matches_reference(model, sizes, count, rng):
    """Each model against the reference on fresh random batches of the sizes its path takes, in both layouts."""
    tried = 0
    while tried < count:
        B = int(rng.choice(sizes))
        P = int(rng.choice([1, 2, 7, 66, 132, 200, 256]))
        F = int(rng.choice([0, 1, 5, 5, 5, 64, 1000, 70_000, 2**20]))
        bs = int(rng.choice([64, 64, 1, 3, 128]))
        lens = mixed(rng, B, ("family", "short"), p=(0.7, 0.3), short_high=600)
        n = B if rng.random() < 0.7 else int(rng.integers(1, B + 1))
        nblk = np.where(lens[:n] <= 1, 1, (lens[:n].astype(np.int64) - 1) // bs + 1)
        if int((nblk + F).sum()) >= 2**30:   # the kernels take the general path there
            continue
        layout = "2026" if rng.random() < 0.5 else "2025"
        got = model(lens, P, bs, F, n, B, layout)
        want = reference.schedule(lens, P, bs, F, num_valid=n, layout=layout)
        what = f"B={B} P={P} F={F} bs={bs} n={n} {layout} lens[:8]={lens[:8].tolist()} seed {rng.seed}"
        assert np.array_equal(got[0], want[0]), f"tile_scheduler_metadata differs: {what}"
        assert np.array_equal(got[1], want[1]), f"num_splits differs: {what}"
        tried += 1


def test_mid_path_model_matches_reference(rng):
    """The mid path's model against the reference on fresh random mid-size batches (where it does not hand the
    batch to the general path), in both layouts."""
    ran = 0
    for _ in range(80):
        B = int(rng.choice([1793, 2048, 4095, 4096, 5000, 8192, 11622, 12288]))
        P = int(rng.choice([1, 7, 66, 132, 256]))
        F = int(rng.choice([0, 1, 5, 5, 5, 64, 127, 128]))
        bs = int(rng.choice([64, 64, 128, 256]))
        lens = mixed(rng, B, ("family", "short", "equal"), short_high=600)
        n = B if rng.random() < 0.7 else int(rng.integers(1, B + 1))
        nblk = np.where(lens[:n] <= 1, 1, (lens[:n].astype(np.int64) - 1) // bs + 1)
        if int((nblk + F).sum()) >= 2**30:   # the kernels take the general path there
            continue
        layout = "2026" if rng.random() < 0.5 else "2025"
        got = mid_path_model(lens, P, bs, F, n, B, kmax=int(rng.choice([1, 2, 4, 8, 16])), layout=layout)
        if got is None:   # the general path runs
            continue
        want = reference.schedule(lens, P, bs, F, num_valid=n, layout=layout)
        what = f"B={B} P={P} F={F} bs={bs} n={n} {layout} lens[:8]={lens[:8].tolist()} seed {rng.seed}"
        assert np.array_equal(got[0], want[0]), f"tile_scheduler_metadata differs: {what}"
        assert np.array_equal(got[1], want[1]), f"num_splits differs: {what}"
        ran += 1
    assert ran >= 20
