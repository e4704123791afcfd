// general_path.cuh: the general path, any batch on a cluster of K CTAs (K = 1 for small batches, up to 16) of
// 256-1024 threads; rank k owns a contiguous slice of the rows and a slice of num_splits:
//   1. (per-row lengths) each rank scans its rows' costs and sends its sum to every rank (st.async onto an
//      mbarrier of the receiving CTA, no cluster barrier); every rank then knows the total, Q and where its
//      slice starts (with one CTA, every thread knows them from its own scan);
//   2. each rank finds the row holding every lo_q that falls in its slice and broadcasts that part's record;
//      with rows of one length (S_i = i c) every part's end has a closed form: no records;
//   3. one warp per rank walks all parts (redundantly in every rank, which saves a barrier), 32 per window,
//      keeping only the chain of restarts, then stores each window's final ends and two ballot masks; after a CTA
//      barrier one warp per window derives the cut rows and (rank 0) tile_scheduler_metadata (P > 512: one warp
//      finalises each window itself, then writes the metadata) (walker.cuh);
//   4. every rank writes its slice of num_splits (splits.cuh).
//  * "smem" kernel: a rank's tape lives in dynamic shared memory (smem_bytes(B, P, K) in core/geometry.h: ~4.25
//    bytes per row of its slice + 36 per part); the walker reads any row's prefix sum from the owning rank's
//    shared memory.
//  * "low_smem" kernel: a fixed 45 KiB of static shared memory; the rows are streamed in chunks of 8192 and
//    scanned again where a part ends; the walker recomputes prefix sums from lengths.
// Small batches with per-row lengths on one CTA of 256 threads take the row path first (row_path.cuh).
#pragma once

#include <cstdint>

#include "common.cuh"
#include "lengths.cuh"
#include "meta_rows.cuh"
#include "ptx.cuh"
#include "row_path.cuh"
#include "scans.cuh"
#include "splits.cuh"
#include "tapes.cuh"
#include "walker.cuh"

