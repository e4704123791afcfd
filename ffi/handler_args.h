// handler_args.h: what both FFI handlers (CPU and CUDA) take from XLA, checked in one place. Every bad shape or
// attribute becomes an ffi::Error (never an abort), so a misuse of the raw custom call is a Python exception.
//
// Operands: seqlens int32 [..., B], num_valid int32 [...], then (row_inputs bit 0) topk_length [..., B] and
// (bit 1) extra_topk_length [..., B], then optionally two buffers aliased to the first two results (tests
// pre-fill them with poison). Results: tile_scheduler_metadata [..., P, 8], num_splits [..., B + 1], and a
// uint8 workspace [..., W] (scratch of the CUDA kernels).
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "core/costs.h"
#include "core/geometry.h"
#include "core/launch_plan.h"
#include "core/records.h"
#include "xla/ffi/api/ffi.h"

namespace mla_meta {

namespace ffi = xla::ffi;

// The operands, results and attributes both handlers bind, after whatever context each takes first (the CUDA
// handler: its stream and device ordinal). The Python lowering passes exactly these attributes.
template <typename Binding>
auto bind_schedule(Binding b) {
  return std::move(b).template Arg<ffi::Buffer<ffi::S32>>()   // seqlens
      .template Arg<ffi::Buffer<ffi::S32>>()        // num_valid
      .RemainingArgs()                              // per-row inputs, then the aliased buffers
      .template Ret<ffi::Buffer<ffi::S32>>()        // tile_scheduler_metadata
      .template Ret<ffi::Buffer<ffi::S32>>()        // num_splits
      .template Ret<ffi::AnyBuffer>()               // workspace
      .template Attr<int32_t>("num_sm_parts")
      .template Attr<int32_t>("block_size_n")
      .template Attr<int32_t>("fixed_overhead_num_blocks")
      .template Attr<int32_t>("topk")
      .template Attr<int32_t>("extra_topk")
      .template Attr<int32_t>("row_inputs")
      .template Attr<int32_t>("layout")
      .template Attr<int32_t>("kernel");
}

struct Call {
  int64_t G = 0;   // independent batches (product of the leading dims)
  int64_t B = 0;   // rows per batch
  int32_t P = 0, block_size_n = 0, F = 0, layout = 0, kernel = 0;
  LengthSpec lengths{};      // rows' lengths; per-row pointers are batch 0's (batch g: + g * B)
  const int32_t* num_valid = nullptr;
  int32_t* meta = nullptr;
  int32_t* splits = nullptr;
  uint8_t* workspace = nullptr;
  int64_t workspace_stride = 0;   // bytes per batch
  bool rows() const { return lengths.uniform < 0; }
};

inline ffi::Error decode_call(ffi::Buffer<ffi::S32> seqlens, ffi::Buffer<ffi::S32> num_valid, ffi::RemainingArgs rest,
                              ffi::Result<ffi::Buffer<ffi::S32>>& meta, ffi::Result<ffi::Buffer<ffi::S32>>& splits,
                              ffi::Result<ffi::AnyBuffer>& workspace, int32_t num_sm_parts, int32_t block_size_n,
                              int32_t fixed_overhead_num_blocks, int32_t topk, int32_t extra_topk,
                              int32_t row_inputs, int32_t layout, int32_t kernel, Call* out) {
  auto bad = [](const std::string& m) { return ffi::Error::InvalidArgument("jax_mla_meta: " + m); };
  if (num_sm_parts < 1 || num_sm_parts > kMaxParts) return bad("num_sm_parts out of range");
  if (block_size_n < 1) return bad("block_size_n must be >= 1");
  if (fixed_overhead_num_blocks < 0 || fixed_overhead_num_blocks > kMaxOverhead)
    return bad("fixed_overhead_num_blocks out of range");
  if (kernel < kAuto || kernel > kLowSmem) return bad("kernel must be 0 (auto), 1 (smem) or 2 (low_smem)");
  if (layout != kLayout2025 && layout != kLayout2026) return bad("layout must be 0 (2025) or 1 (2026)");
  if (row_inputs < 0 || row_inputs > 3) return bad("row_inputs must be 0..3");
  auto d = seqlens.dimensions();
  if (d.size() < 1) return bad("seqlens must have rank >= 1");
  const int64_t B = d.back();
  int64_t G = 1;
  for (size_t k = 0; k + 1 < d.size(); ++k) G *= d[k];
  if (B + num_sm_parts + 1 > kMaxRows) return bad("batch too large: B + num_sm_parts must be < 2^31 - 1");
  if (static_cast<int64_t>(num_valid.element_count()) != G) return bad("num_valid must hold one value per batch");
  const size_t n_rows = (row_inputs & 1) + (row_inputs >> 1);
  if (rest.size() != n_rows && rest.size() != n_rows + 2) return bad("unexpected number of operands");
  const int32_t* row_ptr[2] = {nullptr, nullptr};
  for (size_t k = 0, bit = 0; bit < 2; ++bit) {
    if (!((row_inputs >> bit) & 1)) continue;
    auto buf = rest.get<ffi::Buffer<ffi::S32>>(k++);
    if (buf.has_error()) return bad(bit == 0 ? "topk_length must be int32" : "extra_topk_length must be int32");
    if (static_cast<int64_t>(buf->element_count()) != G * B)
      return bad(bit == 0 ? "topk_length must have the shape of seqlens"
                          : "extra_topk_length must have the shape of seqlens");
    row_ptr[bit] = buf->typed_data();
  }
  const LengthSpec spec = length_spec(topk, extra_topk, row_inputs & 1, row_inputs & 2, layout == kLayout2026,
                                      seqlens.typed_data(), row_ptr[0], row_ptr[1]);
  if (spec.error) return bad(spec.error);
  if (static_cast<int64_t>(meta->element_count()) != G * num_sm_parts * 8)
    return bad("tile_scheduler_metadata has the wrong size");
  if (static_cast<int64_t>(splits->element_count()) != G * (B + 1)) return bad("num_splits has the wrong size");
  const int64_t ws = workspace_bytes(B, num_sm_parts);
  if (static_cast<int64_t>(workspace->size_bytes()) < G * ws) return bad("workspace too small");
  out->G = G;
  out->B = B;
  out->P = num_sm_parts;
  out->block_size_n = block_size_n;
  out->F = fixed_overhead_num_blocks;
  out->layout = layout;
  out->kernel = kernel;
  out->lengths = spec;
  out->num_valid = num_valid.typed_data();
  out->meta = meta->typed_data();
  out->splits = splits->typed_data();
  out->workspace = static_cast<uint8_t*>(workspace->untyped_data());
  out->workspace_stride = ws;
  return ffi::Error::Success();
}

}  // namespace mla_meta
