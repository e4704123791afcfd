// handler.cc: the CUDA FFI handler. It reads the device's limits once per device, asks the one launch decision
// (core/launch_plan.h) what to run, finds that instance in the kernel table (kernel_table.h) and launches it on
// the stream XLA gives (one launch; a wide low_smem batch adds a chunk-sums launch before the cluster and a
// num_splits launch after it). Nothing per call but the launches: no synchronisation, no allocation, no
// attribute query, nothing printed, so XLA can capture the call in a command buffer (CUDA graph).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "core/costs.h"
#include "core/geometry.h"
#include "core/launch_plan.h"
#include "cuda/args.h"
#include "cuda/kernel_table.h"
#include "handler_args.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace mla_meta {
namespace {

// Per device ordinal, read once: the opt-in shared-memory limit and the largest cluster both kernels can be
// launched with (kernel attributes are raised at the same time). 0 = not read yet.
constexpr int kMaxDevices = 64;
std::atomic<int> g_optin[kMaxDevices];
std::atomic<int> g_kmax[kMaxDevices];

template <typename F>
void for_each_kernel(F f) {
  for (KernelList list : {general_smem_kernels(), general_low_smem_kernels(), warp_smem_kernels(),
                          warp_low_smem_kernels(), mid_smem_kernels(), mid_low_smem_kernels()})
    for (int i = 0; i < list.count; ++i) f(list.items[i]);
}

// The instance a launch plan names (null: none, which the tables in kernel_table.h rule out).
const KernelInstance* find_kernel(const LaunchPlan& p) {
  const int warp_rows = p.path == kWarpPath ? p.rows_per_thread : 0;
  const int mid_rows = p.path == kMidPath ? p.rows_per_thread : 0;
  const KernelInstance* found = nullptr;
  for_each_kernel([&](const KernelInstance& k) {
    if (k.smem == p.smem && k.threads == p.threads && k.warp_rows == warp_rows && k.mid_rows == mid_rows)
      found = &k;
  });
  return found;
}

// Launch configuration for `batches` clusters of K CTAs (grid K x batches); `at` holds the cluster attribute.
cudaLaunchConfig_t cluster_config(cudaLaunchAttribute* at, int K, unsigned batches, int threads, size_t dyn,
                                  cudaStream_t stream) {
  at->id = cudaLaunchAttributeClusterDimension;
  at->val.clusterDim.x = K;
  at->val.clusterDim.y = 1;
  at->val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(K, batches, 1);
  cfg.blockDim = dim3(threads, 1, 1);
  cfg.dynamicSmemBytes = dyn;
  cfg.stream = stream;
  cfg.attrs = at;
  cfg.numAttrs = 1;
  return cfg;
}

cudaError_t max_cluster(const void* fn, size_t dyn_smem, int* kmax) {
  for (int K = kMaxCluster; K >= 2; K /= 2) {
    cudaLaunchAttribute at;
    const cudaLaunchConfig_t cfg = cluster_config(&at, K, 1, kThreads, dyn_smem, nullptr);
    int clusters = 0;
    const cudaError_t e = cudaOccupancyMaxActiveClusters(&clusters, fn, &cfg);
    if (e == cudaSuccess && clusters >= 1) {
      *kmax = K;
      return cudaSuccess;
    }
    if (e != cudaSuccess && e != cudaErrorInvalidClusterSize && e != cudaErrorInvalidValue) return e;
    (void)cudaGetLastError();   // a refused size is not an error: try a smaller one
  }
  *kmax = 1;
  return cudaSuccess;
}

}  // namespace

