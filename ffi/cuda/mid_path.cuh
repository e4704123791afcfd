// mid_path.cuh: mid-size batches with per-row lengths, the mid path. Both kernels, kMidMinRows <= B <=
// kMidPathRows (1,793-12,288), P <= kRowParts (256), block_size_n a power of two >= 64 (midpath_takes,
// core/geometry.h). A cluster of K CTAs (midpath_cluster: 1-8 on an H100) of kMidThreads (512) threads; rank r
// owns rows [r W, r W + W) (W: ceil(B / K) rounded up to whole threads) and thread i of it rows
// [r W + R i, r W + R i + R) (R = 4, or 8 on small clusters), whose costs it keeps in registers: no per-row shared
// memory, so both kernels run it alike, and no division per row: each thread divides once per pass and then steps
// its rows' tape positions past multiples of Q (see `residues`). (Rolled loops that reread the lengths from L1
// were slower: benchmarks/README.md, perf log v15a.)
//  * Each rank scans its costs and sends its sum to every rank (push: no cluster barrier with release
//    semantics, the slow kind: ptx.cuh); then every thread knows the total, Q and S of its rows.
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
//      entry, 32 per ballot round (walk_candidates). (Faster than the lists below where it applies:
//      benchmarks/README.md, perf log v17a and v18b.)
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
#pragma once

#include <cstdint>

#include "common.cuh"
#include "lengths.cuh"
#include "meta_rows.cuh"
#include "ptx.cuh"
#include "scans.cuh"

