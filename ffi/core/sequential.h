// sequential.h: the walk of docs/spec.md section 4, exactly as written there, for one batch (the CPU handler).
#pragma once

#include <cstdint>

#include "costs.h"
#include "records.h"

namespace mla_meta {

// One batch of B rows of which the first n are scheduled. `len(i)` gives row i's cost length (costs.h).
// `meta` is [P, 8] in `layout`; `splits` is [B + 1], entries past n repeat splits[n]. Sums are 64-bit.
template <typename Len>
void schedule_sequential(const Len& len, int64_t n, int64_t B, int32_t P, int32_t block_size_n, int32_t F,
                         int32_t layout, int32_t* meta, int32_t* splits) {
  int64_t total = 0;
  for (int64_t i = 0; i < n; ++i) total += num_blocks(len(i), block_size_n) + F;
  const int64_t payload = (n > 0 ? ceil_div(total, P) : 0) + F;
  int64_t i = 0, blk = 0, split = 0, cum = 0;
  splits[0] = 0;
  for (int64_t p = 0; p < P; ++p) {
    const int64_t b = i < n ? i : -1, bb = blk, bs = split;
    int64_t rem = payload;
    while (i < n) {
      const int64_t left = num_blocks(len(i), block_size_n) - blk;
      if (rem >= left + F) {
        cum += split + 1;
        splits[i + 1] = static_cast<int32_t>(cum);
        rem -= left + F;
        ++i;
        blk = split = 0;
      } else {
        if (rem - F > 0) {
          blk += rem - F;
          ++split;
          rem = 0;
        }
        break;
      }
    }
    int64_t e, eb;
    bool end_cut;
    if (blk > 0) {
      e = i;
      eb = blk;
      end_cut = true;
    } else {
      e = i - 1;
      eb = n == 0 ? 0 : last_block(len(i - 1), block_size_n);
      end_cut = false;
    }
    bool first = false, last = false;
    if (b >= 0) split_flags(static_cast<int32_t>(b), static_cast<int32_t>(bb), static_cast<int32_t>(e), end_cut,
                            first, last);
    int32_t row[8];
    pack_row(row, layout, B, static_cast<int32_t>(b), static_cast<int32_t>(bb), static_cast<int32_t>(bs),
             static_cast<int32_t>(e), static_cast<int32_t>(eb), first, last);
    for (int k = 0; k < 8; ++k) meta[8 * p + k] = row[k];
  }
  for (int64_t k = n + 1; k <= B; ++k) splits[k] = static_cast<int32_t>(cum);
}

}  // namespace mla_meta
