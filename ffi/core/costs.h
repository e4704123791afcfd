// costs.h: the cost of a row (docs/spec.md section 3), the one C++ statement of it. The CPU handler and
// every path of the CUDA kernels take a row's length from here; jax_mla_meta/costs.py is the same rule in Python.
//
//   dense rows:  len = seqlens[i]
//   sparse rows: cur = topk_length[i] (or topk); 0 becomes 1; with an extra KV cache
//                cur = ceil_to_64(cur) + extra_topk_length[i] (or extra_topk). 32-bit two's-complement
//                arithmetic with truncating division, as FlashMLA's C `int` code computes it on the GPU.
//   blocks:      max(len - 1, 0) / block_size_n + 1 (a zero or negative length still costs one block).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MLA_HD __host__ __device__ __forceinline__
#else
#define MLA_HD inline
#endif

namespace mla_meta {

MLA_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Number of KV blocks a row of length `len` costs: a zero or negative length still costs one block.
MLA_HD int64_t num_blocks(int32_t len, int32_t block_size_n) {
  // len - 1 fits in 32 bits here; an unsigned 32-bit division is much cheaper than a 64-bit one on GPUs.
  return len <= 1 ? 1 : static_cast<int64_t>(static_cast<uint32_t>(len - 1) / static_cast<uint32_t>(block_size_n)) + 1;
}

// end_block written when a part ends on the boundary after a row of length `len` (0 when the length is 0).
MLA_HD int32_t last_block(int32_t len, int32_t block_size_n) {
  return len == 0 ? 0 : static_cast<int32_t>(num_blocks(len, block_size_n));
}

// A sparse row's length (the 2026 rule): `cur` is topk_length[i] or topk, `extra` the extra cache's length.
// `zero_is_one` is false only for the 2025 contract's topk-only rows (the length is topk itself).
MLA_HD int32_t sparse_len(int32_t cur, bool extra_on, int32_t extra, bool zero_is_one = true) {
  if (zero_is_one && cur == 0) cur = 1;
  if (!extra_on) return cur;
  const int32_t up = static_cast<int32_t>(static_cast<uint32_t>(cur) + 63u) / 64;   // C: (cur + 63) / 64
  return static_cast<int32_t>(static_cast<uint32_t>(up) * 64u + static_cast<uint32_t>(extra));
}

// Where a batch's per-row lengths come from (the kernels' "rows mode": dense, or sparse with per-row inputs).
struct RowLengths {
  const int32_t* x;    // dense: seqlens; sparse: topk_length, or null (every row has `topk`)
  const int32_t* y;    // sparse: extra_topk_length, or null (every row has `extra`)
  int32_t topk;        // sparse without topk_length
  int32_t extra;       // extra_topk
  bool sparse;         // false: len = x[i]
  bool extra_on;       // an extra cache: extra_topk > 0 or extra_topk_length given

  // The length of row i from its raw inputs (x[i] or topk; y[i] or extra).
  MLA_HD int32_t of(int32_t xv, int32_t yv) const { return sparse ? sparse_len(xv, extra_on, yv) : xv; }
  // Host side (the CPU handler): row i of the batch at `offset`.
  int32_t at(int64_t offset, int64_t i) const {
    return of(x ? x[offset + i] : topk, y ? y[offset + i] : extra);
  }
};

// What the call's attributes say about a batch's lengths: every row the same (`uniform` >= 0, its length), or
// per-row (`uniform` < 0, `rows` tells where). `error` is set when the static inputs cannot be represented.
struct LengthSpec {
  int32_t uniform;
  RowLengths rows;
  const char* error;
};

// topk < 0: dense. Otherwise sparse with topk, extra_topk >= 0 (0: none), and which per-row inputs are given;
// `layout_2026` selects the 2026 rule for topk-only rows (the 2025 contract takes topk itself).
inline LengthSpec length_spec(int32_t topk, int32_t extra_topk, bool has_topk_length, bool has_extra_length,
                              bool layout_2026, const int32_t* seqlens, const int32_t* topk_length,
                              const int32_t* extra_length) {
  LengthSpec s{-1, RowLengths{seqlens, nullptr, 0, 0, false, false}, nullptr};
  if (topk < 0) {
    if (has_topk_length || has_extra_length || extra_topk != 0)
      s.error = "topk_length, extra_topk and extra_topk_length need sparse mode (topk >= 0)";
    return s;
  }
  if (extra_topk < 0) {
    s.error = "extra_topk must be >= 0 (0: no extra cache)";
    return s;
  }
  const bool extra_on = extra_topk > 0 || has_extra_length;
  if (has_topk_length || has_extra_length) {
    s.rows = RowLengths{has_topk_length ? topk_length : nullptr, has_extra_length ? extra_length : nullptr, topk,
                        extra_topk, true, extra_on};
    return s;
  }
  if (extra_on) {   // every row: ceil_to_64(max(topk, 1)) + extra_topk, which must fit in int32
    const int64_t up = (static_cast<int64_t>(topk == 0 ? 1 : topk) + 63) / 64 * 64;
    if (up + extra_topk > INT32_MAX) {
      s.error = "topk rounded up to 64 plus extra_topk must stay below 2^31";
      return s;
    }
  }
  s.uniform = sparse_len(topk, extra_on, extra_topk, layout_2026 || extra_on);
  return s;
}

}  // namespace mla_meta
