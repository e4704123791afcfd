"""The op under JAX transformations: vmap, padding with num_valid, loops, command buffers, several devices,
autodiff, export, jit caching, the per-row sparse inputs (topk_length, extra_topk, extra_topk_length) under jit,
vmap and export, and the FFI API version guard.

Every test runs on the CPU backend. The ones parametrised over ``dev`` also run on a CUDA device when one
exists (they skip without one, or fail under JAX_MLA_META_REQUIRE_GPU, see conftest.need_gpus). Anything that
needs XLA flags fixed before the backend starts (command buffers, forced host device counts) runs in a child
Python process; the child imports this module and runs the same check functions, so the parent only judges
the exit status and what the child wrote.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as PS

import jax_mla_meta as mm
from conftest import assert_same, need_gpus, ref
from jax_mla_meta import _ffi, reference
from jax_mla_meta.bench import GRAPH_FLAGS
from lengths import INT32_MAX, INT32_MIN, between, extra_lengths, topk_lengths

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)
TARGETS = (_ffi.CPU_TARGET, _ffi.CUDA_TARGET)
# a build without the CUDA module cannot lower for CUDA (it raises a clear error instead): export for the CPU only
EXPORT_PLATFORMS = ("cpu", "cuda") if mm.HAS_CUDA else ("cpu",)
EXPORT_TARGETS = TARGETS if mm.HAS_CUDA else tuple(t for t in TARGETS if "cpu" in t)

# The serving flags of the README (test_command_buffers.py proves capture with them on a GPU). An unknown XLA flag
# aborts the process in parse_flags_from_env, so the CPU test below would catch a typo.
COMMAND_BUFFER_FLAGS = GRAPH_FLAGS
CHILD_TIMEOUT_S = 300


# ----------------------------------------------------------------------------------------------- helpers


@pytest.fixture(params=["cpu", "gpu"])
def dev(request):
    """The device a test runs on: the first CPU device, or the first CUDA device (skip/fail without one)."""
    if request.param == "cpu":
        return jax.devices("cpu")[0]
    return need_gpus(1)[0]


def put(x, device):
    return jax.device_put(np.asarray(x, dtype=np.int32), device)


def host(*arrays):
    return tuple(np.asarray(a) for a in arrays)


def target_for(device) -> str:
    return _ffi.CUDA_TARGET if device.platform == "gpu" else _ffi.CPU_TARGET


def count_custom_calls(jitted, *args) -> tuple[int, int]:
    """(custom calls to the op in the lowered StableHLO, in the compiled HLO) of ``jitted(*args)``."""
    lowered = jitted.lower(*args)
    stablehlo = len(re.findall(r"stablehlo\.custom_call @jax_mla_meta_\w+", lowered.as_text()))
    compiled = lowered.compile().as_text().count('custom_call_target="jax_mla_meta_')
    return stablehlo, compiled


# Row lengths here are drawn with lengths.between(rng, shape, 0, MAX_LEN): next_lengths needs them below 50,000.
MAX_LEN = 40000


def next_lengths(s, splits, t):
    """Next iteration's lengths: a function of this iteration's *output*, so a loop whose op read stale
    inputs or was reordered gives different answers. Works on NumPy and JAX int32 arrays alike (no overflow:
    s < 50000, splits <= B + P)."""
    return (s * 3 + splits[1:] * 131 + t * 977 + 11) % 50000


def num_valid_at(B, t):
    """Per-iteration num_valid: shrinks with t and goes negative (clamped to 0) for long loops."""
    return B - 3 * t


def reference_loop(s0, T, P):
    """What every loop below must produce: T iterations of (schedule, next_lengths)."""
    s = np.asarray(s0, np.int64)
    metas, splitss = [], []
    for t in range(T):
        m, sp = reference.schedule(s.astype(np.int32), P, num_valid=num_valid_at(len(s), t))
        metas.append(m)
        splitss.append(sp)
        s = next_lengths(s, sp.astype(np.int64), t)
    return np.stack(metas), np.stack(splitss), s.astype(np.int32)


def fori_loop_program(T, P, kernel="auto"):
    """A jitted fori_loop: each iteration schedules lengths derived from the previous iteration's output."""

    def run(s0):
        B = s0.shape[-1]

        def body(t, carry):
            s, metas, splitss = carry
            meta, splits = mm.schedule(s, num_sm_parts=P, kernel=kernel, num_valid=num_valid_at(B, t))
            metas = lax.dynamic_update_index_in_dim(metas, meta, t, 0)
            splitss = lax.dynamic_update_index_in_dim(splitss, splits, t, 0)
            return next_lengths(s, splits, t), metas, splitss

        init = (s0, jnp.zeros((T, P, 8), jnp.int32), jnp.zeros((T, B + 1), jnp.int32))
        s, metas, splitss = lax.fori_loop(0, T, body, init)
        return metas, splitss, s

    return jax.jit(run)


