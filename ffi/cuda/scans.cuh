// scans.cuh: warp and block prefix sums (one implementation, with a plain or a saturating add).
#pragma once

#include <cstdint>

#include "common.cuh"

namespace mla_meta {
namespace {

// The scans add with `op`: Plus, or SatPlus (32 bits, saturating at `cap` < 2^31: two saturated values still
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

// A warp's sum of per-thread sums below 2^35 by two 32-bit reductions (every lane gets it).
__device__ __forceinline__ int64_t warp_cost_sum(int64_t tsum) {
  const uint32_t lo = __reduce_add_sync(kFull, static_cast<uint32_t>(tsum) & 0xffffffu);   // < 2^29
  const uint32_t hi = __reduce_add_sync(kFull, static_cast<uint32_t>(tsum >> 24));         // < 2^16
  return (static_cast<int64_t>(hi) << 24) + lo;
}

}  // namespace
}  // namespace mla_meta
