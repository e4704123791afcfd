// cuda_kernels.cu: the two CUDA implementations of the scheduler and the XLA FFI handler that picks one.
//
// Both compute the schedule of SPEC.md section 3 in parallel, through its "tape" form:
//   cost_i = num_blocks(len_i) + F, S_i = sum_{k<i} cost_k, Q = ceil(S_n / P), lo_q = F + (q + 1) Q.
//   Part q ends at E_q = lo_q + D_q, where D grows only when a part ends inside the first F units of a row
//   (its "window"): the next part then restarts at that row, D += S_j + F - E_q (at most F).
// Every output follows from the part ends E_q, the row r_q holding each end, and S.
//
//  * "smem" kernel (mla_smem_kernel): one CTA of 1024 threads per batch; the tape lives in dynamic shared
//    memory (smem_bytes(B, P) in schedule_core.h: ~4.25 bytes per row + 36 per part).
//  * "low_smem" kernels (tile_scan_kernel -> part_search_kernel -> splits_kernel): a grid over tiles of 2048
//    rows, the tape in the workspace output, only a fixed 16 KiB of static shared memory per block.
//    The last block of each grid to finish (a completion counter) runs the sequential glue.
// Neither kernel traps or reads outside its buffers, whatever the lengths are.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>

#include "ffi_common.h"
#include "schedule_core.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace mla_meta {
namespace {

constexpr int64_t kInf = INT64_MAX / 4;

__host__ __device__ __forceinline__ int64_t imin64(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ int64_t imax64(int64_t a, int64_t b) { return a > b ? a : b; }
constexpr unsigned kFull = 0xffffffffu;

// One record per part, written by the row search and then by the walker (32 bytes, see kPartRecordBytes).
struct PartRecord {
  int64_t E;      // before the walker: S at row_lo; after: the tape position where the part ends
  int64_t Sr;     // before the walker: S at row_lo + 1; after: S at row r
  int32_t r;      // row holding E (n when E >= total)
  int32_t row_lo; // row holding lo_q (n when lo_q >= total)
  int32_t cut;    // 1 when the part ends strictly inside the blocks of row r
  int32_t run;    // pieces of row r ended by this part and the cuts just before it (valid when cut)
};
static_assert(sizeof(PartRecord) == kPartRecordBytes, "PartRecord size must match schedule_core.h");

// Optional phase timestamps (build with -DMLA_PHASE_TIMING): thread 0 stores clock64() at phase ends into
// the first 64 bytes of the batch's workspace slice (benchmarks/phase_timing.py reads them).
#ifdef MLA_PHASE_TIMING
#define MLA_STAMP(ws, k) \
  do {                   \
    if (threadIdx.x == 0) reinterpret_cast<long long*>(ws)[k] = clock64(); \
  } while (0)
#else
#define MLA_STAMP(ws, k) \
  do {                   \
  } while (0)
#endif

struct Args {
  const int32_t* seqlens;
  const int32_t* num_valid;
  int32_t* meta;
  int32_t* splits;
  uint8_t* ws;
  int64_t B;
  int64_t ws_stride;
  WorkspaceLayout lay;
  Config c;
  int32_t bs_shift;   // log2(block_size_n) when it is a power of two, else -1
  int32_t batch0;   // first batch of this launch (grid.y is capped at 65535)
};

__device__ __forceinline__ int64_t clamp_valid(const Args& a, int64_t g) {
  const int64_t v = a.num_valid[g];
  return v < 0 ? 0 : (v > a.B ? a.B : v);
}

// num_blocks with a shift instead of a division when block_size_n is a power of two (it is 64 in FlashMLA).
__device__ __forceinline__ uint32_t nblk32(int32_t len, const Args& a) {
  if (len <= 1) return 1u;
  const uint32_t x = static_cast<uint32_t>(len - 1);
  return (a.bs_shift >= 0 ? x >> a.bs_shift : x / static_cast<uint32_t>(a.c.block_size_n)) + 1u;
}

__device__ __forceinline__ int64_t row_cost(const int32_t* lens, int64_t i, int64_t n, const Args& a) {
  if (i >= n) return 0;
  return static_cast<int64_t>(nblk32(a.c.topk >= 0 ? a.c.topk : __ldg(lens + i), a)) + a.c.overhead;
}

// ---- warp / block scans ----
template <typename T>
__device__ __forceinline__ T warp_inclusive_sum(T v) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    T o = __shfl_up_sync(kFull, v, d);
    if (lane >= d) v += o;
  }
  return v;
}

template <typename T>
__device__ __forceinline__ T warp_inclusive_max(T v) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    T o = __shfl_up_sync(kFull, v, d);
    if (lane >= d) v = o > v ? o : v;
  }
  return v;
}

