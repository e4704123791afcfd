"""Load and soak tests: concurrent dispatch from 8 threads, memory stability over 10,000 calls, and invalid
calls in the middle of a run. Slow: skipped unless JAX_MLA_META_LOAD=1.

    JAX_MLA_META_LOAD=1 JAX_MLA_META_LOAD_SECONDS=60 python -m pytest -s -m slow tests/test_load.py

Runs on the CPU and on the first GPU (skipped without one; JAX_MLA_META_REQUIRE_GPU=1 makes that a failure).
(The CPU dry runs of the compute-sanitizer scripts are in test_sanitize_scripts.py.)"""

from __future__ import annotations

import gc
import os
import threading
import time

import jax
import numpy as np
import pytest

import jax_mla_meta as mm
from conftest import assert_same, need_gpus, ref
from lengths import between

load_only = pytest.mark.skipif(os.environ.get("JAX_MLA_META_LOAD") != "1", reason="load tests: set JAX_MLA_META_LOAD=1")

SECONDS = float(os.environ.get("JAX_MLA_META_LOAD_SECONDS", "60"))
THREADS = 8
CALLS = 10_000
HOST_GROWTH_LIMIT = 50 * 2**20      # bytes
DEVICE_GROWTH_LIMIT = 1 * 2**20     # bytes

# Row lengths: lengths.between(rng, B, 0, MAX_LEN, zeros=ZEROS), about 5% of the rows empty.
MAX_LEN, ZEROS = 200_000, 0.05

# (B, P, topk): tiny, decode, sparse MTP, near the smem threshold, past it (low_smem on a GPU), empty batch.
CONFIGS = [(1, 132, None), (512, 132, None), (2048, 66, 2048), (5000, 66, None), (20_000, 132, None), (0, 4, None)]


@pytest.fixture(params=["cpu", "gpu"])
def device(request):
    if request.param == "cpu":
        return jax.devices("cpu")[0]
    return need_gpus(1)[0]


