"""Public API: ``schedule`` and ``get_mla_metadata`` (FlashMLA's signature). Arguments are checked here, before
anything is traced or lowered, and every error names the argument."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from . import _ffi
from ._args import INT32_MAX, as_int, check_extra_topk, check_sparse_inputs, choice, device_of, int32_array
from ._primitive import KERNELS, LAYOUT_CODES, ROW_EXTRA_LENGTH, ROW_TOPK_LENGTH, schedule_p
from .host_rules import Scheduler, rule_for_device
from .layouts import Layout, check_layout
from .plan import Kernel, plan

__all__ = ["get_mla_metadata", "schedule"]


def _row_input(name: str, x, shape) -> Any:
    if x is None:
        return None
    int32_array(name, x)
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have the shape of seqlens {tuple(shape)}, got {tuple(x.shape)}")
    return jnp.asarray(x)


def _num_valid(num_valid, batch: tuple) -> Any:
    if num_valid is None:
        return None
    if not hasattr(num_valid, "dtype"):
        as_int("num_valid", num_valid, -(2**31), 2**31 - 1, static=False)
        num_valid = np.int32(num_valid)
    if np.dtype(num_valid.dtype) != np.int32:
        raise TypeError(f"num_valid must be int32, got {np.dtype(num_valid.dtype).name}; use .astype(jnp.int32)")
    shape = tuple(np.shape(num_valid))
    if shape != () and shape != batch:
        raise ValueError(
            f"num_valid must be a scalar or have the leading shape of seqlens {batch} (one count per batch of "
            f"rows), got shape {shape}. It counts the valid rows of each batch; it is not a per-row mask.")
    return jnp.broadcast_to(jnp.asarray(num_valid), batch)


def _bind(seqlens, *, num_sm_parts, block_size_n=64, fixed_overhead_num_blocks=5, topk=None, kernel="auto",
          num_valid=None, device=None, layout="2025", topk_length=None, extra_topk=None, extra_topk_length=None,
          aliased=()):
    """Check everything, then bind the primitive; ``aliased`` are the test hook's poisoned outputs."""
    seqlens = int32_array("seqlens", seqlens)
    *batch, B = seqlens.shape
    batch = tuple(int(d) for d in batch)
    B, P = _ffi.check_rows_parts(B, num_sm_parts)
    bs = as_int("block_size_n", block_size_n, 1, INT32_MAX)
    F = as_int("fixed_overhead_num_blocks", fixed_overhead_num_blocks, 0, _ffi.MAX_OVERHEAD)
    tk = -1 if topk is None else as_int("topk", topk, 0, INT32_MAX)
    choice("kernel", kernel, tuple(KERNELS))
    layout = check_layout(layout)
    et = check_extra_topk(extra_topk)
    tl = _row_input("topk_length", topk_length, seqlens.shape)
    etl = _row_input("extra_topk_length", extra_topk_length, seqlens.shape)
    check_sparse_inputs(None if topk is None else tk, et, tl is not None, etl is not None)
    if kernel == "smem":
        p = plan(B, P, kernel="smem", device=device, block_size_n=bs, fixed_overhead_num_blocks=F, topk=topk,
                 per_row=tl is not None or etl is not None)
        if p.platform == "gpu" and p.kernel == "error":
            raise ValueError(f"kernel='smem' cannot run on {p.device}: {p.reason}. Use kernel='auto' or 'low_smem'.")
    elif device is not None:
        device_of(device)
    nv = _num_valid(num_valid, batch)
    if nv is None:
        nv = jnp.full(batch, B, dtype=jnp.int32)
    rows = [x for x in (tl, etl) if x is not None]
    row_inputs = (ROW_TOPK_LENGTH if tl is not None else 0) | (ROW_EXTRA_LENGTH if etl is not None else 0)
    meta, splits, _ = schedule_p.bind(
        jnp.asarray(seqlens), nv, *rows, *aliased, num_sm_parts=P, block_size_n=bs, fixed_overhead_num_blocks=F,
        topk=tk, extra_topk=et, row_inputs=row_inputs, layout=LAYOUT_CODES[layout], kernel=KERNELS[kernel])
    return meta, splits


