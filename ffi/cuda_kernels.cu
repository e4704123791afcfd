// cuda_kernels.cu: the two CUDA implementations of the scheduler and the XLA FFI handler that picks one.
//
// Both compute the schedule of SPEC.md section 3 in parallel, through its "tape" form:
//   cost_i = num_blocks(len_i) + F, S_i = sum_{k<i} cost_k, Q = ceil(S_n / P), lo_q = F + (q + 1) Q.
//   Part q ends at E_q = lo_q + D_q, where D grows only when a part ends inside the first F units of a row
//   (its "window"): the next part then restarts at that row, D += S_j + F - E_q (at most F).
// Every output follows from the part ends E_q, the row r_q holding each end, and S.
//
// One launch per call (three for the low_smem kernel's "wide batches", see below). Small dense batches (P <=
// 256) take one CTA of 256 threads: each row derives from S_j mod Q whether a part restarts on it and how
// many parts cut it, so only the short chain of restarts is sequential. Up to 512 rows one warp does all the
// per-row work (the "warp path", its own kernel instances); up to 1,792 rows the "row path" spreads it over
// the CTA; up to 12,288 rows the "mid path" (its own instances, a cluster of 512-thread CTAs with up to 2,048
// rows each) keeps each thread's rows in registers. Otherwise each batch is one thread-block cluster of K CTAs
// of 256-1024 threads (K = 1 for small batches, up to 16); rank k owns a contiguous slice of the rows and a
// slice of num_splits:
//   1. (dense mode) each rank scans its rows' costs and sends its sum to every rank (st.async onto an
//      mbarrier of the receiving CTA, no cluster barrier); every rank then knows the total, Q and where its
//      slice starts (with one CTA, every thread knows them from its own scan);
//   2. each rank finds the row holding every lo_q that falls in its slice and broadcasts that part's record;
//      in sparse mode (every row costs c, S_i = i c) every part's end has a closed form: no records;
//   3. a cluster barrier; one warp per rank walks all parts (redundantly in every rank, which saves a
//      barrier), 32 per window, keeping only the chain of restarts, then stores each window's final ends and
//      two ballot masks; after a CTA barrier one warp per window derives the cut rows and (rank 0)
//      tile_scheduler_metadata (P > 512: one warp finalises each window itself, then writes the metadata);
//   4. every rank writes its slice of num_splits.
//  * "smem" kernel (mla_smem_kernel): a rank's tape lives in dynamic shared memory (smem_bytes(B, P, K)
//    in schedule_core.h: ~4.25 bytes per row of its slice + 36 per part); the walker reads any row's prefix
//    sum from the owning rank's shared memory.
//  * "low_smem" kernel (mla_low_smem_kernel): a fixed 45 KiB of static shared memory; the rows are streamed
//    in chunks of 8192 and scanned again where a part ends; the walker recomputes prefix sums from lengths.
// Neither kernel traps or reads outside its buffers, whatever the lengths are.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>

#include "ffi_common.h"
#include "schedule_core.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
namespace cg = cooperative_groups;

namespace mla_meta {
namespace {

constexpr int64_t kInf = INT64_MAX / 4;
constexpr unsigned kFull = 0xffffffffu;
constexpr int kV = kRowsPerThread;
constexpr int kGroupThreads = kGroup / kV;   // threads whose rows form one 32-row group (4)
constexpr int kStageCuts = 2048;             // wide batches: cut rows staged in mla_splits_kernel's shared memory
constexpr int kMaskWindows = 16;             // the window walker's masks: up to 16 windows of 32 parts (P <= 512)

__host__ __device__ __forceinline__ int64_t imin64(int64_t a, int64_t b) { return a < b ? a : b; }

// One record per part. Written by the row search as a band (row_lo, S(row_lo), S(row_lo + 1),
// S(row_lo + 2)); the walker replaces it with the part's final end (32 bytes, see kPartRecordBytes).
struct alignas(16) PartRecord {
  int64_t E;      // band: S(row_lo); final: the tape position where the part ends
  int64_t Sr;     // band: S(row_lo + 1); final: S at row r
  int32_t r;      // final: row holding E (n when E >= total)
  int32_t row_lo; // band: row holding lo_q (n when lo_q >= total)
  int32_t cut;    // band: low half of S(row_lo + 2); final: 1 when the part ends strictly inside row r
  int32_t run;    // band: high half of S(row_lo + 2); final: pieces of row r ended by this part and cuts before
};
static_assert(sizeof(PartRecord) == kPartRecordBytes, "PartRecord size must match schedule_core.h");

// Small fixed shared state of a CTA (kSmemFixedBytes in schedule_core.h bounds its size).
struct alignas(16) Shared {
  int64_t scan[2][32];              // double-buffered block-scan scratch
  int64_t rsum[kMaxCluster];        // each rank's tape sum (sent by that rank, dense mode)
  uint64_t bar;                     // dense clusters: mbarrier, every rank's sum has landed
  uint64_t rbar;                    // low_smem dense clusters: mbarrier, every part record has landed
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
  int64_t tpre[kThreads];           // each thread's first tape position in the chunk being searched
};

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
  int32_t batch0;     // first batch of this launch (grid.y is capped at 65535)
  int32_t wide;       // low_smem with several chunks per rank: the chunk sums come from mla_chunk_sums_kernel
                      // and num_splits is left to mla_splits_kernel (see "wide batches" below)
};

// Optional phase timestamps (build with -DMLA_PHASE_TIMING): thread 0 of rank 0 stores clock64() at phase
// ends into the batch's stamps slot of the workspace (benchmarks/phase_timing.py reads them).
#ifdef MLA_PHASE_TIMING
#define MLA_STAMP(k)                                                                              \
  do {                                                                                            \
    if (threadIdx.x == 0 && blockIdx.x == 0)                                                      \
      reinterpret_cast<long long*>(a.ws + (a.batch0 + blockIdx.y) * a.ws_stride + a.lay.scalars)[k] = \
          clock64();                                                                              \
  } while (0)
// The mid path also stores, per rank, %globaltimer (ns, one clock for the whole GPU) into the workspace's
// chunk-sums area, which it does not use otherwise: [rank * 16 + k] (benchmarks/phase_timing.py --ranks).
#define MLA_MID_STAMP(k)                                                                          \
  do {                                                                                            \
    MLA_STAMP(k);                                                                                 \
    if (threadIdx.x == 0) {                                                                       \
      unsigned long long t_;                                                                      \
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t_));                                      \
      reinterpret_cast<unsigned long long*>(a.ws + (a.batch0 + blockIdx.y) * a.ws_stride +       \
                                            a.lay.chunks)[blockIdx.x * 16 + (k)] = t_;            \
    }                                                                                             \
  } while (0)
#else
#define MLA_STAMP(k) \
  do {               \
  } while (0)
#define MLA_MID_STAMP(k) \
  do {                   \
  } while (0)
#endif

