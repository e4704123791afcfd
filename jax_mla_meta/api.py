"""Public API: `schedule`, `get_mla_metadata` (FlashMLA's signature), `plan` and `num_sm_parts_for`.

Arguments are validated here, before anything is traced or lowered, and errors name the argument."""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from . import _ffi
from ._primitive import KERNELS, schedule_p

Kernel = Literal["auto", "smem", "low_smem"]

# Assumed for a device that is not a CUDA GPU (documented): an H100.
DEFAULT_SM_COUNT = 132
DEFAULT_COMPUTE_CAPABILITY = "9.0"
H100_OPTIN_LIMIT = 232448
H100_CLUSTER_LIMIT = 16   # measured: clusters of 16 CTAs of 1024 threads schedule on an H100


def _as_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return int(v)


def _check_kernel(kernel: str) -> int:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
    return KERNELS[kernel]


def _check_seqlens(seqlens, name: str = "seqlens"):
    if not hasattr(seqlens, "dtype") or not hasattr(seqlens, "shape"):
        if isinstance(seqlens, (list, tuple)):
            raise TypeError(
                f"{name} must be an int32 array; got a {type(seqlens).__name__}. "
                f"Convert it with jnp.asarray({name}, dtype=jnp.int32)."
            )
        raise TypeError(f"{name} must be an int32 array, got {type(seqlens).__name__}")
    if np.dtype(seqlens.dtype) != np.int32:
        raise TypeError(
            f"{name} must have dtype int32, got {np.dtype(seqlens.dtype).name}. "
            f"Convert it with {name}.astype(jnp.int32) (lengths above 2**31 - 1 cannot be represented)."
        )
    if len(seqlens.shape) < 1:
        raise ValueError(f"{name} must have rank >= 1 ([..., B]), got a scalar")
    return seqlens


def _device_of(device) -> Any:
    if device is None:
        return jax.devices()[0]
    if isinstance(device, str):
        return jax.devices(device)[0]
    return device


def device_facts(device=None) -> tuple[int, str, bool]:
    """(SM count, compute capability, is_cuda) of a device; a non-CUDA device is taken as an H100."""
    d = _device_of(device)
    sm = getattr(d, "core_count", None)
    cc = getattr(d, "compute_capability", None)
    if getattr(d, "platform", None) == "gpu" and sm and cc:
        return int(sm), str(cc), True
    return DEFAULT_SM_COUNT, DEFAULT_COMPUTE_CAPABILITY, False


