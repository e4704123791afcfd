// args.h: the kernels' arguments, one struct passed by value to every kernel. Plain C++ (the handler, compiled by
// the host compiler, fills it; the kernels read it).
#pragma once

#include <cstdint>

#include "core/costs.h"
#include "core/geometry.h"

namespace mla_meta {

struct Config {
  int32_t num_parts;      // P
  int32_t block_size_n;   // 64 in FlashMLA
  int32_t overhead;       // F, fixed_overhead_num_blocks
  int32_t uniform;        // >= 0: every row has this length (sparse rows without per-row inputs); < 0: per row
};

struct Args {
  RowLengths lens;        // batch 0's per-row lengths (core/costs.h); batch g's start g * B rows later
  const int32_t* num_valid;
  int32_t* meta;
  int32_t* splits;
  uint8_t* ws;
  int64_t B;
  int64_t ws_stride;
  WorkspaceLayout lay;
  Config c;
  int32_t layout;         // core/records.h: kLayout2025 or kLayout2026
  int32_t bs_shift;       // log2(block_size_n) when it is a power of two, else -1
  int32_t batch0;         // first batch of this launch (grid.y is capped at 65535)
  int32_t wide;           // low_smem with several chunks per rank: the chunk sums come from the chunk-sums kernel
                          // and num_splits is left to the num_splits kernel (wide_kernels.cu)
};

}  // namespace mla_meta