// Inclusive block scan (sum or max) of one value per thread; `buf` holds 33 T in shared memory.
// Returns the inclusive value; *total gets the block's total. Contains __syncthreads.
template <bool kMax, typename T>
__device__ T block_inclusive(T v, T* buf, T* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  T w = kMax ? warp_inclusive_max(v) : warp_inclusive_sum(v);
  if (lane == 31) buf[warp] = w;
  __syncthreads();
  if (warp == 0) {
    T x = lane < nwarps ? buf[lane] : T(0);
    T s = kMax ? warp_inclusive_max(x) : warp_inclusive_sum(x);
    buf[lane] = s;   // inclusive over warps
  }
  __syncthreads();
  T before = warp > 0 ? buf[warp - 1] : T(0);
  T res = kMax ? (before > w ? before : w) : before + w;
  *total = buf[nwarps - 1];
  __syncthreads();
  return res;
}

// ---- tape accessors: S(i) for 0 <= i <= n ----
struct SmemTape {   // groups of 32 rows: 31-bit offset in the group (bit 31: length == 0) + int64 group base
  const uint32_t* rel;
  const int64_t* base;
  __device__ __forceinline__ int64_t operator()(int64_t i) const {
    return base[i >> kGroupLog] + (rel[i] & 0x7fffffffu);
  }
};
struct GlobalTape { // tiles of 2048 rows: int64 offset in the tile + int64 tile base
  const int64_t* local;
  const int64_t* tile_off;
  __device__ __forceinline__ int64_t operator()(int64_t i) const {
    return __ldcg(tile_off + (i >> kTileLog)) + __ldcg(local + i);
  }
};

// Largest r in [lo, hi) with S(r) <= x (requires S(lo) <= x).
template <typename Tape>
__device__ int64_t upper_row(const Tape& S, int64_t lo, int64_t hi, int64_t x) {
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) >> 1;
    if (S(mid) <= x) lo = mid; else hi = mid;
  }
  return lo;
}

// Fill row_lo and its band (S at row_lo, row_lo + 1, row_lo + 2; kInf past the tape) for part q.
// The third value is kept in the cut/run slot until the walker has read it.
template <typename Tape>
__device__ void set_row_lo(PartRecord* rec, int q, int64_t r, const Tape& S, int64_t n, int64_t total) {
  int64_t* third = reinterpret_cast<int64_t*>(&rec[q].cut);
  rec[q].r = static_cast<int32_t>(r < n ? r : n);   // every byte of the record is written before it is staged
  if (r >= n) {
    rec[q].row_lo = static_cast<int32_t>(n);
    rec[q].E = total;
    rec[q].Sr = kInf;
    *third = kInf;
  } else {
    rec[q].row_lo = static_cast<int32_t>(r);
    rec[q].E = S(r);
    rec[q].Sr = S(r + 1);
    *third = r + 2 <= n ? S(r + 2) : kInf;
  }
}

// The walker: one warp finds every part end E_q. Lanes hold 32 consecutive parts; D (the accumulated
// restart shift) is common to all parts after the last restart, so one ballot finds the next restart.
template <typename Tape>
__device__ void walk_parts(PartRecord* rec, const Tape& S, int P, int64_t n, int64_t Q, int64_t F) {
  const int lane = threadIdx.x & 31;
  int64_t D = 0;
  for (int base = 0; base < P; base += 32) {
    const int q = base + lane;
    const bool act = q < P;
    int64_t pos = 0, sr = 0, sr1 = kInf, sr2 = kInf;
    int64_t r = n;
    if (act) {
      r = rec[q].row_lo;
      sr = rec[q].E;
      sr1 = rec[q].Sr;
      sr2 = *reinterpret_cast<const int64_t*>(&rec[q].cut);   // S(row_lo + 2), or kInf past the end
      pos = F + (q + 1) * Q + D;
      while (pos >= sr1) {   // D moved us past row_lo: step forward (rare, short)
        ++r;
        sr = sr1;
        sr1 = sr2;
        sr2 = r + 2 <= n ? S(r + 2) : kInf;
      }
    }
    int p = base;   // parts below p in this window are final
    while (true) {
      const bool snap = act && q >= p && r < n && (pos - sr) < F;
      const unsigned m = __ballot_sync(kFull, snap);
      const int last = m ? __ffs(m) - 1 : 31;
      if (act && q >= p && lane <= last) {
        rec[q].E = pos;
        rec[q].Sr = sr;
        rec[q].r = static_cast<int32_t>(r);
      }
      if (!m || last == 31) {
        if (m) D += __shfl_sync(kFull, sr + F - pos, 31);
        break;
      }
      const int64_t disp = __shfl_sync(kFull, sr + F - pos, last);
      D += disp;
      p = base + last + 1;
      if (act && lane > last) {
        pos += disp;   // disp <= F < cost of any row: at most one row forward
        if (pos >= sr1) {
          ++r;
          sr = sr1;
          sr1 = sr2;
          sr2 = r + 2 <= n ? S(r + 2) : kInf;
        }
      }
    }
  }
}

