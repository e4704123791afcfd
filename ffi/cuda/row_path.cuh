// row_path.cuh: small batches with per-row lengths, the row path. Both kernels, one CTA of 256 threads,
// B <= kRowPathRows (1,792), P <= kRowParts (256), tape total < 2^30 (else the general path runs, in the same
// launch). No part records and no row search: everything follows from
// per-row arithmetic on the tape positions S_j and t_j = S_j mod Q, in 32-bit integers.
//  * A part q ends at E_q = F + (q + 1) Q + D, where D is fixed between restarts. Row j is "hit" (some part
//    ends inside its first F units, so the next part restarts at S_j) iff (S_j - D) mod Q <= F. After a hit at
//    row h, D = S_h - m Q (m = ceil((S_h - F - D_old) / Q): the hit part is m - 1), so D mod Q = t_h. The
//    chain of hits is therefore: h_0 = 0, h_{k+1} = first j > h_k with (t_j - t_{h_k}) mod Q <= F.
//  * D grows by at most F per hit and stays small next to Q on real batches (at most 30 against Q = 19 to
//    17,000 on the spec's workloads), so while d + F <= L only rows with t_j <= L can be hit: each warp lists
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
// Shared memory (a region of rowpath_bytes, core/geometry.h): S_j with bit 31 set for zero lengths, t_j, the
// candidates, num_splits of each row (for the 2026 flags), the hits (row, D, D / Q, D mod Q); after the walk, the
// per-row entries of the metadata pass in place of t and the candidates.
// The low_smem kernel lends it its part records, cut rows and thread starts (the smem kernel sizes its
// dynamic shared memory for it: smem_bytes in core/geometry.h).
#pragma once

#include <cstdint>

#include "common.cuh"
#include "meta_rows.cuh"
#include "scans.cuh"

