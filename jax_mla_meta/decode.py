"""FlashMLA's split-KV MLA decode in plain JAX, driven by the decode scheduler's metadata: the reference consumer.

:func:`flash_mla_with_kvcache` takes FlashMLA's arguments (paged KV cache, block table, lengths, or a sparse index
list) together with ``tile_scheduler_metadata [P, 8]`` and ``num_splits [B + 1]``, and computes attention exactly
the way FlashMLA's two kernels consume that metadata (see :mod:`jax_mla_meta.checker` for the contract):

1. *Split kernel*, one program per part ``p``: for every row ``r`` of ``begin_req .. end_req`` it computes the
   partial softmax attention of request ``r`` (every query token and head) over the part's block range of that row,
   and writes it either straight into ``out`` / ``softmax_lse`` (an unsplit row) or into split slot
   ``num_splits[r] + (r == begin_req ? begin_split : 0)`` of an ``o_accum`` / ``lse_accum`` buffer (a split row).
2. *Combine kernel*, one program per row: every row whose ``num_splits[r + 1] - num_splits[r]`` is not 1 merges its
   slots ``num_splits[r] .. num_splits[r + 1] - 1`` by log-sum-exp weighting (FlashMLA's combine returns early only
   for a count of exactly 1, so a count of 0 gives output 0 and lse +inf).

Nothing is re-derived from the lengths: every range, slot and split decision comes from the metadata as given, so a
corrupted schedule (a block dropped or read twice, a wrong flag, a wrong slot) gives a wrong output. Memory that no
piece writes (a row or a slot the schedule forgot) reads as NaN, the stand-in for FlashMLA's uninitialised buffers.

Empty ranges follow FlashMLA: a piece with no valid token writes output 0 and lse +inf when written directly, and
lse -inf into a split slot (so the combine ignores it); a row with no token at all ends with output 0, lse +inf.

This is written for clarity, not speed: parts run one after the other (``lax.fori_loop``), and each piece scores
its request against the whole padded KV range (``max_pages * 64`` tokens, or ``topk`` indices) with a mask. A fast
consumer needs a fused kernel with one CTA per (part, head block) that streams only its part's 64-token blocks
through shared memory with an online softmax, plus a separate combine kernel (one CTA per row and head block) that
reads only the row's slots. (Here the combine even gathers ``B + P`` candidate slots for every row at once.)
"""

from __future__ import annotations

import functools
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._args import as_bool
from .costs import num_blocks
from .layouts import COLUMNS, Layout, check_layout

__all__ = ["BLOCK_SIZE_N", "flash_mla_with_kvcache"]

BLOCK_SIZE_N = 64  # tokens per KV cache page, and the scheduler's block_size_n


def _shape_error(name: str, want: str, got) -> ValueError:
    return ValueError(f"{name} must have shape {want}, got {tuple(got)}")


def _check_array(name: str, x) -> None:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")


def _check_int(name: str, x, want_dtype=None) -> None:
    dtype = np.dtype(x.dtype)
    if want_dtype is not None and dtype != want_dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(want_dtype).name}, got {dtype.name}")
    if dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {dtype.name}")


