// cpu_handler.cc: the XLA FFI handler for the CPU platform: the walk of docs/spec.md section 4 (core/sequential.h)
// for one batch after another.
#include <algorithm>
#include <cstdint>

#include "core/costs.h"
#include "core/sequential.h"
#include "handler_args.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using namespace mla_meta;

static ffi::Error MetaCpuImpl(ffi::Buffer<ffi::S32> seqlens, ffi::Buffer<ffi::S32> num_valid, ffi::RemainingArgs rest,
                              ffi::Result<ffi::Buffer<ffi::S32>> meta, ffi::Result<ffi::Buffer<ffi::S32>> splits,
                              ffi::Result<ffi::AnyBuffer> workspace, int32_t num_sm_parts, int32_t block_size_n,
                              int32_t fixed_overhead_num_blocks, int32_t topk, int32_t extra_topk, int32_t row_inputs,
                              int32_t layout, int32_t kernel) {
  Call c;
  if (auto e = decode_call(seqlens, num_valid, rest, meta, splits, workspace, num_sm_parts, block_size_n,
                           fixed_overhead_num_blocks, topk, extra_topk, row_inputs, layout, kernel, &c);
      e.failure())
    return e;
  for (int64_t g = 0; g < c.G; ++g) {
    const int64_t n = std::clamp<int64_t>(c.num_valid[g], 0, c.B);   // documented: num_valid is clamped to [0, B]
    const int64_t off = g * c.B;
    const LengthSpec& L = c.lengths;
    auto len = [&](int64_t i) { return L.uniform >= 0 ? L.uniform : L.rows.at(off, i); };
    schedule_sequential(len, n, c.B, c.P, c.block_size_n, c.F, c.layout, c.meta + g * c.P * 8,
                        c.splits + g * (c.B + 1));
  }
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxMlaMetaCpu, MetaCpuImpl, bind_schedule(ffi::Ffi::Bind()));
