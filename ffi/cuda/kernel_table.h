// kernel_table.h: the one list of kernel instances. Each group below is compiled in its own translation units
// (kernels_<group>_<kernel>.cu: in parallel, and only what is listed); the handler finds the instance the launch
// decision (core/launch_plan.h) names, and raises every instance's attributes from this list. Host code only.
#pragma once

#include <cstdint>

#include "core/geometry.h"

namespace mla_meta {

struct KernelInstance {
  int32_t smem;        // 1: the smem kernel, 0: low_smem
  int32_t threads;     // per CTA
  int32_t warp_rows;   // > 0: starts on the warp path with this many rows per lane
  int32_t mid_rows;    // > 0: starts on the mid path with this many rows per thread
  const void* fn;      // the kernel, for cudaLaunchKernelExC and cudaFuncSetAttribute
};

struct KernelList {
  const KernelInstance* items;
  int count;
};

// (threads, warp rows per lane, mid rows per thread) of each instance, by group. They must cover every value
// plan_launch can return: threads_for, warppath_rows_per_lane, and midpath_rows_per_thread up to
// kMidMaxRowsPerThread (core/geometry.h).
#define MLA_GENERAL_INSTANCES(X) X(256, 0, 0) X(512, 0, 0) X(1024, 0, 0)
#define MLA_WARP_INSTANCES(X) X(256, 1, 0) X(256, 2, 0) X(256, 4, 0) X(256, 8, 0) X(256, 16, 0)
#if JAX_MLA_META_MID_MAX_ROWS > 16384
#define MLA_MID_INSTANCES(X) X(512, 0, 4) X(512, 0, 8) X(512, 0, 16)
#else
#define MLA_MID_INSTANCES(X) X(512, 0, 4) X(512, 0, 8)
#endif

KernelList general_smem_kernels();
KernelList general_low_smem_kernels();
KernelList warp_smem_kernels();
KernelList warp_low_smem_kernels();
KernelList mid_smem_kernels();
KernelList mid_low_smem_kernels();

// The wide batches' grid kernels (wide_kernels.cu), and their CTA shape.
constexpr int kWideThreads = 256;
constexpr int kSplitSpan = kWideThreads * kRowsPerThread;   // num_splits positions per CTA of the num_splits kernel
const void* chunk_sums_kernel();
const void* splits_kernel();

}  // namespace mla_meta
