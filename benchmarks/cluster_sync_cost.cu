// cluster_sync_cost.cu: what a thread-block cluster's synchronisation costs on this GPU (not part of the
// package build). For clusters of 2, 4 and 8 CTAs of 512 threads it prints, per rank, the clock64() cycles of:
// a global load, phase 0 (relaxed arrive + acquire wait, the CTAs' start), three release / acquire cluster
// barriers, three relaxed / acquire ones, a remote store + release barrier, a chain of 4 dependent remote
// loads, two one-word all-gathers by st.async onto mbarriers, a CTA barrier and the exit barrier; then each
// rank's %globaltimer start and phase-0 end (ns) relative to the earliest rank.
//
//   nvcc -std=c++17 -arch=sm_90 -O3 -o /tmp/cluster_sync_cost benchmarks/cluster_sync_cost.cu && /tmp/cluster_sync_cost
//
// Measured on an H100 (2026-11-26, benchmarks/README.md, perf log v16a): ~1,300 cycles per release / acquire
// barrier, ~115 per relaxed one, ~220-440 per st.async all-gather; the CTAs of a cluster start within 32 ns.
#include <cstdio>
#include <cstdint>
#include <cooperative_groups.h>
namespace cg = cooperative_groups;
__device__ __forceinline__ void arrive_rel() { asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void arrive_rlx() { asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wait_acq() { asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory"); }
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
__device__ __forceinline__ uint32_t mapa(uint32_t a, uint32_t r) { uint32_t o; asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(o) : "r"(a), "r"(r)); return o; }
__device__ __forceinline__ void st_async(uint32_t raddr, uint32_t v, uint32_t rbar) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.u32 [%0], %1, [%2];" :: "r"(raddr), "r"(v), "r"(rbar) : "memory");
}
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t cnt) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(bar), "r"(cnt) : "memory"); }
__device__ __forceinline__ void mbar_expect(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile("{\n .reg .pred p;\n W: mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%0], %1;\n @!p bra W;\n}\n" :: "r"(bar), "r"(parity) : "memory");
}
__device__ __forceinline__ long long clk() { long long c; asm volatile("mov.u64 %0, %%clock64;" : "=l"(c)); return c; }
__device__ __forceinline__ unsigned long long gt() { unsigned long long c; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(c)); return c; }

__global__ void __launch_bounds__(512, 1) kern(long long* out, unsigned long long* gout, const int* src) {
  __shared__ __align__(8) uint64_t bars[4];
  __shared__ uint32_t box[4][16];
  const unsigned K = gridDim.x, rank = blockIdx.x, tid = threadIdx.x;
  long long t[24]; int k = 0;
  unsigned long long g0 = gt();
  t[k++] = clk();
  if (tid == 0) { for (int i = 0; i < 4; ++i) mbar_init(smem_u32(&bars[i]), 1); asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
  int v = src[rank * 512 + tid];   // a global load
  t[k++] = clk();
  arrive_rlx(); wait_acq();                         // phase 0
  t[k++] = clk();
  unsigned long long g1 = gt();
  for (int i = 0; i < 3; ++i) { arrive_rel(); wait_acq(); t[k++] = clk(); }   // 3 release/acquire rounds
  for (int i = 0; i < 3; ++i) { arrive_rlx(); wait_acq(); t[k++] = clk(); }   // 3 relaxed rounds
  // remote store + release/acquire barrier
  if (tid < K) *cg::this_cluster().map_shared_rank(&box[0][rank], tid) = v + 1;
  arrive_rel(); wait_acq(); t[k++] = clk();
  // remote load latency (one thread), dependent chain of 4
  uint32_t x = 0;
  if (tid == 0) { for (int i = 0; i < 4; ++i) x += *cg::this_cluster().map_shared_rank(&box[0][(rank + 1 + x) % K], (rank + 1 + (x & 0)) % K); }
  __syncthreads(); t[k++] = clk();
  // mbarrier all-gather with st.async: each rank sends 4 bytes to every rank (2 rounds)
  for (int r = 0; r < 2; ++r) {
    const uint32_t bar = smem_u32(&bars[r]);
    if (tid == 0) mbar_expect(bar, 4 * K);
    if (tid < K) st_async(mapa(smem_u32(&box[1 + r][rank]), tid), v + r, mapa(bar, tid));
    mbar_wait(bar, 0);
    t[k++] = clk();
  }
  __syncthreads(); t[k++] = clk();
  arrive_rel(); wait_acq(); t[k++] = clk();   // before exit
  if (tid == 0) {
    for (int i = 0; i < k; ++i) out[rank * 24 + i] = t[i];
    gout[rank * 2] = g0; gout[rank * 2 + 1] = g1;
    if (x == 12345) out[0] = 0;
  }
}

int main() {
  long long* out; unsigned long long* gout; int* src;
  cudaMalloc(&out, 16 * 24 * 8); cudaMalloc(&gout, 16 * 16); cudaMalloc(&src, 16 * 512 * 4); cudaMemset(src, 0, 16*512*4);
  for (int K : {2, 4, 8}) {
    cudaLaunchConfig_t cfg = {}; cudaLaunchAttribute at; at.id = cudaLaunchAttributeClusterDimension;
    at.val.clusterDim.x = K; at.val.clusterDim.y = 1; at.val.clusterDim.z = 1;
    cfg.gridDim = dim3(K); cfg.blockDim = dim3(512); cfg.attrs = &at; cfg.numAttrs = 1;
    for (int it = 0; it < 5; ++it) {
      cudaError_t e = cudaLaunchKernelEx(&cfg, kern, out, gout, (const int*)src);
      if (e) { printf("err %s\n", cudaGetErrorString(e)); return 1; }
      cudaDeviceSynchronize();
    }
    long long h[16 * 24]; unsigned long long g[32];
    cudaMemcpy(h, out, sizeof(h), cudaMemcpyDeviceToHost); cudaMemcpy(g, gout, sizeof(g), cudaMemcpyDeviceToHost);
    printf("K=%d  cols: load phase0 rel1 rel2 rel3 rlx1 rlx2 rlx3 push+rel rload4 stasync1 stasync2 sync exitbar | gstart-min(ns) phase0done-min(ns)\n", K);
    unsigned long long gm = ~0ull, gm1 = ~0ull; for (int r = 0; r < K; ++r) { gm = std::min(gm, g[2*r]); gm1 = std::min(gm1, g[2*r+1]); }
    for (int r = 0; r < K; ++r) {
      printf(" r%d:", r);
      for (int i = 1; i < 15; ++i) printf(" %5lld", h[r * 24 + i] - h[r * 24 + i - 1]);
      printf(" | %llu %llu\n", g[2*r] - gm, g[2*r+1] - gm1);
    }
  }
  return 0;
}
