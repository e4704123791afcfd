// kernels_general_low_smem.cu: the low_smem kernel's general-path instances (kernel_table.h lists them).
#include "kernel_table.h"
#include "kernels.cuh"

namespace mla_meta {

#define MLA_ENTRY(T, W, M) {0, T, W, M, reinterpret_cast<const void*>(mla_low_smem_kernel<T, W, M>)},
KernelList general_low_smem_kernels() {
  static const KernelInstance items[] = {MLA_GENERAL_INSTANCES(MLA_ENTRY)};
  return {items, static_cast<int>(sizeof(items) / sizeof(items[0]))};
}
#undef MLA_ENTRY

}  // namespace mla_meta