// After the walker: per-part cut flags and split runs (two block scans), the compact list of cut rows,
// and every row of tile_scheduler_metadata. Returns the number of cuts. Contains __syncthreads.
// `last_blk(row)` gives end_block for a part that ends on the boundary after `row`.
template <typename LastBlk>
__device__ int finish_parts(PartRecord* rec, int32_t* cut_rows, int32_t* meta, const LastBlk& last_blk, int P,
                            int64_t n, const Config& c, int64_t* scan_buf) {
  const int64_t F = c.overhead;
  int64_t carry_sum = 0, carry_max = 0;
  for (int c0 = 0; c0 < P; c0 += blockDim.x) {
    const int p = c0 + threadIdx.x;
    int64_t cut = 0, brk = 0;
    int32_t r = 0;
    if (p < P) {
      const PartRecord me = rec[p];
      r = me.r;
      cut = (me.r < n && me.E - me.Sr > F) ? 1 : 0;
      bool b = true;
      if (p > 0) {
        const PartRecord pr = rec[p - 1];
        const bool pcut = pr.r < n && pr.E - pr.Sr > F;
        b = !pcut || pr.r != me.r;
      }
      brk = b ? p : 0;
    }
    int64_t tot_sum, tot_max;
    const int64_t incl = block_inclusive<false>(cut, scan_buf, &tot_sum) + carry_sum;
    int64_t start = block_inclusive<true>(brk, scan_buf, &tot_max);
    start = start > carry_max ? start : carry_max;
    if (p < P) {
      rec[p].cut = static_cast<int32_t>(cut);
      rec[p].run = static_cast<int32_t>(p - start + 1);
      if (cut) cut_rows[incl - 1] = r;
    }
    carry_sum += tot_sum;
    carry_max = carry_max > tot_max ? carry_max : tot_max;
  }
  __syncthreads();
  for (int p = threadIdx.x; p < P; p += blockDim.x) {
    int32_t row[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const PartRecord me = rec[p];
    if (p == 0) {
      row[0] = 0;
    } else {
      const PartRecord pr = rec[p - 1];
      if (pr.r >= n) {
        row[0] = -1;
      } else {
        row[0] = pr.r;
        if (pr.cut) {
          row[1] = static_cast<int32_t>(pr.E - pr.Sr - F);
          row[4] = pr.run;
        }
      }
    }
    if (me.r >= n) {
      row[2] = static_cast<int32_t>(n - 1);
      row[3] = last_blk(n - 1);
    } else if (me.cut) {
      row[2] = me.r;
      row[3] = static_cast<int32_t>(me.E - me.Sr - F);
    } else {   // me.r >= 1 here: E >= F + Q > F, so row 0 cannot end a part on its window
      row[2] = me.r - 1;
      row[3] = last_blk(me.r - 1);
    }
    int4* dst = reinterpret_cast<int4*>(meta + 8 * static_cast<int64_t>(p));
    dst[0] = make_int4(row[0], row[1], row[2], row[3]);
    dst[1] = make_int4(row[4], row[5], row[6], row[7]);
  }
  return static_cast<int>(carry_sum);
}

__device__ void write_empty_meta(int32_t* meta, int P) {
  for (int p = threadIdx.x; p < P; p += blockDim.x) {
    int4* dst = reinterpret_cast<int4*>(meta + 8 * static_cast<int64_t>(p));
    dst[0] = make_int4(-1, 0, -1, 0);
    dst[1] = make_int4(0, 0, 0, 0);
  }
}

// num_splits: splits[0] = 0, splits[i + 1] = i + 1 + #cuts in rows <= i (i < n), then n + C (cuts sorted).
// Positions k0, k0 + stride, ... < k1, one thread each (coalesced across threads). Each thread keeps a
// cursor into the sorted cut rows that only moves forward, so a position costs a compare, not a search.
__device__ __forceinline__ void write_splits_strided(int32_t* splits, int k0, int k1, int stride, int n,
                                                     const int32_t* cuts, int C) {
  if (k0 >= k1) return;
  int lo = 0, hi = C;   // number of cuts with row <= k0 - 1
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (cuts[mid] <= k0 - 1) lo = mid + 1; else hi = mid;
  }
  int cnt = lo;
  int next = cnt < C ? cuts[cnt] : INT32_MAX;
  const int tail = n + C;
  for (int k = k0; k < k1; k += stride) {
    const int i = k - 1;
    while (next <= i) {   // rare: a cut row between this position and the previous one
      ++cnt;
      next = cnt < C ? cuts[cnt] : INT32_MAX;
    }
    splits[k] = k == 0 ? 0 : (i < n ? k + cnt : tail);
  }
}

