"""FlashMLA's host rules: ``num_sm_parts`` P and ``fixed_overhead_num_blocks`` F for a decode step, as each producer
of the metadata computes them on the host (``docs/spec.md`` section 6). Integer division left to right;
``sm`` is the device's SM count, ``s_q`` the query tokens per request. The block size is always 64.

=====================================  ===========================================================  ==========
who (``layout``, ``scheduler``)        P                                                            F
=====================================  ===========================================================  ==========
2025, dense (SM90, bf16)               ``max(sm // h_k // ceil(q / 64), 1)``                          5
2025, sparse fp8 SM90                  ``max((sm // 2) // h_k // (ceil((h_q // h_k) / 128) * s_q), 1)``  5
2025, sparse fp8 SM100                 ``max(sm // h_k // (ceil((h_q // h_k) / 64) * s_q), 1)``      5
2026 flashmla, dense (SM90)            ``max(sm // h_k // ceil(q / 64), 1)``                          5
2026 flashmla, sparse SM90             ``max(sm // s_q // (h_q // 64), 1)``, h_q in {64, 128}        5
2026 flashmla, sparse SM100, h_q 64    ``max(sm // s_q, 1)``                                         5
  or h_q 128 with head_dim_qk 576
2026 flashmla, sparse SM100, h_q 128   ``max(sm // s_q // 2, 1)`` (DeepSeek V4, "MODEL1")            3
  with head_dim_qk 512
2026 sgl-kernel shim                   ``s_q = max(1, q // max(1, h_q // h_k))``; sparse SM100       5
  (``get_mla_decoding_metadata``)      ``max(sm // s_q, 1)``, sparse SM90
                                       ``max(sm // s_q // max(1, h_q // 64), 1)``, dense as flashmla
=====================================  ===========================================================  ==========

Here ``q = num_q_tokens_per_head_k`` (``s_q * h_q // h_k``) and, in the native rules, ``s_q = q * h_k // h_q``.
On SM100, FlashMLA 2026 skips scheduling entirely when ``topk + extra_topk <= 640`` (no split-KV); metadata computed
here is then unused. Any other combination is one FlashMLA does not support: it raises ValueError saying how to
pass ``num_sm_parts`` and ``fixed_overhead_num_blocks`` directly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from ._args import as_bool, as_int, choice, device_of

__all__ = ["DEFAULT_COMPUTE_CAPABILITY", "DEFAULT_SM_COUNT", "HostRule", "device_facts", "host_rule",
           "num_sm_parts_for"]

Scheduler = Literal["flashmla", "sgl-kernel"]
SCHEDULERS = ("flashmla", "sgl-kernel")

# Assumed for a device that is not a CUDA GPU (documented): an H100.
DEFAULT_SM_COUNT = 132
DEFAULT_COMPUTE_CAPABILITY = "9.0"


@dataclasses.dataclass(frozen=True)
class HostRule:
    """What a FlashMLA host computes before the metadata kernel runs."""

    num_sm_parts: int
    fixed_overhead_num_blocks: int
    block_size_n: int
    rule: str          # the row of the table above, in words


def device_facts(device=None) -> tuple[int, str, bool]:
    """(SM count, compute capability, is_cuda) of a device; a non-CUDA device is taken as an H100."""
    d = device_of(device)
    sm = getattr(d, "core_count", None)
    cc = getattr(d, "compute_capability", None)
    if getattr(d, "platform", None) == "gpu" and sm and cc:
        return int(sm), str(cc), True
    return DEFAULT_SM_COUNT, DEFAULT_COMPUTE_CAPABILITY, False


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def host_rule(
    num_q_tokens_per_head_k: int,
    num_heads_k: int,
    num_heads_q: int | None = None,
    is_fp8_kvcache: bool = False,
    topk: int | None = None,
    *,
    layout: str = "2025",
    scheduler: Scheduler = "flashmla",
    head_dim_qk: int | None = None,
    sm_count: int = DEFAULT_SM_COUNT,
    compute_capability: str = DEFAULT_COMPUTE_CAPABILITY,
) -> HostRule:
    """P and F as FlashMLA's host code computes them (the table in this module's docstring).

    ``layout`` picks the FlashMLA generation ("2025": ``get_attn_impl_meta`` of 2025; "2026": the hosts of every
    build since January 2026); ``scheduler`` picks who runs the metadata kernel in 2026: FlashMLA itself
    ("flashmla") or sgl-kernel's ``get_mla_decoding_metadata`` shim ("sgl-kernel"). ``head_dim_qk`` (q's last
    dim) tells DeepSeek V3.2 (576) from V4 (512) where it matters (sparse, SM100, 128 heads)."""
    q = as_int("num_q_tokens_per_head_k", num_q_tokens_per_head_k, 1)
    h_k = as_int("num_heads_k", num_heads_k, 1)
    sm = as_int("sm_count", sm_count, 1)
    fp8 = as_bool("is_fp8_kvcache", is_fp8_kvcache)
    choice("layout", layout, ("2025", "2026"))
    choice("scheduler", scheduler, SCHEDULERS)
    if not isinstance(compute_capability, str):
        raise TypeError(f"compute_capability must be a string like '9.0', got {type(compute_capability).__name__}")
    try:
        major = int(compute_capability.split(".")[0])
    except ValueError:
        raise ValueError(f"compute_capability must look like '9.0', got {compute_capability!r}") from None
    hint = (" Pass num_sm_parts=... and fixed_overhead_num_blocks=... (FlashMLA uses 5, DeepSeek V4's SM100 "
            "kernels 3) to schedule anyway.")
    sparse = topk is not None
    h_q = None
    if sparse:
        as_int("topk", topk, 0)
        if num_heads_q is None:
            raise ValueError("sparse mode (topk given) needs num_heads_q." + hint)
    if num_heads_q is not None:
        h_q = as_int("num_heads_q", num_heads_q, 1)
        if h_q % h_k:
            raise ValueError(f"num_heads_q ({h_q}) must be a multiple of num_heads_k ({h_k})." + hint)
    if head_dim_qk is not None:
        as_int("head_dim_qk", head_dim_qk, 1)
    where = f"compute capability {compute_capability}"

    def rule(P: int, F: int, words: str) -> HostRule:
        return HostRule(max(P, 1), F, 64, words)

    if not sparse:
        if fp8:
            raise ValueError("FlashMLA's split-KV dense decoding takes a bf16 KV cache (is_fp8_kvcache=False); its "
                             "dense fp8 kernels use another metadata contract." + hint)
        if major != 9:
            raise ValueError(f"FlashMLA's dense decoding runs on SM90, not {where}." + hint)
        return rule(sm // h_k // _cdiv(q, 64), 5, f"{layout} dense SM90: max(sm // h_k // ceil(q / 64), 1)")

    g = h_q // h_k
    if layout == "2025":
        s_q = q * h_k // h_q
        if s_q < 1:
            raise ValueError(f"num_q_tokens_per_head_k ({q}) must be at least num_heads_q // num_heads_k ({g}) in "
                             "sparse mode (it is seq_len_q * num_heads_q // num_heads_k)")
        if not fp8:
            raise ValueError("FlashMLA 2025 supports sparse attention only with an fp8 KV cache "
                             "(is_fp8_kvcache=True)." + hint)
        if major == 9:
            return rule((sm // 2) // h_k // (_cdiv(g, 128) * s_q), 5,
                        "2025 sparse fp8 SM90: max((sm // 2) // h_k // (ceil(h_q / h_k / 128) * s_q), 1)")
        if major == 10:
            return rule(sm // h_k // (_cdiv(g, 64) * s_q), 5,
                        "2025 sparse fp8 SM100: max(sm // h_k // (ceil(h_q / h_k / 64) * s_q), 1)")
        raise ValueError(f"FlashMLA 2025's sparse decoding supports SM90 and SM100, not {where}." + hint)

    if scheduler == "sgl-kernel":
        s_q = max(1, q // max(1, g))
        if major == 10:
            return rule(sm // s_q, 5, "2026 sgl-kernel shim, sparse SM100: max(sm // s_q, 1)")
        if major == 9:
            return rule(sm // s_q // max(1, h_q // 64), 5,
                        "2026 sgl-kernel shim, sparse SM90: max(sm // s_q // max(1, h_q // 64), 1)")
        raise ValueError(f"sgl-kernel's sparse decoding supports SM90 and SM100, not {where}." + hint)

    s_q = q * h_k // h_q
    if s_q < 1:
        raise ValueError(f"num_q_tokens_per_head_k ({q}) must be at least num_heads_q // num_heads_k ({g}) in "
                         "sparse mode (it is seq_len_q * num_heads_q // num_heads_k)")
    if major == 9:
        if h_q not in (64, 128):
            raise ValueError(f"FlashMLA's sparse SM90 decoding takes 64 or 128 query heads, got {h_q}." + hint)
        return rule(sm // s_q // (h_q // 64), 5, "2026 flashmla sparse SM90: max(sm // s_q // (h_q // 64), 1)")
    if major == 10:
        if h_q == 64:
            return rule(sm // s_q, 5, "2026 flashmla sparse SM100, 64 heads: max(sm // s_q, 1)")
        if h_q == 128:
            if head_dim_qk == 576:
                return rule(sm // s_q, 5, "2026 flashmla sparse SM100, 128 heads, d_qk 576 (V3.2): max(sm // s_q, 1)")
            if head_dim_qk == 512:
                return rule(sm // s_q // 2, 3, "2026 flashmla sparse SM100, 128 heads, d_qk 512 (V4 MODEL1): "
                            "max(sm // s_q // 2, 1), F = 3")
            raise ValueError("FlashMLA's sparse SM100 decoding with 128 query heads depends on the head dim: pass "
                             f"head_dim_qk=576 (DeepSeek V3.2) or 512 (V4), got {head_dim_qk}." + hint)
        raise ValueError(f"FlashMLA's sparse SM100 decoding takes 64 or 128 query heads, got {h_q}." + hint)
    raise ValueError(f"FlashMLA's sparse decoding supports SM90 and SM100, not {where}." + hint)


def num_sm_parts_for(
    num_q_tokens_per_head_k: int,
    num_heads_k: int,
    num_heads_q: int | None = None,
    is_fp8_kvcache: bool = False,
    topk: int | None = None,
    *,
    layout: str = "2025",
    scheduler: Scheduler = "flashmla",
    head_dim_qk: int | None = None,
    sm_count: int = DEFAULT_SM_COUNT,
    compute_capability: str = DEFAULT_COMPUTE_CAPABILITY,
) -> int:
    """``num_sm_parts`` exactly as FlashMLA's host computes it (:func:`host_rule`, which also gives F)."""
    return host_rule(num_q_tokens_per_head_k, num_heads_k, num_heads_q, is_fp8_kvcache, topk, layout=layout,
                     scheduler=scheduler, head_dim_qk=head_dim_qk, sm_count=sm_count,
                     compute_capability=compute_capability).num_sm_parts


def rule_for_device(device: Any, *args, **kwargs) -> HostRule:
    """:func:`host_rule` with the SM count and compute capability of ``device`` (a CPU device: an H100)."""
    sm, cc, _ = device_facts(device)
    return host_rule(*args, sm_count=sm, compute_capability=cc, **kwargs)
