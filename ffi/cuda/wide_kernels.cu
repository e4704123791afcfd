// wide_kernels.cu: the wide batches' grid kernels (low_smem, more than one chunk of 8,192 rows per CTA:
// B > 131,072, on 8 CTAs). One cluster would stream every length twice per call (its sums, then num_splits), on
// at most 16 SMs. Three launches instead, the first and last spread over many small CTAs:
//   1. mla_chunk_sums_kernel (per-row lengths only): each warp's sum of its 256 rows' costs into the workspace,
//      the numbers the cluster would otherwise compute itself (WorkspaceLayout::chunks, indexed by chunk);
//   2. the low_smem cluster kernel with Args::wide: scans those sums, finds and walks the parts, writes the
//      metadata, and (rank 0) stores the cut rows and their count in the workspace;
//   3. mla_splits_kernel: num_splits from the cut rows, kSplitSpan positions per CTA.
// The second and third are launched as programmatic dependents: each may start while the one before it runs,
// and waits for it (pdl_wait) before it reads what that one wrote or writes any output. kWideThreads (256 per
// CTA, kernel_table.h) measured fastest at 1M rows (benchmarks/README.md, perf log).
#include <cstdint>

#include "common.cuh"
#include "kernel_table.h"
#include "lengths.cuh"
#include "ptx.cuh"
#include "scans.cuh"
#include "splits.cuh"

namespace mla_meta {
namespace {

// One warp per 256 rows, over whole chunks: the grid is ceil(B / kChunk) * kChunk / (kWideThreads * kV) CTAs.
__global__ void __launch_bounds__(kWideThreads) mla_chunk_sums_kernel(const Args a) {
  pdl_trigger();   // the cluster kernel may start launching (it waits for these sums before reading them)
  const int64_t g = a.batch0 + blockIdx.y;
  // warp gw sums rows [256 gw, 256 gw + 256): entry gw of the workspace's (chunk, warp) sums
  const int64_t gw = static_cast<int64_t>(blockIdx.x) * (kWideThreads / 32) + (threadIdx.x >> 5);
  const int64_t i0 = gw * (32 * kV) + (threadIdx.x & 31) * kV;
  int32_t len[kV];
  load_lengths<kV>(batch_lengths(a, g), i0, a.B, 1, len);
  const int64_t n = valid_rows(a, g);
  // The cluster reads the sums of every warp of each chunk that holds valid rows (0 for warps past them), and
  // none of the chunks past them.
  if ((gw >> 5) * kChunk >= n) return;   // uniform per warp
  const int64_t wsum = warp_cost_sum(thread_cost_sum(a, len, i0, n));
  if ((threadIdx.x & 31) == 0) reinterpret_cast<int64_t*>(a.ws + g * a.ws_stride + a.lay.chunks)[gw] = wsum;
}

__global__ void __launch_bounds__(kWideThreads) mla_splits_kernel(const Args a) {
  __shared__ int32_t staged[kStageCuts];
  const int64_t g = a.batch0 + blockIdx.y;
  const uint8_t* ws = a.ws + g * a.ws_stride;
  const int64_t n = valid_rows(a, g);
  pdl_wait();   // the cluster kernel has stored the cut rows
  const int32_t* cuts = reinterpret_cast<const int32_t*>(ws + a.lay.cut_rows);
  // The count and the first cut slots (there are P) are read at once: one memory round trip, not two. (With
  // n = 0 the cluster kernel stores nothing.)
  const int nst = n == 0 ? 0 : (a.c.num_parts < kStageCuts ? a.c.num_parts : kStageCuts);
  for (int i = threadIdx.x; i < nst; i += blockDim.x) staged[i] = __ldcg(cuts + i);
  const int C = n > 0 ? static_cast<int>(__ldcg(reinterpret_cast<const int64_t*>(ws + a.lay.scalars) + 8)) : 0;
  __syncthreads();
  if (C <= nst) cuts = staged;   // uniform (C <= P)
  const int64_t k_lo = static_cast<int64_t>(blockIdx.x) * kSplitSpan;
  write_splits(a.splits + g * (a.B + 1), static_cast<int>(k_lo), static_cast<int>(imin64(k_lo + kSplitSpan, a.B + 1)),
               static_cast<int>(a.B), static_cast<int>(n), cuts, C);
}

}  // namespace

const void* chunk_sums_kernel() { return reinterpret_cast<const void*>(mla_chunk_sums_kernel); }
const void* splits_kernel() { return reinterpret_cast<const void*>(mla_splits_kernel); }

}  // namespace mla_meta
