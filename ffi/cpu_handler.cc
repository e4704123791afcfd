// cpu_handler.cc: the XLA FFI handler for the CPU platform (the sequential algorithm of SPEC.md section 3,
// one batch after another) and the nanobind module `_cpu` that hands its capsule and the size formulas
// to Python.
#include <algorithm>
#include <cstdint>

#include <nanobind/nanobind.h>

#include "ffi_common.h"
#include "schedule_core.h"
#include "xla/ffi/api/ffi.h"

namespace nb = nanobind;
namespace ffi = xla::ffi;
using namespace mla_meta;

static ffi::Error MetaCpuImpl(ffi::Buffer<ffi::S32> seqlens, ffi::Buffer<ffi::S32> num_valid, ffi::RemainingArgs aliased,
                              ffi::Result<ffi::Buffer<ffi::S32>> meta,
                              ffi::Result<ffi::Buffer<ffi::S32>> splits,
                              ffi::Result<ffi::AnyBuffer> workspace, int32_t num_sm_parts,
                              int32_t block_size_n, int32_t fixed_overhead_num_blocks, int32_t topk,
                              int32_t kernel) {
  const Config c{num_sm_parts, block_size_n, fixed_overhead_num_blocks, topk};
  Shapes s;
  if (auto e = check_call(seqlens, num_valid, aliased.size(), meta, splits, workspace, c, kernel, &s); e.failure())
    return e;
  const int32_t* lens = seqlens.typed_data();
  const int32_t* nv = num_valid.typed_data();
  for (int64_t g = 0; g < s.G; ++g) {
    const int64_t n = std::clamp<int64_t>(nv[g], 0, s.B);   // documented: num_valid is clamped to [0, B]
    schedule_sequential(lens + g * s.B, n, s.B, c, meta->typed_data() + g * s.P * 8,
                        splits->typed_data() + g * (s.B + 1));
  }
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER(MetaCpu, MetaCpuImpl,
                       ffi::Ffi::Bind()
                           .Arg<ffi::Buffer<ffi::S32>>()
                           .Arg<ffi::Buffer<ffi::S32>>()
                           .RemainingArgs()
                           .Ret<ffi::Buffer<ffi::S32>>()
                           .Ret<ffi::Buffer<ffi::S32>>()
                           .Ret<ffi::AnyBuffer>()
                           .Attr<int32_t>("num_sm_parts")
                           .Attr<int32_t>("block_size_n")
                           .Attr<int32_t>("fixed_overhead_num_blocks")
                           .Attr<int32_t>("topk")
                           .Attr<int32_t>("kernel"));

NB_MODULE(_cpu, m) {
  m.doc() = "jax_mla_meta CPU FFI handler and buffer-size formulas";
  m.def("registrations", [] {
    nb::dict d;
    d["jax_mla_meta_cpu_v1"] = nb::capsule(reinterpret_cast<void*>(MetaCpu));
    return d;
  });
  m.def("smem_bytes", &smem_bytes, nb::arg("B"), nb::arg("num_sm_parts"), nb::arg("cluster_size") = 1,
        "Dynamic shared memory (bytes) per CTA that the smem kernel needs for one batch of B rows on a cluster "
        "of cluster_size CTAs.");
  m.def("smem_cluster", &smem_cluster, nb::arg("B"), nb::arg("num_sm_parts"), nb::arg("optin"), nb::arg("kmax"),
        "Cluster size the smem kernel uses for B rows on a device with this opt-in limit and largest cluster, "
        "or 0 when it does not fit.");
  m.def("cluster_for", &cluster_for, nb::arg("B"), nb::arg("kmax"),
        "Cluster size for B rows (about 4096 rows per CTA), capped at kmax.");
  m.def("low_smem_cluster", &low_smem_cluster, nb::arg("B"), nb::arg("kmax"),
        "Cluster size the low_smem kernel uses for B rows outside the mid path: cluster_for(B, kmax), at most 8 "
        "when a CTA would hold more than 8,192 rows.");
  m.def("midpath_fits", [](int64_t B, int64_t P, int64_t bs) { return midpath_fits(B, P, bs); }, nb::arg("B"),
        nb::arg("num_sm_parts"), nb::arg("block_size_n"),
        "Whether a dense batch of B rows takes the CUDA kernels' mid path (512-thread CTAs, up to 2,048 rows each).");
  m.def("midpath_cluster", [](int64_t B, int kmax) { return midpath_cluster(B, kmax); }, nb::arg("B"),
        nb::arg("kmax"), "Cluster size of the mid path for B rows on a device whose largest cluster is kmax.");
  m.def("midpath_rows_per_thread", [](int64_t B, int64_t K) { return midpath_rows_per_thread(B, K); },
        nb::arg("B"), nb::arg("cluster_size"),
        "Consecutive rows each thread of the mid path holds for B rows on a cluster of cluster_size CTAs.");
  m.def("smem_supported", &smem_supported, nb::arg("block_size_n"), nb::arg("fixed_overhead_num_blocks"),
        "Whether the smem kernel can represent every row cost for this block size and overhead.");
  m.def("workspace_bytes", &workspace_bytes, nb::arg("B"), nb::arg("num_sm_parts"),
        "Scratch bytes per batch that the custom call returns as a hidden extra output.");
  m.def("workspace_offsets", [](int64_t B, int64_t P) {
        const WorkspaceLayout w = workspace_layout(B, P);
        nb::dict d;
        d["parts"] = w.parts;
        d["cut_rows"] = w.cut_rows;
        d["chunks"] = w.chunks;
        d["scalars"] = w.scalars;
        d["bytes"] = w.bytes;
        return d;
      }, nb::arg("B"), nb::arg("num_sm_parts"), "Byte offsets of the workspace fields in one batch's slice.");
  m.attr("ffi_api_version") = nb::make_tuple(XLA_FFI_API_MAJOR, XLA_FFI_API_MINOR);
  m.attr("max_parts") = kMaxParts;
  m.attr("max_overhead") = kMaxOverhead;
  m.attr("max_rows") = kMaxRows;
  m.attr("max_cluster") = kMaxCluster;
}
