// common.cuh: what every CUDA file of the scheduler shares: the kernel arguments (Args), the shared-memory
// structs, small integer helpers and the optional phase stamps. docs/architecture.md says which file owns what.
//
// The kernels compute the walk of docs/spec.md section 4 in parallel, through its "tape" form:
//   cost_i = num_blocks(len_i) + F, S_i = sum_{k<i} cost_k, Q = ceil(S_n / P), lo_q = F + (q + 1) Q.
//   Part q ends at E_q = lo_q + D_q, where D grows only when a part ends inside the first F units of a row
//   (its "window"): the next part then restarts at that row, D += S_j + F - E_q (at most F).
// Every output follows from the part ends E_q, the row r_q holding each end, and S. No kernel traps or reads
// outside its buffers, whatever the lengths are.
#pragma once

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/costs.h"
#include "core/geometry.h"
#include "core/records.h"
#include "cuda/args.h"

namespace mla_meta {
namespace {

namespace cg = cooperative_groups;

constexpr int64_t kInf = INT64_MAX / 4;
constexpr unsigned kFull = 0xffffffffu;
constexpr int kV = kRowsPerThread;
constexpr int kGroupThreads = kGroup / kV;   // threads whose rows form one 32-row group (4)
constexpr int kStageCuts = 2048;             // wide batches: cut rows staged in the num_splits kernel's shared memory
constexpr int kMaskWindows = 16;             // the window walker's masks: up to 16 windows of 32 parts (P <= 512)

__host__ __device__ __forceinline__ int64_t imin64(int64_t a, int64_t b) { return a < b ? a : b; }

// One record per part (general path). Written by the row search as a band (row_lo, S(row_lo), S(row_lo + 1),
// S(row_lo + 2)); the walker replaces it with the part's final end (32 bytes, see kPartRecordBytes).
struct alignas(16) PartRecord {
  int64_t E;      // band: S(row_lo); final: the tape position where the part ends
  int64_t Sr;     // band: S(row_lo + 1); final: S at row r
  int32_t r;      // final: row holding E (n when E >= total)
  int32_t row_lo; // band: row holding lo_q (n when lo_q >= total)
  int32_t cut;    // band: low half of S(row_lo + 2); final: 1 when the part ends strictly inside row r
  int32_t run;    // band: high half of S(row_lo + 2); final: pieces of row r ended by this part and cuts before
};
static_assert(sizeof(PartRecord) == kPartRecordBytes, "PartRecord size must match core/geometry.h");

// Small fixed shared state of a CTA (kSmemFixedBytes in core/geometry.h bounds its size).
struct alignas(16) Shared {
  int64_t scan[2][32];              // double-buffered block-scan scratch
  int64_t rsum[kMaxCluster];        // each rank's tape sum (sent by that rank, per-row lengths)
  uint64_t bar;                     // clusters with per-row lengths: mbarrier, every rank's sum has landed
  uint64_t rbar;                    // low_smem clusters with per-row lengths: mbarrier, every part record has landed
  int64_t pre[kMaxCluster + 1];     // exclusive prefix of rsum: where each rank's slice starts; pre[K] = total
  int64_t u[4];                     // Q, and the first parts past the tape / of this rank / of the next
  uint32_t cut_mask[kMaskWindows];  // window walker: per window of 32 parts, which end strictly inside a row
  uint32_t brk_mask[kMaskWindows];  //   and which begin a run of pieces (not the continuation of a cut row)
  int32_t C;                        // number of cut rows
};
static_assert(sizeof(Shared) <= kSmemFixedBytes, "Shared must fit kSmemFixedBytes");

// The low_smem kernel's fixed static shared memory.
struct LowStatic {
  Shared sh;
  PartRecord rec[kStageParts];      // part records when P <= kStageParts
  int32_t cuts[kStageParts];        // cut rows when P <= kStageParts
  int64_t thread_start[kThreads];   // each thread's first tape position in the chunk being searched
};

template <bool kSmem>
__device__ __forceinline__ int64_t* low_thread_starts(LowStatic* ls) {
  if constexpr (kSmem) return nullptr; else return ls->thread_start;
}

template <bool kSmem>
__device__ __forceinline__ LowStatic* low_static() {
  if constexpr (kSmem) {
    return nullptr;
  } else {
    __shared__ __align__(16) LowStatic st;
    return &st;
  }
}

// The shared memory of the one-CTA-per-slice paths (warp and mid): the fixed block, then a region for the path's
// own arrays (the smem kernel's dynamic shared memory, the low_smem kernel's part records).
template <bool kSmem>
__device__ __forceinline__ void one_cta_smem(Shared*& sh, uint32_t*& region) {
  extern __shared__ __align__(16) uint8_t dyn[];
  if constexpr (kSmem) {
    sh = reinterpret_cast<Shared*>(dyn);
    region = reinterpret_cast<uint32_t*>(dyn + kSmemFixedBytes);
  } else {
    LowStatic* ls = low_static<false>();
    sh = &ls->sh;
    region = reinterpret_cast<uint32_t*>(ls->rec);
  }
}

// num_valid of batch g, clamped to [0, B].
__device__ __forceinline__ int64_t valid_rows(const Args& a, int64_t g) {
  const int64_t nv = a.num_valid[g];
  return nv < 0 ? 0 : (nv > a.B ? a.B : nv);
}

// a / b for a >= 0, b > 0, with a 32-bit division when both fit (the common case; a 64-bit one is ~4x longer).
__device__ __forceinline__ int64_t div64(int64_t a, int64_t b) {
  const uint64_t ua = static_cast<uint64_t>(a), ub = static_cast<uint64_t>(b);
  return static_cast<int64_t>(((ua | ub) >> 32) == 0
                                  ? static_cast<uint64_t>(static_cast<uint32_t>(ua) / static_cast<uint32_t>(ub))
                                  : ua / ub);
}

// x / d for x < 2^31 (d >= 1) by a multiply-high with r = floor((2^32 - 1) / d): the estimate is at most one
// short there, so one correction makes it exact.
struct FastDiv {
  uint32_t d, r;
  __device__ __forceinline__ explicit FastDiv(uint32_t dv) : d(dv), r(0xffffffffu / dv) {}
  __device__ __forceinline__ uint32_t div(uint32_t x, uint32_t& rem) const {
    uint32_t q = __umulhi(x, r), t = x - q * d;
    if (t >= d) { ++q; t -= d; }
    rem = t;
    return q;
  }
  __device__ __forceinline__ uint32_t div(uint32_t x) const {
    uint32_t t;
    return div(x, t);
  }
};

// First part q whose lo_q = F + (q + 1) Q is >= x (P when none).
__device__ __forceinline__ int64_t first_part(int64_t x, int64_t F, int64_t Q, int64_t P) {
  if (x - F <= Q) return 0;
  const int64_t q = div64(x - F + Q - 1, Q) - 1;
  return q < P ? q : P;
}

// ---- phase stamps (profiling builds: -Ccmake.define.JAX_MLA_META_PHASE_TIMING=ON) ----
// Thread 0 of rank 0 stores clock64() into slot k of the batch's stamps in the workspace (WorkspaceLayout::
// scalars; slot 8 holds the wide batches' cut count and is never a stamp). benchmarks/phase_timing.py reads them
// by these names; each path has its own, and only one path runs per call.
namespace stamp {
constexpr int kEntry = 7;   // every path: the kernel starts
// general path
constexpr int kNumValid = 0, kFirstCosts = 6, kFirstScan = 5, kScanned = 1, kSumsKnown = 12, kRowsFound = 13,
              kRecordsIn = 2, kWalked = 9, kWalkBarrier = 3, kWindowsDone = 10, kMetaBarrier = 11, kDone = 4;
// row path
constexpr int kRowScanned = 1, kRowTape = 12, kRowCandidates = 13, kRowTapeBarrier = 2, kRowChain = 9,
              kRowChainBarrier = 3, kRowEntries = 10, kRowSplits = 11, kRowDone = 4;
// warp path
constexpr int kWarpLoaded = 0, kWarpScanned = 1, kWarpQuotients = 2, kWarpChain = 9, kWarpEntries = 3,
              kWarpDone = 4;
// mid path: also every rank's %globaltimer (ns), into the workspace's chunk-sums area: [rank * 16 + k]
constexpr int kMidStart = 5, kMidLoaded = 0, kMidScanned = 1, kMidPhase0 = 13, kMidSums = 10, kMidCandScan = 2,
              kMidListed = 14, kMidSent = 15, kMidLanded = 8, kMidCombined = 12, kMidChain = 9, kMidBarrier = 3,
              kMidOut = 6, kMidExit = 4;
}  // namespace stamp

#ifdef MLA_PHASE_TIMING
#define MLA_STAMP(k)                                                                                      \
  do {                                                                                                    \
    if (threadIdx.x == 0 && blockIdx.x == 0)                                                              \
      reinterpret_cast<long long*>(a.ws + (a.batch0 + blockIdx.y) * a.ws_stride + a.lay.scalars)[stamp::k] = \
          clock64();                                                                                      \
  } while (0)
#define MLA_MID_STAMP(k)                                                                                  \
  do {                                                                                                    \
    MLA_STAMP(k);                                                                                         \
    if (threadIdx.x == 0) {                                                                               \
      unsigned long long t_;                                                                              \
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t_));                                              \
      reinterpret_cast<unsigned long long*>(a.ws + (a.batch0 + blockIdx.y) * a.ws_stride +               \
                                            a.lay.chunks)[blockIdx.x * 16 + stamp::k] = t_;              \
    }                                                                                                     \
  } while (0)
#else
#define MLA_STAMP(k) \
  do {               \
  } while (0)
#define MLA_MID_STAMP(k) \
  do {                   \
  } while (0)
#endif

}  // namespace
}  // namespace mla_meta
