"""The named JAX primitive `jax_mla_meta_schedule`: abstract shapes, per-platform lowerings, batching.

Operands: seqlens int32 [*batch, B], num_valid int32 [*batch], and optionally two buffers that the first two
          results alias (tests pre-fill them with poison to prove every element is written).
Results:  tile_scheduler_metadata int32 [*batch, P, 8], num_splits int32 [*batch, B + 1],
          workspace uint8 [*batch, W] (scratch of the CUDA low_smem kernels; callers drop it).
Params (static): num_sm_parts, block_size_n, fixed_overhead_num_blocks, topk (-1 = dense), kernel (0/1/2).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import batching, mlir, xla

import jax

from . import _ffi

KERNELS = {"auto": 0, "smem": 1, "low_smem": 2}

schedule_p = Primitive("jax_mla_meta_schedule")
schedule_p.multiple_results = True
schedule_p.def_impl(functools.partial(xla.apply_primitive, schedule_p))


def _abstract_eval(seqlens, num_valid, *aliased, num_sm_parts, block_size_n, fixed_overhead_num_blocks, topk, kernel):
    del block_size_n, fixed_overhead_num_blocks, topk, kernel
    *batch, B = seqlens.shape
    batch = tuple(batch)
    if tuple(num_valid.shape) != batch:
        raise ValueError(f"num_valid must have shape {batch}, got {tuple(num_valid.shape)}")
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
    plain = jax.ffi.ffi_lowering(target)
    aliased_rule = jax.ffi.ffi_lowering(target, operand_output_aliases={2: 0, 3: 1})

    def lower(ctx, seqlens, num_valid, *aliased, num_sm_parts, block_size_n, fixed_overhead_num_blocks, topk, kernel):
        # int attributes must be np.int32: a Python int arrives as S64 and fails to decode.
        rule = aliased_rule if aliased else plain
        return rule(
            ctx,
            seqlens,
            num_valid,
            *aliased,
            num_sm_parts=np.int32(num_sm_parts),
            block_size_n=np.int32(block_size_n),
            fixed_overhead_num_blocks=np.int32(fixed_overhead_num_blocks),
            topk=np.int32(topk),
            kernel=np.int32(kernel),
        )

    return lower


def _missing_cuda(ctx, *args, **params):
    raise RuntimeError(
        "jax_mla_meta was built without its CUDA module, so it cannot run on a GPU"
        + (f" (import error: {_ffi.CUDA_IMPORT_ERROR})" if _ffi.CUDA_IMPORT_ERROR else "")
        + ". Reinstall on a machine with nvcc (`python -m pip install --no-build-isolation .`), "
        "or place the inputs on the CPU (jax.device_put(x, jax.devices('cpu')[0]))."
    )


mlir.register_lowering(schedule_p, _lowering(_ffi.CPU_TARGET), platform="cpu")
mlir.register_lowering(schedule_p, _lowering(_ffi.CUDA_TARGET) if _ffi.HAS_CUDA else _missing_cuda, platform="cuda")


def _batch(args, dims, **params):
    """vmap: the batched axis goes to the front; unbatched operands are broadcast. One custom call (one
    launch per kernel) then schedules every batch: the handlers treat all leading dims as batches."""
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    moved = [
        jnp.moveaxis(a, d, 0) if d is not None else jnp.broadcast_to(a, (size,) + a.shape)
        for a, d in zip(args, dims)
    ]
    return schedule_p.bind(*moved, **params), (0, 0, 0)


batching.primitive_batchers[schedule_p] = _batch