def _validate(q, k_cache, block_table, cache_seqlens, head_dim_v, meta, num_splits, indices, topk_length,
              layout) -> None:
    """Raise ValueError / TypeError, naming the argument, for any inconsistent static shape or dtype."""
    check_layout(layout)
    for name, x in (("q", q), ("k_cache", k_cache), ("cache_seqlens", cache_seqlens),
                    ("tile_scheduler_metadata", meta), ("num_splits", num_splits)):
        _check_array(name, x)
    if q.ndim != 4 or min(q.shape) < 1:
        raise _shape_error("q", "[B >= 1, s_q >= 1, h_q >= 1, d >= 1] (rank 4)", q.shape)
    B, s_q, h_q, d = q.shape
    if not jnp.issubdtype(q.dtype, jnp.floating):
        raise TypeError(f"q must be a floating-point array, got dtype {np.dtype(q.dtype).name}")
    if k_cache.ndim != 4 or k_cache.shape[1] != BLOCK_SIZE_N or k_cache.shape[3] != d or k_cache.shape[0] < 1:
        raise _shape_error("k_cache", f"[num_pages >= 1, {BLOCK_SIZE_N}, h_k, d={d}] (d from q)", k_cache.shape)
    if not jnp.issubdtype(k_cache.dtype, jnp.floating):
        raise TypeError(f"k_cache must be a floating-point array, got dtype {np.dtype(k_cache.dtype).name}")
    h_k = k_cache.shape[2]
    if h_k < 1 or h_q % h_k != 0:
        raise ValueError(f"q's head count h_q={h_q} must be a multiple of k_cache's h_k={h_k}")
    if cache_seqlens.shape != (B,):
        raise _shape_error("cache_seqlens", f"[B={B}] (B from q)", cache_seqlens.shape)
    _check_int("cache_seqlens", cache_seqlens)
    if not 1 <= head_dim_v <= d:   # its type: _check_statics
        raise ValueError(f"head_dim_v must be in [1, d={d}], got {head_dim_v}")
    if meta.ndim != 2 or meta.shape[1] != 8 or meta.shape[0] < 1:
        raise _shape_error("tile_scheduler_metadata", "[P >= 1, 8]", meta.shape)
    _check_int("tile_scheduler_metadata", meta, np.int32)
    if num_splits.shape != (B + 1,):
        raise _shape_error("num_splits", f"[B + 1 = {B + 1}] (B from q)", num_splits.shape)
    _check_int("num_splits", num_splits, np.int32)
    if block_table is None and indices is None:
        raise ValueError("block_table is required in dense mode (indices is None)")
    if block_table is not None:
        _check_array("block_table", block_table)
        if block_table.ndim != 2 or block_table.shape[0] != B or block_table.shape[1] < 1:
            raise _shape_error("block_table", f"[B={B}, max_pages >= 1]", block_table.shape)
        _check_int("block_table", block_table)
    if indices is None:
        if topk_length is not None:
            raise ValueError("topk_length is only meaningful in sparse mode (with indices)")
        return
    _check_array("indices", indices)
    if indices.ndim != 3 or indices.shape[:2] != (B, s_q) or indices.shape[2] < 1:
        raise _shape_error("indices", f"[B={B}, s_q={s_q}, topk >= 1]", indices.shape)
    _check_int("indices", indices)
    if topk_length is not None:
        _check_array("topk_length", topk_length)
        if topk_length.shape != (B,):
            raise _shape_error("topk_length", f"[B={B}]", topk_length.shape)
        _check_int("topk_length", topk_length)


def _partial_attention(q_r: jax.Array, keys: jax.Array, valid: jax.Array, head_dim_v: int, scale: float):
    """Softmax attention of one request over the tokens ``valid`` marks.

    Args:
      q_r: float32 ``[s_q, h_q, d]``.
      keys: float32 ``[s_q, T, h_k, d]``, the candidate tokens of each query token (V is the first head_dim_v
        channels).
      valid: bool ``[s_q, T]``.

    Returns:
      ``(o [s_q, h_q, head_dim_v], lse [s_q, h_q], empty [s_q, h_q])``: ``o`` normalised by its own sum (0 where
      empty), ``lse = log(sum exp(scale * score))`` over the valid tokens (undefined where empty).
    """
    s_q, h_q, d = q_r.shape
    h_k = keys.shape[2]
    group = h_q // h_k  # query head h reads kv head h // group
    qg = q_r.reshape(s_q, h_k, group, d)
    hi = lax.Precision.HIGHEST
    scores = scale * jnp.einsum("skgd,stkd->skgt", qg, keys, precision=hi).reshape(s_q, h_q, -1)
    mask = valid[:, None, :]
    scores = jnp.where(mask, scores, -jnp.inf)
    row_max = jnp.max(scores, axis=-1)
    row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
    p = jnp.where(mask, jnp.exp(scores - row_max[..., None]), 0.0)
    row_sum = jnp.sum(p, axis=-1)
    empty = row_sum == 0.0
    pv = jnp.einsum("skgt,stkv->skgv", p.reshape(s_q, h_k, group, -1), keys[..., :head_dim_v], precision=hi)
    o = pv.reshape(s_q, h_q, head_dim_v) / jnp.where(empty, 1.0, row_sum)[..., None]
    lse = row_max + jnp.log(jnp.where(empty, 1.0, row_sum))
    return jnp.where(empty[..., None], 0.0, o), lse, empty


