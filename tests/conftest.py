"""Shared fixtures: the backends every parity test runs on.

"cpu" always runs. "gpu-auto", "gpu-smem" and "gpu-low_smem" need a CUDA device: they skip without one,
and fail instead when JAX_MLA_META_REQUIRE_GPU is set (1 = one GPU needed, 2 = two GPUs)."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

import jax_mla_meta as mm
from jax_mla_meta import reference

REQUIRE_GPU = int(os.environ.get("JAX_MLA_META_REQUIRE_GPU", "0") or 0)
INT32_MAX = 2**31 - 1


def gpu_devices() -> list:
    try:
        return [d for d in jax.devices() if d.platform == "gpu"]
    except RuntimeError:
        return []


def need_gpus(count: int = 1) -> list:
    devs = gpu_devices()
    if len(devs) < count:
        msg = f"needs {count} CUDA device(s), found {len(devs)}"
        if REQUIRE_GPU >= count:
            pytest.fail(msg + " (JAX_MLA_META_REQUIRE_GPU is set)")
        pytest.skip(msg)
    return devs


BACKENDS = ["cpu", "gpu-auto", "gpu-smem", "gpu-low_smem"]


class Backend:
    def __init__(self, name: str):
        self.name = name
        if name == "cpu":
            self.device = jax.devices("cpu")[0]
            self.kernel = "auto"
        else:
            self.device = need_gpus(1)[0]
            self.kernel = name.split("-", 1)[1]

    def fits(self, B: int, P: int, bs: int = 64, F: int = 5) -> bool:
        """Whether this backend can run (B, P): the smem kernel only where it fits the device and block size."""
        if self.kernel != "smem":
            return True
        return mm.plan(B, P, kernel="smem", device=self.device, block_size_n=bs,
                       fixed_overhead_num_blocks=F).kernel == "smem"

    def run(self, seqlens, P, *, topk=None, num_valid=None, bs=64, F=5):
        x = jax.device_put(np.asarray(seqlens, dtype=np.int32), self.device)
        nv = None if num_valid is None else jax.device_put(np.asarray(num_valid, np.int32), self.device)
        meta, splits = mm.schedule(x, num_sm_parts=P, topk=topk, kernel=self.kernel, num_valid=nv,
                                   block_size_n=bs, fixed_overhead_num_blocks=F, device=self.device)
        return np.asarray(meta), np.asarray(splits)


@pytest.fixture(params=BACKENDS)
def backend(request) -> Backend:
    return Backend(request.param)


def assert_same(got, want, what=""):
    gm, gs = got
    wm, ws = want
    if not np.array_equal(gm, wm):
        bad = np.argwhere(gm != wm)[:5]
        raise AssertionError(f"{what}: tile_scheduler_metadata differs at {bad.tolist()}: "
                             f"got {[gm[tuple(b)] for b in bad]}, want {[wm[tuple(b)] for b in bad]}")
    if not np.array_equal(gs, ws):
        bad = np.flatnonzero(gs != ws)[:5]
        raise AssertionError(f"{what}: num_splits differs at {bad.tolist()}: got {gs[bad]}, want {ws[bad]}")


def ref(seqlens, P, topk=None, num_valid=None, bs=64, F=5):
    return reference.schedule(seqlens, P, bs, F, topk=topk, num_valid=num_valid)


def random_lengths(rng, B):
    """B lengths of one of six kinds: long, short or negative, lognormal, with zeros, block boundaries, near INT32_MAX."""
    kind = rng.integers(0, 6)
    if kind == 0:
        return rng.integers(0, 200_000, B)
    if kind == 1:
        return rng.integers(-3, 300, B)
    if kind == 2:
        return np.minimum(rng.lognormal(8.3, 1.2, B), 131072).astype(np.int64)
    if kind == 3:
        x = rng.integers(1, 9000, B)
        x[rng.random(B) < 0.3] = 0
        return x
    if kind == 4:
        return rng.choice([0, 1, 63, 64, 65, 128, 129], B)
    return rng.integers(INT32_MAX - 1000, INT32_MAX, B, endpoint=True)
