"""The real workloads of docs/spec.md section 8, as seeded generators: one :class:`Workload` type for the tests,
the benchmark and the command line (whose presets are named workloads)."""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["DISTS", "PRESETS", "TOPK", "Workload", "lengths", "spec_workloads"]

TOPK = 2048          # DeepSeek V3.2 sparse attention
DISTS = ("const4096", "uniform1k8k", "lognormal", "causal", "causal2048", "arange2048", "stress")


@dataclasses.dataclass(frozen=True)
class Workload:
    """A decode step's batch: how many rows, how long, and the attention shape that sets num_sm_parts."""

    name: str
    B: int
    dist: str                    # length distribution, see lengths()
    mode: str                    # "dense" or "sparse"
    num_heads_q: int = 16
    num_heads_k: int = 1
    num_q_tokens_per_head_k: int = 16
    topk: int | None = None      # sparse mode: the top-k (TOPK when None)

    def __post_init__(self):
        if self.mode not in ("dense", "sparse"):
            raise ValueError(f"mode must be 'dense' or 'sparse', got {self.mode!r}")
        if self.dist not in DISTS:
            raise ValueError(f"unknown length distribution {self.dist!r}; choose from {', '.join(DISTS)}")
        if self.mode == "sparse" and self.topk is None:
            object.__setattr__(self, "topk", TOPK)
        if self.mode == "dense" and self.topk is not None:
            raise ValueError("topk applies only to sparse workloads")

    @property
    def is_fp8_kvcache(self) -> bool:
        return self.mode == "sparse"   # FlashMLA 2025: sparse decoding needs an fp8 cache, dense a bf16 one

    @property
    def num_sm_parts(self) -> int:
        """P on an H100 by FlashMLA's 2025 host rule (the table of docs/spec.md section 8)."""
        from .host_rules import num_sm_parts_for

        return num_sm_parts_for(self.num_q_tokens_per_head_k, self.num_heads_k, self.num_heads_q,
                                self.is_fp8_kvcache, self.topk)

    def seqlens(self, seed: int = 0) -> np.ndarray:
        return lengths(self.dist, self.B, seed)

    def topk_length(self, seed: int = 0) -> np.ndarray:
        """Per-row top-k counts uniform in [0, topk] (the benchmark's per-row sparse cases)."""
        return np.random.default_rng(seed + 1).integers(0, self.topk + 1, self.B).astype(np.int32)

    @property
    def label(self) -> str:
        return f"{self.name} B={self.B} {self.mode} P={self.num_sm_parts}"


def _causal_expanded(B: int, rng: np.random.Generator, clamp: int | None) -> np.ndarray:
    """Rows of requests with KV length L and q new tokens: L-q+1 .. L (one row per query token)."""
    out = [np.zeros(0, dtype=np.int64)]
    left = B
    while left > 0:
        q = int(min(left, rng.integers(1, max(2, B // 4) + 1)))
        L = q + int(rng.integers(0, 16384))
        out.append(np.arange(L - q + 1, L + 1, dtype=np.int64))
        left -= q
    x = np.concatenate(out)[:B]
    if clamp is not None:
        x = np.minimum(x, clamp)
    return x.astype(np.int32)


def lengths(dist: str, B: int, seed: int = 0) -> np.ndarray:
    """int32 lengths of B rows for a named distribution."""
    rng = np.random.default_rng(seed)
    if dist == "const4096":
        x = np.full(B, 4096)
    elif dist == "uniform1k8k":
        x = rng.integers(1024, 8193, B)
    elif dist == "lognormal":   # median 4k, max 128k, 5% zeros
        x = np.minimum(rng.lognormal(np.log(4096), 1.0, B), 131072).astype(np.int64)
        x[rng.random(B) < 0.05] = 0
    elif dist == "causal":
        return _causal_expanded(B, rng, None)
    elif dist == "causal2048":
        return _causal_expanded(B, rng, 2048)
    elif dist == "arange2048":
        x = np.minimum(np.arange(1, B + 1), 2048)
    elif dist == "stress":      # 1% zeros, 1% 128k rows, the rest uniform 1..8k
        x = rng.integers(1, 8193, B)
        u = rng.random(B)
        x[u < 0.01] = 0
        x[(u >= 0.01) & (u < 0.02)] = 131072
    else:
        raise ValueError(f"unknown length distribution {dist!r}; choose from {', '.join(DISTS)}")
    return np.asarray(x, dtype=np.int32)


W = Workload
_DENSE16 = dict(num_heads_q=16, num_heads_k=1, num_q_tokens_per_head_k=16)     # P = 132 on an H100
_DENSE128 = dict(num_heads_q=128, num_heads_k=1, num_q_tokens_per_head_k=128)  # P = 66
_SPARSE = dict(num_heads_q=128, num_heads_k=1, num_q_tokens_per_head_k=128)    # DeepSeek V3.2 fp8: P = 66

SPEC_WORKLOADS = (
    W("tiny decode", 1, "const4096", "dense", **_DENSE16),
    W("tiny decode", 1, "const4096", "sparse", **_SPARSE),
    W("small decode", 32, "uniform1k8k", "dense", **_DENSE16),
    W("small decode", 32, "uniform1k8k", "sparse", **_SPARSE),
    W("graph-max decode h16", 512, "lognormal", "dense", **_DENSE16),
    W("graph-max decode h128", 512, "lognormal", "dense", **_DENSE128),
    W("MTP verify", 2048, "causal2048", "sparse", **_SPARSE),
    W("prefill chunk", 8192, "causal", "sparse", **_SPARSE),
    W("threshold", 11622, "causal", "dense", **_DENSE16),
    W("threshold", 11623, "causal", "dense", **_DENSE16),
    W("threshold", 11622, "causal", "sparse", **_SPARSE),
    W("threshold", 11623, "causal", "sparse", **_SPARSE),
    W("pure-TP prefill", 16384, "causal", "sparse", **_SPARSE),
    W("combine-grid", 65535, "causal", "sparse", **_SPARSE),
    W("combine-grid", 65536, "causal", "sparse", **_SPARSE),
    W("long extend", 131072, "arange2048", "sparse", **_SPARSE),
    W("long extend", 131072, "arange2048", "dense", **_DENSE16),
    W("stress", 1048576, "stress", "dense", **_DENSE16),
    W("stress", 1048576, "stress", "sparse", **_SPARSE),
)


def spec_workloads(max_B: int | None = None) -> list[Workload]:
    """Every workload row of docs/spec.md section 8 (both modes where the table lists both)."""
    return [w for w in SPEC_WORKLOADS if max_B is None or w.B <= max_B]


# The command line's presets: named workloads (pure-tp-prefill is the original crash).
PRESETS = {
    "pure-tp-prefill": W("pure-tp-prefill", 16384, "causal", "sparse", **_SPARSE),
    "tiny-decode": W("tiny-decode", 1, "const4096", "dense", **_DENSE16),
    "small-decode": W("small-decode", 32, "uniform1k8k", "dense", **_DENSE16),
    "graph-max-decode": W("graph-max-decode", 512, "lognormal", "dense", **_DENSE16),
    "mtp-verify": W("mtp-verify", 2048, "causal2048", "sparse", **_SPARSE),
    "prefill-chunk": W("prefill-chunk", 8192, "causal", "sparse", **_SPARSE),
    "combine-grid": W("combine-grid", 65536, "causal", "sparse", **_SPARSE),
    "long-extend": W("long-extend", 131072, "arange2048", "sparse", **_SPARSE),
    "stress": W("stress", 1048576, "stress", "dense", **_DENSE16),
}
