// records.h: a part's row of tile_scheduler_metadata in both layouts (docs/spec.md section 5), the one
// place that knows the columns. jax_mla_meta/layouts.py is the same table in Python.
//
//   2025: [begin_req, begin_block, end_req, end_block, begin_split, 0, 0, 0]            no work: begin_req = -1
//   2026: [begin_req, end_req, begin_block, end_block, begin_split, first_split, last_split, 0]   no work: B
//
// A part with no work (every part after the one that holds the end of the tape) has begin_block = begin_split
// = 0, end_req = n - 1 and the end_block the walk leaves there, flags 0. The 2026 flags say whether the part's
// first / last row is split (cut into more than one piece).
#pragma once

#include <cstdint>

#include "costs.h"

namespace mla_meta {

enum Layout : int32_t { kLayout2025 = 0, kLayout2026 = 1 };

// begin_req of a part with no work.
MLA_HD int32_t idle_begin(int32_t layout, int64_t B) { return layout == kLayout2026 ? static_cast<int32_t>(B) : -1; }

// The column of each field in a layout (-1: the layout has none); every other column is 0. The one table of
// the packing in C++: pack_row below and the half writers of cuda/meta_rows.cuh index rows through it.
struct Columns {
  int begin_req, begin_block, end_req, end_block, begin_split, first_split, last_split;
};
constexpr Columns columns_of(int32_t layout) {
  return layout == kLayout2026 ? Columns{0, 2, 1, 3, 4, 5, 6} : Columns{0, 1, 2, 3, 4, -1, -1};
}

// A whole row, from the fields of the walk (begin_req < 0: no work left) and whether its first and last rows are
// split. Every index is a constant, so that on the GPU the row stays in registers.
MLA_HD void pack_row(int32_t (&row)[8], int32_t layout, int64_t B, int32_t begin_req, int32_t begin_block,
                     int32_t begin_split, int32_t end_req, int32_t end_block, bool first_split, bool last_split) {
  const bool idle = begin_req < 0;
  const int32_t b = idle ? idle_begin(layout, B) : begin_req;
  const int32_t bb = idle ? 0 : begin_block, bs = idle ? 0 : begin_split;
  if (layout == kLayout2026) {
    constexpr Columns c = columns_of(kLayout2026);
    static_assert(c.begin_req == 0 && c.end_req == 1 && c.begin_block == 2 && c.end_block == 3 &&
                      c.begin_split == 4 && c.first_split == 5 && c.last_split == 6,
                  "stored in column order; column 7 is unused");
    row[c.begin_req] = b;
    row[c.end_req] = end_req;
    row[c.begin_block] = bb;
    row[c.end_block] = end_block;
    row[c.begin_split] = bs;
    row[c.first_split] = !idle && first_split ? 1 : 0;
    row[c.last_split] = !idle && last_split ? 1 : 0;
    row[7] = 0;
  } else {
    constexpr Columns c = columns_of(kLayout2025);
    static_assert(c.begin_req == 0 && c.begin_block == 1 && c.end_req == 2 && c.end_block == 3 &&
                      c.begin_split == 4 && c.first_split < 0 && c.last_split < 0,
                  "stored in column order; columns 5-7 are unused");
    row[c.begin_req] = b;
    row[c.begin_block] = bb;
    row[c.end_req] = end_req;
    row[c.end_block] = end_block;
    row[c.begin_split] = bs;
    row[5] = row[6] = row[7] = 0;
  }
}

// FlashMLA's flags from the fields alone (first: the part starts inside its first row; last: it ends inside its
// last row; a part of one row: either). `end_cut` is end_block < the row's blocks for a row of nonzero length.
MLA_HD void split_flags(int32_t begin_req, int32_t begin_block, int32_t end_req, bool end_cut, bool& first,
                        bool& last) {
  first = begin_block != 0;
  last = end_cut;
  if (begin_req == end_req) first = last = first || last;
}

}  // namespace mla_meta