def rss_bytes() -> int:
    """Resident set size of this process (VmRSS of /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def device_bytes(dev) -> int | None:
    stats = dev.memory_stats() if dev.platform == "gpu" else None
    return None if not stats else int(stats.get("bytes_in_use", 0))


def make_fn(dev, P, topk, kernel="auto"):
    return jax.jit(lambda s: mm.schedule(s, num_sm_parts=P, topk=topk, kernel=kernel, device=dev))


def call(f, dev, lens):
    meta, splits = f(jax.device_put(lens, dev))
    return np.asarray(meta), np.asarray(splits)


def expect_invalid_calls_fail(dev):
    """Invalid calls raise the documented Python error before anything runs."""
    with pytest.raises(TypeError, match="int32"):
        mm.schedule(jax.device_put(np.ones(64, np.float32), dev), num_sm_parts=4)
    with pytest.raises(TypeError, match="int32"):
        mm.schedule(np.ones(64, np.int64), num_sm_parts=4)
    with pytest.raises(ValueError, match="num_sm_parts"):
        mm.schedule(jax.device_put(np.ones(64, np.int32), dev), num_sm_parts=0)
    if dev.platform == "gpu":
        B = mm.plan(0, 132, device=dev).max_smem_rows + 1
        with pytest.raises(ValueError, match="smem"):
            mm.schedule(jax.device_put(np.ones(B, np.int32), dev), num_sm_parts=132, kernel="smem", device=dev)


@pytest.mark.slow
@load_only
def test_concurrent_dispatch(device):
    """8 threads call jitted schedules of several shapes with fresh inputs for SECONDS; every result is checked
    against the reference; halfway through, the main thread makes invalid calls, and the load carries on."""
    fns = {(B, P, tk): make_fn(device, P, tk) for B, P, tk in CONFIGS}
    for (B, P, tk), f in fns.items():                      # compile outside the timed run
        lens = between(np.random.default_rng(0), B, 0, MAX_LEN, zeros=ZEROS)
        assert_same(call(f, device, lens), ref(lens, P, tk), f"warm-up B={B} P={P}")
    errors: list[str] = []
    counts = [0] * THREADS
    deadline = time.monotonic() + SECONDS
    start = threading.Barrier(THREADS + 1)

    def worker(t: int) -> None:
        rng = np.random.default_rng(1000 + t)
        start.wait()
        while time.monotonic() < deadline and not errors:
            B, P, tk = CONFIGS[int(rng.integers(len(CONFIGS)))]
            lens = between(rng, B, 0, MAX_LEN, zeros=ZEROS)
            try:
                assert_same(call(fns[(B, P, tk)], device, lens), ref(lens, P, tk), f"thread {t} B={B} P={P}")
            except Exception as e:  # noqa: BLE001 - any failure is reported by the main thread
                errors.append(f"thread {t}: {type(e).__name__}: {e}")
                return
            counts[t] += 1

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(THREADS)]
    for th in threads:
        th.start()
    start.wait()
    time.sleep(SECONDS / 2)
    expect_invalid_calls_fail(device)                      # while the other threads keep dispatching
    for th in threads:
        th.join(SECONDS + 120)
    assert not any(th.is_alive() for th in threads), "a worker thread hung"
    print(f"\n[{device}] {sum(counts)} checked calls in {SECONDS:.0f} s from {THREADS} threads: {counts}")
    assert not errors, errors[:3]
    assert all(c > 0 for c in counts), counts


@pytest.mark.slow
@load_only
def test_memory_is_stable_over_many_calls(device):
    """10,000 calls (rotating through 32 inputs, each result checked): host RSS and device bytes_in_use do not
    grow, after a warm-up."""
    rng = np.random.default_rng(7)
    B, P = 4096, 132
    pool = [between(rng, B, 0, MAX_LEN, zeros=ZEROS) for _ in range(32)]
    want = [ref(x, P) for x in pool]
    f = make_fn(device, P, None)
    for i in range(300):                                   # warm-up: compile, allocator pools, caches
        call(f, device, pool[i % len(pool)])
    gc.collect()
    rss0, dev0 = rss_bytes(), device_bytes(device)
    t0 = time.perf_counter()
    for i in range(CALLS):
        got = call(f, device, pool[i % len(pool)])
        if not (np.array_equal(got[0], want[i % len(pool)][0]) and np.array_equal(got[1], want[i % len(pool)][1])):
            assert_same(got, want[i % len(pool)], f"call {i}")
    dt = time.perf_counter() - t0
    del got
    gc.collect()
    rss1, dev1 = rss_bytes(), device_bytes(device)
    print(f"\n[{device}] {CALLS} calls in {dt:.1f} s ({1e6 * dt / CALLS:.0f} us/call incl. transfers): "
          f"host RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB ({(rss1 - rss0) / 2**20:+.2f} MiB)"
          + ("" if dev0 is None else f"; device bytes_in_use {dev0} -> {dev1} ({dev1 - dev0:+d} B)"))
    assert rss1 - rss0 < HOST_GROWTH_LIMIT, f"host RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB"
    if dev0 is not None:
        assert dev1 - dev0 < DEVICE_GROWTH_LIMIT, f"device bytes_in_use grew by {dev1 - dev0} bytes"


@pytest.mark.slow
@load_only
def test_invalid_calls_leave_later_calls_working(device):
    """A run of valid calls, invalid ones in the middle, then valid calls again (the same executables)."""
    rng = np.random.default_rng(11)
    fns = {(B, P, tk): make_fn(device, P, tk) for B, P, tk in CONFIGS}
    for phase in range(3):
        if phase == 1:
            expect_invalid_calls_fail(device)
            continue
        for _ in range(50):
            B, P, tk = CONFIGS[int(rng.integers(len(CONFIGS)))]
            lens = between(rng, B, 0, MAX_LEN, zeros=ZEROS)
            assert_same(call(fns[(B, P, tk)], device, lens), ref(lens, P, tk), f"phase {phase} B={B} P={P}")
    if device.platform == "gpu":                           # the forced smem kernel still runs where it fits
        B = mm.plan(0, 132, device=device).max_smem_rows
        lens = between(rng, B, 0, MAX_LEN, zeros=ZEROS)
        assert_same(call(make_fn(device, 132, None, "smem"), device, lens), ref(lens, 132), "smem at its limit")
