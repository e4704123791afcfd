"""Shared fixtures: the backends every parity test runs on, seeded random generators, and the `gpu` marker.

* Backends: "cpu" always runs; "gpu-auto", "gpu-smem" and "gpu-low_smem" need a CUDA device: they skip without
  one, and fail instead when JAX_MLA_META_REQUIRE_GPU is set (1 = one GPU needed, 2 = two GPUs). Every test that
  can touch a GPU carries the `gpu` marker, applied here at collection: a test parametrised with a "gpu..." value
  (a gpu-* backend, the `dev` / `device` fixtures' "gpu" case) or requesting one of GPU_FIXTURES (`gpus`,
  `two_gpus`). Tests get their CUDA devices from those fixtures, never by calling `need_gpus` themselves (the hook
  could not see that). ``pytest -m gpu`` runs every test written for a GPU backend; on a GPU machine some
  unmarked tests also run on the default device (a GPU there), so there run the whole suite, not ``-m "not gpu"``.
* Random inputs are fresh on every run and reproducible: the session draws a seed (or takes JAX_MLA_META_SEED),
  each test's `rng` is seeded from it and the test's id, and a failing test's report says how to rerun it.
"""

from __future__ import annotations

import os
import secrets
import zlib

import jax
import numpy as np
import pytest

import jax_mla_meta as mm
from jax_mla_meta import reference

REQUIRE_GPU = int(os.environ.get("JAX_MLA_META_REQUIRE_GPU", "0") or 0)
SESSION_SEED = int(os.environ.get("JAX_MLA_META_SEED") or secrets.randbelow(2**31))
INT32_MAX = 2**31 - 1


def pytest_report_header(config):
    return f"jax_mla_meta: random inputs seeded by JAX_MLA_META_SEED={SESSION_SEED}"


def seed_of(nodeid: str) -> int:
    """The seed of a test's generator: the session seed and the test's id."""
    return (SESSION_SEED * 1_000_003 + zlib.crc32(nodeid.encode())) % 2**63


class SeededRng:
    """A numpy Generator that knows its seed (``rng.seed``); every Generator method is available."""

    def __init__(self, seed: int):
        self.seed = seed
        self._gen = np.random.default_rng(seed)

    def __getattr__(self, name):
        return getattr(self._gen, name)

    def __repr__(self) -> str:
        return f"SeededRng(seed={self.seed})"


@pytest.fixture
def rng(request) -> SeededRng:
    return SeededRng(seed_of(request.node.nodeid))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and "rng" in getattr(item, "fixturenames", ()):
        rep.sections.append(("random inputs", f"rng seed {seed_of(item.nodeid)}; rerun with "
                             f"JAX_MLA_META_SEED={SESSION_SEED} pytest '{item.nodeid}'"))


GPU_FIXTURES = ("gpus", "two_gpus")   # the fixtures that hand a test its CUDA devices


def pytest_collection_modifyitems(config, items):
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (any(isinstance(v, str) and v.startswith("gpu") for v in params.values())
                or any(f in item.fixturenames for f in GPU_FIXTURES)):
            item.add_marker(pytest.mark.gpu)


_current_item = None   # the test being run, for need_gpus's check of its marker


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _current_item
    _current_item = item
    try:
        yield
    finally:
        _current_item = None


def gpu_devices() -> list:
    try:
        return [d for d in jax.devices() if d.platform == "gpu"]
    except RuntimeError:
        return []


def need_gpus(count: int = 1) -> list:
    """The CUDA devices, at least ``count`` of them (skip, or fail under JAX_MLA_META_REQUIRE_GPU >= count). Only
    for fixtures (`gpus`, `two_gpus`, and the "gpu" cases of `backend`, `dev` and `device`): a test that reaches it
    without the `gpu` marker fails, on any machine, so that ``-m "not gpu"`` can never hold a GPU-only test."""
    item = _current_item
    if item is not None and item.get_closest_marker("gpu") is None:
        pytest.fail(f"{item.nodeid} asks for a GPU without the gpu marker: request the `gpus` or `two_gpus` "
                    "fixture (or a \"gpu...\" parameter) instead of calling need_gpus", pytrace=False)
    devs = gpu_devices()
    if len(devs) < count:
        msg = f"needs {count} CUDA device(s), found {len(devs)}"
        if REQUIRE_GPU >= count:
            pytest.fail(msg + " (JAX_MLA_META_REQUIRE_GPU is set)")
        pytest.skip(msg)
    return devs


@pytest.fixture
def gpus() -> list:
    """The CUDA devices (skip, or fail under JAX_MLA_META_REQUIRE_GPU, without one)."""
    return need_gpus(1)


@pytest.fixture
def two_gpus() -> list:
    """At least two CUDA devices (skip without them; fail only under JAX_MLA_META_REQUIRE_GPU=2)."""
    return need_gpus(2)


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

    def put(self, x):
        return None if x is None else jax.device_put(np.asarray(x, dtype=np.int32), self.device)

    def run(self, seqlens, P, *, topk=None, num_valid=None, bs=64, F=5, layout="2025", topk_length=None,
            extra_topk=None, extra_topk_length=None):
        meta, splits = mm.schedule(self.put(seqlens), num_sm_parts=P, topk=topk, kernel=self.kernel,
                                   num_valid=self.put(num_valid), block_size_n=bs, fixed_overhead_num_blocks=F,
                                   device=self.device, layout=layout, topk_length=self.put(topk_length),
                                   extra_topk=extra_topk, extra_topk_length=self.put(extra_topk_length))
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


def ref(seqlens, P, topk=None, num_valid=None, bs=64, F=5, **kw):
    return reference.schedule(seqlens, P, bs, F, topk=topk, num_valid=num_valid, **kw)