// Copy lens[0, n) into shared memory: 16-byte loads for the aligned body, all issued before any is stored.
__device__ __forceinline__ void stage_lengths(int32_t* dst, const int32_t* src, int64_t n) {
  const int64_t mis = (reinterpret_cast<uintptr_t>(src) & 15) / 4;
  const int64_t head = imin64(n, mis ? 4 - mis : 0);
  if (threadIdx.x < head) dst[threadIdx.x] = __ldg(src + threadIdx.x);
  const int64_t nvec = (n - head) / 4;
  const int4* s4 = reinterpret_cast<const int4*>(src + head);
  constexpr int kU = 8;
  for (int64_t v0 = threadIdx.x; v0 < nvec; v0 += kU * blockDim.x) {
    int4 x[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int64_t v = v0 + u * blockDim.x;
      if (v < nvec) x[u] = __ldg(s4 + v);
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int64_t v = v0 + u * blockDim.x;
      if (v < nvec) {
        int32_t* d = dst + head + 4 * v;
        d[0] = x[u].x;
        d[1] = x[u].y;
        d[2] = x[u].z;
        d[3] = x[u].w;
      }
    }
  }
  for (int64_t i = head + 4 * nvec + threadIdx.x; i < n; i += blockDim.x) dst[i] = __ldg(src + i);
}

// =============================== the "smem" kernel ===============================
__global__ void __launch_bounds__(1024, 1) mla_smem_kernel(const Args a) {
  extern __shared__ __align__(16) uint8_t smem[];   // the kernel uses no static shared memory
  const int64_t g = a.batch0 + blockIdx.x;
  const int64_t B = a.B;
  const int P = a.c.num_parts;
  const Config c = a.c;
  const int32_t* lens = a.seqlens + g * B;
  int32_t* meta = a.meta + g * P * 8;
  int32_t* splits = a.splits + g * (B + 1);
  const int64_t n = clamp_valid(a, g);
  auto al16 = [](int64_t x) { return (x + 15) / 16 * 16; };
  const int64_t groups = (B + 1 + kGroup - 1) / kGroup;
  uint32_t* rel = reinterpret_cast<uint32_t*>(smem);
  int64_t* gbase = reinterpret_cast<int64_t*>(smem + al16(4 * (B + 1)));
  PartRecord* rec = reinterpret_cast<PartRecord*>(smem + al16(4 * (B + 1)) + al16(8 * (groups + 1)));
  int32_t* cut_rows = reinterpret_cast<int32_t*>(reinterpret_cast<uint8_t*>(rec) + al16(kPartRecordBytes * P));
  int64_t* scan_buf = reinterpret_cast<int64_t*>(reinterpret_cast<uint8_t*>(cut_rows) + al16(4 * P));  // 33

  if (n == 0) {
    write_empty_meta(meta, P);
    for (int64_t k = threadIdx.x; k <= B; k += blockDim.x) splits[k] = 0;
    return;
  }
  uint8_t* ws_g = a.ws + g * a.ws_stride;
  (void)ws_g;
  MLA_STAMP(ws_g, 0);
  // Phase A: stage the lengths in shared memory (rel[] holds them until it is overwritten in place), every
  // load issued before any is used; then costs -> 31-bit offsets inside groups of 32 rows, group sums.
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (c.topk < 0) stage_lengths(reinterpret_cast<int32_t*>(rel), lens, n);
  __syncthreads();
  {   // 32-bit indices: B + 1 < 2^31 (checked on the host)
    const int ni = static_cast<int>(n), Bi = static_cast<int>(B), gn = static_cast<int>(groups);
    const uint32_t F32 = static_cast<uint32_t>(c.overhead);
    for (int gi = warp; gi < gn; gi += nwarps) {
      const int i = gi * kGroup + lane;
      const int32_t len = i < ni ? (c.topk >= 0 ? c.topk : static_cast<int32_t>(rel[i])) : 1;
      const uint32_t v = i < ni ? nblk32(len, a) + F32 : 0u;
      const uint32_t incl = warp_inclusive_sum(v);   // < 2^31 per group (smem_supported)
      if (i <= Bi) rel[i] = (incl - v) | (i < ni && len == 0 ? 0x80000000u : 0u);
      if (lane == 31) gbase[gi] = incl;
    }
  }
  __syncthreads();
  // Group bases: exclusive scan of group sums.
  int64_t carry = 0;
  for (int64_t c0 = 0; c0 < groups; c0 += blockDim.x) {
    const int64_t gi = c0 + threadIdx.x;
    const int64_t v = gi < groups ? gbase[gi] : 0;
    int64_t tot;
    const int64_t incl = block_inclusive<false>(v, scan_buf, &tot);
    if (gi < groups) gbase[gi] = carry + incl - v;
    carry += tot;
  }
  if (threadIdx.x == 0) gbase[groups] = carry;
  __syncthreads();
  const SmemTape S{rel, gbase};
  const int64_t total = S(n);
  const int64_t F = c.overhead;
  const int64_t Q = ceil_div(total, P);
  MLA_STAMP(ws_g, 1);
  // Phase B: the row holding each lo_q.
  for (int q = threadIdx.x; q < P; q += blockDim.x) {
    const int64_t lo = F + (q + 1) * Q;
    const int64_t r = lo >= total ? n : upper_row(S, 0, n, lo);
    set_row_lo(rec, q, r, S, n, total);
  }
  __syncthreads();
  MLA_STAMP(ws_g, 2);
  // Phase C: the walker.
  if (warp == 0) walk_parts(rec, S, P, n, Q, F);
  __syncthreads();
  MLA_STAMP(ws_g, 3);
  // Phase D: metadata rows and cut rows (end_block of a row from the tape and its zero-length flag).
  auto last_blk = [&](int64_t r) -> int32_t {
    return (rel[r] >> 31) ? 0 : static_cast<int32_t>(S(r + 1) - S(r) - F);
  };
  const int C = finish_parts(rec, cut_rows, meta, last_blk, P, n, c, scan_buf);
  __syncthreads();
  MLA_STAMP(ws_g, 4);
  // Phase E: num_splits, block-strided positions (coalesced stores).
  write_splits_strided(splits, threadIdx.x, static_cast<int>(B + 1), blockDim.x, static_cast<int>(n), cut_rows, C);
#ifdef MLA_PHASE_TIMING
  __syncthreads();
#endif
  MLA_STAMP(ws_g, 5);
}

