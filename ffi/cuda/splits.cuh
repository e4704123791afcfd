// splits.cuh: num_splits from the sorted cut rows (the general path and the wide batches' num_splits kernel).
#pragma once

#include <cstdint>

#include "common.cuh"

namespace mla_meta {
namespace {

// num_splits: splits[0] = 0, splits[k] = k + #cuts < k for 1 <= k <= n, then n + C (cut rows sorted).
// The last position, B, is always n + C: the rank that owns it writes it alone (B + 1 positions would
// cost the warps one more step than B when B is a multiple of their 128-position steps).
// Positions [k_lo, k_hi): each warp writes a contiguous segment, 128 consecutive positions per step as one
// 16-byte store per lane (32 positions and 4-byte stores when the slice is not 16-byte aligned). A cursor
// into the cut rows only moves forward; the cut rows that fall inside a step are read 32 at a time into the
// lanes, and each lane counts those below its positions (one by one when few, else by binary search).
// (One thread per 8 positions with binary searches in shared memory was slower: the dependent loads.)
// Positions reach B <= 2^31 - 4: segment bounds and positions are 64-bit (a warp's segment may start past k_hi,
// and the last step's lanes past s1 would wrap an int); num_splits values stay below B + P < 2^31.
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
  const int64_t s0 = static_cast<int64_t>(k_lo) + static_cast<int64_t>(warp) * per;
  const int64_t s1 = s0 + per < k_hi ? s0 + per : k_hi;
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
  for (int64_t w0 = s0; w0 < s1; w0 += W) {
    const int64_t k = w0 + lane * V;
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
      const int64_t kj = k + j;
      v[j] = kj == 0 ? 0 : (kj <= n ? static_cast<int>(kj) + cnt[j] : tail);
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

}  // namespace
}  // namespace mla_meta