def scan_program(T, P, kernel="auto"):
    """The same iteration as a lax.scan, stacking the outputs."""

    def run(s0):
        B = s0.shape[-1]

        def body(s, t):
            meta, splits = mm.schedule(s, num_sm_parts=P, kernel=kernel, num_valid=num_valid_at(B, t))
            return next_lengths(s, splits, t), (meta, splits)

        s, (metas, splitss) = lax.scan(body, s0, jnp.arange(T, dtype=jnp.int32))
        return metas, splitss, s

    return jax.jit(run)


def while_loop_program(T, P, kernel="auto"):
    """The same iteration as a lax.while_loop with a data-dependent trip count bound (T passed as an array)."""

    def run(s0, T_arr):
        B = s0.shape[-1]

        def cond(carry):
            return carry[0] < T_arr

        def body(carry):
            t, s, metas, splitss = carry
            meta, splits = mm.schedule(s, num_sm_parts=P, kernel=kernel, num_valid=num_valid_at(B, t))
            metas = lax.dynamic_update_index_in_dim(metas, meta, t, 0)
            splitss = lax.dynamic_update_index_in_dim(splitss, splits, t, 0)
            return t + 1, next_lengths(s, splits, t), metas, splitss

        init = (jnp.int32(0), s0, jnp.zeros((T, P, 8), jnp.int32), jnp.zeros((T, B + 1), jnp.int32))
        _, s, metas, splitss = lax.while_loop(cond, body, init)
        return metas, splitss, s

    jitted = jax.jit(run)
    return lambda s0: jitted(s0, jnp.int32(T))


LOOPS = {"fori_loop": fori_loop_program, "scan": scan_program, "while_loop": while_loop_program}


def check_loop(program, s0, T, P):
    got = host(*program(s0))
    want = reference_loop(np.asarray(s0), T, P)
    for t in range(T):
        assert_same((got[0][t], got[1][t]), (want[0][t], want[1][t]), f"iteration {t}")
    np.testing.assert_array_equal(got[2], want[2], err_msg="final lengths")


def shard_map_spellings() -> dict:
    """The shard_map entry points this jax has: ``jax.shard_map`` (0.7+) and/or the deprecated
    ``jax.experimental.shard_map.shard_map``. Both take ``f, mesh=, in_specs=, out_specs=``."""
    found = {}
    if hasattr(jax, "shard_map"):
        found["jax.shard_map"] = jax.shard_map
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from jax.experimental.shard_map import shard_map as experimental_shard_map
        found["jax.experimental.shard_map"] = experimental_shard_map
    except ImportError:
        pass
    return found


