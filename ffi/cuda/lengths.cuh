// lengths.cuh: how the kernels read a row's length and cost. Every path reads lengths through these functions,
// which apply the one cost rule of core/costs.h: dense rows take seqlens, sparse rows with per-row inputs take
// the 2026 rule's length from topk_length / extra_topk_length. (Rows of one length, sparse without per-row inputs,
// need no reads: Config::uniform.)
#pragma once

#include <cstdint>

#include "common.cuh"
#include "scans.cuh"

namespace mla_meta {
namespace {

// Batch g's lengths: the per-row pointers moved to its rows.
__device__ __forceinline__ RowLengths batch_lengths(const Args& a, int64_t g) {
  RowLengths L = a.lens;
  if (L.x) L.x += g * a.B;
  if (L.y) L.y += g * a.B;
  return L;
}

// Row i's length.
__device__ __forceinline__ int32_t row_length(const RowLengths& L, int64_t i) {
  const int32_t x = L.x ? __ldg(L.x + i) : L.topk;
  if (!L.sparse) return x;
  return L.of(x, L.y ? __ldg(L.y + i) : L.extra);
}

// N words of `p` from row i0 (`pad` from row `bound` on), all requested at once (16-byte loads when aligned);
// `fill` for every row when p is null.
template <int N>
__device__ __forceinline__ void load_words(const int32_t* p, int64_t i0, int64_t bound, int32_t pad, int32_t fill,
                                           int32_t (&v)[N]) {
  static_assert(N % 4 == 0, "whole 16-byte groups");
  if (p == nullptr) {
#pragma unroll
    for (int j = 0; j < N; ++j) v[j] = i0 + j < bound ? fill : pad;
    return;
  }
  p += i0;
  if (i0 + N <= bound && (reinterpret_cast<uintptr_t>(p) & 15u) == 0) {
#pragma unroll
    for (int k = 0; k < N / 4; ++k) {
      const int4 x = __ldg(reinterpret_cast<const int4*>(p) + k);
      v[4 * k] = x.x;
      v[4 * k + 1] = x.y;
      v[4 * k + 2] = x.z;
      v[4 * k + 3] = x.w;
    }
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) v[j] = i0 + j < bound ? __ldg(p + j) : pad;
  }
}

// The lengths of rows [i0, i0 + N) (`pad` from row `bound` on).
template <int N>
__device__ __forceinline__ void load_lengths(const RowLengths& L, int64_t i0, int64_t bound, int32_t pad,
                                             int32_t (&len)[N]) {
  load_words<N>(L.x, i0, bound, pad, L.topk, len);
  if (L.sparse) {
    int32_t e[N];
    load_words<N>(L.y, i0, bound, 0, L.extra, e);
#pragma unroll
    for (int j = 0; j < N; ++j)
      if (i0 + j < bound) len[j] = L.of(len[j], e[j]);
  }
}

// num_blocks with a shift instead of a division when block_size_n is a power of two (it is 64 in FlashMLA).
__device__ __forceinline__ uint32_t nblk32(int32_t len, const Args& a) {
  if (len <= 1) return 1u;
  const uint32_t x = static_cast<uint32_t>(len - 1);
  return (a.bs_shift >= 0 ? x >> a.bs_shift : x / static_cast<uint32_t>(a.c.block_size_n)) + 1u;
}
__device__ __forceinline__ int64_t cost_of(int32_t len, const Args& a) {
  return static_cast<int64_t>(nblk32(len, a)) + a.c.overhead;
}

// A chunk of 8192 rows [c0, c0 + 8192) cut at r1: each thread's 8 row costs (0 past r1), its zero-length
// mask and its exclusive prefix inside the chunk; the chunk's sum.
struct ChunkScan {
  uint32_t cost[kV];
  uint32_t zero;
  int64_t excl;
  int64_t sum;
};

// The 8 lengths of this thread's rows in the chunk at c0 (1 from row `bound` on).
__device__ __forceinline__ void load_chunk_lengths(const RowLengths& L, int64_t c0, int64_t bound,
                                                   int32_t (&len)[kV]) {
  load_lengths<kV>(L, c0 + static_cast<int64_t>(threadIdx.x) * kV, bound, 1, len);
}

// Costs of this thread's rows in the chunk at c0 (0 from r1 on) and their block scan.
__device__ __forceinline__ void scan_chunk(const Args& a, const int32_t (&len)[kV], int64_t c0, int64_t r1,
                                           int64_t* buf, ChunkScan& cs, bool first = false) {
  const int64_t i0 = c0 + static_cast<int64_t>(threadIdx.x) * kV;
  uint32_t zero = 0;
  int64_t tsum = 0;   // a cost is < 2^32; 8 of them may pass 2^32 when block_size_n < 64 (low_smem only)
  const uint32_t F = static_cast<uint32_t>(a.c.overhead);
#pragma unroll
  for (int j = 0; j < kV; ++j) {
    const bool in = i0 + j < r1;
    const uint32_t c = in ? nblk32(len[j], a) + F : 0u;
    cs.cost[j] = c;
    tsum += c;
    if (in && len[j] == 0) zero |= 1u << j;
  }
  cs.zero = zero;
  if (first) MLA_STAMP(kFirstCosts);
  cs.excl = block_exclusive_sum(tsum, buf, &cs.sum);
}

// The costs of one thread's 8 rows [i0, i0 + 8) that lie below r1 (< 2^35).
__device__ __forceinline__ int64_t thread_cost_sum(const Args& a, const int32_t (&len)[kV], int64_t i0, int64_t r1) {
  const uint32_t F32 = static_cast<uint32_t>(a.c.overhead);
  int64_t tsum = 0;
#pragma unroll
  for (int j = 0; j < kV; ++j) tsum += i0 + j < r1 ? nblk32(len[j], a) + F32 : 0u;
  return tsum;
}

}  // namespace
}  // namespace mla_meta
