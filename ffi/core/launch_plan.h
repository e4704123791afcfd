// launch_plan.h: the one launch decision. The CUDA handler launches what this returns, and plan() in Python
// (through the _cpu module) only words it: which kernel, how many CTAs of how many threads, which path, how much
// dynamic shared memory, and whether a wide batch takes three launches.
#pragma once

#include <cstdint>

#include "geometry.h"

namespace mla_meta {

enum KernelChoice : int32_t { kAuto = 0, kSmem = 1, kLowSmem = 2 };
enum Path : int32_t { kGeneralPath = 0, kWarpPath = 1, kRowPath = 2, kMidPath = 3 };
enum PlanError : int32_t { kPlanOk = 0, kSmemBlockSize = 1, kSmemTooBig = 2 };

struct LaunchPlan {
  int32_t error;            // PlanError: kernel="smem" forced where it cannot run (nothing is launched)
  int32_t smem;             // 1: the smem kernel, 0: low_smem
  int32_t cluster;          // CTAs per batch (a power of two)
  int32_t threads;          // threads per CTA
  int32_t path;             // Path the kernel starts on (it may hand a batch to the general path, see the paths)
  int32_t rows_per_thread;  // warp path: rows per lane; mid path: rows per thread; else 0
  int32_t wide;             // low_smem with more than kChunk rows per CTA: a chunk-sums launch before the cluster
                            // (rows mode) and a num_splits launch after it
  int64_t dyn_smem;         // dynamic shared memory per CTA of the cluster launch
  int64_t smem_need;        // what the smem kernel needs per CTA here (on its cluster, else on the largest)
};

// Threads per CTA for a rank of `rows` rows: the fewest that hold them in one chunk (8 rows per thread).
inline int threads_for(int64_t rows) {
  return rows <= 256 * kRowsPerThread ? 256 : (rows <= 512 * kRowsPerThread ? 512 : 1024);
}

// B rows, P parts, block size, F; `rows`: lengths per row (dense, or sparse with per-row inputs) rather than
// one length for every row; `kernel`: KernelChoice; the device's opt-in shared memory per block and largest
// cluster.
inline LaunchPlan plan_launch(int64_t B, int64_t P, int64_t block_size_n, int64_t F, bool rows, int32_t kernel,
                              int64_t optin, int kmax) {
  LaunchPlan p{};
  const bool supported = smem_supported(block_size_n, F);
  const int ks = supported ? smem_cluster(B, P, optin, kmax) : 0;
  p.smem_need = smem_bytes(B, P, ks ? ks : kmax);
  if (kernel == kSmem && !supported) {
    p.error = kSmemBlockSize;
    return p;
  }
  if (kernel == kSmem && ks == 0) {
    p.error = kSmemTooBig;
    return p;
  }
  const bool use_smem = kernel == kSmem || (kernel == kAuto && ks > 0);
  // a mid-size batch with per-row lengths runs the mid path on a cluster of its own size (the smem kernel where
  // its shared memory fits there; on every H100 it does)
  const int kmid = midpath_cluster(B, kmax);
  const bool mid = rows && midpath_takes(B, P, block_size_n, kmax) && (!use_smem || smem_bytes(B, P, kmid) <= optin);
  p.smem = use_smem ? 1 : 0;
  p.cluster = mid ? kmid : (use_smem ? ks : low_smem_cluster(B, kmax));
  p.threads = mid ? kMidThreads : threads_for(rows_per_rank(B, p.cluster));
  if (mid) {
    p.path = kMidPath;
    p.rows_per_thread = midpath_rows_per_thread(B, p.cluster);
    if (use_smem) p.smem_need = smem_bytes(B, P, kmid);
  } else if (p.threads == 256 && rows && warppath_fits(B, P, p.cluster)) {
    p.path = kWarpPath;
    p.rows_per_thread = warppath_rows_per_lane(B);
  } else if (p.threads == 256 && rows && rowpath_fits(B, P, p.cluster)) {
    p.path = kRowPath;
  } else {
    p.path = kGeneralPath;
  }
  p.wide = !use_smem && !mid && rows_per_rank(B, p.cluster) > kChunk ? 1 : 0;
  p.dyn_smem = use_smem ? smem_bytes(B, P, p.cluster) : 0;
  return p;
}

}  // namespace mla_meta