namespace mla_meta {
namespace {

// Phase 2 of the general path: the row holding each lo_q of this rank's parts [qa, qb) and the band of S around
// it, handed to `put` (which broadcasts the record). One function per place the tape lives.

// smem: a binary search over this rank's slice of the tape in shared memory, the band from the cluster's tape.
template <typename Put>
__device__ __forceinline__ void rows_from_slice(const uint32_t* rel, const int64_t* gbase, const ClusterTape& ctape,
                                                int64_t r0, int64_t r1, int64_t n, int64_t F, int64_t Q, int64_t A0,
                                                int64_t qa, int64_t qb, Put&& put) {
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
}

// low_smem, one chunk (still in registers): each thread's first tape position to shared memory; a part finds its
// thread by binary search, then its row among that thread's 8 rows.
template <int kNT, typename Put>
__device__ __forceinline__ void rows_from_one_chunk(const Args& a, const RowLengths& lens, LowStatic* ls,
                                                    int64_t thread_excl, int64_t r0, int64_t n, int64_t F, int64_t Q,
                                                    int64_t A0, int64_t qa, int64_t qb, Put&& put) {
  const int64_t c0 = r0;
  if (qa < qb) {
    ls->thread_start[threadIdx.x] = A0 + thread_excl;
    __syncthreads();
    for (int64_t q = qa + threadIdx.x; q < qb; q += blockDim.x) {
      const int64_t lo_q = F + (q + 1) * Q;
      int tl = 0, th = kNT;   // largest thread with thread_start <= lo_q (its rows hold lo_q)
      while (th - tl > 1) {
        const int mid = (tl + th) >> 1;
        if (ls->thread_start[mid] <= lo_q) tl = mid; else th = mid;
      }
      put(q, band_in_thread(a, lens, c0 + static_cast<int64_t>(tl) * kV, n, ls->thread_start[tl], lo_q));
    }
  }
}

// low_smem, several chunks: one warp per part finds the (chunk, warp) of rows holding lo_q (the last one whose
// first position is at or below it: counted by every lane at once when the positions are in shared memory, else a
// binary search), then the thread (rescan of that warp's 256 rows), then the row. Every lane derives the same
// band, and lane o stores it in rank o (the part's chain of dependent steps is what costs here: a lone warp issues
// slowly).
template <int kNT, typename Put>
__device__ __forceinline__ void rows_from_chunk_sums(const Args& a, const RowLengths& lens, const int64_t* wpos,
                                                     int nch, int64_t r0, int64_t r1, int64_t n, int64_t F, int64_t Q,
                                                     int64_t A0, int64_t qa, int64_t qb, int lane, int warp,
                                                     Put&& put) {
  constexpr int kCh = kNT * kV, kW = kNT / 32;
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
    for (int j = 0; j < kV; ++j) ts += i0 + j < r1 ? cost_of(row_length(lens, i0 + j), a) : 0;
    const int64_t lp = wpos[cw] + warp_inclusive_sum(ts) - ts;
    const int l = 31 - __clz(__ballot_sync(kFull, ts > 0 && lp <= x));
    put(q, band_in_thread(a, lens, __shfl_sync(kFull, i0, l), n, A0 + __shfl_sync(kFull, lp, l), A0 + x),
        lane, 32);
  }
}

// The general path: any batch, on a cluster of K CTAs (or one).
template <bool kSmem, int kNT, int kWarpRows>
__device__ __forceinline__ void general_body(const Args& a) {
  constexpr int kCh = kNT * kV;   // rows per chunk (a rank has one chunk unless kNT == 1024)
  extern __shared__ __align__(16) uint8_t dyn[];
  const int64_t g = a.batch0 + blockIdx.y;
  const int64_t B = a.B;
  const int P = a.c.num_parts;
  const int64_t F = a.c.overhead;
  const bool uniform = a.c.uniform >= 0;   // every row has one length: closed forms, no records
  const unsigned K = gridDim.x, rank = blockIdx.x;   // the cluster spans grid.x
  const RowLengths lens = batch_lengths(a, g);
  const MetaOut out{a.meta + g * P * 8, a.layout, static_cast<int32_t>(B)};
  int32_t* splits = a.splits + g * (B + 1);
  uint8_t* ws = a.ws + g * a.ws_stride;
  // Per-row lengths: rank k owns rows [k R, k R + R) of the batch (cut at num_valid). Its first lengths are
  // requested before num_valid arrives, so the two memory round trips overlap.
  // K is a power of two (cluster_for, smem_cluster, low_smem_cluster): shifts, not the 64-bit divisions of
  // rows_per_rank, which a lone warp pays for before its first load is even addressed.
  const int kLog = __ffs(static_cast<int>(K)) - 1;
  const int64_t Rcap = (((B + K - 1) >> kLog) + kGroup - 1) & ~static_cast<int64_t>(kGroup - 1);   // rows_per_rank
  int64_t R = Rcap;
  if (!kSmem && R > kCh) R = (R + kCh - 1) / kCh * kCh;   // whole chunks when a rank has several
  const int64_t r0 = static_cast<int64_t>(rank) * R, rB = imin64(r0 + R, B);
  int32_t nl[kV];
  if (!uniform && !a.wide) load_chunk_lengths(lens, r0, imin64(r0 + kCh, rB), nl);
  const int64_t n = valid_rows(a, g);
  if (a.wide) {   // the num_splits kernel may start launching; the chunk sums are complete after the wait
    pdl_trigger();
    pdl_wait();
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // num_splits positions [k_lo, k_hi) belong to this rank.
  const int64_t per_rank_pos = (((B + K) >> kLog) + 3) & ~int64_t(3);   // ceil((B + 1) / K), 16-byte aligned
  const int k_lo = static_cast<int>(imin64(B + 1, rank * per_rank_pos));
  const int k_hi = static_cast<int>(imin64(B + 1, (rank + 1) * per_rank_pos));

  if (n == 0) {   // same n in every rank: no rank takes part in a cluster barrier
    if (rank == 0) store_empty_rows(out, P);
    if (!a.wide)
      for (int k = k_lo + threadIdx.x; k < k_hi; k += blockDim.x) splits[k] = 0;
    return;
  }
  MLA_STAMP(kNumValid);

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
  if (kNT == 256 && kWarpRows == 0 && !uniform && rowpath_fits(B, P, K)) {   // small batches (256 threads hold them)
    uint8_t* region;
    if constexpr (kSmem) region = reinterpret_cast<uint8_t*>(rel); else region = reinterpret_cast<uint8_t*>(ls->rec);
    if (row_path<256>(a, nl, static_cast<int>(n), static_cast<int>(B), out, splits, sh, region, scan_parity)) return;
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
      walk_regs();   // the walker of per-row lengths runs in warp 0, that of one length in every warp
      MLA_STAMP(kWalked);
      __syncthreads();
      MLA_STAMP(kWalkBarrier);
      finish_windows(rec, sh, P, n, F, cuts, rank == 0 ? out : MetaOut{nullptr, 0, 0}, T);
      MLA_STAMP(kWindowsDone);
      __syncthreads();
      MLA_STAMP(kMetaBarrier);
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
    MLA_STAMP(kWalkBarrier);
    if (rank == 0) write_meta(rec, global_parts, out, P, n, F, T);
  };
  if (uniform) {
    // ---------------- rows of one length: closed form (S_i = i c), no records, no barrier ----------------
    const int64_t c = cost_of(a.c.uniform, a);
    total = n * c;
    Q = div64(total + P - 1, P);
    MLA_STAMP(kRecordsIn);
    finish(UniformTape{last_block(a.c.uniform, a.c.block_size_n)},
           [&] { walk_uniform_windows(rec, P, n, Q, F, c, sh); },
           [&] { return walk_uniform(rec, P, n, Q, F, c, cuts, rank == 0); });
    out_splits(cuts, global_parts);
    MLA_STAMP(kDone);
    return;
  }

  // ---------------- lengths per row ----------------
  // This rank's rows [r0, r1) (R and r0 are set at the top, from B).
  const int64_t r1 = n < r0 ? r0 : imin64(n, rB);
  const int nch = static_cast<int>((r1 - r0 + kCh - 1) / kCh);
  int64_t* wpre = reinterpret_cast<int64_t*>(ws + a.lay.chunks);   // [K * (R / kCh)][32] when nch > 1
  const int64_t wbase = static_cast<int64_t>(rank) * (R / kCh);
  // low_smem with its records in shared memory: each record is pushed to every rank onto sh->rbar (st.async),
  // not stored remotely and published by a release / acquire cluster barrier (the slow kind: ptx.cuh).
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
  int64_t* wpos = nch * kW <= kThreads ? low_thread_starts<kSmem>(ls) : wpre + wbase * kW;
  const bool multi = !kSmem && (nch > 1 || a.wide);   // per-warp sums and positions, not one chunk scan
  if (multi) {
    // Only sums are needed here (the row search rescans one warp's rows): per chunk each warp adds its 256
    // costs with two 32-bit warp reductions and stores the sum; one block scan at the end makes them
    // positions. No barrier per chunk.
    // Three chunks in flight (a rank streams up to 4 MB on one SM: one chunk ahead left it latency-bound).
    auto fetch = [&](int ch, int32_t (&l)[kV]) {
      if (ch < nch) {
        const int64_t c0 = r0 + static_cast<int64_t>(ch) * kCh;
        load_chunk_lengths(lens, c0, imin64(c0 + kCh, rB), l);
      }
    };
    auto sum_chunk = [&](int ch, int32_t (&l)[kV]) {
      if (ch >= nch) return;   // uniform
      const int64_t i0 = r0 + static_cast<int64_t>(ch) * kCh + static_cast<int64_t>(threadIdx.x) * kV;
      const int64_t tsum = thread_cost_sum(a, l, i0, r1);
      fetch(ch + 3, l);
      if (ch == 0) MLA_STAMP(kFirstCosts);
      const int64_t wsum = warp_cost_sum(tsum);
      if (lane == 0) wpre[(wbase + ch) * kW + warp] = wsum;
      if (ch == 0) MLA_STAMP(kFirstScan);
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
    if (ch + 1 < nch) load_chunk_lengths(lens, c0 + kCh, imin64(c0 + 2 * kCh, rB), nl);   // in flight during the scan
    scan_chunk(a, l, c0, r1, scan_buf(), cs, ch == 0);
    if (ch == 0) MLA_STAMP(kFirstScan);
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
  MLA_STAMP(kScanned);
  // Publish this rank's sum to every rank; then every rank knows where each slice starts.
  int64_t A0, qt, qa, qb;   // where this rank's slice of the tape starts; parts past the tape: [qt, P), this
                            // rank's: [qa, qb)
  if (K > 1) {
    cluster_wait();   // phase 0 complete: other ranks may be sent to
    // st.async onto the receivers' mbarriers, not a cluster barrier with release (ptx.cuh). Nothing
    // written to another rank's records below can meet that rank's own stores: disjoint arrays.
    // Other ranks read this slice's first two rows (rel, gbase: stored by thread 0) once they hold this sum:
    // the push's complete_tx releases at cluster scope what its warp stored before this __syncwarp.
    __syncwarp();
    if (threadIdx.x < K) push(&sh->rsum[rank], &sh->bar, threadIdx.x, carry);
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
  MLA_STAMP(kSumsKnown);

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
    rows_from_slice(rel, gbase, ctape, r0, r1, n, F, Q, A0, qa, qb, put);
  } else if (!multi) {
    rows_from_one_chunk<kNT>(a, lens, ls, cs.excl, r0, n, F, Q, A0, qa, qb, put);
  } else {
    rows_from_chunk_sums<kNT>(a, lens, wpos, nch, r0, r1, n, F, Q, A0, qa, qb, lane, warp, put);
  }
  MLA_STAMP(kRowsFound);
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
  MLA_STAMP(kRecordsIn);

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
  MLA_STAMP(kDone);
  // smem: no rank leaves while another may still read its shared memory; low_smem: nor while its pushes land
  if ((kSmem || push_records) && K > 1) cluster_wait();
}

}  // namespace
}  // namespace mla_meta
