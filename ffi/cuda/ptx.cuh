// ptx.cuh: the Hopper instructions the kernels use, each wrapped once: cluster barriers, st.async pushes into
// other CTAs' shared memory counted on mbarriers, mbarriers, programmatic dependent launch, and the address of a
// shared-memory object in another CTA of the cluster.
#pragma once

#include <cooperative_groups.h>

#include <cstdint>

namespace mla_meta {
namespace {

namespace cg = cooperative_groups;

// Cluster barrier halves (all threads of every CTA of the cluster take part; calls alternate per thread).
__device__ __forceinline__ void cluster_arrive_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_arrive() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() {
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

// Pushing words into other CTAs' shared memory without a cluster-scope release (a cluster barrier with release /
// acquire semantics costs several times a relaxed one or an all-gather by st.async: benchmarks/README.md, "Where
// the time goes now", and benchmarks/cluster_sync_cost.cu). Each word lands in the receiver's shared memory and
// counts 4 bytes on the receiver's mbarrier; the receiver waits until the bytes it expects have all landed, which
// also makes them visible to it. An mbarrier must be initialised (and that made visible to the cluster, see
// mbar_init_fence) before any CTA sends to it, and invalidated before its memory is used otherwise.
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ uint32_t cluster_addr(uint32_t a, unsigned rank) {   // that CTA's copy of address a
  uint32_t o;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(o) : "r"(a), "r"(rank));
  return o;
}
// One word (uint32_t or int64_t) into `dst` of CTA `rank`, counted on that CTA's mbarrier `bar`.
template <typename T>
__device__ __forceinline__ void push(T* dst, uint64_t* bar, unsigned rank, T v) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "st.async moves 4 or 8 bytes here");
  if constexpr (sizeof(T) == 4) {
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.u32 [%0], %1, [%2];\n"
                 ::"r"(cluster_addr(smem_addr(dst), rank)), "r"(static_cast<uint32_t>(v)),
                   "r"(cluster_addr(smem_addr(bar), rank))
                 : "memory");
  } else {
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b64 [%0], %1, [%2];\n"
                 ::"r"(cluster_addr(smem_addr(dst), rank)), "l"(static_cast<int64_t>(v)),
                   "r"(cluster_addr(smem_addr(bar), rank))
                 : "memory");
  }
}
// A part record (32 bytes) as two 16-byte pushes.
__device__ __forceinline__ void push_record(void* dst, uint64_t* bar, unsigned rank, const int4 (&v)[2]) {
  const uint32_t d = cluster_addr(smem_addr(dst), rank), b = cluster_addr(smem_addr(bar), rank);
#pragma unroll
  for (int i = 0; i < 2; ++i)
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [%0], {%1, %2, %3, %4}, [%5];\n"
                 ::"r"(d + 16 * i), "r"(v[i].x), "r"(v[i].y), "r"(v[i].z), "r"(v[i].w), "r"(b)
                 : "memory");
}
__device__ __forceinline__ void mbar_init(uint64_t* bar) {   // one arrival (the receiver's expect_bytes)
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_expect_bytes(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar) {   // phase 0 (each mbarrier here completes once)
  asm volatile(
      "{\n .reg .pred p;\n"
      "MLA_WAIT_%=:\n mbarrier.test_wait.parity.acquire.cluster.shared::cta.b64 p, [%0], 0;\n"
      " @!p bra MLA_WAIT_%=;\n}\n" ::"r"(smem_addr(bar))
      : "memory");
}
__device__ __forceinline__ void mbar_inval(uint64_t* bar) {
  asm volatile("mbarrier.inval.shared::cta.b64 [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}

// Programmatic dependent launch (the wide batches' launches): `pdl_trigger` lets the next kernel of the
// stream start launching; `pdl_wait` returns once the kernel before this one has completed and its memory
// is visible. Both do nothing in a kernel launched without the attribute.
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }

// The same shared-memory object in another CTA of the cluster.
template <typename T>
__device__ __forceinline__ T* remote(T* p, unsigned rank) {
  return cg::this_cluster().map_shared_rank(p, rank);
}

}  // namespace
}  // namespace mla_meta
