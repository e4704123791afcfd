// cpu_module.cc: the nanobind module `_cpu`. It hands the CPU handler's capsule to Python, plus the formulas and
// the launch decision (core/launch_plan.h) that plan() words. Every binding checks its arguments and raises
// ValueError naming the one at fault, so no input reaches a division by zero or an overflow.
#include <cstdint>
#include <string>

#include <nanobind/nanobind.h>

#include "core/geometry.h"
#include "core/launch_plan.h"
#include "xla/ffi/api/api.h"
#include "xla/ffi/api/ffi.h"

namespace nb = nanobind;
using namespace mla_meta;

XLA_FFI_DECLARE_HANDLER_SYMBOL(JaxMlaMetaCpu);

namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw nb::value_error(what.c_str());
}
void check_rows(int64_t B, int64_t P) {
  require(B >= 0, "B must be >= 0, got " + std::to_string(B));
  require(P >= 1 && P <= kMaxParts,
          "num_sm_parts must be in [1, " + std::to_string(kMaxParts) + "], got " + std::to_string(P));
  require(B + P + 1 <= kMaxRows, "B + num_sm_parts must stay below 2**31 - 1");
}
void check_cluster(int64_t K, const char* name) {
  require(K >= 1 && K <= kMaxCluster && (K & (K - 1)) == 0,
          std::string(name) + " must be a power of two in [1, " + std::to_string(kMaxCluster) + "], got " +
              std::to_string(K));
}
void check_block(int64_t bs, int64_t F) {
  require(bs >= 1 && bs <= INT32_MAX, "block_size_n must be in [1, 2**31 - 1], got " + std::to_string(bs));
  require(F >= 0 && F <= kMaxOverhead, "fixed_overhead_num_blocks must be in [0, " + std::to_string(kMaxOverhead) +
                                           "], got " + std::to_string(F));
}

}  // namespace

NB_MODULE(_cpu, m) {
  m.doc() = "jax_mla_meta: the CPU FFI handler, the buffer-size formulas and the launch decision";
  m.def("registrations", [] {
    nb::dict d;
    d["jax_mla_meta_cpu_v2"] = nb::capsule(reinterpret_cast<void*>(JaxMlaMetaCpu));
    return d;
  });
  m.def(
      "smem_bytes",
      [](int64_t B, int64_t P, int64_t K) {
        check_rows(B, P);
        check_cluster(K, "cluster_size");
        return smem_bytes(B, P, K);
      },
      nb::arg("B"), nb::arg("num_sm_parts"), nb::arg("cluster_size") = 1,
      "Dynamic shared memory (bytes) per CTA that the smem kernel needs for one batch of B rows on a cluster of "
      "cluster_size CTAs.");
  m.def(
      "smem_supported",
      [](int64_t bs, int64_t F) {
        check_block(bs, F);
        return smem_supported(bs, F);
      },
      nb::arg("block_size_n"), nb::arg("fixed_overhead_num_blocks"),
      "Whether the smem kernel can represent every row cost for this block size and overhead.");
  m.def(
      "workspace_bytes",
      [](int64_t B, int64_t P) {
        check_rows(B, P);
        return workspace_bytes(B, P);
      },
      nb::arg("B"), nb::arg("num_sm_parts"),
      "Scratch bytes per batch that the custom call returns as a hidden output.");
  m.def(
      "workspace_offsets",
      [](int64_t B, int64_t P) {
        check_rows(B, P);
        const WorkspaceLayout w = workspace_layout(B, P);
        nb::dict d;
        d["parts"] = w.parts;
        d["cut_rows"] = w.cut_rows;
        d["chunks"] = w.chunks;
        d["scalars"] = w.scalars;
        d["bytes"] = w.bytes;
        return d;
      },
      nb::arg("B"), nb::arg("num_sm_parts"), "Byte offsets of the workspace fields in one batch's slice.");
  m.def(
      "plan_launch",
      [](int64_t B, int64_t P, int64_t bs, int64_t F, bool rows, int32_t kernel, int64_t optin, int64_t kmax) {
        check_rows(B, P);
        check_block(bs, F);
        require(kernel >= kAuto && kernel <= kLowSmem, "kernel must be 0 (auto), 1 (smem) or 2 (low_smem)");
        require(optin >= 0 && optin <= (1LL << 30), "optin must be in [0, 2**30], got " + std::to_string(optin));
        check_cluster(kmax, "kmax");
        const LaunchPlan p = plan_launch(B, P, bs, F, rows, kernel, optin, static_cast<int>(kmax));
        nb::dict d;
        d["error"] = p.error;
        d["smem"] = p.smem;
        d["cluster"] = p.cluster;
        d["threads"] = p.threads;
        d["path"] = p.path;
        d["rows_per_thread"] = p.rows_per_thread;
        d["wide"] = p.wide;
        d["dyn_smem"] = p.dyn_smem;
        d["smem_need"] = p.smem_need;
        return d;
      },
      nb::arg("B"), nb::arg("num_sm_parts"), nb::arg("block_size_n"), nb::arg("fixed_overhead_num_blocks"),
      nb::arg("rows"), nb::arg("kernel"), nb::arg("optin"), nb::arg("kmax"),
      "The CUDA handler's launch decision (core/launch_plan.h) for these arguments on a device with this opt-in "
      "shared memory per block and largest cluster.");
  m.attr("ffi_api_version") = nb::make_tuple(XLA_FFI_API_MAJOR, XLA_FFI_API_MINOR);
  m.attr("max_parts") = kMaxParts;
  m.attr("max_overhead") = kMaxOverhead;
  m.attr("max_rows") = kMaxRows;
  m.attr("max_cluster") = kMaxCluster;
  m.attr("chunk_rows") = kChunk;
  m.attr("warp_path_rows") = kWarpPathRows;
  m.attr("row_path_rows") = kRowPathRows;
  m.attr("mid_path_rows") = nb::make_tuple(kMidMinRows, kMidPathRows);
  m.attr("path_parts") = kRowParts;
}