// =============================== the "low_smem" kernels ===============================
constexpr int kLowThreads = 256;
constexpr int kStageParts = 1024;   // part records staged in shared memory by the last block (32 KiB)

struct Slice {
  int64_t* local;      // [B + 1] in-tile exclusive offsets
  int64_t* tile_off;   // [tiles + 1]: exclusive offsets of the tiles, written by K2
  PartRecord* rec;
  int32_t* cut_rows;
  int64_t* scal;       // [0] total, [1] Q, [2] n, [3] C
  unsigned* counters;
};

__device__ __forceinline__ Slice slice(const Args& a, int64_t g) {
  uint8_t* b = a.ws + g * a.ws_stride;
  return Slice{reinterpret_cast<int64_t*>(b + a.lay.local), reinterpret_cast<int64_t*>(b + a.lay.tile_off),
               reinterpret_cast<PartRecord*>(b + a.lay.parts), reinterpret_cast<int32_t*>(b + a.lay.cut_rows),
               reinterpret_cast<int64_t*>(b + a.lay.scalars), reinterpret_cast<unsigned*>(b + a.lay.counters)};
}

// K1's per-tile sums (read by every K2 block).
__device__ __forceinline__ int64_t* tile_sums(const Args& a, int64_t g) {
  return reinterpret_cast<int64_t*>(a.ws + g * a.ws_stride + a.lay.tile_sum);
}

// Returns true in exactly one block per batch: the last to finish (all earlier writes visible to it).
__device__ bool last_block_done(unsigned* counter, unsigned nblocks) {
  __shared__ bool is_last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(counter, 1u) == nblocks - 1;
  __syncthreads();
  if (is_last) __threadfence();
  return is_last;
}