namespace mla_meta {
namespace {

static_assert(midpath_bytes() <= kPartRecordBytes * kStageParts,
              "the mid path must fit the low_smem kernel's part records");
static_assert(kMidPathRows <= 65536, "the mid path: 16-bit rows");

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
  MLA_MID_STAMP(kMidStart);
  const int64_t g = a.batch0 + blockIdx.y;
  const int B = static_cast<int>(a.B), P = a.c.num_parts;
  // This rank's rows: [r0, r1), W = r1 - r0 a multiple of R (K is a power of two: a shift, not a division).
  const int W = (((B + static_cast<int>(K) - 1) >> (__ffs(static_cast<int>(K)) - 1)) + R - 1) / R * R;
  const int r0 = static_cast<int>(rank) * W, r1 = r0 + W, i0 = r0 + tid * R;
  const RowLengths lens = batch_lengths(a, g);
  int32_t len0[R];
  load_lengths<R>(lens, i0, min(r1, B), 0, len0);
  // The row before the thread's (a restart on its first row ends a part there).
  const int32_t len_prev = i0 > 0 && i0 <= B ? row_length(lens, i0 - 1) : 0;
  const int n = static_cast<int>(valid_rows(a, g));
  // The last rank ends the parts past the tape in row n - 1.
  const int32_t len_last = rank == K - 1 && n > 0 ? row_length(lens, n - 1) : 0;
  MLA_MID_STAMP(kMidLoaded);
  const MetaOut out{a.meta + g * P * 8, a.layout, B};
  int32_t* splits = a.splits + g * (a.B + 1);
  if (n == 0) {   // the same in every rank: rank 0 writes everything
    if (rank == 0) {
      store_empty_rows(out, P);
      for (int p = tid; p <= B; p += kMidThreads) splits[p] = 0;
    }
    if (K > 1) cluster_wait();
    return true;
  }
  const int nl = min(n, r1);   // this rank's rows with a length
  const uint32_t F = static_cast<uint32_t>(a.c.overhead);
  const int shift = a.bs_shift;   // >= 6: a row costs < 2^25 + F < 2^26, R of them < 2^31
  // num_blocks of core/costs.h, by a shift and without a branch (spelled here for the mid path's code generation)
  auto cost_of_len = [&](int32_t len) { return (static_cast<uint32_t>(max(len, 1) - 1) >> shift) + 1u + F; };
  // The costs of the thread's rows stay in registers (0 from row nl on); every pass over them is unrolled.
  uint32_t cost[R], tsum = 0, cmax = 0, zm = 0;   // zm: rows of length 0 (their end_block is 0)
#pragma unroll
  for (int j = 0; j < R; ++j) {
    cost[j] = i0 + j < nl ? cost_of_len(len0[j]) : 0u;
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
  MLA_MID_STAMP(kMidScanned);
  if (K > 1) {   // every rank's sum, pushed to every rank: the total and where this rank's slice starts
    cluster_wait();   // phase 0 complete: other ranks may be sent to
    MLA_MID_STAMP(kMidPhase0);
    if (tid < static_cast<int>(K)) push(rsum + rank, bar, tid, total);
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
    MLA_MID_STAMP(kMidSums);
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
  MLA_MID_STAMP(kMidCandScan);
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
    MLA_MID_STAMP(kMidListed);
    if (tid < static_cast<int>(nd)) {
      uint32_t e = 0x80000000u;
      if (listed) {
        uint32_t cnt;
        const uint32_t dd = table_entry(cand, m, static_cast<uint32_t>(tid), F, cnt, hits);
        e = ((cnt | (dd > dmax ? 0x8000u : 0u)) << 16) | min(dd, dmax);
      }
      for (unsigned k = 0; k < K; ++k) push(slots + rank * nd + tid, bar + 2, k, e);
    }
    MLA_MID_STAMP(kMidSent);
    mbar_wait(bar + 2);
    MLA_MID_STAMP(kMidLanded);
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
    MLA_MID_STAMP(kMidCombined);
  } else if (K > 1) {   // every rank's count and candidates (none when more than M), sent to every rank
    if (tid < static_cast<int>(K)) push(rcnt + rank, bar + 1, tid, m);
    __syncthreads();   // the candidates are listed
    // one word a thread: candidate c to rank k for c K + k = tid (and so on)
    for (uint32_t w = tid; w < (listed ? m : 0u) << kLog; w += kMidThreads)
      push(slots + rank * M + (w >> kLog), bar + 2, w & (K - 1), cand[w >> kLog]);
    __syncthreads();   // every word is sent: the list below may overwrite `cand`
    MLA_MID_STAMP(kMidListed);
    mbar_wait(bar + 1);
    MLA_MID_STAMP(kMidSent);
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
    MLA_MID_STAMP(kMidLanded);
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
    MLA_MID_STAMP(kMidCombined);
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
    MLA_MID_STAMP(kMidChain);
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
      MLA_MID_STAMP(kMidChain);
    }
  }
  __syncthreads();
  MLA_MID_STAMP(kMidBarrier);
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
      if (qa - 1u < static_cast<uint32_t>(P)) {
        // 2026 flags: row j - 1 is split iff part qa - 2 (ending Q before part qa - 1, at the same d) cut it;
        // row j iff it does not fit part qa, which begins on it (docs/architecture.md, "the 2026 flags")
        bool split_prev = false, split_row = false;
        if (out.layout == kLayout2026) {
          const uint32_t s_prev = s - (j == 0 ? cost_of_len(len_prev) : cost[j > 0 ? j - 1 : 0]);
          split_prev = qa >= 2u && (qa - 1u) * Q + d > s_prev;
          split_row = cj > Q + F;
        }
        store_part_rows(out, static_cast<int>(qa) - 1, P, row - 1, end_blk(j), row, 0, 0, split_prev, split_row);
      }
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
        store_part_rows(out, static_cast<int>(q), P, row, eb, row, eb, static_cast<int>(q - q0) + 1);
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
    // The parts past the tape. 2026: the last row is split iff part qt - 1 (at the chain's last d) cut it.
    const bool split_last = out.layout == kLayout2026 && qt >= 1 &&
                            static_cast<uint32_t>(qt) * Q + dfin > total - cost_of_len(len_last);
    for (int q = max(qt, 0) + tid; q < P; q += kMidThreads)
      store_part_rows(out, q, P, n - 1, static_cast<int>(last_block(len_last, a.c.block_size_n)), -1, 0, 0,
                      q == qt && split_last);
  }
  MLA_MID_STAMP(kMidOut);
  if (K > 1) cluster_wait();   // no rank leaves while another may still send to it
  MLA_MID_STAMP(kMidExit);
  return true;
}

}  // namespace
}  // namespace mla_meta
