// ffi_common.h: argument checks shared by the CPU and CUDA FFI handlers. Every bad shape or attribute
// becomes an ffi::Error (never an abort), so a misuse of the raw custom call is a Python exception.
#pragma once

#include <cstdint>
#include <string>

#include "schedule_core.h"
#include "xla/ffi/api/ffi.h"

namespace mla_meta {

namespace ffi = xla::ffi;

enum KernelChoice : int32_t { kAuto = 0, kSmem = 1, kLowSmem = 2 };

struct Shapes {
  int64_t G = 0;   // number of independent batches (product of leading dims)
  int64_t B = 0;   // rows per batch
  int64_t P = 0;   // parts
};

// `n_aliased` extra operands (0, or 2 aliased to the first two results: used by tests that pre-fill
// the outputs with poison) are accepted and otherwise ignored.
inline ffi::Error check_call(ffi::Buffer<ffi::S32> seqlens, ffi::Buffer<ffi::S32> num_valid, size_t n_aliased,
                             ffi::Result<ffi::Buffer<ffi::S32>>& meta,
                             ffi::Result<ffi::Buffer<ffi::S32>>& splits,
                             ffi::Result<ffi::AnyBuffer>& workspace, const Config& c, int32_t kernel,
                             Shapes* out) {
  auto bad = [](const std::string& m) { return ffi::Error::InvalidArgument("jax_mla_meta: " + m); };
  if (c.num_parts < 1 || c.num_parts > kMaxParts) return bad("num_sm_parts out of range");
  if (c.block_size_n < 1) return bad("block_size_n must be >= 1");
  if (c.overhead < 0 || c.overhead > kMaxOverhead) return bad("fixed_overhead_num_blocks out of range");
  if (n_aliased != 0 && n_aliased != 2) return bad("expected 2 or 4 operands");
  if (kernel < kAuto || kernel > kLowSmem) return bad("kernel must be 0 (auto), 1 (smem) or 2 (low_smem)");
  auto d = seqlens.dimensions();
  if (d.size() < 1) return bad("seqlens must have rank >= 1");
  const int64_t B = d.back();
  int64_t G = 1;
  for (size_t k = 0; k + 1 < d.size(); ++k) G *= d[k];
  if (B + c.num_parts + 1 > kMaxRows) return bad("batch too large: B + num_sm_parts must be < 2^31 - 1");
  if (num_valid.element_count() != G) return bad("num_valid must hold one value per batch");
  if (meta->element_count() != G * c.num_parts * 8) return bad("tile_scheduler_metadata has the wrong size");
  if (splits->element_count() != G * (B + 1)) return bad("num_splits has the wrong size");
  if (static_cast<int64_t>(workspace->size_bytes()) < G * workspace_bytes(B, c.num_parts))
    return bad("workspace too small");
  out->G = G;
  out->B = B;
  out->P = c.num_parts;
  return ffi::Error::Success();
}

}  // namespace mla_meta
