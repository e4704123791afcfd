// kernels_mid_smem.cu: the smem kernel's mid-path instances (kernel_table.h lists them).
#include "kernel_table.h"
#include "kernels.cuh"

namespace mla_meta {

#define MLA_ENTRY(T, W, M) {1, T, W, M, reinterpret_cast<const void*>(mla_smem_kernel<T, W, M>)},
KernelList mid_smem_kernels() {
  static const KernelInstance items[] = {MLA_MID_INSTANCES(MLA_ENTRY)};
  return {items, static_cast<int>(sizeof(items) / sizeof(items[0]))};
}
#undef MLA_ENTRY

}  // namespace mla_meta