// K1: per tile of 2048 positions, in-tile exclusive offsets and the tile sum. Fully parallel. Block 0 also
// clears K2's completion counter (K2 starts only after K1 has finished, in stream order).
__global__ void __launch_bounds__(kLowThreads) tile_scan_kernel(const Args a) {
  __shared__ int64_t warp_tot[kLowThreads / 32];
  const int64_t g = a.batch0 + blockIdx.y;
  const Slice s = slice(a, g);
  const int64_t B = a.B, n = clamp_valid(a, g);
  const int32_t* lens = a.seqlens + g * B;
  const int64_t t = blockIdx.x, tile0 = t * kTile;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (t == 0 && threadIdx.x == 0) s.counters[1] = 0;
  constexpr int kPerWarp = kTile / (kLowThreads / 32);   // 256 positions per warp
  const int64_t w0 = tile0 + warp * kPerWarp;
  int64_t cost[kPerWarp / 32];
#pragma unroll
  for (int j = 0; j < kPerWarp / 32; ++j) cost[j] = row_cost(lens, w0 + j * 32 + lane, n, a);
  int64_t run = 0;
  int64_t pre[kPerWarp / 32];
#pragma unroll
  for (int j = 0; j < kPerWarp / 32; ++j) {
    const int64_t incl = warp_inclusive_sum(cost[j]);
    pre[j] = run + incl - cost[j];
    run += __shfl_sync(kFull, incl, 31);
  }
  if (lane == 0) warp_tot[warp] = run;
  __syncthreads();
  int64_t off = 0;
  for (int w = 0; w < warp; ++w) off += warp_tot[w];
#pragma unroll
  for (int j = 0; j < kPerWarp / 32; ++j) {
    const int64_t i = w0 + j * 32 + lane;
    if (i <= B) s.local[i] = off + pre[j];
  }
  if (threadIdx.x == 0) {
    int64_t tot = 0;
    for (int w = 0; w < kLowThreads / 32; ++w) tot += warp_tot[w];
    tile_sums(a, g)[t] = tot;
  }
}

// K2: every block reduces the tile sums itself (its tile's offset and the total), so no serial scan is
// needed; blocks whose tile holds some lo_q find those rows in a shared-memory copy of the tile. The last
// block stages the part records in shared memory, runs the walker and writes tile_scheduler_metadata.
__global__ void __launch_bounds__(kLowThreads) part_search_kernel(const Args a) {
  __shared__ __align__(16) uint8_t stage[kStageParts * sizeof(PartRecord)];   // tile copy, then part records
  __shared__ int64_t scan_buf[33];
  int64_t* tile_s = reinterpret_cast<int64_t*>(stage);
  const int64_t g = a.batch0 + blockIdx.y;
  const Slice s = slice(a, g);
  const int64_t B = a.B, n = clamp_valid(a, g);
  const int P = a.c.num_parts;
  const int64_t F = a.c.overhead;
  const int64_t* sums = tile_sums(a, g);
  const int64_t t = blockIdx.x, nt = gridDim.x, tile0 = t * kTile;
  // offset of this tile and the total, from all tile sums
  int64_t before = 0, all = 0;
  for (int64_t k = threadIdx.x; k < nt; k += blockDim.x) {
    const int64_t v = __ldcg(sums + k);
    all += v;
    if (k < t) before += v;
  }
  int64_t total;
  block_inclusive<false>(before, scan_buf, &before);   // block totals
  block_inclusive<false>(all, scan_buf, &total);
  const int64_t Q = n > 0 ? ceil_div(total, P) : 0;
  const int64_t a0 = before, a1 = before + __ldcg(sums + t);
  if (threadIdx.x == 0) {
    s.tile_off[t] = a0;
    if (t == nt - 1) s.tile_off[nt] = total;
    if (t == 0) {
      s.scal[0] = total;
      s.scal[1] = Q;
      s.scal[2] = n;
    }
  }
  if (n > 0) {
    // parts q with a0 <= lo_q < a1 (lo_q = F + (q + 1) Q), lo_q < total
    int64_t qa = a0 - F <= 0 ? 0 : ceil_div(a0 - F, Q) - 1;
    int64_t qb = a1 - F <= 0 ? 0 : ceil_div(a1 - F, Q) - 1;
    qa = qa < 0 ? 0 : qa;
    qb = qb > P ? P : qb;
    if (qa < qb && tile0 < n) {
      const int64_t rows = imin64(kTile, n - tile0);   // search rows [tile0, tile0 + rows)
      for (int k = threadIdx.x; k < rows; k += blockDim.x) tile_s[k] = __ldcg(s.local + tile0 + k);
      __syncthreads();
      // S for rows of this tile and the next (the band may cross into it; its offset is a1)
      auto S_near = [&](int64_t i) -> int64_t {
        if (i >= n) return i == n ? total : kInf;
        return i < tile0 + kTile ? a0 + tile_s[i - tile0] : a1 + __ldcg(s.local + i);
      };
      for (int64_t q = qa + threadIdx.x; q < qb; q += blockDim.x) {
        const int64_t x = F + (q + 1) * Q - a0;
        int lo_i = 0, hi_i = static_cast<int>(rows);
        while (hi_i - lo_i > 1) {
          const int mid = (lo_i + hi_i) >> 1;
          if (tile_s[mid] <= x) lo_i = mid; else hi_i = mid;
        }
        const int64_t r = tile0 + lo_i;
        PartRecord& rq = s.rec[q];
        rq.r = static_cast<int32_t>(r);   // overwritten by the walker; written so no byte is read uninitialized
        rq.row_lo = static_cast<int32_t>(r);
        rq.E = S_near(r);
        rq.Sr = S_near(r + 1);
        *reinterpret_cast<int64_t*>(&rq.cut) = S_near(r + 2);   // third band value, until the walker
      }
    }
    if (t == 0) {   // parts whose lo_q is past the end of the tape
      const int64_t qt = total - F <= 0 ? 0 : ceil_div(total - F, Q) - 1;
      for (int64_t q = imax64(qt, 0) + threadIdx.x; q < P; q += blockDim.x) {
        PartRecord& rq = s.rec[q];
        rq.r = static_cast<int32_t>(n);
        rq.row_lo = static_cast<int32_t>(n);
        rq.E = total;
        rq.Sr = kInf;
        *reinterpret_cast<int64_t*>(&rq.cut) = kInf;
      }
    }
  }
  if (!last_block_done(&s.counters[1], nt)) return;
  int32_t* meta = a.meta + g * P * 8;
  if (n == 0) {
    write_empty_meta(meta, P);
    if (threadIdx.x == 0) s.scal[3] = 0;
    return;
  }
  PartRecord* rec = s.rec;
  if (P <= kStageParts) {   // stage the records: the walker and finish_parts then touch only shared memory
    __syncthreads();
    PartRecord* st = reinterpret_cast<PartRecord*>(stage);
    const int4* src = reinterpret_cast<const int4*>(s.rec);
    int4* dst = reinterpret_cast<int4*>(st);
    for (int k = threadIdx.x; k < P * 2; k += blockDim.x) dst[k] = __ldcg(src + k);
    rec = st;
    __syncthreads();
  }
  const GlobalTape S{s.local, s.tile_off};
  if ((threadIdx.x >> 5) == 0) walk_parts(rec, S, P, n, Q, F);
  __syncthreads();
  const int32_t* lens = a.seqlens + g * B;
  const Config c = a.c;
  auto last_blk = [&](int64_t r) -> int32_t {
    return last_block(c.topk >= 0 ? c.topk : __ldg(lens + r), c.block_size_n);
  };
  const int C = finish_parts(rec, s.cut_rows, meta, last_blk, P, n, c, scan_buf);
  if (threadIdx.x == 0) s.scal[3] = C;
}

