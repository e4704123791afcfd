// cuda_module.cc: the nanobind module `_cuda`. It hands the CUDA handler's capsule and two host-side queries to
// Python; the kernels and the handler live in the .cu files beside it (nanobind headers stay out of nvcc).
#include <nanobind/nanobind.h>

#include "xla/ffi/api/api.h"
#include "xla/ffi/api/ffi.h"

namespace nb = nanobind;

XLA_FFI_DECLARE_HANDLER_SYMBOL(JaxMlaMetaCuda);
extern "C" int jax_mla_meta_optin_limit(int device);
extern "C" int jax_mla_meta_cluster_limit(int device);
extern "C" int jax_mla_meta_host_timing(long long* out);

NB_MODULE(_cuda, m) {
  m.doc() = "jax_mla_meta CUDA FFI handler (smem and low_smem kernels)";
  m.def("registrations", [] {
    nb::dict d;
    d["jax_mla_meta_cuda_v2"] = nb::capsule(reinterpret_cast<void*>(JaxMlaMetaCuda));
    return d;
  });
  m.def("optin_limit", &jax_mla_meta_optin_limit, nb::arg("device"),
        "cudaDevAttrMaxSharedMemoryPerBlockOptin of a CUDA device ordinal, or -1 if it cannot be read.");
  m.def("cluster_limit", &jax_mla_meta_cluster_limit, nb::arg("device"),
        "Largest thread-block cluster (CTAs) both kernels can be launched with on a device, or -1.");
  m.def(
      "host_timing",
      [] {
        long long v[4] = {0, 0, 0, 0};
        if (!jax_mla_meta_host_timing(v)) return nb::object(nb::none());
        return nb::object(nb::make_tuple(v[0], v[1], v[2], v[3]));
      },
      "Profiling builds (MLA_HOST_TIMING) only: (handler ns, handler calls, launch ns, launches) summed since "
      "load; None otherwise.");
  m.attr("ffi_api_version") = nb::make_tuple(XLA_FFI_API_MAJOR, XLA_FFI_API_MINOR);
}