_STATIC = ("head_dim_v", "softmax_scale", "causal", "layout")


def _check_statics(head_dim_v, softmax_scale, causal, layout) -> None:
    """The static arguments, checked before jax.jit hashes them (an unhashable one would otherwise fail there with
    a message that does not name it)."""
    if isinstance(head_dim_v, (bool, np.bool_)) or not isinstance(head_dim_v, (int, np.integer)):
        raise TypeError(f"head_dim_v must be a Python int, got {type(head_dim_v).__name__}")
    if softmax_scale is not None:
        if isinstance(softmax_scale, (bool, np.bool_)) or not isinstance(softmax_scale, (int, float, np.integer,
                                                                                          np.floating)):
            raise TypeError(f"softmax_scale must be None (d ** -0.5) or a Python float, got "
                            f"{type(softmax_scale).__name__}; it is static: pass a number, not an array")
        try:
            finite = math.isfinite(float(softmax_scale))
        except OverflowError:
            finite = False
        if not finite:
            raise ValueError(f"softmax_scale must be finite, got {softmax_scale}")
    as_bool("causal", causal)
    check_layout(layout)


def _jit_checking_statics(fn):
    """``jax.jit(fn)`` with :data:`_STATIC` static, checked by :func:`_check_statics` before each call."""
    jitted = jax.jit(fn, static_argnames=_STATIC)
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:   # a missing or unknown argument: Python's own message, from the call itself
            return jitted(*args, **kwargs)
        bound.apply_defaults()
        _check_statics(**{name: bound.arguments[name] for name in _STATIC})
        return jitted(*args, **kwargs)

    for name in ("lower", "trace", "eval_shape"):   # what a jitted function offers, unchecked
        if hasattr(jitted, name):
            setattr(call, name, getattr(jitted, name))
    return call