// K3: num_splits over a grid; the sorted cut rows are staged in shared memory when they fit.
constexpr int kSplitsPerThread = 4;
constexpr int kCutStage = 4096;
__global__ void __launch_bounds__(kLowThreads) splits_kernel(const Args a) {
  __shared__ int32_t cuts_s[kCutStage];
  const int64_t g = a.batch0 + blockIdx.y;
  const Slice s = slice(a, g);
  const int64_t B = a.B;
  const int64_t n = __ldcg(s.scal + 2);
  const int C = static_cast<int>(__ldcg(s.scal + 3));
  const int32_t* cuts = s.cut_rows;
  if (C <= kCutStage) {
    for (int k = threadIdx.x; k < C; k += blockDim.x) cuts_s[k] = __ldcg(s.cut_rows + k);
    __syncthreads();
    cuts = cuts_s;
  }
  int32_t* splits = a.splits + g * (B + 1);
  const int64_t per_block = static_cast<int64_t>(blockDim.x) * kSplitsPerThread;
  const int64_t k0 = blockIdx.x * per_block;
  write_splits_strided(splits, static_cast<int>(k0 + threadIdx.x), static_cast<int>(imin64(k0 + per_block, B + 1)),
                       blockDim.x, static_cast<int>(n), cuts, C);
}

// =============================== host side ===============================
std::atomic<int> g_optin[64];        // per device ordinal, 0 = not read yet
std::atomic<int> g_smem_attr[64];    // per device ordinal: dynamic smem limit already raised to the opt-in

int optin_limit(int dev, cudaError_t* err) {
  if (dev >= 0 && dev < 64) {
    const int v = g_optin[dev].load(std::memory_order_relaxed);
    if (v > 0) return v;
  }
  int v = 0;
  *err = cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (*err != cudaSuccess) return 0;
  if (dev >= 0 && dev < 64) g_optin[dev].store(v, std::memory_order_relaxed);
  return v;
}

ffi::Error cuda_error(const char* what, cudaError_t e) {
  return ffi::Error::Internal(std::string("jax_mla_meta: ") + what + ": " + cudaGetErrorString(e));
}