def num_sm_parts_for(
    num_q_tokens_per_head_k: int,
    num_heads_k: int,
    num_heads_q: int | None = None,
    is_fp8_kvcache: bool = False,
    topk: int | None = None,
    *,
    sm_count: int = DEFAULT_SM_COUNT,
    compute_capability: str = DEFAULT_COMPUTE_CAPABILITY,
) -> int:
    """num_sm_parts exactly as FlashMLA's get_attn_impl_meta (SPEC.md section 4)."""
    q = _as_int("num_q_tokens_per_head_k", num_q_tokens_per_head_k, 1)
    h_k = _as_int("num_heads_k", num_heads_k, 1)
    sm = _as_int("sm_count", sm_count, 1)
    try:
        major = int(str(compute_capability).split(".")[0])
    except ValueError:
        raise ValueError(f"compute_capability must look like '9.0', got {compute_capability!r}") from None
    sparse = topk is not None
    hint = " Pass num_sm_parts=... explicitly to schedule anyway."
    if sparse:
        _as_int("topk", topk, 0)
        if num_heads_q is None:
            raise ValueError("sparse mode (topk given) needs num_heads_q." + hint)
        h_q = _as_int("num_heads_q", num_heads_q, 1)
        if h_q % h_k:
            raise ValueError(f"num_heads_q ({h_q}) must be a multiple of num_heads_k ({h_k})")
        s_q = q * h_k // h_q
        if s_q < 1:
            raise ValueError(
                f"num_q_tokens_per_head_k ({q}) must be at least num_heads_q // num_heads_k ({h_q // h_k}) "
                "in sparse mode (it is seq_len_q * num_heads_q // num_heads_k)"
            )
        g = h_q // h_k
        if not is_fp8_kvcache:
            raise ValueError("FlashMLA supports sparse attention only with an fp8 KV cache (is_fp8_kvcache=True)." + hint)
        if major == 9:
            return max((sm // 2) // h_k // (-(-g // 128) * s_q), 1)
        if major == 10:
            return max(sm // h_k // (-(-g // 64) * s_q), 1)
        raise ValueError(f"FlashMLA's sparse fp8 decoding supports SM90 and SM100, not compute capability {compute_capability}." + hint)
    if is_fp8_kvcache:
        raise ValueError("FlashMLA supports dense decoding only with a bf16 KV cache (is_fp8_kvcache=False)." + hint)
    if major != 9:
        raise ValueError(f"FlashMLA's dense decoding supports SM90 only, not compute capability {compute_capability}." + hint)
    return max(sm // h_k // -(-q // 64), 1)


def _check_static(num_sm_parts, block_size_n, fixed_overhead_num_blocks, topk, B) -> tuple[int, int, int, int]:
    P = _as_int("num_sm_parts", num_sm_parts, 1, _ffi.MAX_PARTS)
    bs = _as_int("block_size_n", block_size_n, 1, 2**31 - 1)
    F = _as_int("fixed_overhead_num_blocks", fixed_overhead_num_blocks, 0, _ffi.MAX_OVERHEAD)
    tk = -1 if topk is None else _as_int("topk", topk, 0, 2**31 - 1)
    if B + P + 1 > _ffi.MAX_ROWS:
        raise ValueError(f"batch too large: B ({B}) + num_sm_parts ({P}) must stay below 2**31 - 1")
    return P, bs, F, tk


def _check_smem_fits(kernel: str, B: int, P: int, device, bs: int, F: int) -> None:
    """Forced "smem" must be runnable on the device: the same decision as :func:`plan` (and the handler)."""
    if kernel != "smem":
        return
    p = plan(B, P, kernel="smem", device=device, block_size_n=bs, fixed_overhead_num_blocks=F)
    if p.kernel == "error":
        raise ValueError(f"kernel='smem' cannot run on {p.device}: {p.reason}. Use kernel='auto' or 'low_smem'.")


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
):
    """Compute FlashMLA's decode-scheduler metadata.

    Args:
      seqlens: int32 array ``[..., B]``, the KV length of each row (leading dims are independent batches).
        In sparse mode (``topk`` given) only its shape matters.
      num_sm_parts: P, the number of parts (static).
      block_size_n: KV block size (64 in FlashMLA).
      fixed_overhead_num_blocks: F, the fixed cost of a piece in blocks (5 in FlashMLA).
      topk: sparse mode: every row has length ``topk``. ``None``: dense mode.
      kernel: ``"auto"`` (the CUDA handler picks "smem" when it fits the device's opt-in shared memory,
        else "low_smem"), or force ``"smem"`` / ``"low_smem"``. On the CPU there is one implementation and
        ``kernel`` is ignored.
      num_valid: optional int32 (scalar or ``[...]``, may be traced): only the first ``num_valid`` rows are
        scheduled (the rest is padding); clamped to ``[0, B]``.
      device: only used to check ``kernel="smem"`` against a CUDA device's limit (default: the default device).

    Returns:
      ``(tile_scheduler_metadata int32 [..., P, 8], num_splits int32 [..., B + 1])``.
    """
    return _bind(seqlens, num_sm_parts, block_size_n, fixed_overhead_num_blocks, topk, kernel, num_valid, device)


def _bind(seqlens, num_sm_parts, block_size_n, fixed_overhead_num_blocks, topk, kernel, num_valid, device,
          aliased=()):
    """Validate everything, then bind the primitive; ``aliased`` are the test hook's poisoned outputs."""
    seqlens = _check_seqlens(seqlens)
    *batch, B = seqlens.shape
    P, bs, F, tk = _check_static(num_sm_parts, block_size_n, fixed_overhead_num_blocks, topk, B)
    k = _check_kernel(kernel)
    _check_smem_fits(kernel, B, P, device, bs, F)
    if num_valid is None:
        nv = jnp.full(tuple(batch), B, dtype=jnp.int32)
    else:
        if not hasattr(num_valid, "dtype"):
            _as_int("num_valid", num_valid, -(2**31), 2**31 - 1)
            num_valid = np.int32(num_valid)
        if np.dtype(num_valid.dtype) != np.int32:
            raise TypeError(f"num_valid must be int32, got {np.dtype(num_valid.dtype).name}; use .astype(jnp.int32)")
        nv = jnp.broadcast_to(jnp.asarray(num_valid), tuple(batch))
    meta, splits, _ = schedule_p.bind(
        jnp.asarray(seqlens),
        nv,
        *aliased,
        num_sm_parts=P,
        block_size_n=bs,
        fixed_overhead_num_blocks=F,
        topk=tk,
        kernel=k,
    )
    return meta, splits


def get_mla_metadata(
    cache_seqlens,
    num_q_tokens_per_head_k: int,
    num_heads_k: int,
    num_heads_q: int | None = None,
    is_fp8_kvcache: bool = False,
    topk: int | None = None,
    *,
    device=None,
    num_sm_parts: int | None = None,
    kernel: Kernel = "auto",
    num_valid=None,
):
    """FlashMLA's ``get_mla_metadata``: ``num_sm_parts`` from SPEC.md section 4 and the target device.

    ``device`` defaults to the default JAX device; a non-CUDA device is taken as an H100 (132 SMs, SM90).
    Pass ``num_sm_parts`` to override. Returns ``(tile_scheduler_metadata, num_splits)``.
    """
    _check_seqlens(cache_seqlens, "cache_seqlens")
    if num_sm_parts is None:
        sm, cc, _ = device_facts(device)
        num_sm_parts = num_sm_parts_for(
            num_q_tokens_per_head_k,
            num_heads_k,
            num_heads_q,
            is_fp8_kvcache,
            topk,
            sm_count=sm,
            compute_capability=cc,
        )
    return schedule(
        cache_seqlens,
        num_sm_parts=num_sm_parts,
        topk=topk,
        kernel=kernel,
        num_valid=num_valid,
        device=device,
    )


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a call would do on a device (see :func:`plan`)."""

    device: str
    platform: str
    batch_rows: int
    num_sm_parts: int
    smem_bytes: int             # per CTA, for the smem kernel on `cluster_size` CTAs (or on the largest cluster)
    optin_limit: int | None
    max_smem_rows: int | None   # largest B the smem kernel takes at this num_sm_parts on this device
    kernel: str
    reason: str
    cluster_size: int | None = None    # CTAs per batch of the kernel that runs (None: no CUDA kernel runs)
    cluster_limit: int | None = None   # largest cluster both kernels can use on the device


def max_smem_rows(num_sm_parts: int, limit: int, cluster_limit: int = 1) -> int:
    """Largest B whose smem kernel fits ``limit`` bytes per CTA on clusters of up to ``cluster_limit`` CTAs."""
    def fits(b: int) -> bool:
        return _ffi.smem_bytes(b, num_sm_parts, cluster_limit) <= limit

    if not fits(0):
        return 0
    lo, hi = 0, 1
    while fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def plan(B: int, num_sm_parts: int, *, kernel: Kernel = "auto", device=None, block_size_n: int = 64,
         fixed_overhead_num_blocks: int = 5, topk: int | None = None) -> Plan:
    """Which kernel a call with B rows and num_sm_parts parts runs on ``device``, on how many CTAs, and why.

    The CUDA handler makes the same choice from the same formulas: each batch runs on a cluster of
    ``cluster_for(B)`` CTAs (about 4096 rows each, a power of two up to the device's largest cluster);
    "smem" when a CTA's slice fits the device's opt-in shared memory per block on such a cluster (doubled up
    to the largest if needed, and the block size is one it supports), else "low_smem", whose cluster has at
    most 8 CTAs when a CTA would otherwise hold more than 8,192 rows (``_ffi.low_smem_cluster``). A dense batch
    (``topk`` None, as in :func:`schedule`) of 1,793-12,288 rows with num_sm_parts <= 256 and block_size_n a
    power of two >= 64 runs the kernels' mid path instead, on a cluster of 512-thread CTAs with at most 2,048
    rows each where the device allows (``_ffi.midpath_cluster``; the smem kernel where its shared memory fits
    there). A low_smem batch of more than 8,192 rows per CTA also takes a chunk-sums launch before the
    cluster (dense mode) and a num_splits launch after it (``reason`` says so)."""
    B = _as_int("B", B, 0)
    P = _as_int("num_sm_parts", num_sm_parts, 1, _ffi.MAX_PARTS)
    bs = _as_int("block_size_n", block_size_n, 1)
    F = _as_int("fixed_overhead_num_blocks", fixed_overhead_num_blocks, 0, _ffi.MAX_OVERHEAD)
    if topk is not None:
        _as_int("topk", topk, 0, 2**31 - 1)
    _check_kernel(kernel)
    supported = _ffi.smem_supported(bs, F)
    d = _device_of(device)
    if getattr(d, "platform", None) != "gpu":
        need = _ffi.smem_bytes(B, P, max(_ffi.smem_cluster(B, P, H100_OPTIN_LIMIT, H100_CLUSTER_LIMIT), 1))
        return Plan(str(d), d.platform, B, P, need, None,
                    max_smem_rows(P, H100_OPTIN_LIMIT, H100_CLUSTER_LIMIT), "cpu",
                    "CPU device: the sequential CPU handler runs (kernel is ignored); smem_bytes and "
                    f"max_smem_rows are for an H100 ({H100_OPTIN_LIMIT} bytes, clusters of up to "
                    f"{H100_CLUSTER_LIMIT} CTAs)")
    limit = _ffi.optin_limit(d)
    kmax = _ffi.cluster_limit(d)
    if limit is None or kmax is None:
        return Plan(str(d), d.platform, B, P, _ffi.smem_bytes(B, P), None, None, "unavailable",
                    "the CUDA module is not built: the call cannot run on this GPU")
    ks = _ffi.smem_cluster(B, P, limit, kmax) if supported else 0
    need = _ffi.smem_bytes(B, P, ks or kmax)
    rows = max_smem_rows(P, limit, kmax) if supported else 0
    kl = _ffi.low_smem_cluster(B, kmax)

    def ctas(n: int) -> str:
        return f"{n} CTA{'s' if n != 1 else ''}"

    def fits(need: int, where: str) -> str:
        return f"needs {need} <= {limit} bytes of opt-in shared memory per CTA{where}"

    if kernel == "smem":
        if not supported:
            k, why = "error", (f"the smem kernel does not support block_size_n={bs} (a group of 32 rows could "
                               "exceed 2^31 blocks)")
        elif ks:
            k, why = "smem", f"forced; on {ctas(ks)}"
        else:
            k, why = "error", (f"it needs {need} bytes of shared memory per CTA for B={B}, num_sm_parts={P} "
                               f"even on a cluster of {kmax} CTAs, and the device allows {limit}")
    elif kernel == "low_smem":
        k, why = "low_smem", "forced"
    elif not supported:
        k, why = "low_smem", f"the smem kernel does not support block_size_n={bs}"
    elif ks:
        k, why = "smem", fits(need, f" on {ctas(ks)}")
    else:
        k, why = "low_smem", (f"smem kernel would need {need} > {limit} bytes of opt-in shared memory per CTA "
                              f"on {kmax} CTAs")
    # the handler's mid path: a dense batch on its own cluster size, where the smem kernel's shared memory fits
    km = _ffi.midpath_cluster(B, kmax)
    mid = (topk is None and k in ("smem", "low_smem") and _ffi.midpath_fits(B, P, bs)
           and (k == "low_smem" or _ffi.smem_bytes(B, P, km) <= limit))
    if mid:
        if k == "smem":
            need = _ffi.smem_bytes(B, P, km)
            why = "forced" if kernel == "smem" else fits(need, "")
        why += f"; dense: the mid path, on {ctas(km)} of 512 threads"
    elif k == "low_smem":
        why += f"; on {ctas(kl)}"
        if B > 8192 * kl:   # the handler's rows_per_rank(B, K) > kChunk (8,192, a multiple of its 32-row groups)
            why += (" with more than 8,192 rows each: a chunk-sums launch (dense mode) before the cluster and a "
                    "num_splits launch after it")
    cluster = km if mid else (ks if k == "smem" else (kl if k == "low_smem" else None))
    return Plan(str(d), d.platform, B, P, need, limit, rows, k, why, cluster, kmax)


def _schedule_into(meta_init, splits_init, seqlens, *, num_sm_parts: int, block_size_n: int = 64,
                   fixed_overhead_num_blocks: int = 5, topk: int | None = None, kernel: Kernel = "auto",
                   num_valid=None):
    """Test hook: like :func:`schedule`, but the results alias ``meta_init`` / ``splits_init``, so any element
    the handler does not write keeps its initial (poison) value."""
    aliased = (jnp.asarray(meta_init, jnp.int32), jnp.asarray(splits_init, jnp.int32))
    return _bind(seqlens, num_sm_parts, block_size_n, fixed_overhead_num_blocks, topk, kernel, num_valid, None,
                 aliased)
