// meta_rows.cuh: the one writer of tile_scheduler_metadata rows on the GPU, in both layouts (core/records.h
// defines the packing, columns_of its columns; pack_row is shared with the CPU handler). Every path calls these:
//  * store_meta_row: a whole row, from the ends of a part and of its predecessor (the general path);
//  * store_part_rows: part q's end in row q and its successor's begin in row q + 1 (the warp, row and mid paths,
//    where the thread that finds a part's end knows where the next part begins);
//  * store_empty_rows: every row of a batch with no valid rows.
// The 2026 flags: a part's first row is split iff it begins inside it, or a part of one row ends inside it; its
// last row is split iff it ends inside it, or a part of one row began inside it (FlashMLA's rule, checked equal to
// "the row has more than one piece" in tests/test_reference.py). A half writer knows its row's fields only; the
// callers pass whether the row at a part's end (on a row boundary) and the row where the next part restarts are
// split, each computed where it is known (the cut case needs nothing: both rows are the cut row, split).
#pragma once

#include <cstdint>

#include "common.cuh"

namespace mla_meta {
namespace {

// Where a batch's rows go, and how they are packed.
struct MetaOut {
  int32_t* meta;    // the batch's [P, 8] (null: this rank writes no metadata)
  int32_t layout;   // kLayout2025 or kLayout2026
  int32_t B;        // begin_req of a part with no work in 2026
};

__device__ __forceinline__ void store_row(int32_t* dst, const int32_t (&row)[8]) {
  int4* d = reinterpret_cast<int4*>(dst);
  d[0] = make_int4(row[0], row[1], row[2], row[3]);
  d[1] = make_int4(row[4], row[5], row[6], row[7]);
}

// Part q's row from its final end (row r, a cut inside it ending at block blk) and the final end of part q - 1
// (pr, pcut, pblk, prun: the pieces of row pr ended so far; unused for q = 0). `T` gives end_block of a part that
// ends on a row boundary.
template <typename Tape>
__device__ __forceinline__ void store_meta_row(const MetaOut& out, int q, int32_t pr, bool pcut, int32_t pblk,
                                               int32_t prun, int32_t r, bool cut, int32_t blk, int64_t n,
                                               const Tape& T) {
  const bool idle = q > 0 && pr >= n;
  const bool cont = q > 0 && !idle && pcut;   // part q continues row pr
  const int32_t br = q == 0 ? 0 : (idle ? -1 : pr);
  int32_t er, eb;
  bool end_cut = false;
  if (r >= n) {
    er = static_cast<int32_t>(n - 1);
    eb = T.last_blk(n - 1);
  } else if (cut) {
    er = r;
    eb = blk;
    end_cut = true;
  } else {   // r >= 1 here: E >= F + Q > F, so row 0 cannot end a part on its window
    er = r - 1;
    eb = T.last_blk(r - 1);
  }
  bool first = false, last = false;
  if (!idle) split_flags(br, cont ? pblk : 0, er, end_cut, first, last);
  int32_t row[8];
  pack_row(row, out.layout, out.B, br, cont ? pblk : 0, cont ? prun : 0, er, eb, first, last);
  store_row(out.meta + 8 * static_cast<int64_t>(q), row);
}

// Part q ends at end_req er, end_block eb; part q + 1 begins at row nr (< 0: no work left), block nb, split slot
// ns. nr == er means part q ends strictly inside row er (a cut) and part q + 1 continues it. Otherwise part q
// ends on the boundary after row er, and the 2026 flags need `split_er` (row er has more than one piece) and
// `split_nr` (row nr does); both are ignored in the 2025 layout. Part 0 also writes row 0's begin.
__device__ __forceinline__ void store_part_rows(const MetaOut& out, int q, int P, int er, int eb, int nr, int nb,
                                                int ns, bool split_er = false, bool split_nr = false) {
  int32_t* meta = out.meta;
  if (out.layout == kLayout2026) {
    constexpr Columns c = columns_of(kLayout2026);
    static_assert(c.first_split == c.begin_split + 1 && c.begin_split % 2 == 0, "(begin_split, first) as an int2");
    const bool cut = nr == er;
    int32_t* row = meta + 8 * q;
    row[c.end_req] = er;
    row[c.end_block] = eb;
    row[c.last_split] = cut || split_er ? 1 : 0;
    if (q + 1 < P) {
      int32_t* next = row + 8;
      const bool idle = nr < 0;
      next[c.begin_req] = idle ? out.B : nr;
      next[c.begin_block] = nb;
      *reinterpret_cast<int2*>(next + c.begin_split) = make_int2(ns, !idle && (cut || split_nr) ? 1 : 0);
      next[7] = 0;   // the column no field uses
    }
    if (q == 0) {   // row 0 is split iff part 0 cuts it
      row[c.begin_req] = 0;
      row[c.begin_block] = 0;
      *reinterpret_cast<int2*>(row + c.begin_split) = make_int2(0, cut && er == 0 ? 1 : 0);
      row[7] = 0;
    }
    return;
  }
  constexpr Columns c = columns_of(kLayout2025);
  static_assert(c.end_block == c.end_req + 1 && c.end_req % 2 == 0 && c.begin_block == c.begin_req + 1 &&
                    c.begin_req % 2 == 0 && c.begin_split == 4,
                "(end_req, end_block) and (begin_req, begin_block) as int2, begin_split and three zeros as an int4");
  *reinterpret_cast<int2*>(meta + 8 * q + c.end_req) = make_int2(er, eb);
  if (q + 1 < P) {
    *reinterpret_cast<int2*>(meta + 8 * (q + 1) + c.begin_req) = make_int2(nr, nb);
    *reinterpret_cast<int4*>(meta + 8 * (q + 1) + c.begin_split) = make_int4(ns, 0, 0, 0);
  }
  if (q == 0) {
    *reinterpret_cast<int2*>(meta + c.begin_req) = make_int2(0, 0);
    *reinterpret_cast<int4*>(meta + c.begin_split) = make_int4(0, 0, 0, 0);
  }
}

// Every row of a batch with no valid rows (all threads of the CTA).
__device__ __forceinline__ void store_empty_rows(const MetaOut& out, int P) {
  int32_t row[8];
  pack_row(row, out.layout, out.B, -1, 0, 0, -1, 0, false, false);
  for (int p = threadIdx.x; p < P; p += blockDim.x) store_row(out.meta + 8 * static_cast<int64_t>(p), row);
}

}  // namespace
}  // namespace mla_meta
