// warp_path.cuh: small batches with per-row lengths, the warp path. Both kernels, B <= kWarpPathRows (512), P <=
// kRowParts (256), tape total < 2^30 and every row cost < 2^26 (else the general path runs). Warp 0 does all the
// per-row work with no block barrier (row 32 i + lane in slot i of lane `lane`, R slots), then one barrier, then
// every thread writes one part's rows of tile_scheduler_metadata.
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
// Shared memory: key[32 R], then per row {qa | hit << 31, D + Q - S (so a cut part q ends at block q Q + that),
// end_block of the row before, num_splits of the row (for the 2026 flags)}. Scalars in Shared::u: n, C, qt, Q,
// end_block of row n - 1, and a flag set when the total reaches 2^30 or a row cost 2^26 (then the caller runs the
// general path).
#pragma once

#include <cstdint>

#include "common.cuh"
#include "lengths.cuh"
#include "meta_rows.cuh"
#include "scans.cuh"

namespace mla_meta {
namespace {

static_assert(warppath_bytes(kWarpPathRows) <= kPartRecordBytes * kStageParts,
              "the warp path must fit the low_smem kernel's part records");
static_assert(kWarpPathRows == 32 * 16 && kRowParts <= 256, "the warp path: 16 rows per lane, a thread per part");
template <bool kSmem, int R>
__device__ __forceinline__ bool warp_path(const Args& a) {
  Shared* sh;
  uint32_t* key;
  one_cta_smem<kSmem>(sh, key);
  uint4* tab = reinterpret_cast<uint4*>(key + 32 * R);
  uint32_t* sc = reinterpret_cast<uint32_t*>(sh->u);   // [0] n, [1] C, [2] qt, [3] Q, [4] end_block of n - 1, [5] flag
  const int64_t g = a.batch0 + blockIdx.y;
  const int B = static_cast<int>(a.B), P = a.c.num_parts;
  const MetaOut out{a.meta + g * P * 8, a.layout, B};
  int32_t* splits = a.splits + g * (a.B + 1);
  const int tid = threadIdx.x, lane = tid & 31;
  if (tid < 32) {
    const RowLengths lens = batch_lengths(a, g);
    int32_t len[R];
#pragma unroll
    for (int i = 0; i < R; ++i) len[i] = 32 * i + lane < B ? row_length(lens, 32 * i + lane) : 0;
    const int n = static_cast<int>(valid_rows(a, g));
    MLA_STAMP(kWarpLoaded);
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
    MLA_STAMP(kWarpScanned);
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
        MLA_STAMP(kWarpQuotients);
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
        MLA_STAMP(kWarpChain);
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
        MLA_STAMP(kWarpQuotients);
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
        MLA_STAMP(kWarpChain);
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
          tab[row] = make_uint4(qa[i] | (hb[i] << 31), rb[i], prev, static_cast<uint32_t>(sp[i]));
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
  MLA_STAMP(kWarpEntries);
  const int n = static_cast<int>(sc[0]);
  if (sc[5] != 0u) return false;   // uniform; nothing written yet
  const int q = tid;
  if (n == 0) {
    store_empty_rows(out, P);
    for (int p = tid; p <= B; p += blockDim.x) splits[p] = 0;
    return true;
  }
  const int C = static_cast<int>(sc[1]), qt = static_cast<int>(sc[2]);
  const uint32_t Q = sc[3];
  for (int p = n + tid; p <= B; p += blockDim.x) splits[p] = n + C;
  if (q < P) {
    auto split = [&](int j) {   // row j (< n) has more than one piece
      const int next = j + 1 < n ? static_cast<int>(tab[j + 1].w) : n + C;
      return next - static_cast<int>(tab[j].w) > 1;
    };
    const bool flags = out.layout == kLayout2026;
    int er, eb, nr = -1, nb = 0, ns = 0;
    bool split_er = false, split_nr = false;
    if (q >= qt) {   // the tape ends inside part q
      er = n - 1;
      eb = static_cast<int>(sc[4]);
      split_er = flags && q == qt && split(n - 1);
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
        split_er = flags && split(j - 1);
        split_nr = flags && split(j);
      } else {   // part q cuts row j
        er = nr = j;
        eb = nb = static_cast<int>(static_cast<uint32_t>(q) * Q + e.y);
        ns = q - qa + 1;
      }
    }
    store_part_rows(out, q, P, er, eb, nr, nb, ns, split_er, split_nr);
  }
  MLA_STAMP(kWarpDone);
  return true;
}

}  // namespace
}  // namespace mla_meta