@_jit_checking_statics
def flash_mla_with_kvcache(
    q: jax.Array,
    k_cache: jax.Array,
    block_table: jax.Array | None,
    cache_seqlens: jax.Array,
    head_dim_v: int,
    tile_scheduler_metadata: jax.Array,
    num_splits: jax.Array,
    softmax_scale: float | None = None,
    causal: bool = False,
    *,
    layout: Layout = "2025",
    indices: jax.Array | None = None,
    topk_length: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """FlashMLA's split-KV MLA decode, computed part by part from the scheduler metadata (jitted; metadata traced).

    Args:
      q: float ``[B, s_q, h_q, d]``; query head ``h`` reads kv head ``h // (h_q // h_k)``.
      k_cache: float ``[num_pages, 64, h_k, d]``, the paged KV cache; V is its first ``head_dim_v`` channels.
      block_table: integer ``[B, max_pages]``: token ``t`` of request ``b`` lives at
        ``k_cache[block_table[b, t // 64], t % 64]`` (dense mode; ignored, may be None, in sparse mode).
      cache_seqlens: integer ``[B]``, the KV length of each request (dense mode; in sparse mode it only gives B).
      head_dim_v: static, ``1 <= head_dim_v <= d``.
      tile_scheduler_metadata: int32 ``[P, 8]`` in ``layout`` (see :mod:`jax_mla_meta.layouts`).
      num_splits: int32 ``[B + 1]``.
      softmax_scale: static Python float; default ``d ** -0.5``.
      causal: static; dense mode with ``s_q > 1``: query token ``i`` sees only ``t <= cache_seqlens[b] - s_q + i``.
        Ignored in sparse mode.
      layout: ``"2025"`` or ``"2026"``. Split-ness of a row: 2025, ``num_splits[r + 1] - num_splits[r] > 1``;
        2026, ``is_first_req_splitted`` for ``begin_req``, else ``is_last_req_splitted`` for ``end_req``, else no.
      indices: integer ``[B, s_q, topk]`` selects sparse mode: query ``(b, i)`` attends to the tokens at flat
        positions ``indices[b, i, j]`` of ``k_cache.reshape(num_pages * 64, h_k, d)``; a value outside
        ``[0, num_pages * 64)`` (such as -1) is no token.
      topk_length: integer ``[B]`` (sparse mode): only ``j < topk_length[b]`` count (default: all ``topk``).

    Returns:
      ``(out float32 [B, s_q, h_q, head_dim_v], softmax_lse float32 [B, h_q, s_q])``, ``lse`` in natural log of
      ``sum exp(softmax_scale * q.k)``. A row with no token to attend to gives output 0 and lse +inf.

    The metadata is read as FlashMLA's kernels read it: parts with ``begin_req`` outside ``[0, B)`` do nothing
    (2025's idle parts have -1, 2026's have B); otherwise rows ``begin_req .. min(end_req, B - 1)`` are processed,
    from block ``begin_block`` (row ``begin_req``) or 0, up to ``end_block`` exclusive (row ``end_req``, taken at
    face value) or the row's last block. A block is 64 positions of the row's cost length: KV tokens (dense) or
    index-list positions (sparse), as :mod:`jax_mla_meta.costs` counts them.

    Raises:
      ValueError / TypeError naming the argument for inconsistent static shapes, dtypes or layout.
    """
    _validate(q, k_cache, block_table, cache_seqlens, head_dim_v, tile_scheduler_metadata, num_splits, indices,
              topk_length, layout)
    B, s_q, h_q, d = q.shape
    num_pages, _, h_k, _ = k_cache.shape
    P = tile_scheduler_metadata.shape[0]
    num_slots = B + P  # a valid schedule uses at most num_splits[B] <= B + P - 1 slots
    scale = float(d ** -0.5 if softmax_scale is None else softmax_scale)
    sparse = indices is not None

    q32 = q.astype(jnp.float32)
    kv = k_cache.astype(jnp.float32)
    seqlens = cache_seqlens.astype(jnp.int32)
    meta = tile_scheduler_metadata
    splits = num_splits
    col = COLUMNS[layout]

    if sparse:
        indices = indices.astype(jnp.int32)
        topk = indices.shape[2]
        kv_flat = kv.reshape(num_pages * BLOCK_SIZE_N, h_k, d)
        cost_len = (topk_length.astype(jnp.int32) if topk_length is not None
                    else jnp.full((B,), topk, jnp.int32))
        position = jnp.arange(topk, dtype=jnp.int32)  # index-list position j
    else:
        block_table = block_table.astype(jnp.int32)
        cost_len = seqlens
        position = jnp.arange(block_table.shape[1] * BLOCK_SIZE_N, dtype=jnp.int32)  # KV token t
    row_blocks = num_blocks(cost_len, BLOCK_SIZE_N)   # the scheduler's cost rule (costs.py)
    position_block = position // BLOCK_SIZE_N

    def keys_and_mask(r, begin_block, end_block):
        """Candidate tokens of request r and which of them its piece over blocks [begin_block, end_block) sees."""
        in_range = (position_block >= begin_block) & (position_block < end_block) & (position < cost_len[r])
        if sparse:
            idx = indices[r]  # [s_q, topk]
            ok = (idx >= 0) & (idx < num_pages * BLOCK_SIZE_N)
            keys = kv_flat[jnp.where(ok, idx, 0)]  # [s_q, topk, h_k, d]
            return keys, in_range[None, :] & ok
        pages = jnp.clip(block_table[r, position_block], 0, num_pages - 1)  # masked where out of range
        keys = kv[pages, position % BLOCK_SIZE_N]  # [T, h_k, d]
        valid = jnp.broadcast_to(in_range, (s_q, position.shape[0]))
        if causal and s_q > 1:
            last_visible = seqlens[r] - s_q + jnp.arange(s_q, dtype=jnp.int32)
            valid = valid & (position[None, :] <= last_visible[:, None])
        return jnp.broadcast_to(keys, (s_q,) + keys.shape), valid

    def run_piece(r, part, state):
        """Row r of one part: compute its partial attention and store it where the metadata says."""
        out, lse, o_acc, lse_acc = state
        begin_req, end_req = part[col["begin_req"]], part[col["end_req"]]
        begin_block = jnp.where(r == begin_req, part[col["begin_block"]], 0)
        end_block = jnp.where(r == end_req, part[col["end_block"]], row_blocks[r])
        if layout == "2025":
            is_split = splits[r + 1] - splits[r] > 1
        else:
            is_split = jnp.where(r == begin_req, part[col["first_split"]] != 0,
                                 (r == end_req) & (part[col["last_split"]] != 0))
        slot = splits[r] + jnp.where(r == begin_req, part[col["begin_split"]], 0)
        slot = jnp.where((slot >= 0) & (slot < num_slots), slot, num_slots)  # out of range: write dropped

        keys, valid = keys_and_mask(r, begin_block, end_block)
        o, piece_lse, empty = _partial_attention(q32[r], keys, valid, head_dim_v, scale)

        # a split row's piece goes to its slot, an unsplit row's straight to the output (the other write dropped)
        slot = jnp.where(is_split, slot, num_slots)
        row = jnp.where(is_split, B, r)
        split_lse = jnp.where(empty, -jnp.inf, piece_lse)
        final_lse = jnp.where(empty, jnp.inf, piece_lse)
        return (out.at[row].set(o, mode="drop"), lse.at[row].set(final_lse, mode="drop"),
                o_acc.at[slot].set(o, mode="drop"), lse_acc.at[slot].set(split_lse, mode="drop"))

    def run_part(p, state):
        part = meta[p]
        begin_req, end_req = part[col["begin_req"]], part[col["end_req"]]
        has_work = (begin_req >= 0) & (begin_req < B)
        first = jnp.where(has_work, begin_req, 0)
        stop = jnp.where(has_work, jnp.minimum(end_req, B - 1) + 1, 0)
        return lax.fori_loop(first, stop, lambda r, st: run_piece(r, part, st), state)

    nan = jnp.float32(jnp.nan)  # never-written memory
    state = (jnp.full((B, s_q, h_q, head_dim_v), nan), jnp.full((B, s_q, h_q), nan),
             jnp.full((num_slots, s_q, h_q, head_dim_v), nan), jnp.full((num_slots, s_q, h_q), nan))
    out, lse, o_acc, lse_acc = lax.fori_loop(0, P, run_part, state)

    # Combine, FlashMLA's formula: rows whose slot count is not 1 merge slots num_splits[r] + k, k < count.
    count = splits[1:] - splits[:-1]  # [B]
    k = jnp.arange(num_slots, dtype=jnp.int32)
    slot = splits[:-1, None] + k[None, :]  # [B, num_slots]
    member = k[None, :] < count[:, None]
    inside = (slot >= 0) & (slot < num_slots)
    slot_c = jnp.clip(slot, 0, num_slots - 1)
    read_lse = jnp.where(inside[..., None, None], lse_acc[slot_c], nan)  # a slot past the buffer: garbage
    read_o = jnp.where(inside[..., None, None, None], o_acc[slot_c], nan)
    part_lse = jnp.where(member[..., None, None], read_lse, -jnp.inf)  # [B, num_slots, s_q, h_q]
    max_lse = jnp.max(part_lse, axis=1)
    max_lse = jnp.where(max_lse == -jnp.inf, 0.0, max_lse)
    sum_exp = jnp.sum(jnp.exp(part_lse - max_lse[:, None]), axis=1)
    merged_lse = jnp.where(sum_exp == 0.0, jnp.inf, jnp.log(sum_exp) + max_lse)
    weight = jnp.exp(part_lse - merged_lse[:, None])  # 0 for non-members
    merged_o = jnp.sum(jnp.where(member[..., None, None, None], weight[..., None] * read_o, 0.0), axis=1)

    combined = (count != 1)[:, None, None]
    out = jnp.where(combined[..., None], merged_o, out)
    lse = jnp.where(combined, merged_lse, lse)
    return out, jnp.transpose(lse, (0, 2, 1))