def schedule(
    seqlens,
    *,
    num_sm_parts: int,
    block_size_n: int = 64,
    fixed_overhead_num_blocks: int = 5,
    topk: int | None = None,
    kernel: Kernel = "auto",
    num_valid=None,
    device=None,
    layout: Layout = "2025",
    topk_length=None,
    extra_topk: int | None = None,
    extra_topk_length=None,
):
    """Compute FlashMLA's decode-scheduler metadata (``docs/spec.md``).

    Args:
      seqlens: int32 ``[..., B]``, the KV length of each row; leading dims are independent batches, scheduled
        together in one launch. In sparse mode (``topk`` given) only its shape matters.
      num_sm_parts: P, the number of parts (static).
      block_size_n: KV block size (64 in FlashMLA).
      fixed_overhead_num_blocks: F, the fixed cost of a piece in blocks (5 in FlashMLA; 3 for DeepSeek V4 on SM100).
      topk: sparse mode: every row attends to ``topk`` tokens (unless ``topk_length`` says otherwise).
      kernel: "auto" (the CUDA handler picks "smem" when it fits the device's opt-in shared memory, else
        "low_smem"), or force "smem" / "low_smem". On the CPU there is one implementation and ``kernel`` is ignored.
      num_valid: optional int32 scalar or ``[...]`` (one count per batch, may be traced): only the first
        ``num_valid`` rows are scheduled (the rest is padding); clamped to ``[0, B]``.
      device: only used to check ``kernel="smem"`` against a CUDA device's limit (default: the default device).
      layout: the packing of ``tile_scheduler_metadata`` (:mod:`jax_mla_meta.layouts`). "2025" (the default):
        FlashMLA's get_mla_metadata of 2025 and sgl-kernel before 2026; "2026": DecodingSchedMeta, consumed by
        every FlashMLA build since January 2026 (deepseek-ai main, the sgl-project sgl branch that sgl-kernel
        ships, vLLM's fork).
      topk_length: sparse mode, optional int32 ``[..., B]`` (may be traced): each row's own top-k count.
      extra_topk: sparse mode, static int: the size of an extra KV cache (None or 0: none).
      extra_topk_length: sparse mode, optional int32 ``[..., B]`` (may be traced): each row's extra-cache count.

    Returns:
      ``(tile_scheduler_metadata int32 [..., P, 8], num_splits int32 [..., B + 1])``.
    """
    return _bind(seqlens, num_sm_parts=num_sm_parts, block_size_n=block_size_n,
                 fixed_overhead_num_blocks=fixed_overhead_num_blocks, topk=topk, kernel=kernel, num_valid=num_valid,
                 device=device, layout=layout, topk_length=topk_length, extra_topk=extra_topk,
                 extra_topk_length=extra_topk_length)


def get_mla_metadata(
    cache_seqlens,
    num_q_tokens_per_head_k: int,
    num_heads_k: int,
    num_heads_q: int | None = None,
    is_fp8_kvcache: bool = False,
    topk: int | None = None,
    *,
    layout: Layout = "2025",
    scheduler: Scheduler = "flashmla",
    head_dim_qk: int | None = None,
    topk_length=None,
    extra_topk: int | None = None,
    extra_topk_length=None,
    device=None,
    num_sm_parts: int | None = None,
    fixed_overhead_num_blocks: int | None = None,
    kernel: Kernel = "auto",
    num_valid=None,
):
    """FlashMLA's ``get_mla_metadata``: P and F from FlashMLA's host rules for the target device
    (:mod:`jax_mla_meta.host_rules`), then :func:`schedule`.

    ``layout`` picks the FlashMLA generation: "2025" (the default) for FlashMLA's get_mla_metadata of 2025 and
    sgl-kernel before 2026, "2026" for DecodingSchedMeta, which every FlashMLA build since January 2026 consumes
    (deepseek-ai main, the sgl-project sgl branch that sgl-kernel ships, vLLM's fork). ``scheduler`` ("flashmla" or
    "sgl-kernel") picks whose host rule computes P in 2026; ``head_dim_qk`` (q's last dim, 576 for DeepSeek V3.2,
    512 for V4) matters for sparse SM100 with 128 heads. ``device`` defaults to the default JAX device; a non-CUDA
    device is taken as an H100 (132 SMs, SM90). Pass ``num_sm_parts`` (and ``fixed_overhead_num_blocks``) to
    override the rule. Returns ``(tile_scheduler_metadata, num_splits)``.
    """
    int32_array("cache_seqlens", cache_seqlens)
    dev = device_of(device)
    F = fixed_overhead_num_blocks
    if num_sm_parts is None:
        rule = rule_for_device(dev, num_q_tokens_per_head_k, num_heads_k, num_heads_q, is_fp8_kvcache, topk,
                               layout=layout, scheduler=scheduler, head_dim_qk=head_dim_qk)
        num_sm_parts = rule.num_sm_parts
        F = rule.fixed_overhead_num_blocks if F is None else F
    return schedule(cache_seqlens, num_sm_parts=num_sm_parts, fixed_overhead_num_blocks=5 if F is None else F,
                    topk=topk, kernel=kernel, num_valid=num_valid, device=dev, layout=layout,
                    topk_length=topk_length, extra_topk=extra_topk, extra_topk_length=extra_topk_length)


def _schedule_into(meta_init, splits_init, seqlens, **kwargs):
    """Test hook: like :func:`schedule`, but the results alias ``meta_init`` / ``splits_init``, so any element the
    handler does not write keeps its initial (poison) value."""
    aliased = (jnp.asarray(meta_init, jnp.int32), jnp.asarray(splits_init, jnp.int32))
    return _bind(seqlens, aliased=aliased, **kwargs)
