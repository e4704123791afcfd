// kernels.cuh: the two kernels, "smem" and "low_smem", as templates over their thread count and path. Each
// instance starts on one path (warp, mid or general; the general path takes the row path for small batches) and
// hands a batch it cannot take exactly to the general path in the same launch. The instances that exist are
// listed once, in kernel_table.h, and compiled in kernels_*.cu (one translation unit per group, built in
// parallel).
#pragma once

#include <cstdint>

#include "common.cuh"
#include "general_path.cuh"
#include "mid_path.cuh"
#include "warp_path.cuh"

namespace mla_meta {
namespace {

// kWarpRows > 0: the warp path with kWarpRows rows per lane; kMidRows > 0: the mid path with kMidRows rows per
// thread; either falls back to the general path (in the same launch) for a batch it cannot take exactly.
// The general path out of line, for the warp and mid paths' instances: their kernels' own code is then the fast
// path and a call to one shared copy (compiled once per group, not once per instance), and both kernels compile
// the fast path alike (inlined, their different general paths gave the mid path different register allocation:
// benchmarks/README.md, perf log v18 and v19).
template <bool kSmem, int kNT, int kWarpRows>
__device__ __noinline__ void general_call(const Args& a) { general_body<kSmem, kNT, kWarpRows>(a); }

template <bool kSmem, int kNT, int kWarpRows, int kMidRows>
__device__ __forceinline__ void sched_body(const Args& a) {
  MLA_STAMP(kEntry);
  if constexpr (kWarpRows > 0 || kMidRows > 0) {
    if constexpr (kWarpRows > 0) {   // launched only for per-row lengths with P <= 256 (core/launch_plan.h)
      if (a.c.uniform < 0 && warp_path<kSmem, kWarpRows>(a)) return;
    } else {                         // and these only where midpath_fits (core/geometry.h)
      static_assert(kNT == kMidThreads, "the mid path runs on CTAs of kMidThreads threads");
      if (a.c.uniform < 0 && a.bs_shift >= 6 && mid_path<kSmem, kMidRows>(a)) return;
    }
    const Args copy = a;   // the callee takes an address: copied here, on this rare path, not at kernel entry
    general_call<kSmem, kNT, (kWarpRows > 0 ? 1 : 0)>(copy);   // one copy for every instance of the group
  } else {
    general_body<kSmem, kNT, 0>(a);
  }
}

// Thread count per CTA: 256, 512 or 1024 (a rank's rows in one chunk of 8 per thread when they fit; small
// batches are bound by instruction issue, and every uniform step costs each warp).
// kWarpRows > 0 (256 threads): the warp path, kWarpRows rows per lane. kMidRows > 0 (512 threads): the mid path,
// kMidRows rows per thread.
template <int kNT, int kWarpRows = 0, int kMidRows = 0>
__global__ void __launch_bounds__(kNT, 1) mla_smem_kernel(const Args a) {
  sched_body<true, kNT, kWarpRows, kMidRows>(a);
}
template <int kNT, int kWarpRows = 0, int kMidRows = 0>
__global__ void __launch_bounds__(kNT, 1) mla_low_smem_kernel(const Args a) {
  sched_body<false, kNT, kWarpRows, kMidRows>(a);
}

}  // namespace
}  // namespace mla_meta
