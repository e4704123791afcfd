"""The named JAX primitive ``jax_mla_meta_schedule``: abstract shapes, per-platform lowerings, batching.

Operands: seqlens int32 [*batch, B], num_valid int32 [*batch], then the per-row inputs the ``row_inputs`` bits
          name (1: topk_length [*batch, B], 2: extra_topk_length [*batch, B]), then optionally two buffers that the
          first two results alias (tests pre-fill them with poison to prove every element is written).
Results:  tile_scheduler_metadata int32 [*batch, P, 8], num_splits int32 [*batch, B + 1],
          workspace uint8 [*batch, W] (scratch of the CUDA kernels; callers drop it).
Params (static): num_sm_parts, block_size_n, fixed_overhead_num_blocks, topk (-1: dense), extra_topk (0: none),
          row_inputs, layout (0: 2025, 1: 2026), kernel (0 auto, 1 smem, 2 low_smem). The FFI handlers
          (``ffi/handler_args.h``) take exactly these attributes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import batching, mlir, xla

from . import _ffi

KERNELS = {"auto": 0, "smem": 1, "low_smem": 2}
LAYOUT_CODES = {"2025": 0, "2026": 1}
ROW_TOPK_LENGTH, ROW_EXTRA_LENGTH = 1, 2
ATTRS = ("num_sm_parts", "block_size_n", "fixed_overhead_num_blocks", "topk", "extra_topk", "row_inputs",
         "layout", "kernel")

schedule_p = Primitive("jax_mla_meta_schedule")
schedule_p.multiple_results = True
schedule_p.def_impl(functools.partial(xla.apply_primitive, schedule_p))


def _n_row_inputs(row_inputs: int) -> int:
    return (row_inputs & ROW_TOPK_LENGTH) + (row_inputs >> 1)


def _abstract_eval(seqlens, num_valid, *rest, num_sm_parts, row_inputs, **params):
    *batch, B = seqlens.shape
    batch = tuple(batch)
    if tuple(num_valid.shape) != batch:
        raise ValueError(f"num_valid must have shape {batch}, got {tuple(num_valid.shape)}")
    k = _n_row_inputs(row_inputs)
    for x in rest[:k]:
        if tuple(x.shape) != tuple(seqlens.shape):
            raise ValueError(f"per-row inputs must have the shape of seqlens {tuple(seqlens.shape)}, got {x.shape}")
    aliased = rest[k:]
    P = num_sm_parts
    if aliased and (tuple(aliased[0].shape) != batch + (P, 8) or tuple(aliased[1].shape) != batch + (B + 1,)):
        raise ValueError("aliased output buffers have the wrong shapes")
    return (
        jax.core.ShapedArray(batch + (P, 8), jnp.int32),
        jax.core.ShapedArray(batch + (B + 1,), jnp.int32),
        jax.core.ShapedArray(batch + (_ffi.workspace_bytes(B, P),), jnp.uint8),
    )


schedule_p.def_abstract_eval(_abstract_eval)


def _lowering(target: str):
    def lower(ctx, seqlens, num_valid, *rest, **params):
        k = _n_row_inputs(params["row_inputs"])
        n_aliased = len(rest) - k
        aliases = {2 + k: 0, 3 + k: 1} if n_aliased else {}
        rule = jax.ffi.ffi_lowering(target, operand_output_aliases=aliases)
        # int attributes must be np.int32: a Python int arrives as S64 and fails to decode
        return rule(ctx, seqlens, num_valid, *rest, **{name: np.int32(params[name]) for name in ATTRS})

    return lower


def _missing_cuda(ctx, *args, **params):
    raise RuntimeError(
        "jax_mla_meta cannot run on a GPU here: "
        + (_ffi.CUDA_IMPORT_ERROR or f"the CUDA module is missing. {_ffi.CUDA_BUILD_HINT}").rstrip(".")
        + ". Or place the inputs on the CPU (jax.device_put(x, jax.devices('cpu')[0]))."
    )


mlir.register_lowering(schedule_p, _lowering(_ffi.CPU_TARGET), platform="cpu")
mlir.register_lowering(schedule_p, _lowering(_ffi.CUDA_TARGET) if _ffi.HAS_CUDA else _missing_cuda, platform="cuda")


def _batch(args, dims, **params):
    """vmap: the batched axis goes to the front; unbatched operands are broadcast. One custom call (one launch per
    kernel) then schedules every batch: the handlers treat all leading dims as batches."""
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    moved = [
        jnp.moveaxis(a, d, 0) if d is not None else jnp.broadcast_to(a, (size,) + a.shape)
        for a, d in zip(args, dims)
    ]
    return schedule_p.bind(*moved, **params), (0, 0, 0)


batching.primitive_batchers[schedule_p] = _batch