// Cluster barrier halves (all threads of every CTA of the cluster take part; calls alternate per thread).
__device__ __forceinline__ void cluster_arrive_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_arrive() { asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory"); }

// Pushing words into other CTAs' shared memory without a cluster-scope release (measured on an H100: a
// cluster barrier with release / acquire semantics takes ~1,300 cycles, a relaxed one ~115, an all-gather of
// one word per CTA by st.async ~250-400). Each word lands in the receiver's shared memory and counts 4 bytes
// on the receiver's mbarrier; the receiver waits until the bytes it expects have all landed, which also makes
// them visible to it. An mbarrier must be initialised (and that made visible to the cluster, see
// mbar_init_fence) before any CTA sends to it, and invalidated before its memory is used otherwise.
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ uint32_t cluster_addr(uint32_t a, unsigned rank) {   // that CTA's copy of address a
  uint32_t o;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(o) : "r"(a), "r"(rank));
  return o;
}
__device__ __forceinline__ void push_word(uint32_t* dst, uint64_t* bar, unsigned rank, uint32_t v) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.u32 [%0], %1, [%2];\n"
               ::"r"(cluster_addr(smem_addr(dst), rank)), "r"(v), "r"(cluster_addr(smem_addr(bar), rank))
               : "memory");
}
__device__ __forceinline__ void push_dword(int64_t* dst, uint64_t* bar, unsigned rank, int64_t v) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b64 [%0], %1, [%2];\n"
               ::"r"(cluster_addr(smem_addr(dst), rank)), "l"(v), "r"(cluster_addr(smem_addr(bar), rank))
               : "memory");
}
// A part record (32 bytes) as two 16-byte pushes.
__device__ __forceinline__ void push_record(void* dst, uint64_t* bar, unsigned rank, const int4 (&v)[2]) {
  const uint32_t d = cluster_addr(smem_addr(dst), rank), b = cluster_addr(smem_addr(bar), rank);
#pragma unroll
  for (int i = 0; i < 2; ++i)
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [%0], {%1, %2, %3, %4}, [%5];\n"
                 ::"r"(d + 16 * i), "r"(v[i].x), "r"(v[i].y), "r"(v[i].z), "r"(v[i].w), "r"(b)
                 : "memory");
}
__device__ __forceinline__ void mbar_init(uint64_t* bar) {   // one arrival (the receiver's expect_bytes)
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_expect_bytes(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar) {   // phase 0 (each mbarrier here completes once)
  asm volatile(
      "{\n .reg .pred p;\n"
      "MLA_WAIT_%=:\n mbarrier.test_wait.parity.acquire.cluster.shared::cta.b64 p, [%0], 0;\n"
      " @!p bra MLA_WAIT_%=;\n}\n" ::"r"(smem_addr(bar))
      : "memory");
}
__device__ __forceinline__ void mbar_inval(uint64_t* bar) {
  asm volatile("mbarrier.inval.shared::cta.b64 [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}

// Programmatic dependent launch (the wide batches' three launches): `pdl_trigger` lets the next kernel of the
// stream start launching; `pdl_wait` returns once the kernel before this one has completed and its memory
// is visible. Both do nothing in a kernel launched without the attribute.
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }

// The same shared-memory object in another CTA of the cluster.
template <typename T>
__device__ __forceinline__ T* remote(T* p, unsigned rank) {
  return cg::this_cluster().map_shared_rank(p, rank);
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

// ---- warp / block scans ----
// The scans add with `op`: Plus, or SatPlus (32 bits, saturating at `cap` <= 2^31: two saturated values still
// add without wrapping, and min(a + b, cap) is associative, so the result is exact while the total stays below
// cap).
struct Plus {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct SatPlus {
  uint32_t cap;
  __device__ __forceinline__ uint32_t operator()(uint32_t a, uint32_t b) const { return min(a + b, cap); }
};

template <typename T, typename Op = Plus>
__device__ __forceinline__ T warp_inclusive_sum(T v, Op op = Op()) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const T o = __shfl_up_sync(kFull, v, d);
    if (lane >= d) v = op(v, o);
  }
  return v;
}

// Exclusive block sum of one value per thread with a single barrier: every warp scans the 32 warp totals
// itself. `buf` (32 values) must alternate between consecutive calls.
template <typename T, typename Op = Plus>
__device__ __forceinline__ T block_exclusive_sum(T v, T* buf, T* total, Op op = Op()) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const T w = warp_inclusive_sum(v, op);
  if (lane == 31) buf[warp] = w;
  __syncthreads();
  const T s = warp_inclusive_sum(lane < static_cast<int>(blockDim.x >> 5) ? buf[lane] : T(0), op);
  const T before = __shfl_sync(kFull, s, (warp + 31) & 31);
  *total = __shfl_sync(kFull, s, 31);
  return (warp ? before : T(0)) + w - v;
}

// a / b for a >= 0, b > 0, with a 32-bit division when both fit (the common case; a 64-bit one is ~4x longer).
__device__ __forceinline__ int64_t div64(int64_t a, int64_t b) {
  const uint64_t ua = static_cast<uint64_t>(a), ub = static_cast<uint64_t>(b);
  return static_cast<int64_t>(((ua | ub) >> 32) == 0 ? static_cast<uint64_t>(static_cast<uint32_t>(ua) / static_cast<uint32_t>(ub))
                                                      : ua / ub);
}

// First part q whose lo_q = F + (q + 1) Q is >= x (P when none).
__device__ __forceinline__ int64_t first_part(int64_t x, int64_t F, int64_t Q, int64_t P) {
  if (x - F <= Q) return 0;
  const int64_t q = div64(x - F + Q - 1, Q) - 1;
  return q < P ? q : P;
}

// A chunk of 8192 rows [c0, c0 + 8192) cut at r1: each thread's 8 row costs (0 past r1), its zero-length
// mask and its exclusive prefix inside the chunk; the chunk's sum.
struct ChunkScan {
  uint32_t cost[kV];
  uint32_t zero;
  int64_t excl;
  int64_t sum;
};

// Loads the 8 lengths of this thread's rows in the chunk at c0 (rows < bound; 16-byte loads when aligned).
__device__ __forceinline__ void load_lens(const int32_t* lens, int64_t c0, int64_t bound, int32_t (&len)[kV]) {
  const int64_t i0 = c0 + static_cast<int64_t>(threadIdx.x) * kV;
  const int32_t* p = lens + i0;
  if (i0 + kV <= bound && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
    const int4 x0 = __ldg(reinterpret_cast<const int4*>(p));
    const int4 x1 = __ldg(reinterpret_cast<const int4*>(p) + 1);
    len[0] = x0.x; len[1] = x0.y; len[2] = x0.z; len[3] = x0.w;
    len[4] = x1.x; len[5] = x1.y; len[6] = x1.z; len[7] = x1.w;
  } else {
#pragma unroll
    for (int j = 0; j < kV; ++j) len[j] = i0 + j < bound ? __ldg(p + j) : 1;
  }
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
  if (first) MLA_STAMP(6);
  cs.excl = block_exclusive_sum(tsum, buf, &cs.sum);
}

// The costs of one thread's 8 rows [i0, i0 + 8) that lie below r1 (< 2^35), and a warp's sum of such sums
// by two 32-bit reductions (every lane gets it).
__device__ __forceinline__ int64_t thread_cost_sum(const Args& a, const int32_t (&len)[kV], int64_t i0, int64_t r1) {
  const uint32_t F32 = static_cast<uint32_t>(a.c.overhead);
  int64_t tsum = 0;
#pragma unroll
  for (int j = 0; j < kV; ++j) tsum += i0 + j < r1 ? nblk32(len[j], a) + F32 : 0u;
  return tsum;
}
__device__ __forceinline__ int64_t warp_cost_sum(int64_t tsum) {
  const uint32_t lo = __reduce_add_sync(kFull, static_cast<uint32_t>(tsum) & 0xffffffu);   // < 2^29
  const uint32_t hi = __reduce_add_sync(kFull, static_cast<uint32_t>(tsum >> 24));         // < 2^16
  return (static_cast<int64_t>(hi) << 24) + lo;
}

// ---- the three ways to know the tape ----
// Sparse mode: every row has length topk (walk_sparse needs no tape; the metadata pass needs end_block).
struct SparseTape {
  int32_t last_blk_v;
  __device__ int32_t last_blk(int64_t) const { return last_blk_v; }
};
// low_smem, dense: S(i + 1) = S(i) + cost(len_i), lengths from global memory.
struct LensTape {
  const int32_t* lens;
  const Args* a;
  int64_t n;
  __device__ int64_t next(int64_t i, int64_t Si) const { return i < n ? Si + cost_of(__ldg(lens + i), *a) : kInf; }
  __device__ int32_t last_blk(int64_t r) const { return last_block(__ldg(lens + r), a->c.block_size_n); }
};
// smem, dense: every rank's slice in its shared memory (groups of 32 rows: 31-bit offset + int64 base).
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

// Once a window of 32 parts (lanes) has its final ends (pos, sr = S(r), r), one warp derives cut flags, runs
// of pieces of one row and cut rows with ballots, and (rank 0) stores each part's final record in place for
// the metadata pass. `W` carries the last part of the previous window and the running counts.
struct WindowCarry {
  int C = 0, run_start = 0;
  int32_t r = 0;
  bool cut = false;
};
__device__ __forceinline__ void finalize_window(int base, bool act, int64_t pos, int64_t sr, int64_t r, int64_t n,
                                                int64_t F, PartRecord* rec, int32_t* cuts, bool write_final,
                                                WindowCarry& W) {
  const int lane = threadIdx.x & 31, q = base + lane;
  const int32_t r32 = static_cast<int32_t>(r);
  const bool cut = act && r < n && pos - sr > F;
  int32_t pr = __shfl_up_sync(kFull, r32, 1);
  bool pcut = __shfl_up_sync(kFull, cut ? 1 : 0, 1) != 0;
  if (lane == 0) {
    pr = W.r;
    pcut = W.cut;
  }
  const bool brk = q == 0 || !pcut || pr != r32;
  const unsigned bm = __ballot_sync(kFull, act && brk);
  const unsigned upto = bm & (lane == 31 ? kFull : ((2u << lane) - 1u));
  const int start = upto ? base + 31 - __clz(upto) : W.run_start;
  const unsigned cm = __ballot_sync(kFull, cut);
  if (cut) cuts[W.C + __popc(cm & ((1u << lane) - 1u))] = r32;
  if (act && write_final) {
    PartRecord f;
    f.E = pos;
    f.Sr = sr;
    f.r = r32;
    f.row_lo = 0;
    f.cut = cut ? 1 : 0;
    f.run = q - start + 1;
    store_record(rec + q, f);
  }
  if (bm) W.run_start = base + 31 - __clz(bm);
  W.C += __popc(cm);
  W.r = __shfl_sync(kFull, r32, 31);
  W.cut = __shfl_sync(kFull, cut ? 1 : 0, 31) != 0;
}

// The walker (dense mode), one warp: lanes hold 32 consecutive parts; D (the accumulated restart shift) is
// common to all parts after the last restart, so one ballot finds the next restart. Returns the cut count.
template <typename Tape>
__device__ int walk_parts(PartRecord* rec, bool rec_global, int P, int64_t n, int64_t Q, int64_t F,
                          const Tape& T, int32_t* cuts, bool write_final) {
  const int lane = threadIdx.x & 31;
  int64_t D = 0;
  WindowCarry W;
  for (int base = 0; base < P; base += 32) {
    const int q = base + lane;
    const bool act = q < P;
    int64_t pos = 0, sr = 0, sr1 = kInf, sr2 = kInf;
    int64_t r = n;
    if (act) {
      const PartRecord rc = load_record(rec + q, rec_global);
      r = rc.row_lo;
      sr = rc.E;
      sr1 = rc.Sr;
      sr2 = band_third(rc);
      pos = F + (q + 1) * Q + D;
      while (pos >= sr1) {   // D moved us past row_lo: step forward
        ++r;
        sr = sr1;
        sr1 = sr2;
        sr2 = T.next(r + 1, sr1);
      }
    }
    int p = base;   // parts below p in this window are final
    while (true) {
      // in the window of row r: 0 <= pos - sr < F (a row may cost more than 2^31 when block_size_n < 64)
      const int64_t off = pos - sr;
      const bool snap = act && q >= p && r < n && off < F;
      const unsigned m = __ballot_sync(kFull, snap);
      if (!m) break;
      const int last = __ffs(m) - 1;
      const int32_t disp = __shfl_sync(kFull, static_cast<int32_t>(F - off), last);   // snapping lane: in [1, F]
      D += disp;
      if (last == 31) break;
      p = base + last + 1;
      if (act && lane > last) {
        pos += disp;   // disp <= F < cost of any row: at most one row forward
        if (pos >= sr1) {
          ++r;
          sr = sr1;
          sr1 = sr2;
          sr2 = T.next(r + 1, sr1);
        }
      }
    }
    finalize_window(base, act, pos, sr, r, n, F, rec, cuts, write_final, W);
  }
  return W.C;
}

// Sparse mode needs no walk: every row costs c, so a part ending in a row's window restarts the next one at
// offset F + Q (mod c) whatever the row, and the restarts recur every m + 1 parts, where m is the first j
// with (F + (j + 1) Q) mod c < F. Part q = k (m + 1) + j ends at k Delta c + F + (j + 1) Q with
// Delta = floor((F + (m + 1) Q) / c) (past the tape end nothing restarts, and every later part is past it too).
// Every part's end in closed form (one warp finds m; all lanes get the same result).
struct SparseEnds {
  int m;          // the first part that restarts (P: none)
  int64_t step;   // the tape advance of m + 1 parts
  int64_t n, Q, F, c;
  __device__ SparseEnds(int P, int64_t n_, int64_t Q_, int64_t F_, int64_t c_) : m(P), n(n_), Q(Q_), F(F_), c(c_) {
    const int lane = threadIdx.x & 31;
#pragma unroll 1
    for (int base = 0; base < P; base += 32) {
      const int j = base + lane;
      const bool hit = j < P && (F + (j + 1) * Q) - div64(F + (j + 1) * Q, c) * c < F;
      const unsigned h = __ballot_sync(kFull, hit);
      if (h) {
        m = base + __ffs(h) - 1;
        break;
      }
    }
    step = m < P ? div64(F + (m + 1) * Q, c) * c : 0;
  }
  // Part q's end and the row holding it (n: past the tape).
  __device__ __forceinline__ void part(int q, int64_t& pos, int64_t& row) const {
    const int k = q / (m + 1), j = q - k * (m + 1);
    pos = k * step + F + (j + 1) * Q;
    row = pos < n * c ? div64(pos, c) : n;
  }
};

__device__ int walk_sparse(PartRecord* rec, int P, int64_t n, int64_t Q, int64_t F, int64_t c, int32_t* cuts,
                           bool write_final) {
  const int lane = threadIdx.x & 31;
  const SparseEnds ends(P, n, Q, F, c);
  WindowCarry W;
  for (int base = 0; base < P; base += 32) {
    const int q = base + lane;
    int64_t pos, r;
    ends.part(q, pos, r);
    finalize_window(base, q < P, pos, r * c, r, n, F, rec, cuts, write_final, W);
  }
  return W.C;
}

// ---- the window walker (P <= 32 kMaskWindows parts: every SPEC workload) ----
// Warp 0 walks the parts 32 at a time (lane l of window w is part 32 w + l). Only the chain lives here, in
// as few instructions as possible (one warp issuing alone pays ~10 cycles per instruction): each lane's end
// under the current shift D, one ballot per restart. Each window's final ends go to the records and its cut
// and run-break masks to shared memory; finish_windows (one warp per window, after a barrier) turns them
// into cut rows and metadata.

// Masks of one window from each lane's final row r and cut flag (a part ending strictly inside row r):
// `brk`: parts that do not continue a cut of the same row (the first piece of a run). `prev_r`/`prev_cut`
// carry the window's last part to the next window.
__device__ __forceinline__ void window_masks(int w, int P, int32_t r, bool cut, int32_t& prev_r, bool& prev_cut,
                                             Shared* sh) {
  const int lane = threadIdx.x & 31, q = 32 * w + lane;
  int32_t pr = __shfl_up_sync(kFull, r, 1);
  const unsigned cm = __ballot_sync(kFull, cut);
  const bool pc = lane == 0 ? prev_cut : ((cm >> (lane - 1)) & 1u) != 0;
  if (lane == 0) pr = prev_r;
  const unsigned bm = __ballot_sync(kFull, q < P && (q == 0 || !pc || pr != r));
  prev_r = __shfl_sync(kFull, r, 31);
  prev_cut = (cm >> 31) != 0;
  if (lane == 0) {
    sh->cut_mask[w] = cm;
    sh->brk_mask[w] = bm;
  }
}

__device__ __forceinline__ void store_final(PartRecord* rec, int q, int64_t pos, int64_t sr, int32_t r) {
  PartRecord f;
  f.E = pos;
  f.Sr = sr;
  f.r = r;
  f.row_lo = f.cut = f.run = 0;
  store_record(rec + q, f);
}

// Dense mode: the records hold each part's band (the row holding lo_q and S around it).
template <typename Tape>
__device__ void walk_windows(PartRecord* rec, int P, int64_t n, int64_t Q, int64_t F, const Tape& T,
                               Shared* sh) {
  const int lane = threadIdx.x & 31;
  const int nw = (P + 31) >> 5;
  const uint32_t F32 = static_cast<uint32_t>(F);
  int64_t D = 0;
  int32_t prev_r = 0;
  bool prev_cut = false;
  PartRecord nb{};   // the next window's band, loaded ahead (lanes past P load nothing: no shared reads of
  if (lane < P) nb = load_record(rec + lane, false);   // records that other lanes are overwriting)
#pragma unroll 1
  for (int w = 0; w < nw; ++w) {
    const int q = 32 * w + lane;
    const bool live = q < P;
    const PartRecord band = nb;
    if (q + 32 < P) nb = load_record(rec + q + 32, false);
    int32_t r = live ? band.row_lo : static_cast<int32_t>(n);
    int64_t sr = band.E;
    // the end's offset in row r and row r's cost: both < 2^32 (a row costs less than 2^32); past the tape
    // (r = n) the offset is below P + F + D
    int64_t x = F + (q + 1) * Q + D - sr;
    uint32_t cost = static_cast<uint32_t>(band.Sr - band.E);
    auto settle = [&]() {   // D moved the end past the band: step forward (D only grows)
      while (r < n && x >= cost) {
        x -= cost;
        sr += cost;
        ++r;
        const int64_t s1 = r == band.row_lo + 1 ? band_third(band) : T.next(r, sr);
        cost = r < n ? static_cast<uint32_t>(s1 - sr) : 0u;
      }
    };
    if (D > 0) settle();
    int p = 32 * w;   // parts below p are final
    while (true) {
      const unsigned m = __ballot_sync(kFull, live && q >= p && r < n && static_cast<uint32_t>(x) < F32);
      if (!m) break;
      const int last = __ffs(m) - 1;
      const int64_t snap = __shfl_sync(kFull, static_cast<int32_t>(F32 - static_cast<uint32_t>(x)), last);
      D += snap;   // in [1, F]
      if (last == 31) break;
      p = 32 * w + last + 1;
      if (lane > last) {
        x += snap;
        settle();
      }
    }
    const bool cut = live && r < n && static_cast<uint32_t>(x) > F32;
    if (live) store_final(rec, q, sr + x, sr, r);
    window_masks(w, P, r, cut, prev_r, prev_cut, sh);
  }
}

// Sparse mode (see walk_sparse): every part's end in closed form, so the windows are independent: every
// warp takes its own (warp w: windows w, w + nwarps, ...).
__device__ void walk_sparse_windows(PartRecord* rec, int P, int64_t n, int64_t Q, int64_t F, int64_t c,
                                      Shared* sh) {
  const int lane = threadIdx.x & 31;
  const int nw = (P + 31) >> 5;
  const SparseEnds ends(P, n, Q, F, c);
#pragma unroll 1
  for (int w = threadIdx.x >> 5; w < nw; w += blockDim.x >> 5) {   // warp-uniform
    const int q = 32 * w + lane;
    int64_t pos, rr;
    ends.part(q, pos, rr);
    const int32_t r = static_cast<int32_t>(rr);
    const bool cut = q < P && r < n && pos - rr * c > F;
    int32_t prev_r = 0;   // the part before the window (the same in every lane)
    bool prev_cut = false;
    if (w > 0) {
      int64_t pp, pr;
      ends.part(32 * w - 1, pp, pr);
      prev_r = static_cast<int32_t>(pr);
      prev_cut = pr < n && pp - pr * c > F;
    }
    if (q < P) store_final(rec, q, pos, rr * c, r);
    window_masks(w, P, r, cut, prev_r, prev_cut, sh);
  }
}

// Row q of tile_scheduler_metadata from the final end of part q (row r, a cut inside it ending at block blk)
// and of part q - 1 (pr, pcut, pblk, prun: the pieces of row pr ended so far; unused for q = 0).
template <typename Tape>
__device__ __forceinline__ void store_meta_row(int32_t* meta, int q, int32_t pr, bool pcut, int32_t pblk, int32_t prun,
                                               int32_t r, bool cut, int32_t blk, int64_t n, const Tape& T) {
  int32_t row[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  if (q > 0) {
    if (pr >= n) {
      row[0] = -1;
    } else {
      row[0] = pr;
      if (pcut) {
        row[1] = pblk;
        row[4] = prun;
      }
    }
  }
  if (r >= n) {
    row[2] = static_cast<int32_t>(n - 1);
    row[3] = T.last_blk(n - 1);
  } else if (cut) {
    row[2] = r;
    row[3] = blk;
  } else {   // r >= 1 here: E >= F + Q > F, so row 0 cannot end a part on its window
    row[2] = r - 1;
    row[3] = T.last_blk(r - 1);
  }
  int4* dst = reinterpret_cast<int4*>(meta + 8 * static_cast<int64_t>(q));
  dst[0] = make_int4(row[0], row[1], row[2], row[3]);
  dst[1] = make_int4(row[4], row[5], row[6], row[7]);
}

// After the window walker and a barrier, one warp per window: the window's cut rows (their places follow
// from the masks of the windows before it), each part's run of pieces and, when `meta` is set, its row of
// tile_scheduler_metadata.
template <typename Tape>
__device__ void finish_windows(const PartRecord* rec, Shared* sh, int P, int64_t n, int64_t F,
                               int32_t* cuts, int32_t* meta, const Tape& T) {
  const int lane = threadIdx.x & 31;
  const int nw = (P + 31) >> 5;
#pragma unroll 1
  for (int w = threadIdx.x >> 5; w < nw; w += blockDim.x >> 5) {   // warp-uniform
    const int q = 32 * w + lane;
    const bool act = q < P;
    int Cb = 0, start_before = 0;   // cut rows before this window; the last run start before it
    for (int j = 0; j < w; ++j) {
      Cb += __popc(sh->cut_mask[j]);
      const unsigned b = sh->brk_mask[j];
      if (b) start_before = 32 * j + 31 - __clz(b);
    }
    const unsigned cm = sh->cut_mask[w], bm = sh->brk_mask[w];
    if (w == nw - 1 && lane == 0) sh->C = Cb + __popc(cm);   // the cut count, for num_splits
    const unsigned lt = (1u << lane) - 1u, upto = bm & (lt | (1u << lane));
    const bool cut = ((cm >> lane) & 1u) != 0;
    const int run = q - (upto ? 32 * w + 31 - __clz(upto) : start_before) + 1;
    PartRecord me{};
    if (act) me = load_record(rec + q, false);
    if (cut) cuts[Cb + __popc(cm & lt)] = me.r;
    if (meta == nullptr) continue;   // uniform: ranks other than 0
    const int32_t blk = static_cast<int32_t>(me.E - me.Sr - F);   // the block where a cut part ends
    int32_t pr = __shfl_up_sync(kFull, me.r, 1), pblk = __shfl_up_sync(kFull, blk, 1);
    int32_t prun = __shfl_up_sync(kFull, run, 1);
    bool pcut = lane > 0 && ((cm >> (lane - 1)) & 1u) != 0;
    if (lane == 0 && q > 0) {
      const PartRecord pv = load_record(rec + q - 1, false);
      pr = pv.r;
      pblk = static_cast<int32_t>(pv.E - pv.Sr - F);
      pcut = (sh->cut_mask[w - 1] >> 31) != 0;
      prun = q - start_before;
    }
    if (act) store_meta_row(meta, q, pr, pcut, pblk, prun, me.r, cut, blk, n, T);
  }
}

// tile_scheduler_metadata from the final records (all threads of one CTA).
template <typename Tape>
__device__ void write_meta(const PartRecord* rec, bool rec_global, int32_t* meta, int P, int64_t n, int64_t F,
                           const Tape& T) {
  for (int p = threadIdx.x; p < P; p += blockDim.x) {
    const PartRecord me = load_record(rec + p, rec_global);
    PartRecord pr{};
    if (p > 0) pr = load_record(rec + p - 1, rec_global);
    store_meta_row(meta, p, pr.r, pr.cut != 0, static_cast<int32_t>(pr.E - pr.Sr - F), pr.run, me.r, me.cut != 0,
                   static_cast<int32_t>(me.E - me.Sr - F), n, T);
  }
}

// num_splits: splits[0] = 0, splits[k] = k + #cuts < k for 1 <= k <= n, then n + C (cut rows sorted).
// The last position, B, is always n + C: the rank that owns it writes it alone (B + 1 positions would
// cost the warps one more step than B when B is a multiple of their 128-position steps).
// Positions [k_lo, k_hi): each warp writes a contiguous segment, 128 consecutive positions per step as one
// 16-byte store per lane (32 positions and 4-byte stores when the slice is not 16-byte aligned). A cursor
// into the cut rows only moves forward; the cut rows that fall inside a step are read 32 at a time into the
// lanes, and each lane counts those below its positions (one by one when few, else by binary search).
// (Measured against one thread per 8 positions with binary searches in shared memory: that was 1.3-1.8x
// slower, the dependent shared-memory loads being the cost.)
__device__ __noinline__ void write_splits(int32_t* splits, int k_lo, int k_hi, int B, int n, const int32_t* cuts,
                                         int C) {
  if (k_hi == B + 1) {
    if (threadIdx.x == 0 && k_lo <= B) splits[B] = n + C;
    k_hi = B;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const bool vec = (reinterpret_cast<uintptr_t>(splits + k_lo) & 15) == 0;
  const int V = vec ? 4 : 1, W = 32 * V;
  const int per = ((k_hi - k_lo + nwarps - 1) / nwarps + W - 1) / W * W;
  const int s0 = k_lo + warp * per;
  const int s1 = s0 + per < k_hi ? s0 + per : k_hi;
  if (s0 >= s1) return;
  int cur = 0, hi = C;   // first cut >= s0 (0 at once when the first cut row is: always so for warp 0)
  if (C > 0 && cuts[0] < s0) {
    while (cur < hi) {
      const int mid = (cur + hi) >> 1;
      if (cuts[mid] < s0) cur = mid + 1; else hi = mid;
    }
  }
  int next = cur < C ? cuts[cur] : INT32_MAX;   // warp-uniform
  const int tail = n + C;
  for (int w0 = s0; w0 < s1; w0 += W) {
    const int k = w0 + lane * V;
    int cnt[4] = {cur, cur, cur, cur};   // #cuts < k + j
    while (next < w0 + W) {   // cut rows inside this step (warp-uniform loop)
      const int cv = cur + lane < C ? cuts[cur + lane] : INT32_MAX;
      const unsigned in = __ballot_sync(kFull, cv < w0 + W);   // a prefix of the lanes (cut rows are sorted)
      const int m = __popc(in);
      if (m <= 8) {   // few: each lane compares its positions with every one
        for (int i = 0; i < m; ++i) {
          const int c = __shfl_sync(kFull, cv, i);
#pragma unroll
          for (int j = 0; j < 4; ++j) cnt[j] += c < k + j ? 1 : 0;
        }
      } else if (__shfl_sync(kFull, cv, 0) == __shfl_sync(kFull, cv, m - 1)) {
        // all m are cuts of one row (a long row cut many times, e.g. B = 1): one compare per position
        const int c = __shfl_sync(kFull, cv, 0);
#pragma unroll
        for (int j = 0; j < 4; ++j) cnt[j] += c < k + j ? m : 0;
      } else {   // many (cut rows may repeat): binary search among the lanes, 4 positions at once
        int h[4] = {0, 0, 0, 0};   // #lanes whose cut row is < k + j (lanes past m hold rows >= w0 + W)
#pragma unroll
        for (int b = 16; b >= 1; b >>= 1) {
#pragma unroll
          for (int j = 0; j < 4; ++j) h[j] += __shfl_sync(kFull, cv, h[j] + b - 1) < k + j ? b : 0;
        }
        const int c31 = __shfl_sync(kFull, cv, 31);   // every lane takes part in every shuffle
#pragma unroll
        for (int j = 0; j < 4; ++j) cnt[j] += h[j] + (h[j] == 31 && c31 < k + j ? 1 : 0);
      }
      cur += m;
      next = m < 32 ? __shfl_sync(kFull, cv, m & 31) : (cur < C ? cuts[cur] : INT32_MAX);
    }
    int v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int kj = k + j;
      v[j] = kj == 0 ? 0 : (kj <= n ? kj + cnt[j] : tail);
    }
    if (vec && k + 3 < s1) {
      *reinterpret_cast<int4*>(splits + k) = make_int4(v[0], v[1], v[2], v[3]);
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (j < V && k + j < s1) splits[k + j] = v[j];
    }
  }
}

// The band around tape position x among the 8 rows [i0, i0 + 8) of one thread, whose first row starts at
// tape position s (s <= x < S(min(i0 + 8, r1))): the row r holding x, S(r), S(r + 1), S(r + 2) (kInf past the
// tape). All 9 lengths are loaded at once (one memory round trip).
__device__ __forceinline__ PartRecord band_in_thread(const Args& a, const int32_t* lens, int64_t i0, int64_t n,
                                                     int64_t s, int64_t x) {
  int32_t len[kV + 1];
#pragma unroll
  for (int j = 0; j <= kV; ++j) len[j] = i0 + j < n ? __ldg(lens + i0 + j) : 1;
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

template <bool kSmem>
__device__ __forceinline__ int64_t* ls_tpre(LowStatic* ls) {
  if constexpr (kSmem) return nullptr; else return ls->tpre;
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

// num_valid of batch g, clamped to [0, B].
__device__ __forceinline__ int64_t valid_rows(const Args& a, int64_t g) {
  const int64_t nv = a.num_valid[g];
  return nv < 0 ? 0 : (nv > a.B ? a.B : nv);
}

// Rows of tile_scheduler_metadata written by the part that owns them (row and warp paths): part q's end
// (er, eb) in row q, its successor's begin (nr, nb, ns) in row q + 1, and part 0 also row 0's begin.
__device__ __forceinline__ void store_part_rows(int32_t* meta, int q, int P, int er, int eb, int nr, int nb, int ns) {
  *reinterpret_cast<int2*>(meta + 8 * q + 2) = make_int2(er, eb);
  if (q + 1 < P) {
    *reinterpret_cast<int2*>(meta + 8 * (q + 1)) = make_int2(nr, nb);
    *reinterpret_cast<int4*>(meta + 8 * (q + 1) + 4) = make_int4(ns, 0, 0, 0);
  }
  if (q == 0) {
    *reinterpret_cast<int2*>(meta) = make_int2(0, 0);
    *reinterpret_cast<int4*>(meta + 4) = make_int4(0, 0, 0, 0);
  }
}

// tile_scheduler_metadata of a batch with no valid rows: every row [-1, 0, -1, 0, 0, 0, 0, 0] (all threads).
__device__ __forceinline__ void store_empty_rows(int32_t* meta, int P) {
  for (int p = threadIdx.x; p < P; p += blockDim.x) {
    int4* dst = reinterpret_cast<int4*>(meta + 8 * static_cast<int64_t>(p));
    dst[0] = make_int4(-1, 0, -1, 0);
    dst[1] = make_int4(0, 0, 0, 0);
  }
}

// =============================== small dense batches: the row path ===============================
// Both kernels, dense mode, one CTA of 256 threads, B <= kRowPathRows (1,792), P <= kRowParts (256), tape total
// < 2^30 (else the general path below runs). No part records and no row search: everything follows from
// per-row arithmetic on the tape positions S_j and t_j = S_j mod Q, in 32-bit integers.
//  * A part q ends at E_q = F + (q + 1) Q + D, where D is fixed between restarts. Row j is "hit" (some part
//    ends inside its first F units, so the next part restarts at S_j) iff (S_j - D) mod Q <= F. After a hit at
//    row h, D = S_h - m Q (m = ceil((S_h - F - D_old) / Q): the hit part is m - 1), so D mod Q = t_h. The
//    chain of hits is therefore: h_0 = 0, h_{k+1} = first j > h_k with (t_j - t_{h_k}) mod Q <= F.
//  * D grows by at most F per hit and stays small next to Q on real batches (at most 30 against Q = 19 to
//    17,000 on the SPEC workloads), so while d + F <= L only rows with t_j <= L can be hit: each warp lists
//    those candidates (no barrier) and warp 0 walks them 32 at a time, one ballot per hit; past that bound it
//    walks every row.
//  * Row j (D of the last hit at or before it) is cut by the parts m - 1 with S_j - D < m Q < S_{j+1} - F - D:
//    floor((S_{j+1} - F - D - 1) / Q) - floor((S_j - D) / Q) of them, the first being q = floor((S_j - D) / Q).
//    The quotients do not depend on the hits (S = g Q + t, D = e Q + d: floor((S - D) / Q) = g - e - [t < d]),
//    so warps 1-7, which own the rows, divide while warp 0 walks. When F < Q, the cut counts of the rows
//    before row p telescope to floor((S_p - D) / Q) - k (k: the last hit at or before p), so num_splits needs
//    no scan; otherwise a block scan of the cut counts gives it.
//  * Each part finds its row by a binary search over per-row keys (the first part the row owns: its first
//    cut part, or the one before if the row is hit), as in the warp path.
// Shared memory (a region of rowpath_bytes, schedule_core.h): S_j with bit 31 set for zero lengths, t_j, the
// candidates, the hits (row, D, D / Q, D mod Q); after the walk, the per-row entries of the metadata pass in
// place of t and the candidates.
// The low_smem kernel lends it its part records, cut rows and thread prefixes (the smem kernel sizes its
// dynamic shared memory for it: smem_bytes in schedule_core.h).
static_assert(rowpath_bytes(kRowPathRows, kRowParts) <=
                  kPartRecordBytes * kStageParts + 4 * kStageParts + 8 * kThreads,
              "the row path must fit the low_smem kernel's static shared memory");
static_assert(kRowPathRows <= kV * (256 - 32), "the row path's threads past warp 0 own at most kV rows each");

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

// Returns false (having written nothing but scan buffers) when the tape is too long for 32-bit arithmetic;
// the caller then runs the general path.
template <int kNT>
__device__ __forceinline__ bool row_path(const Args& a, const int32_t (&nl)[kV], int n, int B, int32_t* meta,
                                         int32_t* splits, Shared* sh, uint8_t* region, int& scan_parity) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int P = a.c.num_parts;
  const uint32_t F = static_cast<uint32_t>(a.c.overhead);
  const int i0 = tid * kV;
  // The costs of this thread's rows, their zero-length flags and their prefix: a 32-bit scan saturating at
  // 2^30 (the row path needs a total below it, so that every value below stays under 2^31).
  constexpr uint32_t kCap = 1u << 30;
  uint32_t cost[kV], zero = 0;
  uint64_t tsum = 0;   // 8 costs may pass 2^32 (block_size_n < 64)
#pragma unroll
  for (int j = 0; j < kV; ++j) {
    const bool in = i0 + j < n;
    cost[j] = in ? nblk32(nl[j], a) + F : 0u;
    tsum += cost[j];
    if (in && nl[j] == 0) zero |= 1u << j;
  }
  uint32_t total;
  const uint32_t excl = block_exclusive_sum(tsum < kCap ? static_cast<uint32_t>(tsum) : kCap,
                                            reinterpret_cast<uint32_t*>(sh->scan[(scan_parity++) & 1]), &total,
                                            SatPlus{kCap});
  if (total >= kCap) return false;   // uniform
  MLA_STAMP(1);
  const uint32_t Q = (total + static_cast<uint32_t>(P) - 1) / static_cast<uint32_t>(P);   // >= 1: total >= 1
  const FastDiv fq(Q);
  // Candidates: only rows with t <= L can be hit while d + F <= L (see the walker).
  const uint32_t L = min(Q - 1, min(48u + 2u * F, 0xffffu));
  const int Bc = (B + 7) & ~7;
  uint32_t* Sarr = reinterpret_cast<uint32_t*>(region);
  uint32_t* tarr = Sarr + Bc;
  uint32_t* cand = tarr + Bc;      // per warp of rows (256 rows), its candidates: row << 16 | t, in row order
  uint32_t* ccount = cand + Bc;    // [8]: candidates per warp of rows
  uint32_t* hrow = ccount + 8;
  uint32_t* hD = hrow + P + 1;
  uint32_t* he = hD + P + 1;       // D / Q and D mod Q of every hit
  uint32_t* hd = he + P + 1;
  // After the walk, the per-row entries of the metadata pass replace t and the candidates: key << 16 | hit
  // (key: the first part row j owns, see the warp path) and D + Q - S (a cut part q ends at block q Q + that).
  uint32_t* kt = tarr;
  uint32_t* rbt = cand;
  {   // the tape (zero-length flags in bit 31), S mod Q and this warp's candidates
    uint32_t s = excl, v[kV], t[kV], cm = 0;
#pragma unroll
    for (int j = 0; j < kV; ++j) {
      v[j] = s | (((zero >> j) & 1u) << 31);
      fq.div(s, t[j]);
      if (i0 + j < n && t[j] <= L) cm |= 1u << j;
      s += cost[j];
    }
    const int c = __popc(cm);
    const int pos = warp_inclusive_sum(c);   // lanes without rows count 0
    if (i0 < B) {
      uint4* d = reinterpret_cast<uint4*>(Sarr + i0);
      d[0] = make_uint4(v[0], v[1], v[2], v[3]);
      d[1] = make_uint4(v[4], v[5], v[6], v[7]);
      d = reinterpret_cast<uint4*>(tarr + i0);
      d[0] = make_uint4(t[0], t[1], t[2], t[3]);
      d[1] = make_uint4(t[4], t[5], t[6], t[7]);
      uint32_t* dst = cand + warp * 32 * kV + (pos - c);
#pragma unroll
      for (int j = 0; j < kV; ++j) {
        if ((cm >> j) & 1u) *dst++ = (static_cast<uint32_t>(i0 + j) << 16) | t[j];
      }
    }
    if (lane == 31 && warp * 32 * kV < B) ccount[warp] = static_cast<uint32_t>(pos);   // warps that hold rows
  }
  MLA_STAMP(12);
  MLA_STAMP(13);
  __syncthreads();
  MLA_STAMP(2);

  // The chain of hits (warp 0). Row j is hit iff (t_j - d) mod Q <= F, i.e. umin(t_j - d, t_j + Q - d) <= F in
  // 32-bit unsigned arithmetic (t, d < Q < 2^30). While d + F <= L, a row with t > L cannot be hit, so the
  // walk visits the candidates only, 32 at a time; should d + F pass L it goes on over every row.
  // Then m and D of every hit, 32 at a time: m_k = m_{k-1} + ceil((S(h_k) - S(h_{k-1}) - F) / Q),
  // D_k = S(h_k) - m_k Q.
  // Cut counts per row need the hits only through D = e Q + d (d = D mod Q): with S = g Q + t,
  // floor((S - D) / Q) = g - e - [t < d]. Warps 1.. own kr consecutive rows per thread and divide while warp 0
  // walks.
  constexpr int kRT = kNT - 32;              // threads that own rows
  const int kr = (n + kRT - 1) / kRT;       // <= kV: n <= kRowPathRows = kV kRT
  const int r0 = (tid - 32) * kr;           // warp 0: none
  uint32_t ga[kV], ta[kV], gb[kV], tb[kV];
  if (warp > 0) {
#pragma unroll
    for (int j = 0; j < kV; ++j) {
      const int row = r0 + j;
      if (j < kr && row < n) {
        const uint32_t S = Sarr[row] & 0x7fffffffu;
        const uint32_t Sn = row + 1 < n ? (Sarr[row + 1] & 0x7fffffffu) : total;
        ga[j] = fq.div(S, ta[j]);
        gb[j] = fq.div(Sn - F - 1, tb[j]);   // a row costs >= F + 1
      }
    }
  }

  if (warp == 0) {
    uint32_t d = 0;
    int Hn = 1, h = 0;
    bool all_rows = L < Q - 1 && F > L;   // the filter holds from the start only if F <= L
    // The hits among 32 consecutive rows or candidates (one per lane, in row order, `ok` where the lane has
    // one), one ballot each; with `bounded`, returns true as soon as d + F passes L (L = Q - 1: every row is a
    // candidate, so never). The loop carries only d and two lane masks; h and the hit rows follow it.
    const uint32_t dmax = L < Q - 1 && F <= L ? L - F : 0xffffffffu;
    auto hits32 = [&](int row, uint32_t t, bool ok, bool bounded) {
      const uint32_t tq = t + Q;
      unsigned live = __ballot_sync(kFull, ok && row > h), hit = 0;   // lanes after the last hit
      bool over = false;
#pragma unroll 1
      while (live != 0) {
        const unsigned bal = __ballot_sync(kFull, min(t - d, tq - d) <= F) & live;
        if (bal == 0) break;
        const int l = __ffs(bal) - 1;
        d = __shfl_sync(kFull, t, l);
        hit |= 1u << l;
        live &= ~((2u << l) - 1u);
        if (bounded && d > dmax) {
          over = true;
          break;
        }
      }
      if (hit != 0) {
        h = __shfl_sync(kFull, row, 31 - __clz(hit));
        const int k = Hn + __popc(hit & ((1u << lane) - 1u));
        if (((hit >> lane) & 1u) && k <= P) hrow[k] = static_cast<uint32_t>(row);
        Hn += __popc(hit);
      }
      return over;
    };
    const int nw = (n + 32 * kV - 1) / (32 * kV);
    const uint32_t cnts = lane < nw ? ccount[lane] : 0u;
#pragma unroll 1
    for (int w = 0; w < nw && !all_rows; ++w) {   // warp-uniform
      const int cnt = static_cast<int>(__shfl_sync(kFull, cnts, w));
#pragma unroll 1
      for (int c0 = 0; c0 < cnt && !all_rows; c0 += 32) {
        const bool ok = c0 + lane < cnt;
        const uint32_t ce = ok ? cand[w * 32 * kV + c0 + lane] : 0u;
        all_rows = hits32(static_cast<int>(ce >> 16), ce & 0xffffu, ok, true);
      }
    }
    if (all_rows) {   // rare: every row after the last hit, 32 at a time
#pragma unroll 1
      for (int w0 = h + 1; w0 < n; w0 += 32) {
        const int row = w0 + lane;
        hits32(row, row < n ? tarr[row] : 0u, row < n, false);
      }
    }
    __syncwarp();   // the hit rows (stored by the lanes that found them), read by every lane below
    if (Hn > P + 1) Hn = P + 1;   // not reached: every hit ends a distinct part
    uint32_t mc = 0, Sp = 0;
#pragma unroll 1
    for (int b = 1; b < Hn; b += 32) {   // warp-uniform
      const int k = b + lane;
      uint32_t Sh = 0, inc = 0;
      if (k < Hn) {
        Sh = Sarr[hrow[k]] & 0x7fffffffu;
        const uint32_t Sq = k > b ? (Sarr[hrow[k - 1]] & 0x7fffffffu) : Sp;   // lane 0: the last of the step before
        inc = fq.div(Sh - Sq - F + Q - 1);   // S(h_k) - S(h_{k-1}) >= F + 1
      }
      const uint32_t m = mc + warp_inclusive_sum(inc);
      if (k < Hn) {
        const uint32_t D = Sh - m * Q;
        uint32_t dm;
        hD[k] = D;
        he[k] = fq.div(D, dm);
        hd[k] = dm;
      }
      mc = __shfl_sync(kFull, m, 31);
      Sp = __shfl_sync(kFull, Sh, 31);
    }
    if (lane == 0) {
      hrow[0] = hD[0] = he[0] = hd[0] = 0u;
      sh->u[0] = Hn;
    }
    MLA_STAMP(9);
  }
  __syncthreads();
  MLA_STAMP(3);
  const int Hn = static_cast<int>(sh->u[0]);

  // Cut counts, the per-row entries of the metadata pass, and num_splits: position p holds min(p, n) + (cuts
  // of rows < p), n + C from n on.
  // When F < Q those cuts need no scan: inside the stretch of the k-th hit (D fixed), no row but the next hit
  // has (S_j - D) mod Q <= F, so the cut counts telescope to floor((S_p - D) / Q) - m_k, and the hit itself
  // adds m_k - k: cuts of rows < p = qa_p - k, with qa_p = floor((S_p - D) / Q) as below. Past the last row,
  // C = floor((total - D) / Q) - K - [(total - D) mod Q <= F] for the last hit K (every thread derives it).
  const bool closed = F < Q;   // uniform
  int C0 = 0;
  if (closed) {
    uint32_t r;
    const uint32_t c = fq.div(total - hD[Hn - 1], r);
    C0 = static_cast<int>(c) - (Hn - 1) - (r <= F ? 1 : 0);
  }
  int tc = 0, lc[kV];
  if (warp > 0 && r0 < n) {
    int k = 0, hi = Hn;   // the last hit at or before row r0, then row by row
    while (hi - k > 1) {
      const int mid = (k + hi) >> 1;
      if (static_cast<int>(hrow[mid]) <= r0) k = mid; else hi = mid;
    }
#pragma unroll
    for (int j = 0; j < kV; ++j) {
      lc[j] = tc;
      const int row = r0 + j;
      if (j < kr && row < n) {
        if (j > 0 && k + 1 < Hn && static_cast<int>(hrow[k + 1]) == row) ++k;   // at most one hit per row
        const uint32_t e = he[k], dd = hd[k];
        const uint32_t qa = ga[j] - e - (ta[j] < dd ? 1u : 0u), qb = gb[j] - e - (tb[j] < dd ? 1u : 0u);
        const int c = static_cast<int>(qb - qa);
        const uint32_t hit = k > 0 && static_cast<int>(hrow[k]) == row ? 1u : 0u;
        kt[row] = ((qa - hit) << 16) | hit;   // qa <= P <= 256
        rbt[row] = hD[k] + Q - (ga[j] * Q + ta[j]);
        if (closed) splits[row] = row + static_cast<int>(qa) - k;
        tc += c;
      } else if (closed && j < kr && row <= B) {
        splits[row] = n + C0;
      }
    }
  } else {
#pragma unroll
    for (int j = 0; j < kV; ++j) lc[j] = 0;
  }
  MLA_STAMP(10);
  int C = C0;
  if (closed) {
    if (warp > 0 && r0 >= n) {
#pragma unroll
      for (int j = 0; j < kV; ++j)
        if (j < kr && r0 + j <= B) splits[r0 + j] = n + C;
    }
    __syncthreads();   // the per-row entries
    MLA_STAMP(11);
  } else {
    uint32_t C32;   // C < n + P: a 32-bit scan (never saturated at 2^31)
    const int cex = static_cast<int>(block_exclusive_sum(
        static_cast<uint32_t>(tc), reinterpret_cast<uint32_t*>(sh->scan[(scan_parity++) & 1]), &C32,
        SatPlus{1u << 31}));
    MLA_STAMP(11);
    C = static_cast<int>(C32);
    if (warp > 0) {
#pragma unroll
      for (int j = 0; j < kV; ++j) {
        const int p = r0 + j;
        if (j < kr && p <= B) splits[p] = min(p, n) + cex + lc[j];
      }
    }
  }
  for (int p = kRT * kr + tid; p <= B; p += kNT) splits[p] = n + C;

  // tile_scheduler_metadata: part q (one per thread) writes its end into row q and its successor's begin into
  // row q + 1. Every part before qt = K + C ends inside the tape (the K hits' parts and the C cuts); part q
  // finds its row as the last one whose key is <= q (the keys never decrease; see the warp path).
  const int q = tid, qt = Hn - 1 + C;
  if (q < P) {
    auto last_blk = [&](int j) {   // end_block of a part that ends on the boundary after row j
      const uint32_t v = Sarr[j];
      const uint32_t nxt = j + 1 < n ? (Sarr[j + 1] & 0x7fffffffu) : total;
      return (v >> 31) ? 0 : static_cast<int>(nxt - (v & 0x7fffffffu) - F);
    };
    int er, eb, nr = -1, nb = 0, ns = 0;
    if (q >= qt) {   // the tape ends inside part q
      er = n - 1;
      eb = last_blk(n - 1);
    } else {
      const uint32_t lim = (static_cast<uint32_t>(q) << 16) | 0xffffu;
      int j = 0;
#pragma unroll 1
      for (int s = n > 1 ? 1 << (31 - __clz(n - 1)) : 0; s >= 1; s >>= 1)
        if (j + s < n && kt[j + s] <= lim) j += s;
      const uint32_t e = kt[j];
      const int qa = static_cast<int>((e >> 16) + (e & 1u));
      if ((e & 1u) && q + 1 == qa) {   // part q ends in the first F units of row j
        er = j - 1;
        eb = last_blk(j - 1);
        nr = j;
      } else {   // part q cuts row j
        er = nr = j;
        eb = nb = static_cast<int>(static_cast<uint32_t>(q) * Q + rbt[j]);
        ns = q - qa + 1;
      }
    }
    store_part_rows(meta, q, P, er, eb, nr, nb, ns);
  }
  MLA_STAMP(4);
  return true;
}

// =============================== small dense batches: the warp path ===============================
// Both kernels, dense mode, B <= kWarpPathRows (512), P <= kRowParts (256), tape total < 2^30 and every row
// cost < 2^26 (else the general path runs). Warp 0 does all the per-row work with no block barrier (row
// 32 i + lane in slot i of lane `lane`, R slots), then one barrier, then every thread writes one part's rows
// of tile_scheduler_metadata.
//  * F < Q: the chain of restarts is the row path's (row j is hit iff (t_j - d) mod Q <= F, d = t of the last
//    hit), walked over every row, 32 per ballot round. With S = g Q + t, the k-th hit, at row h, begins part
//    m_k = g_h - W_k and has D_k = t_h + W_k Q, where W_k counts the hits whose t fell below the one before
//    (m_k = floor((S_h - D_{k-1}) / Q): one multiple of Q lies in the hit window when F < Q). Row j's first
//    cut part is qa = g - W - [t < d], (d, W) of the last hit at or before it; num_splits telescopes as in the
//    row path: splits[j] = j + qa - k (k: that hit's index), C = floor((total - D_K) / Q) - K - [rem <= F].
//  * Q <= F: every row after the first is hit; with m_j = sum_{i<j} ceil(nblk_i / Q), row j begins part m_j
//    and is cut by parts [m_j, m_{j+1} - 1): splits[j] = m_j, C = m_n - n.
//  * The parts of row j begin at key_j = qa_j - [j is hit] (a hit row first owns the part that ends in its
//    first F units), which does not decrease with j; every part before qt = K + C ends inside the tape. Part
//    q < qt takes the last row with key <= q (a binary search over the keys), the others end with the tape.
// Shared memory: key[32 R], then per row {qa | hit << 31, D + Q - S (so a cut part q ends at block
// q Q + that), end_block of the row before, 0}. Scalars in Shared::u: n, C, qt, Q, end_block of row n - 1, and
// a flag set when the total reaches 2^30 or a row cost 2^26 (then the caller runs the general path).
static_assert(warppath_bytes(kWarpPathRows) <= kPartRecordBytes * kStageParts,
              "the warp path must fit the low_smem kernel's part records");
static_assert(kWarpPathRows == 32 * 16 && kRowParts <= 256, "the warp path: 16 rows per lane, a thread per part");
// warp_inclusive_sum of R windows of 32 values at once (one per lane each), the R scans side by side.
template <int R>
__device__ __forceinline__ void window_inclusive_sums(uint32_t (&v)[R]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
#pragma unroll
    for (int i = 0; i < R; ++i) {
      const uint32_t o = __shfl_up_sync(kFull, v[i], d);
      if (lane >= d) v[i] += o;
    }
  }
}

// The shared memory of the one-CTA paths (warp and mid): the fixed block, then a region for the path's own
// arrays (the smem kernel's dynamic shared memory, the low_smem kernel's part records).
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

template <bool kSmem, int R>
__device__ __forceinline__ bool warp_path(const Args& a) {
  Shared* sh;
  uint32_t* key;
  one_cta_smem<kSmem>(sh, key);
  uint4* tab = reinterpret_cast<uint4*>(key + 32 * R);
  uint32_t* sc = reinterpret_cast<uint32_t*>(sh->u);   // [0] n, [1] C, [2] qt, [3] Q, [4] end_block of n - 1, [5] flag
  const int64_t g = a.batch0 + blockIdx.y;
  const int B = static_cast<int>(a.B), P = a.c.num_parts;
  int32_t* meta = a.meta + g * P * 8;
  int32_t* splits = a.splits + g * (a.B + 1);
  const int tid = threadIdx.x, lane = tid & 31;
  if (tid < 32) {
    const int32_t* lens = a.seqlens + g * a.B;
    int32_t len[R];
#pragma unroll
    for (int i = 0; i < R; ++i) len[i] = 32 * i + lane < B ? lens[32 * i + lane] : 0;
    const int n = static_cast<int>(valid_rows(a, g));
    MLA_STAMP(0);
    const uint32_t F = static_cast<uint32_t>(a.c.overhead);
    // The path needs a total below 2^30. Costs are capped at 2^26 (a capped row sends the batch to the general
    // path; with block_size_n >= 64 none is), so a window of 32 adds up in 32 bits without saturating.
    constexpr uint32_t kCap = 1u << 30, kRowCap = 1u << 26;
    uint32_t cost[R], lb[R], S[R], inc[R];   // costs, end_block of each row, the tape S
    bool big = false;
#pragma unroll
    for (int i = 0; i < R; ++i) {
      const uint32_t nb = nblk32(len[i], a);   // + F < 2^32
      const bool in = 32 * i + lane < n;
      big |= in && nb + F >= kRowCap;
      cost[i] = in ? min(nb + F, kRowCap) : 0u;
      lb[i] = len[i] == 0 ? 0u : nb;
      inc[i] = cost[i];
    }
    window_inclusive_sums(inc);
    uint32_t total = 0;
#pragma unroll
    for (int i = 0; i < R; ++i) {
      S[i] = total + inc[i] - cost[i];
      total = min(total + __shfl_sync(kFull, inc[i], 31), kCap);
    }
    MLA_STAMP(1);
    if (n == 0 || total >= kCap || __any_sync(kFull, big)) {   // uniform
      if (lane == 0) {
        sc[0] = static_cast<uint32_t>(n);
        sc[5] = n == 0 ? 0u : 1u;
      }
    } else {
      const uint32_t Q = (total + static_cast<uint32_t>(P) - 1) / static_cast<uint32_t>(P);
      const FastDiv fq(Q);
      uint32_t qa[R], hb[R], rb[R];   // first part, hit flag, D + Q - S
      int32_t sp[R];                  // num_splits of the row
      uint32_t C, K;
      if (F < Q) {   // uniform
        uint32_t gq[R], t[R];
#pragma unroll
        for (int i = 0; i < R; ++i) gq[i] = fq.div(S[i], t[i]);
        MLA_STAMP(2);
        uint32_t d = 0, W = 0, md[R], mW[R];
        int k = 0, mk[R];
        // Window i's rows that can be hit (not row 0, not past n), without a ballot; and its rows hit by the
        // current d. Window i + 1's first ballot is taken early, with the d window i starts with: it stands
        // when window i has no hit (most windows), so the hit-free windows' ballots overlap.
        auto live_of = [&](int i) {
          const int v = n - 32 * i;
          const unsigned m = v >= 32 ? kFull : (v <= 0 ? 0u : (1u << v) - 1u);
          return i == 0 ? m & ~1u : m;
        };
        auto hits_of = [&](int i, unsigned live) {
          return __ballot_sync(kFull, min(t[i] - d, t[i] + Q - d) <= F) & live;
        };
        unsigned bal = hits_of(0, live_of(0));
#pragma unroll
        for (int i = 0; i < R; ++i) {
          md[i] = d;
          mW[i] = W;
          unsigned next = i + 1 < R ? hits_of(i + 1 < R ? i + 1 : i, live_of(i + 1)) : 0u;
          unsigned hit = 0, live = live_of(i);
#pragma unroll 1
          while (bal != 0) {
            const int l = __ffs(bal) - 1;
            const uint32_t nd = __shfl_sync(kFull, t[i], l);
            W += nd < d ? 1u : 0u;
            d = nd;
            if (lane >= l) {
              md[i] = d;
              mW[i] = W;
            }
            hit |= 1u << l;
            live &= ~((2u << l) - 1u);
            bal = hits_of(i, live);
          }
          if (hit != 0 && i + 1 < R) next = hits_of(i + 1 < R ? i + 1 : i, live_of(i + 1));   // d moved
          bal = next;
          hb[i] = (hit >> lane) & 1u;
          mk[i] = k + __popc(hit & ((2u << lane) - 1u));
          k += __popc(hit);
        }
        MLA_STAMP(9);
#pragma unroll
        for (int i = 0; i < R; ++i) {
          qa[i] = gq[i] - mW[i] - (t[i] < md[i] ? 1u : 0u);
          rb[i] = md[i] + mW[i] * Q + Q - S[i];
          sp[i] = 32 * i + lane + static_cast<int>(qa[i]) - mk[i];
        }
        uint32_t r;
        const uint32_t c = fq.div(total - (d + W * Q), r);
        K = static_cast<uint32_t>(k);
        C = c - K - (r <= F ? 1u : 0u);
      } else {   // Q <= F: every row after the first is hit
        uint32_t u[R];
#pragma unroll
        for (int i = 0; i < R; ++i) u[i] = 32 * i + lane < n ? fq.div(cost[i] - F + Q - 1) : 0u;
        MLA_STAMP(2);
        uint32_t m[R];
#pragma unroll
        for (int i = 0; i < R; ++i) m[i] = u[i];
        window_inclusive_sums(m);
        uint32_t base = 0;   // m_n <= total < 2^30
#pragma unroll
        for (int i = 0; i < R; ++i) {
          const uint32_t ex = base + m[i] - u[i];
          base += __shfl_sync(kFull, m[i], 31);
          const int row = 32 * i + lane;
          qa[i] = ex;
          hb[i] = row > 0 ? 1u : 0u;
          rb[i] = Q - ex * Q;
          sp[i] = static_cast<int>(ex);
        }
        MLA_STAMP(9);
        K = static_cast<uint32_t>(n - 1);
        C = base - static_cast<uint32_t>(n);
      }
      // The rows' entries and num_splits; end_block of the row before each (lane 0: the window before's lane 31).
      uint32_t last = 0;
#pragma unroll
      for (int i = 0; i < R; ++i) {
        const int row = 32 * i + lane;
        const uint32_t up = __shfl_up_sync(kFull, lb[i], 1);
        const uint32_t prev = lane == 0 ? last : up;
        last = __shfl_sync(kFull, lb[i], 31);
        if (row < n) {
          key[row] = qa[i] - hb[i];
          tab[row] = make_uint4(qa[i] | (hb[i] << 31), rb[i], prev, 0u);
          splits[row] = sp[i];
          if (row == n - 1) sc[4] = lb[i];
        }
      }
      if (lane == 0) {
        sc[0] = static_cast<uint32_t>(n);
        sc[1] = C;
        sc[2] = K + C;
        sc[3] = Q;
        sc[5] = 0u;
      }
    }
  }
  __syncthreads();
  MLA_STAMP(3);
  const int n = static_cast<int>(sc[0]);
  if (sc[5] != 0u) return false;   // uniform; nothing written yet
  const int q = tid;
  if (n == 0) {
    store_empty_rows(meta, P);
    for (int p = tid; p <= B; p += blockDim.x) splits[p] = 0;
    return true;
  }
  const int C = static_cast<int>(sc[1]), qt = static_cast<int>(sc[2]);
  const uint32_t Q = sc[3];
  for (int p = n + tid; p <= B; p += blockDim.x) splits[p] = n + C;
  if (q < P) {
    int er, eb, nr = -1, nb = 0, ns = 0;
    if (q >= qt) {   // the tape ends inside part q
      er = n - 1;
      eb = static_cast<int>(sc[4]);
    } else {
      int j = 0;   // the last row with key <= q (key[0] = 0)
#pragma unroll
      for (int s = 16 * R; s >= 1; s >>= 1)
        if (j + s < n && static_cast<int>(key[j + s]) <= q) j += s;
      const uint4 e = tab[j];
      const int qa = static_cast<int>(e.x & 0x7fffffffu);
      if ((e.x >> 31) && q + 1 == qa) {   // part q ends in the first F units of row j
        er = j - 1;
        eb = static_cast<int>(e.z);
        nr = j;
      } else {   // part q cuts row j
        er = nr = j;
        eb = nb = static_cast<int>(static_cast<uint32_t>(q) * Q + e.y);
        ns = q - qa + 1;
      }
    }
    store_part_rows(meta, q, P, er, eb, nr, nb, ns);
  }
  MLA_STAMP(4);
  return true;
}

// =============================== mid-size dense batches: the mid path ===============================
// Both kernels, dense mode, kRowPathRows < B <= kMidPathRows (12,288), P <= kRowParts (256), block_size_n a
// power of two >= 64 (midpath_fits, schedule_core.h). A cluster of K CTAs (midpath_cluster: 1-8 on an H100)
// of kMidThreads (512) threads; rank r owns rows [r W, r W + W) (W: ceil(B / K) rounded up to whole threads)
// and thread i of it rows [r W + R i, r W + R i + R) (R = 4, 8, 16 or 24), whose costs it keeps in
// registers: no per-row shared memory, so both kernels run it alike, and no division per row: each thread
// divides once per pass and then steps its rows' tape positions past multiples of Q (see `residues`).
// (Rolled loops that reread the lengths from L1 were 1.5x slower: measured at 11,622 rows on one CTA.)
//  * Each rank scans its costs and sends its sum to every rank (push_word: no cluster barrier, whose release
//    costs ~1,300 cycles); then every thread knows the total, Q and S of its rows.
//  * Candidates (as in the row path): rows with t = S mod Q <= L = 128 + 2F. While d + F <= L no other row
//    can be hit, and no hit wraps below the one before (L < Q - 1), so D = d, the t of the last hit: the
//    chain hits, in row order, every candidate with d <= t <= d + F, and d becomes its t. Each rank lists its
//    own candidates in row order (row 0, where the chain starts, is not one). Then one of two ways, chosen
//    alike in every rank from the total, Q and W:
//    - by tables (a cluster where a rank expects at most 32 candidates, W (L + 1) <= 32 Q, and dmax < 256):
//      each rank follows its own candidates from every d in [0, dmax], a thread each (table_entry): entry d
//      is the number of restarts in its slice and the d the chain leaves it with. The ranks send each other
//      their tables, and every rank follows the chain through them (one dependent load a rank): the d and
//      the restart count on entering its slice, and on leaving the last one. The slice's own restarts: where
//      it has at most 32 candidates, the thread of its entry d kept them as a mask while building that entry
//      (the warp of that thread writes them out); else warp 0 walks the slice's candidates from its d on
//      entry, 32 per ballot round (walk_candidates). (Against the lists below at 11,622 rows on 8 CTAs:
//      5.5 -> 4.9 us, and 4.83 with the masks; benchmarks/README.md, perf log v17 and v18.)
//    - by lists: each rank sends its count and its candidates (at most M = kMidCand / K) to every rank (into
//      rank slots), a word a thread; every rank lays them out in row order in its own shared memory, and
//      warp 0 of every rank walks the whole chain from d = 0. One CTA (K = 1) walks its own list.
//  * Then each thread steps through its rows with qa = floor((S - d) / Q), the first part that ends at or
//    after the row's start (it does not change at a restart). Row j's num_splits entry is j + qa - k (k: the
//    last restart at or before it). While S_{j+1} >= (qa + 1) Q + d, part qa ends inside row j (at block
//    (qa + 1) Q + d - S_j), or, within F of S_{j+1}, in the first F units of the next row (written by that
//    row, a restart) or at the tape's end. So every part is written by the thread whose row holds its end,
//    in the rare branch of that step, and no part searches for its row.
// The batch goes to the general path, before anything is written, when the tape total reaches 2^30, when
// Q <= L + 1 or F > L, when a rank has more than M = kMidCand / K candidates, or when the chain outgrows the
// bound (d > dmax; by tables also more than P restarts): each test gives the same answer in every rank (by
// tables, a rank with too many candidates sends a table whose every entry says the chain outgrew the bound),
// every word sent to a rank has landed before it leaves, and the general path begins with its own cluster
// barrier.
// Shared memory (midpath_bytes): the candidates in row order (row << 16 | t; by lists, every rank's), padded
// by 4; the rank slots (candidates or tables); per restart k its row and d (k = 0: row 0 and the d the walk
// starts from; a sentinel row after the last); each rank's tape sum and candidate count; three mbarriers.
// Scalars in Shared::u: the walk's restarts, its last d and the outgrown-bound flag.
static_assert(midpath_bytes() <= kPartRecordBytes * kStageParts,
              "the mid path must fit the low_smem kernel's part records");
static_assert(kMidPathRows <= 24 * kMidThreads && kMidPathRows < 65536, "the mid path: 24 rows a thread, 16-bit rows");

// The R lengths of rows [i0, i0 + R) (0 from row `end` on), all requested at once (16-byte loads when aligned).
template <int R>
__device__ __forceinline__ void load_rows(const int32_t* lens, int i0, int end, int32_t (&len)[R]) {
  static_assert(R % 4 == 0, "whole 16-byte groups");
  const int32_t* p = lens + i0;
  if (i0 + R <= end && (reinterpret_cast<uintptr_t>(p) & 15u) == 0) {
#pragma unroll
    for (int v = 0; v < R / 4; ++v) {
      const int4 x = __ldg(reinterpret_cast<const int4*>(p) + v);
      len[4 * v] = x.x;
      len[4 * v + 1] = x.y;
      len[4 * v + 2] = x.z;
      len[4 * v + 3] = x.w;
    }
  } else {
#pragma unroll
    for (int j = 0; j < R; ++j) len[j] = i0 + j < end ? __ldg(p + j) : 0;
  }
}

// Warp 0 (all 32 lanes): the chain of restarts over cand[0 .. m) (row << 16 | t in row order) from d = d0, 32
// candidates a ballot round (the row path's walk): lists them as hrow / hd [1 .. nh] (nh capped at lim), with
// hrow / hd [0] = (0, d0) and a sentinel row after the last. Returns the d the chain ends with; `over` when it
// passed dmax (the walk stops there).
__device__ __forceinline__ uint32_t walk_candidates(const uint32_t* cand, int m, uint32_t d0, uint32_t F,
                                                    uint32_t dmax, int lim, uint32_t* hrow, uint32_t* hd, int& nh,
                                                    bool& over) {
  const int lane = threadIdx.x & 31;
  uint32_t d = d0;
  nh = 0;
  over = false;
#pragma unroll 1
  for (int c0 = 0; c0 < m && !over; c0 += 32) {   // warp-uniform
    const bool ok = c0 + lane < m;
    const uint32_t ce = ok ? cand[c0 + lane] : 0u;
    const uint32_t tc = ce & 0xffffu;   // lanes past the list are not live
    unsigned live = __ballot_sync(kFull, ok), hit = 0;
    uint32_t md = d;
#pragma unroll 1
    while (live != 0) {
      const unsigned bal = __ballot_sync(kFull, tc - d <= F) & live;   // no wrap: d <= t when hit
      if (bal == 0) break;
      const int l = __ffs(bal) - 1;
      d = __shfl_sync(kFull, tc, l);
      if (lane >= l) md = d;
      hit |= 1u << l;
      live &= ~((2u << l) - 1u);
      if (d > dmax) {
        over = true;
        break;
      }
    }
    if (hit != 0) {
      const int k = nh + __popc(hit & ((2u << lane) - 1u));
      if (((hit >> lane) & 1u) && k <= lim) {
        hrow[k] = ce >> 16;
        hd[k] = md;
      }
      nh += __popc(hit);
    }
  }
  if (nh > lim) nh = lim;   // not reached: every restart ends a distinct part
  if (lane == 0) {
    hrow[0] = 0u;
    hd[0] = d0;
    hrow[nh + 1] = 0xffffffffu;
  }
  return d;
}

// The chain over a CTA's candidates cand[0 .. m) (row << 16 | t in row order, 16-byte aligned, padded to
// whole 16-byte groups with entries no chain hits: t = 0xffff > L + F) for a chain that enters with d = x, as
// one entry of a cluster CTA's table: every candidate by one dependent compare-and-select, no branch. Returns
// the d it leaves with (past dmax: outgrown), the restarts in `cnt` and, where m <= 32, which candidates they
// are in `hits` (bit c: cand[c]).
__device__ __forceinline__ uint32_t table_entry(const uint32_t* cand, uint32_t m, uint32_t x, uint32_t F,
                                                uint32_t& cnt, uint32_t& hits) {
  uint32_t d = x;
  cnt = 0;
  hits = 0;
  for (uint32_t j = 0; j < m; j += 4) {
    const uint4 v = *reinterpret_cast<const uint4*>(cand + j);
    const uint32_t e[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const uint32_t t = e[l] & 0xffffu;
      const bool h = t - d <= F;
      d = h ? t : d;
      cnt += h ? 1u : 0u;
      hits |= (h ? 1u : 0u) << ((j + l) & 31u);   // exact where m <= 32
    }
  }
  return d;
}

template <bool kSmem, int R>
__device__ __forceinline__ bool mid_path(const Args& a) {
  Shared* sh;
  uint32_t* cand;   // every candidate, in row order (the walk's list)
  one_cta_smem<kSmem>(sh, cand);
  uint32_t* slots = cand + kMidCand + 4;  // K > 1: rank k's candidates at [k M, k M + M) (M = kMidCand / K), or
                                          // its table at [k nd, k nd + nd)
  uint32_t* hrow = slots + kMidCand;
  uint32_t* hd = hrow + (kRowParts + 2);
  uint32_t* rsum = hd + (kRowParts + 2);  // [kMaxCluster]: rank k's tape sum, pushed by rank k
  uint32_t* rcnt = rsum + kMaxCluster;    // [kMaxCluster]: rank k's candidate count, pushed by rank k
  uint64_t* bar = reinterpret_cast<uint64_t*>(rcnt + kMaxCluster);   // [3]: the sums, counts, lists / tables
  uint32_t* sc = reinterpret_cast<uint32_t*>(sh->u);   // the walk's [0] restarts, [1] last d, [2] outgrown bound
  const unsigned K = gridDim.x, rank = blockIdx.x;     // the cluster spans grid.x
  const int tid = threadIdx.x;
  if (K > 1) {
    if (tid == 0) {
      for (int i = 0; i < 3; ++i) mbar_init(bar + i);
      mbar_expect_bytes(bar, 4 * K);       // a word from every rank
      mbar_expect_bytes(bar + 1, 4 * K);
      mbar_init_fence();
    }
    cluster_arrive_relaxed();   // phase 0: every CTA of the cluster has started, its mbarriers ready
  }
  MLA_MID_STAMP(5);
  const int64_t g = a.batch0 + blockIdx.y;
  const int B = static_cast<int>(a.B), P = a.c.num_parts;
  // This rank's rows: [r0, r1), W = r1 - r0 a multiple of R (K is a power of two: a shift, not a division).
  const int W = (((B + static_cast<int>(K) - 1) >> (__ffs(static_cast<int>(K)) - 1)) + R - 1) / R * R;
  const int r0 = static_cast<int>(rank) * W, r1 = r0 + W, i0 = r0 + tid * R;
  const int32_t* lens = a.seqlens + g * a.B;
  int32_t len0[R];
  load_rows<R>(lens, i0, min(r1, B), len0);
  // The row before the thread's (a restart on its first row ends a part there).
  const int32_t len_prev = i0 > 0 && i0 <= B ? __ldg(lens + i0 - 1) : 0;
  const int n = static_cast<int>(valid_rows(a, g));
  // The last rank ends the parts past the tape in row n - 1.
  const int32_t len_last = rank == K - 1 && n > 0 ? __ldg(lens + n - 1) : 0;
  MLA_MID_STAMP(0);
  int32_t* meta = a.meta + g * P * 8;
  int32_t* splits = a.splits + g * (a.B + 1);
  if (n == 0) {   // the same in every rank: rank 0 writes everything
    if (rank == 0) {
      store_empty_rows(meta, P);
      for (int p = tid; p <= B; p += kMidThreads) splits[p] = 0;
    }
    if (K > 1) cluster_wait();
    return true;
  }
  const int nl = min(n, r1);   // this rank's rows with a length
  const uint32_t F = static_cast<uint32_t>(a.c.overhead);
  const int shift = a.bs_shift;   // >= 6: a row costs < 2^25 + F < 2^26, R of them < 2^31
  // The costs of the thread's rows stay in registers (0 from row nl on); every pass over them is unrolled.
  uint32_t cost[R], tsum = 0, cmax = 0, zm = 0;   // zm: rows of length 0 (their end_block is 0)
#pragma unroll
  for (int j = 0; j < R; ++j) {
    cost[j] = i0 + j < nl ? (static_cast<uint32_t>(max(len0[j], 1) - 1) >> shift) + 1u + F : 0u;
    zm |= (len0[j] == 0 ? 1u : 0u) << j;
    tsum += cost[j];
    cmax = max(cmax, cost[j]);
  }
  auto rows = [&](auto&& f) {   // f(j, cost of row i0 + j)
#pragma unroll
    for (int j = 0; j < R; ++j) f(j, cost[j]);
  };
  constexpr uint32_t kCap = 1u << 30;
  const SatPlus sat{kCap};
  uint32_t total;
  uint32_t excl = block_exclusive_sum(min(tsum, kCap), reinterpret_cast<uint32_t*>(sh->scan[0]), &total, sat);
  MLA_MID_STAMP(1);
  if (K > 1) {   // every rank's sum, pushed to every rank: the total and where this rank's slice starts
    cluster_wait();   // phase 0 complete: other ranks may be sent to
    MLA_MID_STAMP(13);
    if (tid < static_cast<int>(K)) push_word(rsum + rank, bar, tid, total);
    mbar_wait(bar);
    uint32_t pre = 0, all = 0;
#pragma unroll
    for (int k = 0; k < kMaxMidCluster; ++k) {
      const uint32_t v = k < static_cast<int>(K) ? rsum[k] : 0u;
      if (k < static_cast<int>(rank)) pre = sat(pre, v);
      all = sat(all, v);
    }
    excl = sat(excl, pre);
    total = all;
    MLA_MID_STAMP(10);
  }
  // A batch this path does not take goes to the general path, after a barrier: the scan buffers are read
  // until every warp has passed it, and the mbarriers are waited on until then (then invalidated: the
  // general path reuses their memory). Every word sent to this rank has landed by then.
  auto general = [&] {
    __syncthreads();
    if (K > 1) {
      if (tid == 0)
        for (int i = 0; i < 3; ++i) mbar_inval(bar + i);
      __syncthreads();
    }
    return false;
  };
  if (total >= kCap) return general();   // uniform in the cluster; nothing written
  const uint32_t Q = (total + static_cast<uint32_t>(P) - 1) / static_cast<uint32_t>(P);
  const uint32_t L = static_cast<uint32_t>(midpath_bound(F));
  if (Q <= L + 1u || F > L) return general();   // uniform
  const uint32_t dmax = L - F;   // the chain's d stays <= dmax, or the batch goes to the general path
  const FastDiv fq(Q);
  // t = S mod Q of each row, from the thread's first row (one division): `visit` gets (j, t) for every row
  // (rows from nl on repeat the last t). When every row of the thread costs less than Q (the rule: a row
  // costs a few dozen units, Q thousands), t steps by one conditional subtraction; otherwise by a division
  // where a multiple of Q is crossed (predicated by the compiler: ~11 instructions a row against 3).
  uint32_t t0;
  fq.div(excl, t0);
  const bool small = cmax < Q;
  auto residues = [&](auto&& visit) {
    if (small) {
      uint32_t t = t0;
      rows([&](int j, uint32_t cj) {
        visit(j, t);
        t += cj;
        t = t >= Q ? t - Q : t;
      });
    } else {
      uint32_t s = excl, base = excl - t0;   // base: the multiple of Q at or below s
      rows([&](int j, uint32_t cj) {
        if (s - base >= Q) {   // the thread's rows crossed a multiple of Q
          uint32_t t;
          fq.div(s, t);
          base = s - t;
        }
        visit(j, s - base);
        s += cj;
      });
    }
  };
  uint32_t cm = 0;   // this thread's candidates: rows before nl with t <= L, not row 0 (the chain's start)
  residues([&](int j, uint32_t t) { cm |= (t <= L ? 1u : 0u) << j; });
  if (nl - i0 < R) cm &= nl > i0 ? (1u << (nl - i0)) - 1u : 0u;
  if (i0 == 0) cm &= ~1u;
  uint32_t m;   // this rank's candidates
  const uint32_t cpos = block_exclusive_sum(static_cast<uint32_t>(__popc(cm)), reinterpret_cast<uint32_t*>(sh->scan[1]),
                                            &m);
  MLA_MID_STAMP(2);
  const int kLog = __ffs(static_cast<int>(K)) - 1;
  const uint32_t M = static_cast<uint32_t>(kMidCand) >> kLog;   // candidates a rank lists at most
  const bool listed = m <= M;                                    // uniform in the CTA
  if (K == 1 && !listed) return general();   // uniform
  if (cm != 0 && listed) {
    uint32_t* dst = cand + cpos;
    residues([&](int j, uint32_t t) {
      if ((cm >> j) & 1u) *dst++ = (static_cast<uint32_t>(i0 + j) << 16) | t;
    });
  }
  if (tid < 4 && listed) cand[m + tid] = 0xffffffffu;   // table_entry's padding
  // The chain by tables where a rank expects at most 32 candidates (W rows, each a candidate with probability
  // about (L + 1) / Q): uniform, from values every rank has.
  const bool by_tables = K > 1 && dmax < static_cast<uint32_t>(kMidStates) &&
                         static_cast<uint64_t>(W) * (L + 1u) <= 32ull * Q;
  uint32_t din = 0, kin = 0, dfin = 0, tot = 0;   // the chain on entering this rank's slice, on leaving the last
  bool over = false;
  uint32_t nwalk = m;   // warp 0 walks cand[0 .. nwalk) from d = din
  // By tables with at most 32 candidates, thread x keeps which candidates its entry's chain restarts at
  // (bit c: cand[c]); after the chain through the tables, the warp of thread din writes them: no walk.
  bool masks = false;
  uint32_t hits = 0;
  if (by_tables) {
    // Entry x of a rank's table, for a chain that enters the slice with d = x: low half, the d it leaves with
    // (at most dmax); high half, its restarts, plus 0x8000 where d passed dmax (the chain outgrew the bound;
    // every entry of a rank that could not list its candidates says so). Sent to every rank; then every rank
    // follows the chain through all K tables, one dependent load a rank.
    const uint32_t nd = dmax + 1u;
    masks = listed && m <= 32u;   // uniform in the CTA
    if (tid == 0) mbar_expect_bytes(bar + 2, 4u * K * nd);
    __syncthreads();   // the candidates are listed
    MLA_MID_STAMP(14);
    if (tid < static_cast<int>(nd)) {
      uint32_t e = 0x80000000u;
      if (listed) {
        uint32_t cnt;
        const uint32_t dd = table_entry(cand, m, static_cast<uint32_t>(tid), F, cnt, hits);
        e = ((cnt | (dd > dmax ? 0x8000u : 0u)) << 16) | min(dd, dmax);
      }
      for (unsigned k = 0; k < K; ++k) push_word(slots + rank * nd + tid, bar + 2, k, e);
    }
    MLA_MID_STAMP(15);
    mbar_wait(bar + 2);
    MLA_MID_STAMP(8);
    cluster_arrive_relaxed();   // nothing more is sent to this rank (the barrier completes before leaving)
    const uint16_t* half = reinterpret_cast<const uint16_t*>(slots);   // [2 i]: entry i's d; [2 i + 1]: restarts
    uint32_t dd = 0, acc = 0;   // acc: the restarts (bits 0-14: at most kMidCand) and the outgrown flags above
#pragma unroll
    for (int k = 0; k < kMaxMidCluster; ++k) {
      if (k < static_cast<int>(K)) {
        if (k == static_cast<int>(rank)) {
          din = dd;
          kin = acc;
        }
        const uint32_t i = static_cast<uint32_t>(k) * nd + dd;
        acc += half[2 * i + 1];
        dd = half[2 * i];
      }
    }
    tot = acc & 0x7fffu;
    over = acc > 0x7fffu || tot > static_cast<uint32_t>(P);   // uniform
    dfin = dd;
    MLA_MID_STAMP(12);
  } else if (K > 1) {   // every rank's count and candidates (none when more than M), sent to every rank
    if (tid < static_cast<int>(K)) push_word(rcnt + rank, bar + 1, tid, m);
    __syncthreads();   // the candidates are listed
    // one word a thread: candidate c to rank k for c K + k = tid (and so on)
    for (uint32_t w = tid; w < (listed ? m : 0u) << kLog; w += kMidThreads)
      push_word(slots + rank * M + (w >> kLog), bar + 2, w & (K - 1), cand[w >> kLog]);
    __syncthreads();   // every word is sent: the list below may overwrite `cand`
    MLA_MID_STAMP(14);
    mbar_wait(bar + 1);
    MLA_MID_STAMP(15);
    uint32_t end[kMaxMidCluster], all = 0, sent = 0;   // end[k]: candidates of ranks 0..k
    bool full = false;                                 // a rank has more than M: it sent none
#pragma unroll
    for (int k = 0; k < kMaxMidCluster; ++k) {
      const uint32_t c = k < static_cast<int>(K) ? rcnt[k] : 0u;
      all += c;
      end[k] = all;
      sent += c <= M ? c : 0u;
      full |= c > M;
    }
    if (tid == 0) mbar_expect_bytes(bar + 2, 4 * sent);
    mbar_wait(bar + 2);
    MLA_MID_STAMP(8);
    if (full) return general();   // uniform (a rank with more than M candidates)
    for (uint32_t c = tid; c < all; c += kMidThreads) {
      uint32_t k = 0, lo = 0;   // c is rank k's (c - lo)-th candidate
#pragma unroll
      for (int i = 0; i + 1 < kMaxMidCluster; ++i) {
        if (c >= end[i]) {
          k = i + 1;
          lo = end[i];
        }
      }
      cand[c] = slots[k * M + c - lo];
    }
    nwalk = all;
    cluster_arrive_relaxed();   // nothing more is sent to this rank (the barrier completes before leaving)
    MLA_MID_STAMP(12);
  }
  if (masks) {   // (cand was listed before the tables were built)
    if (!over && (tid >> 5) == static_cast<int>(din >> 5)) {   // the warp of thread din: the restarts (row, d)
      const int lane = tid & 31;
      const uint32_t hm = __shfl_sync(kFull, hits, static_cast<int>(din & 31u));
      const uint32_t ce = lane < static_cast<int>(m) ? cand[lane] : 0u;
      if ((hm >> lane) & 1u) {
        const int k = __popc(hm & ((2u << lane) - 1u));
        hrow[k] = ce >> 16;
        hd[k] = ce & 0xffffu;
      }
      if (lane == 0) {
        const int nh = __popc(hm);
        hrow[0] = 0u;
        hd[0] = din;
        hrow[nh + 1] = 0xffffffffu;
        sc[0] = static_cast<uint32_t>(nh);
      }
    }
    MLA_MID_STAMP(9);
  } else {
    __syncthreads();
    if (tid < 32 && !over) {   // warp 0: the restarts (row, d) in cand, and (one list of all ranks) the chain's end
      int nh;
      bool ov;
      const uint32_t dd = walk_candidates(cand, static_cast<int>(nwalk), din, F, dmax, P, hrow, hd, nh, ov);
      if (tid == 0) {
        sc[0] = static_cast<uint32_t>(nh);
        sc[1] = dd;
        sc[2] = ov ? 1u : 0u;
      }
      MLA_MID_STAMP(9);
    }
  }
  __syncthreads();
  MLA_MID_STAMP(3);
  if (!by_tables) {
    over = sc[2] != 0u;
    dfin = sc[1];
    tot = sc[0];
  }
  if (over) {   // uniform
    if (K > 1) cluster_wait();
    return general();
  }
  uint32_t crem;
  const uint32_t cq = fq.div(total - dfin, crem);   // parts that end before the tape's end, less the restarts
  const int C = static_cast<int>(cq - tot - (crem <= F ? 1u : 0u));
  const int NH = static_cast<int>(sc[0]), qt = static_cast<int>(tot) + C;
  // The last restart before row i0 (a restart on row i0 itself is taken in the row loop).
  int k = 0;
  {
    int hi = NH + 1;
    while (hi - k > 1) {
      const int mid = (k + hi) >> 1;
      if (hrow[mid] < static_cast<uint32_t>(i0)) k = mid; else hi = mid;
    }
  }
  uint32_t nh = hrow[k + 1], d = hd[k];
  uint32_t s = excl;                    // S of the current row (total past n)
  uint32_t qa = fq.div(s - d);          // s >= S of the last restart >= d
  uint32_t nb = (qa + 1u) * Q + d;      // where part qa ends, less F
  // end_block of a part that ends with row i0 + j - 1 (j = 0: the row before the thread's)
  auto end_blk = [&](int j) {
    return j == 0 ? static_cast<int>(last_block(len_prev, a.c.block_size_n))
                  : ((zm >> (j - 1)) & 1u ? 0 : static_cast<int>(cost[j > 0 ? j - 1 : 0] - F));
  };
  // This rank writes num_splits[r0 .. lim] (the last rank up to B, below).
  const int lim = min(r1 - 1, B);
  int32_t* sdst = splits + i0;
  const bool vec = i0 + R - 1 <= lim && (reinterpret_cast<uintptr_t>(sdst) & 15u) == 0;
  int4 sp;
  // Rows from n on cost 0 and are never restarts: nothing happens there but num_splits n + C. A thread past
  // the rank's slice steps no rows (those may hold another rank's restarts).
  if (i0 < r1) rows([&](int j, uint32_t cj) {
    const int row = i0 + j;
    if (static_cast<uint32_t>(row) == nh) {   // a restart: part qa - 1 ended in the first F units of this row
      if (qa - 1u < static_cast<uint32_t>(P))
        store_part_rows(meta, static_cast<int>(qa) - 1, P, row - 1, end_blk(j), row, 0, 0);
      ++k;
      d = hd[k];
      nh = hrow[k + 1];
      nb = (qa + 1u) * Q + d;
    }
    const int v = row < n ? row + static_cast<int>(qa) - (k + static_cast<int>(kin)) : n + C;
    const uint32_t q0 = qa, sj = s;
    s += cj;
    while (s >= nb) {   // rare: part qa ends inside this row, or within F of its end
      const uint32_t q = qa, e = nb;
      ++qa;
      nb += Q;
      if (e + F < s && q < static_cast<uint32_t>(P)) {
        const int eb = static_cast<int>(e - sj);
        store_part_rows(meta, static_cast<int>(q), P, row, eb, row, eb, static_cast<int>(q - q0) + 1);
      }
    }
    switch (j & 3) {
      case 0: sp.x = v; break;
      case 1: sp.y = v; break;
      case 2: sp.z = v; break;
      default:
        sp.w = v;
        if (vec) {
          *reinterpret_cast<int4*>(sdst + j - 3) = sp;
        } else {
          if (row - 3 <= lim) sdst[j - 3] = sp.x;
          if (row - 2 <= lim) sdst[j - 2] = sp.y;
          if (row - 1 <= lim) sdst[j - 1] = sp.z;
          if (row <= lim) sdst[j] = sp.w;
        }
    }
  });
  if (rank == K - 1) {
    for (int p = r1 + tid; p <= B; p += kMidThreads) splits[p] = n + C;
    // The parts past the tape.
    for (int q = max(qt, 0) + tid; q < P; q += kMidThreads)
      store_part_rows(meta, q, P, n - 1, static_cast<int>(last_block(len_last, a.c.block_size_n)), -1, 0, 0);
  }
  MLA_MID_STAMP(6);
  if (K > 1) cluster_wait();   // no rank leaves while another may still send to it
  MLA_MID_STAMP(4);
  return true;
}

// =============================== the kernel (both variants) ===============================
// kWR > 0: the warp path with kWR rows per lane (a small dense batch); kMR > 0: the mid path with kMR rows
// per thread; either falls back to the general path.
template <bool kSmem, int kNT, int kWR>
__device__ __forceinline__ void general_body(const Args& a);
// The general path out of line, for the mid path's instances: their kernels' own code is then the mid path
// and a call, compiled alike in both kernels. Inlined, the two kernels' different general paths gave their
// mid paths different register allocation and scheduling, and low_smem ran ~0.06 us slower than smem on the
// same mid path (perf log v18). (The warp path's instances keep it inline: out of line they were slower.)
template <bool kSmem, int kNT, int kWR>
__device__ __noinline__ void general_call(const Args& a) { general_body<kSmem, kNT, kWR>(a); }

template <bool kSmem, int kNT, int kWR, int kMR>
__device__ __forceinline__ void sched_body(const Args& a) {
  MLA_STAMP(7);
  if constexpr (kWR > 0) {   // the handler launches these instances only for dense batches with P <= 256
    if (a.c.topk < 0 && warp_path<kSmem, kWR>(a)) return;
  }
  if constexpr (kMR > 0) {   // and these only where midpath_fits (schedule_core.h)
    static_assert(kNT == kMidThreads, "the mid path runs on CTAs of kMidThreads threads");
    if (a.c.topk < 0 && a.bs_shift >= 6 && mid_path<kSmem, kMR>(a)) return;
    const Args copy = a;   // the callee takes an address: copied here, on this rare path, not at kernel entry
    general_call<kSmem, kNT, kWR>(copy);
  } else {
    general_body<kSmem, kNT, kWR>(a);
  }
}

// The general path: any batch, dense or sparse, on a cluster of K CTAs (or one).
template <bool kSmem, int kNT, int kWR>
__device__ __forceinline__ void general_body(const Args& a) {
  constexpr int kCh = kNT * kV;   // rows per chunk (a rank has one chunk unless kNT == 1024)
  extern __shared__ __align__(16) uint8_t dyn[];
  const int64_t g = a.batch0 + blockIdx.y;
  const int64_t B = a.B;
  const int P = a.c.num_parts;
  const int64_t F = a.c.overhead;
  const bool sparse = a.c.topk >= 0;
  const unsigned K = gridDim.x, rank = blockIdx.x;   // the cluster spans grid.x
  const int32_t* lens = a.seqlens + g * B;
  int32_t* meta = a.meta + g * P * 8;
  int32_t* splits = a.splits + g * (B + 1);
  uint8_t* ws = a.ws + g * a.ws_stride;
  // Dense mode: rank k owns rows [k R, k R + R) of the batch (cut at num_valid). Its first lengths are
  // requested before num_valid arrives, so the two memory round trips overlap.
  // K is a power of two (cluster_for, smem_cluster, low_smem_cluster): shifts, not the 64-bit divisions of
  // rows_per_rank, which a lone warp pays for before its first load is even addressed.
  const int kLog = __ffs(static_cast<int>(K)) - 1;
  const int64_t Rcap = (((B + K - 1) >> kLog) + kGroup - 1) & ~static_cast<int64_t>(kGroup - 1);   // rows_per_rank
  int64_t R = Rcap;
  if (!kSmem && R > kCh) R = (R + kCh - 1) / kCh * kCh;   // whole chunks when a rank has several
  const int64_t r0 = static_cast<int64_t>(rank) * R, rB = imin64(r0 + R, B);
  int32_t nl[kV];
  if (!sparse && !a.wide) load_lens(lens, r0, imin64(r0 + kCh, rB), nl);
  const int64_t n = valid_rows(a, g);
  if (a.wide) {   // mla_splits_kernel may start launching; the chunk sums (dense) are complete after the wait
    pdl_trigger();
    pdl_wait();
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // num_splits positions [k_lo, k_hi) belong to this rank.
  const int64_t per_rank_pos = (((B + K) >> kLog) + 3) & ~int64_t(3);   // ceil((B + 1) / K), 16-byte aligned
  const int k_lo = static_cast<int>(imin64(B + 1, rank * per_rank_pos));
  const int k_hi = static_cast<int>(imin64(B + 1, (rank + 1) * per_rank_pos));

  if (n == 0) {   // same n in every rank: no rank takes part in a cluster barrier
    if (rank == 0) store_empty_rows(meta, P);
    if (!a.wide)
      for (int k = k_lo + threadIdx.x; k < k_hi; k += blockDim.x) splits[k] = 0;
    return;
  }
  MLA_STAMP(0);

  // Shared-memory layout.
  Shared* sh;
  PartRecord* rec;
  int32_t* cuts;
  uint32_t* rel = nullptr;
  int64_t* gbase = nullptr;
  LowStatic* ls = low_static<kSmem>();
  bool global_parts = false;   // records and cut rows in the workspace (low_smem with P > kStageParts)
  if constexpr (kSmem) {
    auto al16 = [](int64_t x) { return (x + 15) / 16 * 16; };
    sh = reinterpret_cast<Shared*>(dyn);
    rel = reinterpret_cast<uint32_t*>(dyn + kSmemFixedBytes);
    gbase = reinterpret_cast<int64_t*>(dyn + kSmemFixedBytes + al16(4 * Rcap));
    rec = reinterpret_cast<PartRecord*>(reinterpret_cast<uint8_t*>(gbase) + al16(8 * (Rcap / kGroup + 1)));
    cuts = reinterpret_cast<int32_t*>(reinterpret_cast<uint8_t*>(rec) + al16(kPartRecordBytes * P));
  } else {
    sh = &ls->sh;
    if (P <= kStageParts) {
      rec = ls->rec;
      cuts = ls->cuts;
    } else {
      rec = reinterpret_cast<PartRecord*>(ws + a.lay.parts);
      cuts = reinterpret_cast<int32_t*>(ws + a.lay.cut_rows);
      global_parts = true;
    }
  }
  int scan_parity = 0;
  auto scan_buf = [&]() { return sh->scan[(scan_parity++) & 1]; };
  if (kNT == 256 && kWR == 0 && !sparse && rowpath_fits(B, P, K)) {   // small dense batches (256 threads hold them)
    uint8_t* region;
    if constexpr (kSmem) region = reinterpret_cast<uint8_t*>(rel); else region = reinterpret_cast<uint8_t*>(ls->rec);
    if (row_path<256>(a, nl, static_cast<int>(n), static_cast<int>(B), meta, splits, sh, region, scan_parity)) return;
  }

  int64_t total = 0, Q = 0;
  int64_t* scal = reinterpret_cast<int64_t*>(ws + a.lay.scalars);
  // num_splits of this rank's positions; in a wide launch, rank 0 hands the cut rows and their count to
  // mla_splits_kernel through the workspace instead.
  auto out_splits = [&](const int32_t* cut_rows, bool cuts_global) {
    if (!a.wide) {
      write_splits(splits, k_lo, k_hi, static_cast<int>(B), static_cast<int>(n), cut_rows, sh->C);
    } else if (rank == 0) {
      // mla_splits_kernel reads the first min(P, kStageCuts) slots before it knows C: past C they hold 0
      int32_t* gc = reinterpret_cast<int32_t*>(ws + a.lay.cut_rows);
      const int C = sh->C, end = max(C, min(P, kStageCuts));
      for (int i = threadIdx.x; i < end; i += blockDim.x)
        if (i >= C || !cuts_global) gc[i] = i < C ? cut_rows[i] : 0;
      if (threadIdx.x == 0) scal[8] = C;
    }
  };
  // Phase 3: the walker (warp 0 of every rank, or of rank 0 alone when the records are in global memory,
  // which rank 0 overwrites with final ones), then metadata (rank 0). The caller writes num_splits.
  auto finish = [&](const auto& T, const auto& walk_regs, const auto& walk) {
    if (P <= 32 * kMaskWindows) {   // the window walker (records in shared memory in every rank)
      walk_regs();   // the dense walker runs in warp 0, the sparse one in every warp
      MLA_STAMP(9);
      __syncthreads();
      MLA_STAMP(3);
      finish_windows(rec, sh, P, n, F, cuts, rank == 0 ? meta : nullptr, T);
      MLA_STAMP(10);
      __syncthreads();
      MLA_STAMP(11);
      return;
    }
    const bool walker = !global_parts || rank == 0;
    int C = 0;
    if (warp == 0 && walker) C = walk();
    if (threadIdx.x == 0 && walker) {
      sh->C = C;
      if (global_parts) scal[8] = C;
    }
    if (global_parts && K > 1) {
      __threadfence();
      cluster_arrive();
      cluster_wait();
      if (rank != 0 && threadIdx.x == 0) sh->C = static_cast<int>(__ldcg(scal + 8));
    }
    __syncthreads();
    MLA_STAMP(3);
    if (rank == 0) write_meta(rec, global_parts, meta, P, n, F, T);
  };
  if (sparse) {
    // ---------------- sparse mode: closed form (S_i = i c), no records, no barrier ----------------
    const int64_t c = cost_of(a.c.topk, a);
    total = n * c;
    Q = div64(total + P - 1, P);
    MLA_STAMP(2);
    finish(SparseTape{last_block(a.c.topk, a.c.block_size_n)},
           [&] { walk_sparse_windows(rec, P, n, Q, F, c, sh); },
           [&] { return walk_sparse(rec, P, n, Q, F, c, cuts, rank == 0); });
    out_splits(cuts, global_parts);
    MLA_STAMP(4);
    return;
  }

  // ---------------- dense mode ----------------
  // This rank's rows [r0, r1) (R and r0 are set at the top, from B).
  const int64_t r1 = n < r0 ? r0 : imin64(n, rB);
  const int nch = static_cast<int>((r1 - r0 + kCh - 1) / kCh);
  int64_t* wpre = reinterpret_cast<int64_t*>(ws + a.lay.chunks);   // [K * (R / kCh)][32] when nch > 1
  const int64_t wbase = static_cast<int64_t>(rank) * (R / kCh);
  // low_smem with its records in shared memory: each record is pushed to every rank onto sh->rbar (st.async),
  // not stored remotely and published by a release / acquire cluster barrier (~1,300 cycles).
  const bool push_records = !kSmem && !global_parts && K > 1;
  if (K > 1) {
    if (threadIdx.x == 0) {   // the rank sums land on sh->bar (see push_word)
      mbar_init(&sh->bar);
      if (push_records) mbar_init(&sh->rbar);   // its bytes are expected once qt is known
    }
    // compute-sanitizer's racecheck attributed thread 0's mbarrier.init in the 1,024-thread smem kernel to
    // another thread of the CTA (the compiler issues it through the uniform datapath) and reported a race with
    // the expect below; the barrier orders the two for it at the cost of one CTA barrier per call.
    __syncthreads();
    if (threadIdx.x == 0) {
      mbar_expect_bytes(&sh->bar, 8 * K);
      mbar_init_fence();
    }
    cluster_arrive_relaxed();   // phase 0: every CTA of the cluster has started (completed below)
  }

  // Phase 1: costs, prefix sums (the tape, kept in shared memory by the smem kernel), this rank's sum.
  ChunkScan cs;
  int64_t carry = 0;
  // Where a low_smem rank has several chunks: the tape positions where each (chunk, warp) of rows begins
  // (rank-local; shared memory when there are at most 1024, else the workspace).
  // kW warps per chunk (32 but for the mid path's 512-thread instances, whose general path may have several)
  constexpr int kW = kNT / 32;
  int64_t* wpos = nch * kW <= kThreads ? ls_tpre<kSmem>(ls) : wpre + wbase * kW;
  const bool multi = !kSmem && (nch > 1 || a.wide);   // per-warp sums and positions, not one chunk scan
  if (multi) {
    // Only sums are needed here (the row search rescans one warp's rows): per chunk each warp adds its 256
    // costs with two 32-bit warp reductions and stores the sum; one block scan at the end makes them
    // positions. No barrier per chunk.
    // Three chunks in flight (a rank streams up to 4 MB on one SM: one chunk ahead left it latency-bound).
    auto fetch = [&](int ch, int32_t (&l)[kV]) {
      if (ch < nch) {
        const int64_t c0 = r0 + static_cast<int64_t>(ch) * kCh;
        load_lens(lens, c0, imin64(c0 + kCh, rB), l);
      }
    };
    auto sum_chunk = [&](int ch, int32_t (&l)[kV]) {
      if (ch >= nch) return;   // uniform
      const int64_t i0 = r0 + static_cast<int64_t>(ch) * kCh + static_cast<int64_t>(threadIdx.x) * kV;
      const int64_t tsum = thread_cost_sum(a, l, i0, r1);
      fetch(ch + 3, l);
      if (ch == 0) MLA_STAMP(6);
      const int64_t wsum = warp_cost_sum(tsum);
      if (lane == 0) wpre[(wbase + ch) * kW + warp] = wsum;
      if (ch == 0) MLA_STAMP(5);
    };
    if (!a.wide) {   // else mla_chunk_sums_kernel has stored them
      int32_t l1[kV], l2[kV];
      fetch(1, l1);
      fetch(2, l2);
#pragma unroll 1
      for (int ch = 0; ch < nch; ch += 3) {
        sum_chunk(ch, nl);
        sum_chunk(ch + 1, l1);
        sum_chunk(ch + 2, l2);
      }
      __syncthreads();   // the sums (global) are visible to the whole CTA
    }
    for (int b = 0; b < nch * kW; b += kNT) {   // exclusive scan, in place or into shared memory
      const int t = b + static_cast<int>(threadIdx.x);
      const int64_t v = t < nch * kW ? wpre[wbase * kW + t] : 0;
      int64_t bsum;
      const int64_t e = block_exclusive_sum(v, scan_buf(), &bsum);
      __syncthreads();   // every read of this block of sums is done before positions overwrite them
      if (t < nch * kW) wpos[t] = carry + e;
      carry += bsum;
    }
  }
  for (int ch = 0; ch < (multi ? 0 : nch); ++ch) {
    const int64_t c0 = r0 + static_cast<int64_t>(ch) * kCh;
    int32_t l[kV];
#pragma unroll
    for (int j = 0; j < kV; ++j) l[j] = nl[j];
    if (ch + 1 < nch) load_lens(lens, c0 + kCh, imin64(c0 + 2 * kCh, rB), nl);   // in flight during the scan
    scan_chunk(a, l, c0, r1, scan_buf(), cs, ch == 0);
    if (ch == 0) MLA_STAMP(5);
    if constexpr (kSmem) {
      const int64_t li0 = c0 - r0 + static_cast<int64_t>(threadIdx.x) * kV;   // multiple of 8
      const int64_t lead = __shfl_sync(kFull, cs.excl, lane & ~(kGroupThreads - 1));
      if (li0 < r1 - r0) {   // li0 + 7 < R <= Rcap: the stores stay inside this rank's slice
        uint32_t off = static_cast<uint32_t>(cs.excl - lead);   // < 2^31 (smem_supported)
        uint32_t v[kV];
#pragma unroll
        for (int j = 0; j < kV; ++j) {
          v[j] = off | (((cs.zero >> j) & 1u) << 31);
          off += cs.cost[j];
        }
        uint4* d = reinterpret_cast<uint4*>(rel + li0);
        d[0] = make_uint4(v[0], v[1], v[2], v[3]);
        d[1] = make_uint4(v[4], v[5], v[6], v[7]);
        if ((threadIdx.x & (kGroupThreads - 1)) == 0) gbase[li0 >> kGroupLog] = carry + cs.excl;
      }
    }
    carry += cs.sum;
  }
  MLA_STAMP(1);
  // Publish this rank's sum to every rank; then every rank knows where each slice starts.
  int64_t A0, qt, qa, qb;   // where this rank's slice of the tape starts; parts past the tape: [qt, P), this
                            // rank's: [qa, qb)
  if (K > 1) {
    cluster_wait();   // phase 0 complete: other ranks may be sent to
    // st.async onto the receivers' mbarriers: a cluster barrier with release costs ~1,300 cycles. Nothing
    // written to another rank's records below can meet that rank's own stores: disjoint arrays.
    if (threadIdx.x < K) push_dword(&sh->rsum[rank], &sh->bar, threadIdx.x, carry);
    mbar_wait(&sh->bar);
    if (warp == 0) {   // once, not in every warp: lanes scan the rank sums (K <= 16), then 3 lanes divide at once
      const int64_t v = lane < static_cast<int>(K) ? sh->rsum[lane] : 0;
      const int64_t inc = warp_inclusive_sum(v);
      const int64_t acc = __shfl_sync(kFull, inc, 31), ex = inc - v;   // lane K: the total
      const int64_t a0 = __shfl_sync(kFull, ex, rank), a1 = __shfl_sync(kFull, ex, rank + 1);
      const int64_t q = div64(acc + P - 1, P);
      if (lane <= static_cast<int>(K)) sh->pre[lane] = ex;
      if (lane == 0) sh->u[0] = q;
      if (lane >= 1 && lane <= 3) sh->u[lane] = first_part(lane == 1 ? acc : (lane == 2 ? a0 : a1), F, q, P);
    }
    __syncthreads();
    total = sh->pre[K];
    Q = sh->u[0];
    A0 = sh->pre[rank];
    qt = sh->u[1];
    qa = sh->u[2];
    qb = sh->u[3];
    // parts [0, qt) are each found by one rank and pushed to all (the count may go below zero while pushes
    // land before this; the phase completes only after this arrival, once every byte has landed)
    if (push_records && threadIdx.x == 0) mbar_expect_bytes(&sh->rbar, static_cast<uint32_t>(kPartRecordBytes * qt));
  } else {   // one CTA: every thread has the total from its scan; only the tape needs a barrier
    if (threadIdx.x == 0) sh->pre[0] = 0;   // the tape view's rank prefix
    __syncthreads();
    total = carry;
    Q = div64(total + P - 1, P);
    qt = first_part(total, F, Q, P);
    qa = 0;
    qb = qt;
    A0 = 0;
  }
  MLA_STAMP(12);

  // Phase 2: the row holding each lo_q in [A0, A1); the band of S around it, broadcast to every rank.
  // Part q's record to every rank (or once to the workspace); a warp that holds the same record in every lane
  // passes first = lane, stride = 32, so that lane o stores rank o's copy.
  auto put = [&](int64_t q, const PartRecord& rc, unsigned first = 0, unsigned stride = 1) {
    if (global_parts) {
      if (first == 0) store_record(rec + q, rc);
    } else if (push_records) {
      for (unsigned o = first; o < K; o += stride)
        push_record(rec + q, &sh->rbar, o, reinterpret_cast<const int4(&)[2]>(rc));
    } else {
      for (unsigned o = first; o < K; o += stride) store_record((o == rank ? rec : remote(rec, o)) + q, rc);
    }
  };
  {   // parts whose lo_q is past the tape: every rank its own copy (rank 0 when the records are global)
    if (!global_parts || rank == 0)
      for (int64_t q = qt + threadIdx.x; q < P; q += blockDim.x) store_record(rec + q, past_end_record(n, total));
  }
  // The smem kernel's view of the whole tape (unused by low_smem, whose rel/gbase are null).
  const ClusterTape ctape{rel, gbase, sh->pre, n, total, F, static_cast<uint32_t>(R), rank};
  if constexpr (kSmem) {
    for (int64_t q = qa + threadIdx.x; q < qb; q += blockDim.x) {
      const int64_t x = F + (q + 1) * Q - A0;   // rank-local tape position, inside the slice
      int lo = 0, hi = static_cast<int>(r1 - r0);   // largest local row with S_local <= x
      while (hi - lo > 1) {
        const int mid = (lo + hi) >> 1;
        if (gbase[mid >> kGroupLog] + (rel[mid] & 0x7fffffffu) <= x) lo = mid; else hi = mid;
      }
      const int64_t r = r0 + lo;
      const int64_t s0 = A0 + gbase[lo >> kGroupLog] + (rel[lo] & 0x7fffffffu);
      const int64_t s1 = ctape.S(r + 1);
      put(q, band_record(r, s0, s1, r + 1 < n ? ctape.S(r + 2) : kInf));
    }
  } else {
    if (!multi) {
      // One chunk (still in registers): each thread's first tape position to shared memory; a part finds
      // its thread by binary search, then its row among that thread's 8 rows.
      const int64_t c0 = r0;
      if (qa < qb) {
        ls->tpre[threadIdx.x] = A0 + cs.excl;
        __syncthreads();
        for (int64_t q = qa + threadIdx.x; q < qb; q += blockDim.x) {
          const int64_t lo_q = F + (q + 1) * Q;
          int tl = 0, th = kNT;   // largest thread with tpre <= lo_q (its rows hold lo_q)
          while (th - tl > 1) {
            const int mid = (tl + th) >> 1;
            if (ls->tpre[mid] <= lo_q) tl = mid; else th = mid;
          }
          put(q, band_in_thread(a, lens, c0 + static_cast<int64_t>(tl) * kV, n, ls->tpre[tl], lo_q));
        }
      }
    } else {
      // Several chunks: one warp per part finds the (chunk, warp) of rows holding lo_q (the last one whose
      // first position is at or below it: counted by every lane at once when the positions are in shared
      // memory, else a binary search), then the thread (rescan of that warp's 256 rows), then the row. Every
      // lane derives the same band, and lane o stores it in rank o (the part's chain of dependent steps is
      // what costs here: a lone warp pays ~20 cycles per instruction).
      const int nwp = nch * kW;
      for (int64_t q = qa + warp; q < qb; q += blockDim.x >> 5) {
        const int64_t x = F + (q + 1) * Q - A0;   // rank-local, inside the slice
        int lo = 0;   // the number of entries at or below x (positions only grow; the rank's sum is past x)
        if (nwp <= kThreads) {
          int cnt = 0;
          for (int e = lane; e < nwp; e += 32) cnt += wpos[e] <= x ? 1 : 0;
          lo = static_cast<int>(__reduce_add_sync(kFull, static_cast<unsigned>(cnt)));
        } else {
          int hi = nwp;
          while (lo < hi) {
            const int mid = (lo + hi) >> 1;
            if (wpos[mid] <= x) lo = mid + 1; else hi = mid;
          }
        }
        const int cw = lo - 1;   // wpos[cw] <= x < wpos[cw + 1] (or the rank's end): rows of cw hold x
        const int64_t i0 = r0 + static_cast<int64_t>(cw / kW) * kCh + (cw % kW) * 32 * kV + lane * kV;
        int64_t ts = 0;
#pragma unroll
        for (int j = 0; j < kV; ++j) ts += i0 + j < r1 ? cost_of(__ldg(lens + i0 + j), a) : 0;
        const int64_t lp = wpos[cw] + warp_inclusive_sum(ts) - ts;
        const int l = 31 - __clz(__ballot_sync(kFull, ts > 0 && lp <= x));
        put(q, band_in_thread(a, lens, __shfl_sync(kFull, i0, l), n, A0 + __shfl_sync(kFull, lp, l), A0 + x),
            lane, 32);
      }
    }
  }
  MLA_STAMP(13);
  // Records visible to every rank.
  if (push_records) {
    mbar_wait(&sh->rbar);
    cluster_arrive_relaxed();   // nothing more is sent to this rank (the barrier completes before leaving)
    __syncthreads();            // the past-end records this CTA stored itself
  } else if (K > 1) {
    if (global_parts) __threadfence();
    cluster_arrive();
    cluster_wait();
  } else {
    __syncthreads();
  }
  MLA_STAMP(2);

  if constexpr (kSmem) {
    finish(ctape, [&] { if (warp == 0) walk_windows(rec, P, n, Q, F, ctape, sh); },
           [&] { return walk_parts(rec, false, P, n, Q, F, ctape, cuts, rank == 0); });
    if (K > 1) cluster_arrive();   // this rank reads no other rank's shared memory any more
  } else {
    const LensTape T{lens, &a, n};
    finish(T, [&] { if (warp == 0) walk_windows(rec, P, n, Q, F, T, sh); },
           [&] { return walk_parts(rec, global_parts, P, n, Q, F, T, cuts, rank == 0); });
  }
  out_splits(cuts, global_parts);
  MLA_STAMP(4);
  // smem: no rank leaves while another may still read its shared memory; low_smem: nor while its pushes land
  if ((kSmem || push_records) && K > 1) cluster_wait();
}

// Thread count per CTA: 256, 512 or 1024 (a rank's rows in one chunk of 8 per thread when they fit; small
// batches are bound by instruction issue, and every uniform step costs each warp).
// kWR > 0 (256 threads): the warp path for small dense batches, kWR rows per lane. kMR > 0 (512 threads):
// the mid path for mid-size dense batches, kMR rows per thread.
template <int kNT, int kWR = 0, int kMR = 0>
__global__ void __launch_bounds__(kNT, 1) mla_smem_kernel(const Args a) { sched_body<true, kNT, kWR, kMR>(a); }
template <int kNT, int kWR = 0, int kMR = 0>
__global__ void __launch_bounds__(kNT, 1) mla_low_smem_kernel(const Args a) { sched_body<false, kNT, kWR, kMR>(a); }

// ---- wide batches (low_smem, more than one chunk of 8,192 rows per rank: B > 131,072, on 8 CTAs) ----
// One cluster streams every length twice per call otherwise (its sums, then num_splits), on at most 16 SMs.
// Three launches instead, the first and last spread over many small CTAs:
//   1. mla_chunk_sums_kernel (dense only): each warp's sum of its 256 rows' costs into the workspace, the
//      numbers the cluster would otherwise compute itself (WorkspaceLayout::chunks, indexed by chunk);
//   2. mla_low_smem_kernel with Args::wide: scans those sums, finds and walks the parts, writes the metadata,
//      and (rank 0) stores the cut rows and their count in the workspace;
//   3. mla_splits_kernel: num_splits from the cut rows, 2,048 positions per CTA.
// The second and third are launched as programmatic dependents: each may start while the one before it runs,
// and waits for it (pdl_wait) before it reads what that one wrote or writes any output.
// Threads per CTA of the first and last launch. Measured on an H100 at 1M dense rows (span of the three):
// 256 threads 18.8-19.0 us, 512 19.4, 1,024 20.1-20.2 (and fewer, larger CTAs were slower still).
constexpr int kWideThreads = 256;
constexpr int kSplitSpan = kWideThreads * kV;     // num_splits positions per CTA of mla_splits_kernel

// One warp per 256 rows, over whole chunks: the grid is ceil(B / kChunk) * kChunk / (kWideThreads * kV) CTAs.
__global__ void __launch_bounds__(kWideThreads) mla_chunk_sums_kernel(const Args a) {
  pdl_trigger();   // the cluster kernel may start launching (it waits for these sums before reading them)
  const int64_t g = a.batch0 + blockIdx.y;
  // warp gw sums rows [256 gw, 256 gw + 256): entry gw of the workspace's (chunk, warp) sums
  const int64_t gw = static_cast<int64_t>(blockIdx.x) * (kWideThreads / 32) + (threadIdx.x >> 5);
  const int64_t i0 = gw * (32 * kV) + (threadIdx.x & 31) * kV;
  int32_t len[kV];
  load_lens(a.seqlens + g * a.B, i0 - static_cast<int64_t>(threadIdx.x) * kV, a.B, len);
  const int64_t n = valid_rows(a, g);
  // The cluster reads the sums of every warp of each chunk that holds valid rows (0 for warps past them), and
  // none of the chunks past them.
  if ((gw >> 5) * kChunk >= n) return;   // uniform per warp
  const int64_t wsum = warp_cost_sum(thread_cost_sum(a, len, i0, n));
  if ((threadIdx.x & 31) == 0) reinterpret_cast<int64_t*>(a.ws + g * a.ws_stride + a.lay.chunks)[gw] = wsum;
}

__global__ void __launch_bounds__(kWideThreads) mla_splits_kernel(const Args a) {
  __shared__ int32_t staged[kStageCuts];
  const int64_t g = a.batch0 + blockIdx.y;
  const uint8_t* ws = a.ws + g * a.ws_stride;
  const int64_t n = valid_rows(a, g);
  pdl_wait();   // the cluster kernel has stored the cut rows
  const int32_t* cuts = reinterpret_cast<const int32_t*>(ws + a.lay.cut_rows);
  // The count and the first cut slots (there are P) are read at once: one memory round trip, not two. (With
  // n = 0 the cluster kernel stores nothing.)
  const int nst = n == 0 ? 0 : (a.c.num_parts < kStageCuts ? a.c.num_parts : kStageCuts);
  for (int i = threadIdx.x; i < nst; i += blockDim.x) staged[i] = __ldcg(cuts + i);
  const int C = n > 0 ? static_cast<int>(__ldcg(reinterpret_cast<const int64_t*>(ws + a.lay.scalars) + 8)) : 0;
  __syncthreads();
  if (C <= nst) cuts = staged;   // uniform (C <= P)
  const int64_t k_lo = static_cast<int64_t>(blockIdx.x) * kSplitSpan;
  write_splits(a.splits + g * (a.B + 1), static_cast<int>(k_lo), static_cast<int>(imin64(k_lo + kSplitSpan, a.B + 1)),
               static_cast<int>(a.B), static_cast<int>(n), cuts, C);
}

// =============================== host side ===============================
// Per device ordinal, read once: the opt-in shared-memory limit and the largest cluster both kernels can
// be launched with (kernel attributes are raised at the same time). 0 = not read yet.
std::atomic<int> g_optin[64];
std::atomic<int> g_kmax[64];

// Launch configuration for `batches` clusters of K CTAs (grid K x batches); `at` holds the cluster attribute.
cudaLaunchConfig_t cluster_config(cudaLaunchAttribute* at, int K, unsigned batches, int threads, size_t dyn,
                                  cudaStream_t stream) {
  at->id = cudaLaunchAttributeClusterDimension;
  at->val.clusterDim.x = K;
  at->val.clusterDim.y = 1;
  at->val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(K, batches, 1);
  cfg.blockDim = dim3(threads, 1, 1);
  cfg.dynamicSmemBytes = dyn;
  cfg.stream = stream;
  cfg.attrs = at;
  cfg.numAttrs = 1;
  return cfg;
}

cudaError_t max_cluster(const void* fn, size_t dyn_smem, int* kmax) {
  for (int K = kMaxCluster; K >= 2; K /= 2) {
    cudaLaunchAttribute at;
    const cudaLaunchConfig_t cfg = cluster_config(&at, K, 1, kThreads, dyn_smem, nullptr);
    int clusters = 0;
    const cudaError_t e = cudaOccupancyMaxActiveClusters(&clusters, fn, &cfg);
    if (e == cudaSuccess && clusters >= 1) {
      *kmax = K;
      return cudaSuccess;
    }
    if (e != cudaSuccess && e != cudaErrorInvalidClusterSize && e != cudaErrorInvalidValue) return e;
    (void)cudaGetLastError();   // a refused size is not an error: try a smaller one
  }
  *kmax = 1;
  return cudaSuccess;
}

// Reads (once per device) and returns the opt-in limit and the largest usable cluster size.
cudaError_t device_limits(int dev, int* optin, int* kmax) {
  if (dev >= 0 && dev < 64) {
    const int o = g_optin[dev].load(std::memory_order_acquire), k = g_kmax[dev].load(std::memory_order_acquire);
    if (o > 0 && k > 0) {
      *optin = o;
      *kmax = k;
      return cudaSuccess;
    }
  }
  int prev = -1;
  cudaError_t e = cudaGetDevice(&prev);
  if (e != cudaSuccess) return e;
  if (prev != dev && (e = cudaSetDevice(dev)) != cudaSuccess) return e;
  int o = 0, ks = 1, kl = 1;
  e = cudaDeviceGetAttribute(&o, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  const void* smem_fns[3] = {reinterpret_cast<const void*>(mla_smem_kernel<256>),
                             reinterpret_cast<const void*>(mla_smem_kernel<512>),
                             reinterpret_cast<const void*>(mla_smem_kernel<1024>)};
  const void* low_fns[3] = {reinterpret_cast<const void*>(mla_low_smem_kernel<256>),
                            reinterpret_cast<const void*>(mla_low_smem_kernel<512>),
                            reinterpret_cast<const void*>(mla_low_smem_kernel<1024>)};
  // the mid path's instances (R = 4, 8, 16, 24 rows a thread); its clusters have at most kMaxMidCluster CTAs
  const void* mid_fns[2][4] = {{reinterpret_cast<const void*>(mla_smem_kernel<kMidThreads, 0, 4>),
                                reinterpret_cast<const void*>(mla_smem_kernel<kMidThreads, 0, 8>),
                                reinterpret_cast<const void*>(mla_smem_kernel<kMidThreads, 0, 16>),
                                reinterpret_cast<const void*>(mla_smem_kernel<kMidThreads, 0, 24>)},
                               {reinterpret_cast<const void*>(mla_low_smem_kernel<kMidThreads, 0, 4>),
                                reinterpret_cast<const void*>(mla_low_smem_kernel<kMidThreads, 0, 8>),
                                reinterpret_cast<const void*>(mla_low_smem_kernel<kMidThreads, 0, 16>),
                                reinterpret_cast<const void*>(mla_low_smem_kernel<kMidThreads, 0, 24>)}};
  for (int i = 0; i < 3 && e == cudaSuccess; ++i) {
    e = cudaFuncSetAttribute(smem_fns[i], cudaFuncAttributeMaxDynamicSharedMemorySize, o);
    if (e == cudaSuccess) e = cudaFuncSetAttribute(smem_fns[i], cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (e == cudaSuccess) e = cudaFuncSetAttribute(low_fns[i], cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  }
  for (int i = 0; i < 4 && e == cudaSuccess; ++i) {
    e = cudaFuncSetAttribute(mid_fns[0][i], cudaFuncAttributeMaxDynamicSharedMemorySize, o);
    for (int v = 0; v < 2 && e == cudaSuccess; ++v)
      e = cudaFuncSetAttribute(mid_fns[v][i], cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  }
  // the 1024-thread kernels are the hardest to place; smaller CTAs fit wherever these do
  if (e == cudaSuccess) e = max_cluster(smem_fns[2], o, &ks);
  if (e == cudaSuccess) e = max_cluster(low_fns[2], 0, &kl);
  if (prev != dev) {
    const cudaError_t e2 = cudaSetDevice(prev);
    if (e == cudaSuccess) e = e2;
  }
  if (e != cudaSuccess) return e;
  *optin = o;
  *kmax = std::min(ks, kl);
  if (dev >= 0 && dev < 64) {
    g_kmax[dev].store(*kmax, std::memory_order_release);
    g_optin[dev].store(o, std::memory_order_release);
  }
  return cudaSuccess;
}

ffi::Error cuda_error(const char* what, cudaError_t e) {
  return ffi::Error::Internal(std::string("jax_mla_meta: ") + what + ": " + cudaGetErrorString(e));
}

// Threads per CTA for a rank of `rows` rows: the fewest that hold them in one chunk (8 rows per thread).
int threads_for(int64_t rows) { return rows <= 256 * kV ? 256 : (rows <= 512 * kV ? 512 : 1024); }

// `pdl`: the kernel may start while the one before it runs (a wide dense batch, after its chunk sums).
// `mid`: a mid-size dense batch: the mid path's instances.
template <bool kSmem>
cudaError_t launch(const Args& a, int K, unsigned batches, size_t dyn, bool pdl, bool mid, cudaStream_t stream) {
  const int nt = mid ? kMidThreads : threads_for(rows_per_rank(a.B, K));
  cudaLaunchAttribute at[2];
  cudaLaunchConfig_t cfg = cluster_config(at, K, batches, nt, dyn, stream);
  cfg.numAttrs = K > 1 ? 1 : 0;   // a single CTA needs no cluster
  if (pdl) {
    at[cfg.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[cfg.numAttrs].val.programmaticStreamSerializationAllowed = 1;
    ++cfg.numAttrs;
  }
  if (nt == 256 && a.c.topk < 0 && warppath_fits(a.B, a.c.num_parts, K)) {   // small dense batches
    switch (warppath_rows_per_lane(a.B)) {
      case 1: return cudaLaunchKernelEx(&cfg, kSmem ? mla_smem_kernel<256, 1> : mla_low_smem_kernel<256, 1>, a);
      case 2: return cudaLaunchKernelEx(&cfg, kSmem ? mla_smem_kernel<256, 2> : mla_low_smem_kernel<256, 2>, a);
      case 4: return cudaLaunchKernelEx(&cfg, kSmem ? mla_smem_kernel<256, 4> : mla_low_smem_kernel<256, 4>, a);
      case 8: return cudaLaunchKernelEx(&cfg, kSmem ? mla_smem_kernel<256, 8> : mla_low_smem_kernel<256, 8>, a);
      default: return cudaLaunchKernelEx(&cfg, kSmem ? mla_smem_kernel<256, 16> : mla_low_smem_kernel<256, 16>, a);
    }
  }
  if (mid) {
    constexpr int T = kMidThreads;
    switch (midpath_rows_per_thread(a.B, K)) {
      case 4: return cudaLaunchKernelEx(&cfg, kSmem ? mla_smem_kernel<T, 0, 4> : mla_low_smem_kernel<T, 0, 4>, a);
      case 8: return cudaLaunchKernelEx(&cfg, kSmem ? mla_smem_kernel<T, 0, 8> : mla_low_smem_kernel<T, 0, 8>, a);
      case 16: return cudaLaunchKernelEx(&cfg, kSmem ? mla_smem_kernel<T, 0, 16> : mla_low_smem_kernel<T, 0, 16>, a);
      default: return cudaLaunchKernelEx(&cfg, kSmem ? mla_smem_kernel<T, 0, 24> : mla_low_smem_kernel<T, 0, 24>, a);
    }
  }
  if (nt == 256) return cudaLaunchKernelEx(&cfg, kSmem ? mla_smem_kernel<256> : mla_low_smem_kernel<256>, a);
  if (nt == 512) return cudaLaunchKernelEx(&cfg, kSmem ? mla_smem_kernel<512> : mla_low_smem_kernel<512>, a);
  return cudaLaunchKernelEx(&cfg, kSmem ? mla_smem_kernel<1024> : mla_low_smem_kernel<1024>, a);
}

// A plain grid of `blocks` x `batches` CTAs of kWideThreads threads (the wide batches' first and last launches);
// `pdl`: it may start while the kernel before it runs (it waits for that kernel itself).
cudaError_t launch_grid(void (*fn)(Args), int64_t blocks, const Args& a, unsigned batches, bool pdl,
                        cudaStream_t stream) {
  cudaLaunchAttribute at;
  at.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(blocks), batches, 1);
  cfg.blockDim = dim3(kWideThreads, 1, 1);
  cfg.stream = stream;
  cfg.attrs = &at;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, fn, a);
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
  int optin = 0, kmax = 1;
  if (cudaError_t err = device_limits(device, &optin, &kmax); err != cudaSuccess)
    return cuda_error("reading the device's shared-memory and cluster limits", err);
  const bool supported = smem_supported(c.block_size_n, c.overhead);
  const int ks = supported ? smem_cluster(sh.B, sh.P, optin, kmax) : 0;
  if (kernel == kSmem && !supported)
    return ffi::Error::InvalidArgument("jax_mla_meta: kernel='smem' does not support block_size_n=" +
                                       std::to_string(c.block_size_n) + " (row costs may exceed 2^26 blocks)");
  if (kernel == kSmem && ks == 0)
    return ffi::Error::InvalidArgument("jax_mla_meta: kernel='smem' needs " +
                                       std::to_string(smem_bytes(sh.B, sh.P, kmax)) +
                                       " bytes of shared memory per CTA (on a cluster of " + std::to_string(kmax) +
                                       "), the device allows " + std::to_string(optin));
  const bool use_smem = kernel == kSmem || (kernel == kAuto && ks > 0);
  // A mid-size dense batch runs the mid path on a cluster of its own size (the smem kernel where its shared
  // memory fits there; on every H100 it does).
  const int kmid = midpath_cluster(sh.B, kmax);
  const bool mid = c.topk < 0 && midpath_fits(sh.B, sh.P, c.block_size_n) &&
                   (!use_smem || smem_bytes(sh.B, sh.P, kmid) <= optin);
  const int K = mid ? kmid : (use_smem ? ks : low_smem_cluster(sh.B, kmax));
  if (K < 1 || (K & (K - 1)) != 0)   // the kernels divide by K with shifts
    return ffi::Error::Internal("jax_mla_meta: cluster size " + std::to_string(K) + " is not a power of two");
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
  const size_t dyn = use_smem ? static_cast<size_t>(smem_bytes(sh.B, sh.P, K)) : 0;
  a.wide = !use_smem && !mid && rows_per_rank(sh.B, K) > kChunk ? 1 : 0;
  for (int64_t g0 = 0; g0 < sh.G; g0 += 65535) {
    const unsigned gn = static_cast<unsigned>(std::min<int64_t>(65535, sh.G - g0));
    a.batch0 = static_cast<int32_t>(g0);
    const bool sums = a.wide && c.topk < 0;   // dense: the chunk sums come first
    if (sums) {
      const int64_t blocks = ceil_div(sh.B, kChunk) * (kChunk / (kWideThreads * kV));   // whole chunks
      if (cudaError_t err = launch_grid(mla_chunk_sums_kernel, blocks, a, gn, false, stream); err != cudaSuccess)
        return cuda_error("kernel launch (chunk sums)", err);
    }
    const cudaError_t err =
        use_smem ? launch<true>(a, K, gn, dyn, false, mid, stream) : launch<false>(a, K, gn, 0, sums, mid, stream);
    if (err != cudaSuccess) return cuda_error("kernel launch", err);
    if (a.wide) {
      if (cudaError_t e2 = launch_grid(mla_splits_kernel, ceil_div(sh.B + 1, kSplitSpan), a, gn, true, stream);
          e2 != cudaSuccess)
        return cuda_error("kernel launch (num_splits)", e2);
    }
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

// Host-only helpers for plan(): a device's opt-in shared-memory limit and largest usable cluster size, or
// -1 when they cannot be read.
extern "C" int jax_mla_meta_optin_limit(int device) {
  int optin = 0, kmax = 0;
  return mla_meta::device_limits(device, &optin, &kmax) == cudaSuccess ? optin : -1;
}
extern "C" int jax_mla_meta_cluster_limit(int device) {
  int optin = 0, kmax = 0;
  return mla_meta::device_limits(device, &optin, &kmax) == cudaSuccess ? kmax : -1;
}