namespace mla_meta {
namespace {

static_assert(rowpath_bytes(kRowPathRows, kRowParts) <=
                  kPartRecordBytes * kStageParts + 4 * kStageParts + 8 * kThreads,
              "the row path must fit the low_smem kernel's static shared memory");
static_assert(kRowPathRows <= kV * (256 - 32), "the row path's threads past warp 0 own at most kV rows each");
static_assert(kRowPathRows < (1 << 16) && kRowParts < (1 << 16),
              "candidates pack (row << 16 | t) and key_hit packs (qa << 16 | hit) in 32 bits");

// Returns false (having written nothing but scan buffers) when the tape is too long for 32-bit arithmetic;
// the caller then runs the general path.
template <int kNT>
__device__ __forceinline__ bool row_path(const Args& a, const int32_t (&nl)[kV], int n, int B, const MetaOut& out,
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
  MLA_STAMP(kRowScanned);
  const uint32_t Q = (total + static_cast<uint32_t>(P) - 1) / static_cast<uint32_t>(P);   // >= 1: total >= 1
  const FastDiv fq(Q);
  // Candidates: only rows with t <= L can be hit while d + F <= L (see the walker).
  const uint32_t L = min(Q - 1, min(48u + 2u * F, 0xffffu));
  const int Bc = (B + 7) & ~7;
  uint32_t* Sarr = reinterpret_cast<uint32_t*>(region);
  uint32_t* tarr = Sarr + Bc;
  uint32_t* cand = tarr + Bc;      // per warp of rows (256 rows), its candidates: row << 16 | t, in row order
  uint32_t* rsplit = cand + Bc;    // num_splits of each row (2026 layout: whether a row is split)
  uint32_t* ccount = rsplit + Bc;  // [8]: candidates per warp of rows
  uint32_t* hrow = ccount + 8;
  uint32_t* hD = hrow + P + 1;
  uint32_t* he = hD + P + 1;       // D / Q and D mod Q of every hit
  uint32_t* hd = he + P + 1;
  // After the walk, the per-row entries of the metadata pass replace t and the candidates: key << 16 | hit
  // (key: the first part row j owns, see the warp path) and D + Q - S (a cut part q ends at block q Q + that).
  uint32_t* key_hit = tarr;
  uint32_t* block_base = cand;
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
  MLA_STAMP(kRowTape);
  __syncthreads();
  MLA_STAMP(kRowTapeBarrier);

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
    MLA_STAMP(kRowChain);
  }
  __syncthreads();
  MLA_STAMP(kRowChainBarrier);
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
        key_hit[row] = ((qa - hit) << 16) | hit;   // qa <= P <= 256
        block_base[row] = hD[k] + Q - (ga[j] * Q + ta[j]);
        if (closed) {
          const int v = row + static_cast<int>(qa) - k;
          splits[row] = v;
          rsplit[row] = static_cast<uint32_t>(v);
        }
        tc += c;
      } else if (closed && j < kr && row <= B) {
        splits[row] = n + C0;
      }
    }
  } else {
#pragma unroll
    for (int j = 0; j < kV; ++j) lc[j] = 0;
  }
  MLA_STAMP(kRowEntries);
  int C = C0;
  if (closed) {
    if (warp > 0 && r0 >= n) {
#pragma unroll
      for (int j = 0; j < kV; ++j)
        if (j < kr && r0 + j <= B) splits[r0 + j] = n + C;
    }
    __syncthreads();   // the per-row entries
    MLA_STAMP(kRowSplits);
  } else {
    uint32_t C32;   // C < n + P: a 32-bit scan (never saturated at 2^31)
    const int cex = static_cast<int>(block_exclusive_sum(
        static_cast<uint32_t>(tc), reinterpret_cast<uint32_t*>(sh->scan[(scan_parity++) & 1]), &C32,
        SatPlus{(1u << 31) - 1}));
    MLA_STAMP(kRowSplits);
    C = static_cast<int>(C32);
    if (warp > 0) {
#pragma unroll
      for (int j = 0; j < kV; ++j) {
        const int p = r0 + j;
        if (j < kr && p <= B) {
          const int v = min(p, n) + cex + lc[j];
          splits[p] = v;
          if (p < n) rsplit[p] = static_cast<uint32_t>(v);
        }
      }
    }
    if (a.layout == kLayout2026) __syncthreads();   // every row's num_splits, for the flags below
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
    auto split = [&](int j) {   // row j (< n) has more than one piece
      const int next = j + 1 < n ? static_cast<int>(rsplit[j + 1]) : n + C;
      return next - static_cast<int>(rsplit[j]) > 1;
    };
    const bool flags = out.layout == kLayout2026;
    int er, eb, nr = -1, nb = 0, ns = 0;
    bool split_er = false, split_nr = false;
    if (q >= qt) {   // the tape ends inside part q
      er = n - 1;
      eb = last_blk(n - 1);
      split_er = flags && q == qt && split(n - 1);
    } else {
      const uint32_t lim = (static_cast<uint32_t>(q) << 16) | 0xffffu;
      int j = 0;
#pragma unroll 1
      for (int s = n > 1 ? 1 << (31 - __clz(n - 1)) : 0; s >= 1; s >>= 1)
        if (j + s < n && key_hit[j + s] <= lim) j += s;
      const uint32_t e = key_hit[j];
      const int qa = static_cast<int>((e >> 16) + (e & 1u));
      if ((e & 1u) && q + 1 == qa) {   // part q ends in the first F units of row j
        er = j - 1;
        eb = last_blk(j - 1);
        nr = j;
        split_er = flags && split(j - 1);
        split_nr = flags && split(j);
      } else {   // part q cuts row j
        er = nr = j;
        eb = nb = static_cast<int>(static_cast<uint32_t>(q) * Q + block_base[j]);
        ns = q - qa + 1;
      }
    }
    store_part_rows(out, q, P, er, eb, nr, nb, ns, split_er, split_nr);
  }
  MLA_STAMP(kRowDone);
  return true;
}

}  // namespace
}  // namespace mla_meta