ffi::Error MetaCudaImpl(cudaStream_t stream, int32_t device, ffi::Buffer<ffi::S32> seqlens,
                        ffi::Buffer<ffi::S32> num_valid, ffi::RemainingArgs aliased,
                        ffi::Result<ffi::Buffer<ffi::S32>> meta,
                        ffi::Result<ffi::Buffer<ffi::S32>> splits, ffi::Result<ffi::AnyBuffer> workspace,
                        int32_t num_sm_parts, int32_t block_size_n, int32_t fixed_overhead_num_blocks,
                        int32_t topk, int32_t kernel) {
  const Config c{num_sm_parts, block_size_n, fixed_overhead_num_blocks, topk};
  Shapes sh;
  if (auto e = check_call(seqlens, num_valid, aliased.size(), meta, splits, workspace, c, kernel, &sh); e.failure()) return e;
  if (sh.G == 0) return ffi::Error::Success();
  cudaError_t err = cudaSuccess;
  const int optin = optin_limit(device, &err);
  if (err != cudaSuccess) return cuda_error("reading the opt-in shared-memory limit", err);
  const int64_t need = smem_bytes(sh.B, sh.P);
  const bool supported = smem_supported(c.block_size_n, c.overhead);
  const bool fits = need <= optin && supported;
  if (kernel == kSmem && !supported)
    return ffi::Error::InvalidArgument("jax_mla_meta: kernel='smem' does not support block_size_n=" +
                                       std::to_string(c.block_size_n) + " (row costs may exceed 2^26 blocks)");
  if (kernel == kSmem && !fits)
    return ffi::Error::InvalidArgument("jax_mla_meta: kernel='smem' needs " + std::to_string(need) +
                                       " bytes of shared memory, the device allows " + std::to_string(optin));
  const bool use_smem = kernel == kSmem || (kernel == kAuto && fits);
  Args a{};
  a.seqlens = seqlens.typed_data();
  a.num_valid = num_valid.typed_data();
  a.meta = meta->typed_data();
  a.splits = splits->typed_data();
  a.ws = static_cast<uint8_t*>(workspace->untyped_data());
  a.B = sh.B;
  a.lay = workspace_layout(sh.B, sh.P);
  a.ws_stride = a.lay.bytes;
  a.c = c;
  a.bs_shift = (c.block_size_n & (c.block_size_n - 1)) == 0 ? __builtin_ctz(static_cast<unsigned>(c.block_size_n)) : -1;
  if (use_smem) {
    if (need > 48 * 1024 && device >= 0 && device < 64 && !g_smem_attr[device].load()) {
      if ((err = cudaFuncSetAttribute(mla_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin)))
        return cuda_error("raising the shared-memory limit", err);
      g_smem_attr[device].store(1);
    } else if (need > 48 * 1024 && (device < 0 || device >= 64)) {
      if ((err = cudaFuncSetAttribute(mla_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin)))
        return cuda_error("raising the shared-memory limit", err);
    }
  }
  const int64_t nt = num_tiles(sh.B);
  const int64_t split_blocks = ceil_div(sh.B + 1, int64_t(kLowThreads) * kSplitsPerThread);
  for (int64_t g0 = 0; g0 < sh.G; g0 += 65535) {
    const unsigned gn = static_cast<unsigned>(std::min<int64_t>(65535, sh.G - g0));
    a.batch0 = static_cast<int32_t>(g0);
    if (use_smem) {
      mla_smem_kernel<<<gn, 1024, need, stream>>>(a);
    } else {
      tile_scan_kernel<<<dim3(nt, gn), kLowThreads, 0, stream>>>(a);
      part_search_kernel<<<dim3(nt, gn), kLowThreads, 0, stream>>>(a);
      splits_kernel<<<dim3(split_blocks, gn), kLowThreads, 0, stream>>>(a);
    }
    if ((err = cudaGetLastError())) return cuda_error("kernel launch", err);
  }
  return ffi::Error::Success();
}

}  // namespace
}  // namespace mla_meta

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxMlaMetaCuda, mla_meta::MetaCudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Ctx<ffi::DeviceOrdinal>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .RemainingArgs()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int32_t>("num_sm_parts")
                                  .Attr<int32_t>("block_size_n")
                                  .Attr<int32_t>("fixed_overhead_num_blocks")
                                  .Attr<int32_t>("topk")
                                  .Attr<int32_t>("kernel"),
                              {ffi::Traits::kCmdBufferCompatible});

// Host-only helper for plan(): the opt-in limit of a device, or -1 when it cannot be read.
extern "C" int jax_mla_meta_optin_limit(int device) {
  cudaError_t err = cudaSuccess;
  const int v = mla_meta::optin_limit(device, &err);
  return err == cudaSuccess ? v : -1;
}