// Reads (once per device) and returns the opt-in limit and the largest usable cluster size.
cudaError_t device_limits(int dev, int* optin, int* kmax) {
  if (dev < 0 || dev >= kMaxDevices) return cudaErrorInvalidDevice;
  {
    const int o = g_optin[dev].load(std::memory_order_acquire), k = g_kmax[dev].load(std::memory_order_acquire);
    if (o > 0 && k > 0) {
      *optin = o;
      *kmax = k;
      return cudaSuccess;
    }
  }
  int prev = -1;
  cudaError_t e = cudaGetDevice(&prev);
  if (e != cudaSuccess) return e;
  if (prev != dev && (e = cudaSetDevice(dev)) != cudaSuccess) return e;
  int o = 0, ks = 1, kl = 1;
  e = cudaDeviceGetAttribute(&o, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  const void* smem_widest = nullptr;   // the 1024-thread kernels are the hardest to place; smaller CTAs fit
  const void* low_widest = nullptr;    // wherever these do
  for_each_kernel([&](const KernelInstance& k) {
    if (e == cudaSuccess && k.smem) e = cudaFuncSetAttribute(k.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, o);
    if (e == cudaSuccess) e = cudaFuncSetAttribute(k.fn, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (k.threads == kThreads && k.warp_rows == 0 && k.mid_rows == 0) (k.smem ? smem_widest : low_widest) = k.fn;
  });
  if (e == cudaSuccess && (smem_widest == nullptr || low_widest == nullptr)) e = cudaErrorInvalidDeviceFunction;
  if (e == cudaSuccess) e = max_cluster(smem_widest, o, &ks);
  if (e == cudaSuccess) e = max_cluster(low_widest, 0, &kl);
  if (prev != dev) {
    const cudaError_t e2 = cudaSetDevice(prev);
    if (e == cudaSuccess) e = e2;
  }
  if (e != cudaSuccess) return e;
  *optin = o;
  *kmax = std::min(ks, kl);
  g_kmax[dev].store(*kmax, std::memory_order_release);
  g_optin[dev].store(o, std::memory_order_release);
  return cudaSuccess;
}

namespace {

// Profiling builds only (-DMLA_HOST_TIMING, see benchmarks/host_cost.py): the host time spent in this handler and
// in its launch calls, summed over calls, so that a benchmark can split a call's host cost into XLA's part and
// ours. Two clock reads and two relaxed atomic adds per call and launch; absent from normal builds.
#ifdef MLA_HOST_TIMING
std::atomic<long long> g_handler_ns{0}, g_launch_ns{0}, g_calls{0}, g_launches{0};
long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
struct HostTimer {
  std::atomic<long long>& sum;
  std::atomic<long long>& count;
  long long t0 = now_ns();
  ~HostTimer() {
    sum.fetch_add(now_ns() - t0, std::memory_order_relaxed);
    count.fetch_add(1, std::memory_order_relaxed);
  }
};
#define MLA_HOST_TIMER(sum, count) HostTimer host_timer_{sum, count}
#else
#define MLA_HOST_TIMER(sum, count) \
  do {                             \
  } while (0)
#endif

cudaError_t launch(const cudaLaunchConfig_t& cfg, const void* fn, void** args) {
  MLA_HOST_TIMER(g_launch_ns, g_launches);
  return cudaLaunchKernelExC(&cfg, fn, args);
}

ffi::Error cuda_error(const char* what, cudaError_t e) {
  return ffi::Error::Internal(std::string("jax_mla_meta: ") + what + ": " + cudaGetErrorString(e));
}

// A plain grid of `blocks` x `batches` CTAs of kWideThreads threads (the wide batches' first and last launches);
// `pdl`: it may start while the kernel before it runs (it waits for that kernel itself).
cudaError_t launch_grid(const void* fn, int64_t blocks, Args& a, unsigned batches, bool pdl, cudaStream_t stream) {
  cudaLaunchAttribute at;
  at.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(blocks), batches, 1);
  cfg.blockDim = dim3(kWideThreads, 1, 1);
  cfg.stream = stream;
  cfg.attrs = &at;
  cfg.numAttrs = pdl ? 1 : 0;
  void* args[] = {&a};
  return launch(cfg, fn, args);
}

ffi::Error MetaCudaImpl(cudaStream_t stream, int32_t device, ffi::Buffer<ffi::S32> seqlens,
                        ffi::Buffer<ffi::S32> num_valid, ffi::RemainingArgs rest,
                        ffi::Result<ffi::Buffer<ffi::S32>> meta, ffi::Result<ffi::Buffer<ffi::S32>> splits,
                        ffi::Result<ffi::AnyBuffer> workspace, int32_t num_sm_parts, int32_t block_size_n,
                        int32_t fixed_overhead_num_blocks, int32_t topk, int32_t extra_topk, int32_t row_inputs,
                        int32_t layout, int32_t kernel) {
  MLA_HOST_TIMER(g_handler_ns, g_calls);
  Call c;
  if (auto e = decode_call(seqlens, num_valid, rest, meta, splits, workspace, num_sm_parts, block_size_n,
                           fixed_overhead_num_blocks, topk, extra_topk, row_inputs, layout, kernel, &c);
      e.failure())
    return e;
  if (c.G == 0) return ffi::Error::Success();
  int optin = 0, kmax = 1;
  if (cudaError_t err = device_limits(device, &optin, &kmax); err != cudaSuccess)
    return cuda_error("reading the device's shared-memory and cluster limits", err);
  const LaunchPlan p = plan_launch(c.B, c.P, c.block_size_n, c.F, c.rows(), c.kernel, optin, kmax);
  if (p.error == kSmemBlockSize)
    return ffi::Error::InvalidArgument("jax_mla_meta: kernel='smem' does not support block_size_n=" +
                                       std::to_string(c.block_size_n) + " (row costs may exceed 2^26 blocks)");
  if (p.error == kSmemTooBig)
    return ffi::Error::InvalidArgument("jax_mla_meta: kernel='smem' needs " + std::to_string(p.smem_need) +
                                       " bytes of shared memory per CTA (on a cluster of " + std::to_string(kmax) +
                                       "), the device allows " + std::to_string(optin));
  if (p.cluster < 1 || (p.cluster & (p.cluster - 1)) != 0)   // the kernels divide by K with shifts
    return ffi::Error::Internal("jax_mla_meta: cluster size " + std::to_string(p.cluster) + " is not a power of two");
  const KernelInstance* k = find_kernel(p);
  if (k == nullptr)
    return ffi::Error::Internal("jax_mla_meta: no kernel instance for " + std::to_string(p.threads) + " threads, " +
                                std::to_string(p.rows_per_thread) + " rows per thread (kernel_table.h)");
  Args a{};
  a.lens = c.lengths.rows;
  a.num_valid = c.num_valid;
  a.meta = c.meta;
  a.splits = c.splits;
  a.ws = c.workspace;
  a.B = c.B;
  a.lay = workspace_layout(c.B, c.P);
  a.ws_stride = a.lay.bytes;
  a.c = Config{c.P, c.block_size_n, c.F, c.lengths.uniform};
  a.layout = c.layout;
  a.bs_shift = (c.block_size_n & (c.block_size_n - 1)) == 0 ? __builtin_ctz(static_cast<unsigned>(c.block_size_n)) : -1;
  a.wide = p.wide;
  for (int64_t g0 = 0; g0 < c.G; g0 += 65535) {
    const unsigned gn = static_cast<unsigned>(std::min<int64_t>(65535, c.G - g0));
    a.batch0 = static_cast<int32_t>(g0);
    const bool sums = a.wide && c.rows();   // per-row lengths: the chunk sums come first
    if (sums) {
      const int64_t blocks = ceil_div(c.B, kChunk) * (kChunk / (kWideThreads * kRowsPerThread));   // whole chunks
      if (cudaError_t err = launch_grid(chunk_sums_kernel(), blocks, a, gn, false, stream); err != cudaSuccess)
        return cuda_error("kernel launch (chunk sums)", err);
    }
    cudaLaunchAttribute at[2];
    cudaLaunchConfig_t cfg = cluster_config(at, p.cluster, gn, p.threads, static_cast<size_t>(p.dyn_smem), stream);
    cfg.numAttrs = p.cluster > 1 ? 1 : 0;   // a single CTA needs no cluster
    if (sums) {   // may start while the chunk sums run (it waits for them)
      at[cfg.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
      at[cfg.numAttrs].val.programmaticStreamSerializationAllowed = 1;
      ++cfg.numAttrs;
    }
    void* args[] = {&a};
    if (cudaError_t err = launch(cfg, k->fn, args); err != cudaSuccess)
      return cuda_error("kernel launch", err);
    if (a.wide) {
      if (cudaError_t e2 = launch_grid(splits_kernel(), ceil_div(c.B + 1, kSplitSpan), a, gn, true, stream);
          e2 != cudaSuccess)
        return cuda_error("kernel launch (num_splits)", e2);
    }
  }
  return ffi::Error::Success();
}

}  // namespace
}  // namespace mla_meta

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxMlaMetaCuda, mla_meta::MetaCudaImpl,
                              mla_meta::bind_schedule(
                                  ffi::Ffi::Bind().Ctx<ffi::PlatformStream<cudaStream_t>>().Ctx<ffi::DeviceOrdinal>()),
                              {ffi::Traits::kCmdBufferCompatible});

// Host-only queries for plan(): a device's opt-in shared-memory limit and largest usable cluster size, or -1 when
// they cannot be read (e.g. no such device).
extern "C" int jax_mla_meta_optin_limit(int device) {
  int optin = 0, kmax = 0;
  return mla_meta::device_limits(device, &optin, &kmax) == cudaSuccess ? optin : -1;
}
extern "C" int jax_mla_meta_cluster_limit(int device) {
  int optin = 0, kmax = 0;
  return mla_meta::device_limits(device, &optin, &kmax) == cudaSuccess ? kmax : -1;
}

// Profiling builds (MLA_HOST_TIMING): fills {handler ns, handler calls, launch ns, launches} summed since the
// module loaded and returns 1; other builds return 0 and leave `out` alone.
extern "C" int jax_mla_meta_host_timing(long long* out) {
#ifdef MLA_HOST_TIMING
  out[0] = mla_meta::g_handler_ns.load();
  out[1] = mla_meta::g_calls.load();
  out[2] = mla_meta::g_launch_ns.load();
  out[3] = mla_meta::g_launches.load();
  return 1;
#else
  (void)out;
  return 0;
#endif
}
