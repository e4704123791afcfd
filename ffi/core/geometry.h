// geometry.h: the CUDA kernels' geometry and the buffer-size formulas that Python, the handlers and the kernels
// must agree on (shared memory per CTA, workspace layout, which batch sizes each path takes). Plain C++, also
// compiled for the device; the one launch decision built from these is launch_plan.h.
#pragma once

#include <cstddef>
#include <cstdint>

#include "costs.h"

namespace mla_meta {

// Limits checked in Python before anything is lowered and again by every handler; they keep all tape
// arithmetic inside int64 and every output inside int32.
constexpr int64_t kMaxParts = 1 << 20;          // num_sm_parts
constexpr int64_t kMaxOverhead = 1 << 20;       // fixed_overhead_num_blocks
constexpr int64_t kMaxRows = (1LL << 31) - 1;   // B + num_sm_parts + 1 must stay below this

// ---- Kernel geometry and buffer-size formulas (exposed to Python through the _cpu module) ----
//
// Both CUDA kernels run one thread-block cluster of K CTAs per batch (256, 512 or 1,024 threads each: threads_for
// in launch_plan.h; the mid path 512); rank k of the cluster owns a contiguous slice of the rows. K is a power of
// two chosen from B (about kRowsPerCta rows per CTA) and capped by the largest cluster the device can schedule
// (`kmax`, 16 on an H100).
constexpr int kThreads = 1024;
constexpr int kRowsPerThread = 8;                  // a chunk: 8 consecutive rows per thread
constexpr int kChunk = kThreads * kRowsPerThread;  // 8192 rows
constexpr int kRowsPerCta = 4096;                  // aim for at most this many rows per CTA
constexpr int kMaxCluster = 16;

inline int cluster_for(int64_t B, int kmax) {
  int K = 1;
  while (K < kmax && static_cast<int64_t>(K) * kRowsPerCta < B) K *= 2;
  return K;
}

// smem kernel: rank k keeps its rows' tape in dynamic shared memory: per row a 31-bit offset inside its
// group of 32 rows (bit 31: the length is 0), per group an int64 base; plus every part's record, the cut
// rows and a fixed block of scan buffers and cluster-wide sums.
constexpr int kGroupLog = 5;                       // 32 rows per group
constexpr int kGroup = 1 << kGroupLog;
constexpr int64_t kPartRecordBytes = 32;           // see PartRecord in cuda/common.cuh
constexpr int64_t kSmemFixedBytes = 1024;          // see Shared in cuda/common.cuh

// The smem kernel keeps a row's offset inside its group of 32 rows in 31 bits: 32 of the largest possible
// row costs must fit. True for block_size_n >= 64 (FlashMLA) with any allowed F; false for small blocks.
inline bool smem_supported(int64_t block_size_n, int64_t F) {
  const int64_t max_cost = (kMaxRows - 1) / block_size_n + 1 + F;
  return kGroup * max_cost <= 0x7fffffffLL;
}

// Rows a rank of a K-CTA cluster holds at most: ceil(B / K), rounded up to whole groups.
MLA_HD int64_t rows_per_rank(int64_t B, int64_t K) {
  const int64_t r = (B + K - 1) / K;
  return (r + kGroup - 1) / kGroup * kGroup;
}

// The low_smem kernel's cluster: cluster_for(B), but at most kWideCluster CTAs for a wide batch (more than
// kChunk rows a CTA, run as three launches: cuda/wide_kernels.cu). The cluster's work there is fixed per part,
// not per row (the chunk sums come from the launch before), so fewer CTAs cost little, and a cluster of 8 has
// fewer SMs to wait for than 16 (4 are too few: benchmarks/README.md, perf log v18d).
constexpr int kWideCluster = 8;
inline int low_smem_cluster(int64_t B, int kmax) {
  const int K = cluster_for(B, kmax);
  return K > kWideCluster && rows_per_rank(B, K) > kChunk ? kWideCluster : K;
}

// Both kernels schedule small batches with per-row lengths on one CTA by per-row arithmetic (the "row path",
// cuda/row_path.cuh) when B <= kRowPathRows and P <= kRowParts. Its shared memory: per row S, S mod Q, a
// candidate slot and num_splits (B rounded up to 8; the second and third later hold the metadata pass's per-row
// entries), 8 candidate counts and the hits (row, D, D / Q, D mod Q) [P + 1].
constexpr int64_t kRowPathRows = 1792;   // 8 rows for each of the 224 threads that own rows
constexpr int64_t kRowParts = 256;
MLA_HD constexpr int64_t rowpath_bytes(int64_t B, int64_t P) {
  return 16 * ((B + 7) / 8 * 8) + 32 + 16 * (P + 1);
}
MLA_HD constexpr bool rowpath_fits(int64_t B, int64_t P, int64_t K) {
  return K == 1 && B <= kRowPathRows && P <= kRowParts;
}

// Small batches with per-row lengths (B <= kWarpPathRows, P <= kRowParts) take the "warp path" instead: one warp holds
// warppath_rows_per_lane(B) rows per lane (1, 2, 4, 8 or 16) and leaves per row a search key and a 16-byte
// entry. (Faster than the row path up to 512 rows: benchmarks/README.md, perf log v14.)
constexpr int64_t kWarpPathRows = 512;
MLA_HD constexpr int warppath_rows_per_lane(int64_t B) {
  return B <= 32 ? 1 : (B <= 64 ? 2 : (B <= 128 ? 4 : (B <= 256 ? 8 : 16)));
}
MLA_HD constexpr bool warppath_fits(int64_t B, int64_t P, int64_t K) {
  return K == 1 && B <= kWarpPathRows && P <= kRowParts;
}
MLA_HD constexpr int64_t warppath_bytes(int64_t B) { return 20 * 32 * static_cast<int64_t>(warppath_rows_per_lane(B)); }

// Mid-size batches with per-row lengths (kMidMinRows <= B <= kMidPathRows, P <= kRowParts, block_size_n a power
// of two >= 64, so that a row costs < 2^26 units) take the "mid path": a cluster of midpath_cluster(B, kmax) CTAs of
// kMidThreads threads (the fewest, up to the device's largest cluster, that leave a CTA at most
// kMidRankRows rows), each thread holding midpath_rows_per_thread(B, K) consecutive rows of its CTA's slice in
// registers: 4, or 8 where the device's clusters are small (at most kMidMaxRowsPerThread: a batch that would need
// more takes the general path; every sm_90+ device takes clusters of 8, so its mid path has 4 rows a thread). Its
// shared memory per CTA: see midpath_bytes.
// JAX_MLA_META_MID_MIN_ROWS / _MAX_ROWS move the mid path's bounds, for A/B builds only (benchmarks/README.md):
// give both to the C++ and the CUDA compiler (CMAKE_CXX_FLAGS and CMAKE_CUDA_FLAGS), so plan() follows.
#ifndef JAX_MLA_META_MID_MIN_ROWS
#define JAX_MLA_META_MID_MIN_ROWS 1793
#endif
#ifndef JAX_MLA_META_MID_MAX_ROWS
#define JAX_MLA_META_MID_MAX_ROWS 12288
#endif
constexpr int64_t kMidMinRows = JAX_MLA_META_MID_MIN_ROWS;
constexpr int64_t kMidPathRows = JAX_MLA_META_MID_MAX_ROWS;
// The kernel instances' rows a thread (cuda/kernel_table.h): 4 and 8; 16 too when the bound is moved past 16,384.
constexpr int kMidMaxRowsPerThread = kMidPathRows > 16384 ? 16 : 8;
constexpr int64_t kMidCand = 2048;   // at most kMidCand / K candidates a CTA (else the general path)
constexpr int kMidThreads = 512;
constexpr int64_t kMidRankRows = 2048;   // rows a CTA of the mid path aims at
constexpr int kMaxMidCluster = 8;        // kMidPathRows / kMidRankRows, rounded up to a power of two
MLA_HD constexpr bool midpath_rows(int64_t B, int64_t P) {
  return B >= kMidMinRows && B <= kMidPathRows && P <= kRowParts;
}
MLA_HD constexpr bool midpath_fits(int64_t B, int64_t P, int64_t block_size_n) {
  return midpath_rows(B, P) && block_size_n >= 64 && (block_size_n & (block_size_n - 1)) == 0;
}
MLA_HD constexpr int midpath_cluster(int64_t B, int kmax) {
  int K = 1;
  while (K < kmax && K < kMaxMidCluster && (B + K - 1) / K > kMidRankRows) K *= 2;
  return K;
}
MLA_HD constexpr int midpath_rows_per_thread(int64_t B, int64_t K) {
  const int64_t r = (B + K - 1) / K, T = kMidThreads;
  return r <= 4 * T ? 4 : (r <= 8 * T ? 8 : (r <= 16 * T ? 16 : 24));
}
// Whether a batch of B rows takes the mid path on a device whose largest cluster is kmax.
MLA_HD constexpr bool midpath_takes(int64_t B, int64_t P, int64_t block_size_n, int kmax) {
  return midpath_fits(B, P, block_size_n) &&
         midpath_rows_per_thread(B, midpath_cluster(B, kmax)) <= kMidMaxRowsPerThread;
}
// The candidate bound L (rows with S mod Q <= L can be restarts while the chain's d stays <= L - F), and the
// most chain states (d = 0 .. L - F) a CTA's table of the chain through its rows may have (F <= 127).
constexpr int64_t kMidStates = 256;
MLA_HD constexpr int64_t midpath_bound(int64_t F) { return 128 + 2 * F < 0xffff ? 128 + 2 * F : 0xffff; }
// The candidates in row order (and 4 of padding), the rank slots (every CTA's candidates, or every CTA's table
// of the chain through its rows), the restarts (row, d) [kRowParts + 2], each CTA's sum and candidate count,
// three mbarriers.
MLA_HD constexpr int64_t midpath_bytes() {
  return 4 * (kMidCand + 4) + 4 * kMidCand + 8 * (kRowParts + 2) + 8 * kMaxCluster + 24;
}
static_assert(kMidPathRows <= kMaxMidCluster * kMidMaxRowsPerThread * kMidThreads && kMidPathRows <= 65536 &&
                  kMaxMidCluster * kMidStates <= kMidCand,
              "the mid path: at most kMaxMidCluster CTAs, whose tables fit the rank slots");

// Dynamic shared memory per CTA of the smem kernel for B rows and P parts on a K-CTA cluster.
inline int64_t smem_bytes(int64_t B, int64_t P, int64_t K = 1) {
  auto align16 = [](int64_t x) { return (x + 15) / 16 * 16; };
  const int64_t R = rows_per_rank(B, K);
  const int64_t tape = align16(4 * R) + align16(8 * (R / kGroup + 1)) + align16(kPartRecordBytes * P) +
                       align16(4 * P);
  int64_t rows = rowpath_fits(B, P, K) ? align16(rowpath_bytes(B, P)) : 0;
  if (warppath_fits(B, P, K) && warppath_bytes(B) > rows) rows = warppath_bytes(B);
  if (midpath_rows(B, P) && midpath_bytes() > rows) rows = midpath_bytes();
  return kSmemFixedBytes + (tape > rows ? tape : rows);
}

// The cluster size the smem kernel uses (the one for B, doubled until a CTA's slice fits `optin` bytes),
// or 0 when it does not fit even on the largest cluster.
inline int smem_cluster(int64_t B, int64_t P, int64_t optin, int kmax) {
  int K = cluster_for(B, kmax);
  while (K < kmax && smem_bytes(B, P, K) > optin) K *= 2;
  return smem_bytes(B, P, K) <= optin ? K : 0;
}

// low_smem kernel: a fixed 45 KiB of static shared memory per CTA; the part records and cut rows are staged
// there when P <= kStageParts, else they live in the workspace (an extra output of the custom call).
constexpr int kStageParts = 1024;

struct WorkspaceLayout {   // offsets in bytes inside one batch's slice
  int64_t parts;           // PartRecord [P] (used when P > kStageParts)
  int64_t cut_rows;        // int32 [P] (used when P > kStageParts)
  int64_t chunks;          // int64 [B / kChunk + kMaxCluster + 2][32]: each warp's first tape position in
                           // each chunk, for ranks with several chunks (low_smem, B > 131072)
  int64_t scalars;         // int64 [16]: [8] the cut count when the cut rows are in the workspace; the
                           // others: phase time stamps (JAX_MLA_META_PHASE_TIMING builds)
  int64_t bytes;           // size of one batch's slice (multiple of 256)
};

inline WorkspaceLayout workspace_layout(int64_t B, int64_t P) {
  auto align = [](int64_t x) { return (x + 255) / 256 * 256; };
  WorkspaceLayout w{};
  int64_t o = 0;
  w.parts = o;    o = align(o + kPartRecordBytes * P);
  w.cut_rows = o; o = align(o + 4 * P);
  w.chunks = o;   o = align(o + 8 * 32 * (B / kChunk + kMaxCluster + 2));
  w.scalars = o;  o = align(o + 8 * 16);
  w.bytes = o;
  return w;
}

inline int64_t workspace_bytes(int64_t B, int64_t P) { return workspace_layout(B, P).bytes; }

}  // namespace mla_meta
