// walker.cuh: the general path's walk over the parts. One warp finds every part's end from the records (the band
// of S around lo_q), 32 parts a step, one ballot per restart; rows of one length need no walk (every end in closed
// form). Then the cut rows, the runs of pieces and the metadata rows follow per window of 32 parts.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "meta_rows.cuh"
#include "tapes.cuh"

namespace mla_meta {
namespace {

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

// The walker (per-row lengths), one warp: lanes hold 32 consecutive parts; D (the accumulated restart shift) is
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
      while (r < n && pos >= sr1) {   // D moved us past row_lo: step forward (r < n: totals past kInf)
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
        if (r < n && pos >= sr1) {
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

// Rows of one length need no walk: every row costs c, so a part ending in a row's window restarts the next one at
// offset F + Q (mod c) whatever the row, and the restarts recur every m + 1 parts, where m is the first j
// with (F + (j + 1) Q) mod c < F. Part q = k (m + 1) + j ends at k Delta c + F + (j + 1) Q with
// Delta = floor((F + (m + 1) Q) / c) (past the tape end nothing restarts, and every later part is past it too).
// Every part's end in closed form (one warp finds m; all lanes get the same result).
struct UniformEnds {
  int m;          // the first part that restarts (P: none)
  int64_t step;   // the tape advance of m + 1 parts
  int64_t n, Q, F, c;
  __device__ UniformEnds(int P, int64_t n_, int64_t Q_, int64_t F_, int64_t c_) : m(P), n(n_), Q(Q_), F(F_), c(c_) {
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

__device__ int walk_uniform(PartRecord* rec, int P, int64_t n, int64_t Q, int64_t F, int64_t c, int32_t* cuts,
                           bool write_final) {
  const int lane = threadIdx.x & 31;
  const UniformEnds ends(P, n, Q, F, c);
  WindowCarry W;
  for (int base = 0; base < P; base += 32) {
    const int q = base + lane;
    int64_t pos, r;
    ends.part(q, pos, r);
    finalize_window(base, q < P, pos, r * c, r, n, F, rec, cuts, write_final, W);
  }
  return W.C;
}

// ---- the window walker (P <= 32 kMaskWindows parts: every workload of docs/spec.md) ----
// Warp 0 walks the parts 32 at a time (lane l of window w is part 32 w + l). Only the chain lives here, in
// as few instructions as possible (a warp issuing alone pays the full latency of each one): each lane's end
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

// Per-row lengths: the records hold each part's band (the row holding lo_q and S around it).
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

// Rows of one length (see walk_uniform): every part's end in closed form, so the windows are independent: every
// warp takes its own (warp w: windows w, w + nwarps, ...).
__device__ void walk_uniform_windows(PartRecord* rec, int P, int64_t n, int64_t Q, int64_t F, int64_t c,
                                      Shared* sh) {
  const int lane = threadIdx.x & 31;
  const int nw = (P + 31) >> 5;
  const UniformEnds ends(P, n, Q, F, c);
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

// After the window walker and a barrier, one warp per window: the window's cut rows (their places follow
// from the masks of the windows before it), each part's run of pieces and, where `out.meta` is set (rank 0), its
// row of tile_scheduler_metadata.
template <typename Tape>
__device__ void finish_windows(const PartRecord* rec, Shared* sh, int P, int64_t n, int64_t F,
                               int32_t* cuts, const MetaOut& out, const Tape& T) {
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
    if (out.meta == nullptr) continue;   // uniform: ranks other than 0
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
    if (act) store_meta_row(out, q, pr, pcut, pblk, prun, me.r, cut, blk, n, T);
  }
}

// tile_scheduler_metadata from the final records (all threads of one CTA).
template <typename Tape>
__device__ void write_meta(const PartRecord* rec, bool rec_global, const MetaOut& out, int P, int64_t n, int64_t F,
                           const Tape& T) {
  for (int p = threadIdx.x; p < P; p += blockDim.x) {
    const PartRecord me = load_record(rec + p, rec_global);
    PartRecord pr{};
    if (p > 0) pr = load_record(rec + p - 1, rec_global);
    store_meta_row(out, p, pr.r, pr.cut != 0, static_cast<int32_t>(pr.E - pr.Sr - F), pr.run, me.r, me.cut != 0,
                   static_cast<int32_t>(me.E - me.Sr - F), n, T);
  }
}

}  // namespace
}  // namespace mla_meta
