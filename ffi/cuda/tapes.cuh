// tapes.cuh: the three ways the general path knows the tape S (rows of one length: S_i = i c; low_smem: sums of
// lengths read from global memory; smem: every rank's slice of S in its shared memory), the part records of
// the general path, and the search of a part's band among one thread's rows.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "lengths.cuh"
#include "ptx.cuh"

namespace mla_meta {
namespace {

// Rows of one length (walk_uniform needs no tape; the metadata pass needs end_block).
struct UniformTape {
  int32_t last_blk_v;
  __device__ int32_t last_blk(int64_t) const { return last_blk_v; }
};
// low_smem, per-row lengths: S(i + 1) = S(i) + cost(len_i), lengths from global memory.
struct LensTape {
  RowLengths lens;
  const Args* a;
  int64_t n;
  __device__ int64_t next(int64_t i, int64_t Si) const { return i < n ? Si + cost_of(row_length(lens, i), *a) : kInf; }
  __device__ int32_t last_blk(int64_t r) const { return last_block(row_length(lens, r), a->c.block_size_n); }
};
// smem, per-row lengths: every rank's slice in its shared memory (groups of 32 rows: 31-bit offset + int64 base).
struct ClusterTape {
  const uint32_t* rel;
  const int64_t* gbase;
  const int64_t* pre;   // this CTA's copy of the rank prefixes
  int64_t n, total, F;
  uint32_t R;           // rows per rank (multiple of 32)
  unsigned rank;
  __device__ __forceinline__ int64_t S(int64_t i, uint32_t* flag = nullptr) const {
    if (i >= n) return total;
    const uint32_t o = static_cast<uint32_t>(i) / R, li = static_cast<uint32_t>(i) - o * R;
    const uint32_t* rl = rel;
    const int64_t* gb = gbase;
    if (o != rank) {
      rl = remote(const_cast<uint32_t*>(rel), o);
      gb = remote(const_cast<int64_t*>(gbase), o);
    }
    const uint32_t v = rl[li];
    if (flag) *flag = v >> 31;
    return pre[o] + gb[li >> kGroupLog] + (v & 0x7fffffffu);
  }
  __device__ int64_t next(int64_t i, int64_t) const { return i < n ? S(i + 1) : kInf; }
  __device__ int32_t last_blk(int64_t r) const {
    uint32_t zero = 0;
    const int64_t s0 = S(r, &zero);
    return zero ? 0 : static_cast<int32_t>(S(r + 1) - s0 - F);
  }
};

__device__ __forceinline__ PartRecord band_record(int64_t r, int64_t s0, int64_t s1, int64_t s2) {
  PartRecord rc;
  rc.E = s0;
  rc.Sr = s1;
  rc.r = static_cast<int32_t>(r);   // every byte is written before the record is copied anywhere
  rc.row_lo = static_cast<int32_t>(r);
  rc.cut = static_cast<int32_t>(static_cast<uint64_t>(s2) & 0xffffffffu);
  rc.run = static_cast<int32_t>(static_cast<uint64_t>(s2) >> 32);
  return rc;
}
__device__ __forceinline__ int64_t band_third(const PartRecord& rc) {
  return static_cast<int64_t>((static_cast<uint64_t>(static_cast<uint32_t>(rc.run)) << 32) |
                              static_cast<uint32_t>(rc.cut));
}
__device__ __forceinline__ void store_record(PartRecord* dst, const PartRecord& rc) {
  const int4* s = reinterpret_cast<const int4*>(&rc);
  int4* d = reinterpret_cast<int4*>(dst);
  d[0] = s[0];
  d[1] = s[1];
}
__device__ __forceinline__ PartRecord load_record(const PartRecord* src, bool global) {
  PartRecord rc;
  int4* d = reinterpret_cast<int4*>(&rc);
  const int4* s = reinterpret_cast<const int4*>(src);
  if (global) {
    d[0] = __ldcg(s);
    d[1] = __ldcg(s + 1);
  } else {
    d[0] = s[0];
    d[1] = s[1];
  }
  return rc;
}
// The band of a part whose lo is at or past the end of the tape.
__device__ __forceinline__ PartRecord past_end_record(int64_t n, int64_t total) {
  return band_record(n, total, kInf, kInf);
}

// The band around tape position x among the 8 rows [i0, i0 + 8) of one thread, whose first row starts at
// tape position s (s <= x < S(min(i0 + 8, r1))): the row r holding x, S(r), S(r + 1), S(r + 2) (kInf past the
// tape). All 9 lengths are loaded at once (one memory round trip).
__device__ __forceinline__ PartRecord band_in_thread(const Args& a, const RowLengths& lens, int64_t i0, int64_t n,
                                                     int64_t s, int64_t x) {
  int32_t len[kV + 1];
#pragma unroll
  for (int j = 0; j <= kV; ++j) len[j] = i0 + j < n ? row_length(lens, i0 + j) : 1;
  int64_t r = i0 + kV - 1, s0 = s, s1 = 0, s2 = kInf;
  bool found = false;
#pragma unroll
  for (int j = 0; j < kV; ++j) {
    const int64_t cj = cost_of(len[j], a);
    if (!found && (x < s0 + cj || j == kV - 1)) {
      found = true;
      r = i0 + j;
      s1 = s0 + cj;
      s2 = r + 1 < n ? s1 + cost_of(len[j + 1], a) : kInf;
    } else if (!found) {
      s0 += cj;
    }
  }
  return band_record(r, s0, s1, s2);
}

}  // namespace
}  // namespace mla_meta
