"""The real workloads of SPEC.md section 6, as seeded generators (used by tests, the benchmark and the CLI)."""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Workload", "lengths", "spec_workloads", "PRESETS"]

TOPK = 2048          # DeepSeek V3.2 sparse attention
P_DENSE = 132        # dense decode, 16 heads per rank, H100
P_DENSE_H128 = 66    # dense decode, 128 heads, H100
P_SPARSE = 66        # sparse fp8, H100


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    B: int
    dist: str            # length distribution, see lengths()
    mode: str            # "dense" or "sparse"
    num_sm_parts: int

    @property
    def topk(self) -> int | None:
        return TOPK if self.mode == "sparse" else None

    def seqlens(self, seed: int = 0) -> np.ndarray:
        return lengths(self.dist, self.B, seed)

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
        raise ValueError(f"unknown length distribution {dist!r}")
    return np.asarray(x, dtype=np.int32)


def spec_workloads(max_B: int | None = None) -> list[Workload]:
    """Every workload row of SPEC.md section 6 (both modes where the table lists both)."""
    W = Workload
    rows = [
        W("tiny decode", 1, "const4096", "dense", P_DENSE),
        W("tiny decode", 1, "const4096", "sparse", P_SPARSE),
        W("small decode", 32, "uniform1k8k", "dense", P_DENSE),
        W("small decode", 32, "uniform1k8k", "sparse", P_SPARSE),
        W("graph-max decode h16", 512, "lognormal", "dense", P_DENSE),
        W("graph-max decode h128", 512, "lognormal", "dense", P_DENSE_H128),
        W("MTP verify", 2048, "causal2048", "sparse", P_SPARSE),
        W("prefill chunk", 8192, "causal", "sparse", P_SPARSE),
        W("threshold", 11622, "causal", "dense", P_DENSE),
        W("threshold", 11623, "causal", "dense", P_DENSE),
        W("threshold", 11622, "causal", "sparse", P_SPARSE),
        W("threshold", 11623, "causal", "sparse", P_SPARSE),
        W("pure-TP prefill", 16384, "causal", "sparse", P_SPARSE),
        W("combine-grid", 65535, "causal", "sparse", P_SPARSE),
        W("combine-grid", 65536, "causal", "sparse", P_SPARSE),
        W("long extend", 131072, "arange2048", "sparse", P_SPARSE),
        W("long extend", 131072, "arange2048", "dense", P_DENSE),
        W("stress", 1048576, "stress", "dense", P_DENSE),
        W("stress", 1048576, "stress", "sparse", P_SPARSE),
    ]
    return [w for w in rows if max_B is None or w.B <= max_B]


# CLI presets: name -> (B, dist, mode, num_heads_q, num_heads_k, num_q_tokens_per_head_k)
PRESETS = {
    "pure-tp-prefill": (16384, "causal", "sparse", 128, 1, 128),
    "tiny-decode": (1, "const4096", "dense", 16, 1, 16),
    "small-decode": (32, "uniform1k8k", "dense", 16, 1, 16),
    "graph-max-decode": (512, "lognormal", "dense", 16, 1, 16),
    "mtp-verify": (2048, "causal2048", "sparse", 128, 1, 128),
    "prefill-chunk": (8192, "causal", "sparse", 128, 1, 128),
    "combine-grid": (65536, "causal", "sparse", 128, 1, 128),
    "long-extend": (131072, "arange2048", "sparse", 128, 1, 128),
    "stress": (1048576, "stress", "dense", 16, 1, 16),
}