def check_multi_device(devices, spelling: str, B: int = 45, P: int = 9, seed: int = 0):
    """On a 2-device mesh: (a) shard_map, each device scheduling its own row; (b) plain jit with replicated
    inputs; (c) plain jit with row-sharded inputs (XLA gathers: an opaque custom call cannot be partitioned).
    Every case is compared with the reference, shard by shard, and every shard must sit on its device."""
    assert len(devices) >= 2, devices
    smap = shard_map_spellings()[spelling]
    mesh = Mesh(np.array(devices[:2]), ("x",))
    rng = np.random.default_rng(seed)
    lens = between(rng, (2, B), 0, MAX_LEN)
    lens[1, B // 2 :] = 0  # the two devices get visibly different work
    want = [ref(lens[i], P) for i in range(2)]

    def per_device(s):  # s: [1, B] on each device
        assert s.shape == (1, B), s.shape
        return mm.schedule(s, num_sm_parts=P)

    sharded = jax.device_put(lens, NamedSharding(mesh, PS("x")))
    f = jax.jit(smap(per_device, mesh=mesh, in_specs=PS("x"), out_specs=(PS("x"), PS("x"))))
    assert count_custom_calls(f, sharded) == (1, 1)
    meta, splits = f(sharded)
    assert meta.shape == (2, P, 8) and splits.shape == (2, B + 1)
    for out, part in ((meta, 0), (splits, 1)):
        shards = out.addressable_shards
        assert sorted(str(s.device) for s in shards) == sorted(str(d) for d in devices[:2])
        for shard in shards:
            row = shard.index[0].start or 0
            assert shard.data.shape[0] == 1
            assert shard.data.devices() == {shard.device}
            np.testing.assert_array_equal(np.asarray(shard.data)[0], want[row][part],
                                          err_msg=f"shard_map row {row} on {shard.device}")
    assert_same(host(meta[0], splits[0]), want[0], f"{spelling} row 0")
    assert_same(host(meta[1], splits[1]), want[1], f"{spelling} row 1")

    g = jax.jit(lambda s: mm.schedule(s, num_sm_parts=P))
    for spec, what in ((PS(), "replicated"), (PS("x"), "row-sharded")):
        x = jax.device_put(lens, NamedSharding(mesh, spec))
        meta, splits = g(x)
        for shard_m, shard_s in zip(meta.addressable_shards, splits.addressable_shards):
            rows = range(2)[shard_m.index[0]]
            assert shard_m.device == shard_s.device
            for k, row in enumerate(rows):
                assert_same((np.asarray(shard_m.data)[k], np.asarray(shard_s.data)[k]), want[row],
                            f"jit {what} row {row} on {shard_m.device}")


def run_child(code: str, env_update: dict, tmp_path, what: str = "") -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (so XLA_FLAGS apply from backend start) with this module (and the tests'
    helpers) importable; ``what`` (such as the seed of the child's inputs) opens the failure message."""
    script = tmp_path / "child.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {TESTS_DIR!r})\n"
        "import test_transforms as t\n" + textwrap.dedent(code)
    )
    env = dict(os.environ)
    env.update(env_update)
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO_DIR, env=env, capture_output=True,
                          text=True, timeout=CHILD_TIMEOUT_S)
    if proc.returncode != 0:
        head = f"{what}: " if what else ""
        pytest.fail(f"{head}child exited with {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                    f"--- stderr\n{proc.stderr[-8000:]}", pytrace=False)
    return proc


def with_xla_flags(flags: str) -> str:
    return (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()


# ------------------------------------------------------------------------------------------------ 1. vmap


@pytest.mark.parametrize("G", [1, 5])
def test_vmap_is_one_custom_call_and_bit_identical(dev, G):
    rng = np.random.default_rng(G)
    B, P = 37, 7
    lens = between(rng, (G, B), 0, MAX_LEN)
    lens[0, :3] = [0, 1, 2**31 - 1]  # zero, tiny and huge rows in the same batch
    x = put(lens, dev)
    f = jax.jit(jax.vmap(lambda s: mm.schedule(s, num_sm_parts=P)))

    jaxpr = str(jax.make_jaxpr(jax.vmap(lambda s: mm.schedule(s, num_sm_parts=P)))(x))
    assert jaxpr.count("jax_mla_meta_schedule[") == 1, jaxpr
    assert count_custom_calls(f, x) == (1, 1)
    assert f"custom_call @{target_for(dev)}(" in f.lower(x).as_text()

    meta, splits = host(*f(x))
    assert meta.shape == (G, P, 8) and splits.shape == (G, B + 1)
    for g in range(G):
        assert_same((meta[g], splits[g]), ref(lens[g], P), f"batch {g}")
    # eager vmap gives the same bits
    assert_same(host(*jax.vmap(lambda s: mm.schedule(s, num_sm_parts=P))(x)), (meta, splits), "eager vmap")


def test_vmap_in_axes_1(dev):
    rng = np.random.default_rng(1)
    B, G, P = 23, 4, 6
    lens = between(rng, (B, G), 0, MAX_LEN)  # the batch axis is the last one
    x = put(lens, dev)
    f = jax.jit(jax.vmap(lambda s: mm.schedule(s, num_sm_parts=P), in_axes=1))
    assert count_custom_calls(f, x) == (1, 1)
    meta, splits = host(*f(x))
    assert meta.shape == (G, P, 8) and splits.shape == (G, B + 1)
    for g in range(G):
        assert_same((meta[g], splits[g]), ref(lens[:, g], P), f"column {g}")


def test_nested_vmap_is_still_one_custom_call(dev):
    rng = np.random.default_rng(2)
    G1, G2, B, P = 3, 2, 19, 5
    lens = between(rng, (G1, B, G2), 0, MAX_LEN)
    x = put(lens, dev)
    inner = jax.vmap(lambda s: mm.schedule(s, num_sm_parts=P), in_axes=1)   # over G2 (axis 1 of [B, G2])
    f = jax.jit(jax.vmap(inner, in_axes=0))                                  # over G1
    assert count_custom_calls(f, x) == (1, 1)
    meta, splits = host(*f(x))
    assert meta.shape == (G1, G2, P, 8) and splits.shape == (G1, G2, B + 1)
    for i in range(G1):
        for j in range(G2):
            assert_same((meta[i, j], splits[i, j]), ref(lens[i, :, j], P), f"[{i},{j}]")


def test_vmap_over_num_valid_only(dev):
    """Unbatched seqlens, batched num_valid: the batching rule broadcasts seqlens; still one custom call."""
    rng = np.random.default_rng(3)
    B, P = 21, 4
    lens = between(rng, B, 0, MAX_LEN)
    ns = np.array([0, 1, 7, B - 1, B, -4, B + 9, -(2**31), 2**31 - 1], np.int32)
    x, n = put(lens, dev), put(ns, dev)

    closed = jax.jit(jax.vmap(lambda k: mm.schedule(x, num_sm_parts=P, num_valid=k)))
    explicit = jax.jit(jax.vmap(lambda s, k: mm.schedule(s, num_sm_parts=P, num_valid=k), in_axes=(None, 0)))
    assert count_custom_calls(closed, n) == (1, 1)
    assert count_custom_calls(explicit, x, n) == (1, 1)
    for got in (host(*closed(n)), host(*explicit(x, n))):
        assert got[0].shape == (len(ns), P, 8) and got[1].shape == (len(ns), B + 1)
        for i, k in enumerate(ns):
            assert_same((got[0][i], got[1][i]), ref(lens, P, num_valid=int(k)), f"num_valid={k}")


def test_vmap_both_batched_on_different_axes(dev):
    rng = np.random.default_rng(4)
    B, G, P = 17, 3, 5
    lens = between(rng, (B, G), 0, MAX_LEN)
    ns = np.array([B, 4, 0], np.int32)
    f = jax.jit(jax.vmap(lambda s, k: mm.schedule(s, num_sm_parts=P, num_valid=k), in_axes=(1, 0)))
    x, n = put(lens, dev), put(ns, dev)
    assert count_custom_calls(f, x, n) == (1, 1)
    meta, splits = host(*f(x, n))
    for g in range(G):
        assert_same((meta[g], splits[g]), ref(lens[:, g], P, num_valid=int(ns[g])), f"column {g}")


def test_vmap_over_empty_batch_and_empty_rows(dev):
    P = 3
    meta, splits = host(*jax.jit(jax.vmap(lambda s: mm.schedule(s, num_sm_parts=P)))(put(np.zeros((0, 6)), dev)))
    assert meta.shape == (0, P, 8) and splits.shape == (0, 7)
    meta, splits = host(*jax.jit(jax.vmap(lambda s: mm.schedule(s, num_sm_parts=P)))(put(np.zeros((4, 0)), dev)))
    for g in range(4):
        assert_same((meta[g], splits[g]), ref(np.zeros(0, np.int32), P), f"B=0 batch {g}")


# -------------------------------------------------------------------------------------- 2. num_valid padding


def test_one_executable_serves_every_num_valid(dev):
    rng = np.random.default_rng(5)
    B, P = 23, 6
    lens = between(rng, B, 0, MAX_LEN)
    x = put(lens, dev)
    f = jax.jit(lambda s, n: mm.schedule(s, num_sm_parts=P, num_valid=n))
    for n in list(range(B + 1)) + [-1, B + 1, -(2**31), 2**31 - 1]:
        meta, splits = host(*f(x, put(n, dev)))
        assert_same((meta, splits), ref(lens, P, num_valid=n), f"num_valid={n}")
        k = min(max(n, 0), B)
        assert np.all(splits[k:] == splits[k]), f"num_valid={n}: num_splits past it must repeat {splits[k]}"
        assert splits[0] == 0
    assert f._cache_size() == 1


def test_padding_values_are_never_read(dev):
    """Rows past num_valid may hold anything (huge, negative): the outputs must not change."""
    rng = np.random.default_rng(6)
    B, P, n = 40, 8, 25
    lens = between(rng, B, 0, MAX_LEN)
    f = jax.jit(lambda s, k: mm.schedule(s, num_sm_parts=P, num_valid=k))
    want = ref(lens, P, num_valid=n)
    for garbage in (0, -1, 2**31 - 1, -(2**31)):
        padded = lens.copy()
        padded[n:] = garbage
        assert_same(host(*f(put(padded, dev), put(n, dev))), want, f"padding {garbage}")
    assert f._cache_size() == 1


def test_num_valid_traced_from_the_data(dev):
    """num_valid computed inside jit (count of non-negative lengths; padding is -1), one executable."""
    rng = np.random.default_rng(7)
    B, P = 30, 5
    f = jax.jit(lambda s: mm.schedule(jnp.maximum(s, 0), num_sm_parts=P,
                                      num_valid=jnp.sum(s >= 0).astype(jnp.int32)))
    for n in (0, 1, 13, B):
        lens = np.full(B, -1, np.int32)
        lens[:n] = between(rng, n, 0, MAX_LEN)
        assert_same(host(*f(put(lens, dev))), ref(np.maximum(lens, 0), P, num_valid=n), f"n={n}")
    assert f._cache_size() == 1


# ---------------------------------------------------------------------------- 3. loops and command buffers


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_loops_with_lengths_changing_per_iteration(dev, loop):
    """The op in a jitted fori_loop / scan / while_loop, each iteration's lengths computed from the last
    iteration's num_splits and num_valid shrinking to below zero: the same as the reference iterated."""
    T, B, P = 9, 26, 7
    s0 = put(between(np.random.default_rng(8), B, 0, MAX_LEN), dev)
    check_loop(LOOPS[loop](T, P), s0, T, P)


def test_command_buffer_flags_are_accepted_and_loop_is_right_on_cpu(tmp_path):
    """The command-buffer child's loop logic without a GPU: the same flags (an unknown XLA flag would abort the
    child at start) and the same loop programs, on the CPU backend."""
    code = """
        import jax, numpy as np
        rng = np.random.default_rng(10)
        for loop in sorted(t.LOOPS):
            T, B, P = 6, 33, 9
            s0 = jax.device_put(t.between(rng, B, 0, t.MAX_LEN), jax.devices("cpu")[0])
            t.check_loop(t.LOOPS[loop](T, P), s0, T, P)
        print("OK")
    """
    proc = run_child(code, {"XLA_FLAGS": with_xla_flags(COMMAND_BUFFER_FLAGS), "JAX_PLATFORMS": "cpu"}, tmp_path)
    assert proc.stdout.strip().endswith("OK")


# ------------------------------------------------------------------------------------------ 4. several devices


@pytest.mark.parametrize("B,P", [(45, 9), (11622, 132)], ids=["warp_path", "mid_path_cluster"])
@pytest.mark.parametrize("spelling", ["jax.shard_map", "jax.experimental.shard_map"])
def test_two_gpus(spelling, B, P, two_gpus):
    """Each device runs its own kernels (the mid path's 8-CTA clusters too: their launch limits are read per
    device)."""
    devices = two_gpus
    if spelling not in shard_map_spellings():
        pytest.skip(f"{spelling} does not exist in jax {jax.__version__}")
    check_multi_device(devices[:2], spelling, B=B, P=P)


def test_two_cpu_devices_in_a_child(tmp_path):
    """The same checks on 2 forced host devices (the CPU device count is fixed when the backend starts)."""
    code = """
        import jax
        cpus = jax.devices("cpu")
        assert len(cpus) == 2, cpus
        done = []
        for spelling in sorted(t.shard_map_spellings()):
            t.check_multi_device(cpus, spelling)
            done.append(spelling)
        assert "jax.shard_map" in done or "jax.experimental.shard_map" in done
        print("OK " + ",".join(done))
    """
    env = {"XLA_FLAGS": with_xla_flags("--xla_force_host_platform_device_count=2"), "JAX_PLATFORMS": "cpu"}
    proc = run_child(code, env, tmp_path)
    assert proc.stdout.strip().splitlines()[-1].startswith("OK jax.")


# ---------------------------------------------------------------------------------------- 5. transformations


def _loss(x, s):
    meta, splits = mm.schedule(s, num_sm_parts=4)
    return jnp.sum(x * splits[:-1].astype(x.dtype)) + meta.sum().astype(x.dtype) * 0.0


def test_grad_flows_around_the_integer_metadata(dev):
    """No JVP rule is needed: the op's inputs and outputs are integers, so their tangents are symbolic zeros."""
    lens = np.array([100, 5000, 3, 0, 70000], np.int32)
    s = put(lens, dev)
    x = jax.device_put(np.linspace(-1.0, 1.0, 5).astype(np.float32), s.devices().pop())
    want = ref(lens, 4)[1][:-1].astype(np.float32)
    for grad in (jax.grad(_loss), jax.jit(jax.grad(_loss)), jax.grad(jax.checkpoint(_loss)),
                 lambda x, s: jax.value_and_grad(_loss)(x, s)[1], lambda x, s: jax.jacfwd(_loss)(x, s),
                 lambda x, s: jax.jacrev(_loss)(x, s)):
        np.testing.assert_array_equal(np.asarray(grad(x, s)), want)

    gx, gs = jax.grad(_loss, argnums=(0, 1), allow_int=True)(x, s)
    np.testing.assert_array_equal(np.asarray(gx), want)
    assert gs.dtype == jax.dtypes.float0 and gs.shape == lens.shape

    # lengths computed from x: the float->int cast cuts the tangent, the product keeps it
    def loss_from_x(x):
        s = (jnp.abs(x) * 1000).astype(jnp.int32)
        return jnp.sum(x * mm.schedule(s, num_sm_parts=4)[1][:-1].astype(x.dtype))

    s_x = (np.abs(np.asarray(x)) * 1000).astype(np.int32)
    np.testing.assert_array_equal(np.asarray(jax.grad(loss_from_x)(x)), ref(s_x, 4)[1][:-1].astype(np.float32))

    # gradient of a batch of losses, and through a scan over the op
    xs = jnp.stack([x, 2 * x])
    np.testing.assert_array_equal(np.asarray(jax.vmap(jax.grad(_loss), in_axes=(0, None))(xs, s)),
                                  np.stack([want, want]))

    def scan_loss(x, s):
        def body(c, k):
            return c + _loss(x * k, s), None

        return lax.scan(body, jnp.float32(0), jnp.arange(1, 4, dtype=x.dtype))[0]

    np.testing.assert_allclose(np.asarray(jax.jit(jax.grad(scan_loss))(x, s)), want * 6.0)


def test_jvp_and_linearize_of_the_op_itself(dev):
    lens = np.array([9, 900, 90000], np.int32)
    s = put(lens, dev)
    zero = np.zeros(lens.shape, jax.dtypes.float0)
    primals, tangents = jax.jvp(lambda s: mm.schedule(s, num_sm_parts=3), (s,), (zero,))
    assert_same(host(*primals), ref(lens, 3))
    assert all(t.dtype == jax.dtypes.float0 for t in tangents)
    out, _ = jax.linearize(lambda s: mm.schedule(s, num_sm_parts=3), s)
    assert_same(host(*out), ref(lens, 3))


def _exported(f, arg_shape):
    DC = jax.export.DisabledSafetyCheck
    return jax.export.export(jax.jit(f), platforms=EXPORT_PLATFORMS,
                             disabled_checks=[DC.custom_call(n) for n in TARGETS])(
        jax.ShapeDtypeStruct(arg_shape, jnp.int32))


def test_export_for_cpu_and_cuda_then_call(dev):
    rng = np.random.default_rng(11)
    B, G, P = 29, 3, 6
    lens = between(rng, (G, B), 0, MAX_LEN)
    f = jax.vmap(lambda s: mm.schedule(s, num_sm_parts=P))
    exp = _exported(f, (G, B))
    assert tuple(exp.platforms) == EXPORT_PLATFORMS
    text = exp.mlir_module()
    for target in EXPORT_TARGETS:
        assert len(re.findall(rf"custom_call @{target}\(", text)) == 1, target
    assert [a.shape for a in exp.out_avals] == [(G, P, 8), (G, B + 1)]
    meta, splits = host(*exp.call(put(lens, dev)))
    for g in range(G):
        assert_same((meta[g], splits[g]), ref(lens[g], P), f"exported, batch {g}")
    meta, splits = host(*jax.jit(exp.call)(put(lens, dev)))
    assert_same((meta[0], splits[0]), ref(lens[0], P), "jit(exported.call)")


def test_export_needs_the_custom_call_checks_disabled():
    with pytest.raises(ValueError, match="custom calls whose targets have no compatibility guarantees"):
        jax.export.export(jax.jit(lambda s: mm.schedule(s, num_sm_parts=2)), platforms=("cpu",))(
            jax.ShapeDtypeStruct((4,), jnp.int32))


def test_export_serialize_roundtrip(dev):
    pytest.importorskip("flatbuffers", reason="jax.export serialization needs the flatbuffers package")
    rng = np.random.default_rng(12)
    B, P = 31, 5
    DC = jax.export.DisabledSafetyCheck
    exp = jax.export.export(jax.jit(lambda s, n: mm.schedule(s, num_sm_parts=P, num_valid=n)),
                            platforms=EXPORT_PLATFORMS, disabled_checks=[DC.custom_call(n) for n in TARGETS])(
        jax.ShapeDtypeStruct((B,), jnp.int32), jax.ShapeDtypeStruct((), jnp.int32))
    blob = exp.serialize()
    assert isinstance(blob, (bytes, bytearray)) and len(blob) > 0
    back = jax.export.deserialize(bytes(blob))
    assert tuple(back.platforms) == EXPORT_PLATFORMS
    lens = between(rng, B, 0, MAX_LEN)
    for n in (0, 17, B):
        assert_same(host(*back.call(put(lens, dev), put(n, dev))), ref(lens, P, num_valid=n), f"num_valid={n}")


def test_jit_does_not_recompile_when_only_values_change(dev):
    rng = np.random.default_rng(13)
    B, P = 50, 11
    f = jax.jit(lambda s: mm.schedule(s, num_sm_parts=P))
    g = jax.jit(jax.vmap(lambda s: mm.schedule(s, num_sm_parts=P)))
    loop = fori_loop_program(3, P)
    for _ in range(4):
        lens = between(rng, B, 0, MAX_LEN)
        assert_same(host(*f(put(lens, dev))), ref(lens, P))
        assert_same(tuple(a[0] for a in host(*g(put(lens[None], dev)))), ref(lens, P))
        loop(put(lens, dev))
    assert f._cache_size() == 1 and g._cache_size() == 1 and loop._cache_size() == 1
    f(put(between(rng, B + 1, 0, MAX_LEN), dev))  # a new shape is a new executable
    assert f._cache_size() == 2


# ----------------------------------------------------------------------------------- 6. per-row sparse inputs

SPARSE_TOPK = 2048
# The per-row sparse inputs of each case: (topk_length given, extra_topk, extra_topk_length given).
PER_ROW_CASES = {
    "topk_length": (True, None, False),
    "topk_length+extra_topk": (True, 512, False),
    "topk_length+extra_topk+extra_topk_length": (True, 64, True),
    "extra_topk+extra_topk_length": (False, 512, True),
}


def per_row_inputs(rng, shape: tuple, case: str) -> tuple[dict, int | None]:
    """The case's per-row inputs of ``shape`` ([B] or [G, B]; absent ones left out) and its extra_topk."""
    with_tl, extra, with_etl = PER_ROW_CASES[case]
    *batch, B = shape
    G = int(np.prod(batch, dtype=np.int64))
    rows = {}
    if with_tl:
        rows["topk_length"] = np.stack([topk_lengths(rng, B, SPARSE_TOPK) for _ in range(G)]).reshape(shape)
    if with_etl:
        rows["extra_topk_length"] = np.stack([extra_lengths(rng, B) for _ in range(G)]).reshape(shape)
    return rows, extra


def sparse_schedule(P: int, layout: str, extra, with_num_valid: bool = False):
    """schedule(seqlens[, num_valid], rows) in sparse mode, ``rows`` a dict of the per-row inputs (a pytree that
    jit, vmap and export carry as it is)."""
    if with_num_valid:
        return lambda s, n, rows: mm.schedule(s, num_sm_parts=P, topk=SPARSE_TOPK, extra_topk=extra, num_valid=n,
                                              layout=layout, **rows)
    return lambda s, rows: mm.schedule(s, num_sm_parts=P, topk=SPARSE_TOPK, extra_topk=extra, layout=layout, **rows)


def put_rows(rows: dict, device) -> dict:
    return {k: put(v, device) for k, v in rows.items()}


@pytest.mark.parametrize("layout", ["2025", "2026"])
@pytest.mark.parametrize("case", list(PER_ROW_CASES))
def test_jit_with_per_row_sparse_inputs(dev, case, layout, rng):
    """topk_length / extra_topk / extra_topk_length through jit: one custom call, bit-identical to the reference
    (and to the eager call), and one executable for every new set of values."""
    B, P = 45, 7
    rows, extra = per_row_inputs(rng, (B,), case)
    f = jax.jit(sparse_schedule(P, layout, extra))
    x = put(between(rng, B, 0, MAX_LEN), dev)   # sparse mode: the lengths only give B
    assert count_custom_calls(f, x, put_rows(rows, dev)) == (1, 1)
    for trial in range(3):
        lens = between(rng, B, 0, MAX_LEN)
        rows, _ = per_row_inputs(rng, (B,), case)
        got = host(*f(put(lens, dev), put_rows(rows, dev)))
        what = f"{case} {layout} trial {trial} seed {rng.seed}"
        assert_same(got, ref(lens, P, SPARSE_TOPK, layout=layout, extra_topk=extra, **rows), what)
        assert_same(host(*sparse_schedule(P, layout, extra)(put(lens, dev), put_rows(rows, dev))), got,
                    f"eager vs jit, {what}")
    assert f._cache_size() == 1, f"seed {rng.seed}: recompiled for new values"


@pytest.mark.parametrize("layout", ["2025", "2026"])
@pytest.mark.parametrize("case", list(PER_ROW_CASES))
def test_vmap_with_per_row_sparse_inputs_and_num_valid(dev, case, layout, rng):
    """vmap over batches of per-row sparse inputs padded with num_valid (0, B, in between, out of range): one
    custom call, each batch bit-identical to the reference, and the rows past num_valid never read (garbage
    there, int32 limits included, changes nothing). Then vmap over num_valid alone, the per-row inputs closed
    over (the batching rule broadcasts them)."""
    G, B, P = 6, 33, 6
    lens = between(rng, (G, B), 0, MAX_LEN)
    rows, extra = per_row_inputs(rng, (G, B), case)
    nv = np.array([B, 0, int(rng.integers(1, B)), int(rng.integers(1, B)), -3, B + 5], np.int32)
    padded = {k: v.copy() for k, v in rows.items()}
    for g in range(G):
        k = min(max(int(nv[g]), 0), B)
        for v in padded.values():
            v[g, k:] = rng.choice([0, -1, INT32_MAX, INT32_MIN, 4096], B - k)
    f = jax.jit(jax.vmap(sparse_schedule(P, layout, extra, with_num_valid=True)))
    x, n = put(lens, dev), put(nv, dev)
    assert count_custom_calls(f, x, n, put_rows(padded, dev)) == (1, 1)
    meta, splits = host(*f(x, n, put_rows(padded, dev)))
    assert meta.shape == (G, P, 8) and splits.shape == (G, B + 1)
    for g in range(G):
        want = ref(lens[g], P, SPARSE_TOPK, int(nv[g]), layout=layout, extra_topk=extra,
                   **{k: v[g] for k, v in rows.items()})
        assert_same((meta[g], splits[g]), want, f"{case} {layout} batch {g} num_valid={nv[g]} seed {rng.seed}")
    assert_same(host(*f(x, n, put_rows(rows, dev))), (meta, splits),
                f"{case} {layout}: padding changed the output, seed {rng.seed}")

    one = {k: put(v[0], dev) for k, v in rows.items()}
    closed = jax.jit(jax.vmap(lambda k: sparse_schedule(P, layout, extra, with_num_valid=True)(x[0], k, one)))
    assert count_custom_calls(closed, n) == (1, 1)
    meta, splits = host(*closed(n))
    for g in range(G):
        want = ref(lens[0], P, SPARSE_TOPK, int(nv[g]), layout=layout, extra_topk=extra,
                   **{k: v[0] for k, v in rows.items()})
        assert_same((meta[g], splits[g]), want, f"{case} {layout} closed over, num_valid={nv[g]} seed {rng.seed}")


@pytest.mark.parametrize("layout", ["2025", "2026"])
@pytest.mark.parametrize("case", list(PER_ROW_CASES))
def test_export_roundtrip_with_per_row_sparse_inputs(dev, case, layout, rng):
    """A vmapped sparse schedule with per-row inputs and num_valid, exported for the CPU (and CUDA), serialized
    and deserialized: the same custom call per target, and both the exported and the deserialized program give
    the reference's bits."""
    pytest.importorskip("flatbuffers", reason="jax.export serialization needs the flatbuffers package")
    G, B, P = 3, 29, 5
    lens = between(rng, (G, B), 0, MAX_LEN)
    rows, extra = per_row_inputs(rng, (G, B), case)
    nv = np.array([B, int(rng.integers(0, B + 1)), 0], np.int32)
    DC = jax.export.DisabledSafetyCheck
    spec = lambda shape: jax.ShapeDtypeStruct(shape, jnp.int32)
    exp = jax.export.export(jax.jit(jax.vmap(sparse_schedule(P, layout, extra, with_num_valid=True))),
                            platforms=EXPORT_PLATFORMS, disabled_checks=[DC.custom_call(t) for t in TARGETS])(
        spec((G, B)), spec((G,)), {k: spec((G, B)) for k in rows})
    text = exp.mlir_module()
    for target in EXPORT_TARGETS:
        assert len(re.findall(rf"custom_call @{target}\(", text)) == 1, f"{target} {case} {layout}"
    assert [a.shape for a in exp.out_avals] == [(G, P, 8), (G, B + 1)]
    back = jax.export.deserialize(bytes(exp.serialize()))
    assert tuple(back.platforms) == EXPORT_PLATFORMS
    for name, program in (("exported", exp.call), ("deserialized", back.call), ("jit(deserialized)",
                                                                               jax.jit(back.call))):
        meta, splits = host(*program(put(lens, dev), put(nv, dev), put_rows(rows, dev)))
        for g in range(G):
            want = ref(lens[g], P, SPARSE_TOPK, int(nv[g]), layout=layout, extra_topk=extra,
                       **{k: v[g] for k, v in rows.items()})
            assert_same((meta[g], splits[g]), want,
                        f"{name} {case} {layout} batch {g} num_valid={nv[g]} seed {rng.seed}")


# --------------------------------------------------------------------------------------- 7. FFI API versions


@pytest.mark.parametrize("built,runtime", [((0, 4), (0, 3)), ((0, 5), (0, 4)), ((1, 0), (0, 9))])
def test_check_api_version_rejects_newer_headers(built, runtime):
    with pytest.raises(ImportError) as e:
        _ffi.check_api_version("_cpu", built, runtime)
    msg = str(e.value)
    assert f"jax_mla_meta._cpu was compiled against XLA FFI API {built[0]}.{built[1]}" in msg
    assert f"provides {runtime[0]}.{runtime[1]}" in msg
    assert "--no-build-isolation" in msg and "Rebuild" in msg


def test_check_api_version_message_names_the_jaxlib_version():
    with pytest.raises(ImportError) as e:
        _ffi.check_api_version("_cuda", (0, 5), (0, 3))
    assert f"jaxlib {jax.lib.__version__} provides" in str(e.value)


@pytest.mark.parametrize("built,runtime", [((0, 3), (0, 3)), ((0, 3), (0, 4)), ((0, 1), (0, 5)),
                                           ((0, 9), (1, 0)), ((0, 5), None)])
def test_check_api_version_accepts_equal_or_older(built, runtime):
    _ffi.check_api_version("_cpu", built, runtime)  # no exception


def test_runtime_ffi_api_version_matches_the_installed_headers():
    got = _ffi.runtime_ffi_api_version()
    assert isinstance(got, tuple) and len(got) == 2 and all(isinstance(v, int) for v in got)
    with open(os.path.join(jax.ffi.include_dir(), "xla", "ffi", "api", "c_api.h"), encoding="utf-8") as fh:
        header = fh.read()
    major = int(re.search(r"^#define XLA_FFI_API_MAJOR (\d+)", header, re.M).group(1))
    minor = int(re.search(r"^#define XLA_FFI_API_MINOR (\d+)", header, re.M).group(1))
    assert got == (major, minor)
    # README "Versions": jaxlib 0.10 ships API 0.3, 0.11 ships 0.4, 0.12 ships 0.5
    known = {(0, 10): (0, 3), (0, 11): (0, 4), (0, 12): (0, 5)}
    jaxlib_minor = tuple(int(v) for v in jax.lib.__version__.split(".")[:2])
    if jaxlib_minor in known:
        assert got == known[jaxlib_minor]
    # the loaded modules passed the guard: built against headers no newer than these
    assert tuple(_ffi._cpu.ffi_api_version) <= got
    if _ffi._cuda is not None:
        assert tuple(_ffi._cuda.ffi_api_version) <= got


def test_runtime_ffi_api_version_without_headers(monkeypatch, tmp_path):
    monkeypatch.setattr(jax.ffi, "include_dir", lambda: str(tmp_path))
    assert _ffi.runtime_ffi_api_version() is None
    (tmp_path / "xla" / "ffi" / "api").mkdir(parents=True)
    (tmp_path / "xla" / "ffi" / "api" / "c_api.h").write_text("#define XLA_FFI_API_MAJOR 0\n")
    assert _ffi.runtime_ffi_api_version() is None
    (tmp_path / "xla" / "ffi" / "api" / "c_api.h").write_text(
        "#define XLA_FFI_API_MAJOR 2\n#define XLA_FFI_API_MINOR 17\n")
    assert _ffi.runtime_ffi_api_version() == (2, 17)
