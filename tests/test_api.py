"""Argument checking, num_sm_parts (SPEC.md section 4), plan(), get_mla_metadata."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_mla_meta as mm
from conftest import assert_same, ref


def s32(*v):
    return jnp.asarray(v, jnp.int32)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(seqlens=jnp.ones(4, jnp.int64) if jax.config.jax_enable_x64 else np.ones(4, np.int64)), TypeError, "int32.*astype"),
        (dict(seqlens=np.ones(4, np.float32)), TypeError, "dtype int32"),
        (dict(seqlens=[1, 2, 3]), TypeError, "jnp.asarray"),
        (dict(seqlens=np.int32(5)), ValueError, "rank"),
        (dict(num_sm_parts=0), ValueError, "num_sm_parts must be >= 1"),
        (dict(num_sm_parts=2.5), TypeError, "num_sm_parts must be an int"),
        (dict(block_size_n=0), ValueError, "block_size_n"),
        (dict(fixed_overhead_num_blocks=-1), ValueError, "fixed_overhead_num_blocks"),
        (dict(topk=-3), ValueError, "topk"),
        (dict(kernel="fast"), ValueError, "kernel must be one of"),
    ],
)
def test_schedule_argument_errors(kwargs, exc, match):
    args = dict(seqlens=s32(1, 2, 3), num_sm_parts=4)
    args.update(kwargs)
    seqlens = args.pop("seqlens")
    with pytest.raises(exc, match=match):
        mm.schedule(seqlens, **args)


def test_int64_lengths_message():
    with pytest.raises(TypeError, match=r"astype\(jnp.int32\)"):
        mm.schedule(np.arange(5, dtype=np.int64), num_sm_parts=2)


@pytest.mark.parametrize(
    "args,want",
    [
        # (q, h_k, h_q, fp8, topk, sm, cc) -> P ; the typical results of SPEC.md section 4
        ((16, 1, 16, False, None, 132, "9.0"), 132),          # dense decode, 16 heads per rank, H100
        ((128, 1, 128, False, None, 132, "9.0"), 66),         # dense, 128 heads
        ((128, 1, 128, True, 2048, 132, "9.0"), 66),          # DeepSeek V3.2 sparse fp8, H100
        ((64, 1, 64, True, 2048, 148, "10.0"), 148),          # sparse fp8 on B200
        ((128, 1, 128, True, 2048, 148, "10.0"), 74),         # B200 with 128 heads
        ((1, 1, 1, False, None, 132, "9.0"), 132),
        ((256, 2, 128, True, 2048, 132, "9.0"), 8),           # s_q = 4, h_k = 2: (66 // 2) // (1 * 4)
    ],
)
def test_num_sm_parts_table(args, want):
    q, hk, hq, fp8, topk, sm, cc = args
    assert mm.num_sm_parts_for(q, hk, hq, fp8, topk, sm_count=sm, compute_capability=cc) == want


@pytest.mark.parametrize(
    "args,match",
    [
        ((128, 1, 128, False, 2048, 132, "9.0"), "fp8"),        # sparse bf16
        ((16, 1, 16, True, None, 132, "9.0"), "bf16"),          # dense fp8
        ((16, 1, 16, False, None, 148, "10.0"), "SM90 only"),   # dense on SM100
        ((128, 1, 128, True, 2048, 84, "8.0"), "SM90 and SM100"),
        ((128, 3, 128, True, 2048, 132, "9.0"), "multiple"),     # h_q % h_k
        ((128, 1, None, True, 2048, 132, "9.0"), "num_heads_q"),
        ((16, 0, 16, False, None, 132, "9.0"), "num_heads_k"),
        ((0, 1, 16, False, None, 132, "9.0"), "num_q_tokens_per_head_k"),
    ],
)
def test_num_sm_parts_errors(args, match):
    q, hk, hq, fp8, topk, sm, cc = args
    with pytest.raises(ValueError, match=match) as e:
        mm.num_sm_parts_for(q, hk, hq, fp8, topk, sm_count=sm, compute_capability=cc)
    if match in ("fp8", "bf16", "SM90 only", "SM90 and SM100"):
        assert "num_sm_parts" in str(e.value)


def test_get_mla_metadata_on_cpu_assumes_h100():
    lens = np.random.default_rng().integers(1, 9000, 32).astype(np.int32)
    cpu = jax.devices("cpu")[0]
    got = mm.get_mla_metadata(jax.device_put(lens, cpu), 16, 1, device=cpu)
    assert got[0].shape == (132, 8)
    assert_same(tuple(np.asarray(v) for v in got), ref(lens, 132))
    got = mm.get_mla_metadata(jax.device_put(lens, cpu), 128, 1, 128, True, 2048, device=cpu)
    assert_same(tuple(np.asarray(v) for v in got), ref(lens, 66, 2048))
    got = mm.get_mla_metadata(jax.device_put(lens, cpu), 128, 1, 128, True, 2048, device=cpu, num_sm_parts=7)
    assert got[0].shape == (7, 8)


def test_plan_on_cpu():
    p = mm.plan(16384, 66, device=jax.devices("cpu")[0])
    # reported for an H100: 16384 rows take a cluster of 4 CTAs (about 4096 rows each)
    assert p.kernel == "cpu" and p.smem_bytes == mm.smem_bytes(16384, 66, 4) < mm.smem_bytes(16384, 66)
    # a CTA needs about 4.25 bytes per row of its slice, against the original's 20 bytes per row; a cluster of
    # 16 CTAs takes 16 slices
    assert mm.api.max_smem_rows(66, 232448) > 4 * 11622
    assert p.max_smem_rows > 16 * 50000
    assert mm.smem_bytes(p.max_smem_rows, 66, 16) <= 232448 < mm.smem_bytes(p.max_smem_rows + 1, 66, 16)


def test_cluster_size_rule():
    from jax_mla_meta import _ffi
    assert [_ffi.cluster_for(B, 16) for B in (0, 1, 4096, 4097, 8192, 8193, 65536, 65537, 10**6)] == \
        [1, 1, 1, 2, 2, 4, 16, 16, 16]
    assert _ffi.cluster_for(10**6, 8) == 8 and _ffi.cluster_for(10**6, 1) == 1
    # low_smem: at most 8 CTAs once a CTA would hold more than 8,192 rows (a wide batch)
    assert [_ffi.low_smem_cluster(B, 16) for B in (4097, 65536, 131072, 131073, 10**6, 2**20)] == \
        [2, 16, 16, 8, 8, 8]
    assert _ffi.low_smem_cluster(10**6, 4) == 4 and _ffi.low_smem_cluster(10**6, 1) == 1
    # the smem kernel takes a larger cluster when the slice does not fit, and 0 when nothing fits
    assert _ffi.smem_cluster(4096, 132, 232448, 16) == 1
    assert _ffi.smem_cluster(200000, 132, 232448, 16) == 16
    assert _ffi.smem_cluster(200000, 132, 232448, 1) == 0
    assert _ffi.smem_cluster(200000, 132, 232448, 4) == 4


def test_shapes_under_jit_and_eval_shape():
    out = jax.eval_shape(lambda s: mm.schedule(s, num_sm_parts=7), jax.ShapeDtypeStruct((3, 100), jnp.int32))
    assert out[0].shape == (3, 7, 8) and out[1].shape == (3, 101)
    assert out[0].dtype == jnp.int32 and out[1].dtype == jnp.int32


def test_jaxpr_shows_named_primitive():
    jaxpr = jax.make_jaxpr(lambda s: mm.schedule(s, num_sm_parts=3))(s32(1, 2))
    assert "jax_mla_meta_schedule" in str(jaxpr)


def test_invalid_call_leaves_later_calls_working():
    with pytest.raises(TypeError):
        mm.schedule(np.ones(3, np.float64), num_sm_parts=2)
    lens = np.array([5, 600, 70000], np.int32)
    assert_same(tuple(np.asarray(v) for v in mm.schedule(jnp.asarray(lens), num_sm_parts=4)), ref(lens, 4))


def test_missing_cuda_module_gives_a_clear_error(tmp_path):
    """A build without the CUDA module (simulated) refuses to lower for a GPU with an actionable message."""
    import subprocess
    import sys

    code = (
        "import jax, jax.numpy as jnp, jax_mla_meta as mm\n"
        "f = jax.jit(lambda s: mm.schedule(s, num_sm_parts=4))\n"
        "try:\n"
        "    jax.export.export(f, platforms=['cuda'])(jax.ShapeDtypeStruct((8,), jnp.int32))\n"
        "except RuntimeError as e:\n"
        "    print('ERR', e)\n"
    )
    env = {**__import__("os").environ, "JAX_MLA_META_DISABLE_CUDA": "1", "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=120)
    assert "ERR" in r.stdout, r.stdout + r.stderr
    assert "built without its CUDA module" in r.stdout and "jax.devices('cpu')" in r.stdout


def test_forced_smem_refusal_follows_plan(monkeypatch):
    """The forced-"smem" check is plan()'s decision; exercised here with a stand-in CUDA device."""
    from jax_mla_meta import _ffi

    class FakeGpu:
        platform = "gpu"

        def __str__(self):
            return "fake H100"

    monkeypatch.setattr(_ffi, "optin_limit", lambda d: 232448)
    monkeypatch.setattr(_ffi, "cluster_limit", lambda d: 2)   # a small cluster keeps the edge B small
    dev = FakeGpu()
    edge = mm.plan(0, 132, device=dev).max_smem_rows
    assert mm.plan(edge, 132, kernel="smem", device=dev).kernel == "smem"
    assert mm.plan(edge + 1, 132, kernel="smem", device=dev).kernel == "error"
    assert mm.plan(edge + 1, 132, device=dev).kernel == "low_smem"
    x = np.zeros(edge + 1, np.int32)
    with pytest.raises(ValueError, match=r"kernel='smem' cannot run on fake H100: it needs \d+ bytes"):
        mm.schedule(x, num_sm_parts=132, kernel="smem", device=dev)
    with pytest.raises(ValueError, match="block_size_n=16"):
        mm.schedule(x[:10], num_sm_parts=132, kernel="smem", device=dev, block_size_n=16)


def test_plan_reports_the_mid_path(monkeypatch):
    """Dense batches of 1,793-12,288 rows (num_sm_parts <= 256, block_size_n a power of two >= 64) run the
    kernels' mid path on clusters of up to 2,048 rows a CTA: plan() says so, in dense mode only, with that
    cluster's size and the smem kernel's need on it."""
    from jax_mla_meta import _ffi

    class FakeGpu:
        platform = "gpu"

        def __str__(self):
            return "fake H100"

    monkeypatch.setattr(_ffi, "optin_limit", lambda d: 232448)
    monkeypatch.setattr(_ffi, "cluster_limit", lambda d: 16)
    dev = FakeGpu()
    for B, K in ((1793, 1), (2048, 1), (2049, 2), (4096, 2), (4097, 4), (8192, 4), (8193, 8), (11622, 8),
                 (11623, 8), (12288, 8)):
        assert _ffi.midpath_cluster(B, 16) == K and _ffi.midpath_cluster(B, 2) == min(K, 2), B
        assert _ffi.midpath_rows_per_thread(B, K) == 4, B   # rows a thread on an H100's clusters
        for kernel in ("auto", "smem", "low_smem"):
            p = mm.plan(B, 132, kernel=kernel, device=dev)
            assert p.cluster_size == K and f"mid path, on {K} CTA" in p.reason, (B, kernel, p)
            if p.kernel == "smem":
                assert p.smem_bytes == mm.smem_bytes(B, 132, K) <= 232448
            sparse = mm.plan(B, 66, kernel=kernel, device=dev, topk=2048)
            assert sparse.cluster_size == _ffi.cluster_for(B, 16) and "mid path" not in sparse.reason
    for B, P, bs in [(1792, 132, 64), (12289, 132, 64), (4096, 257, 64), (4096, 132, 96), (4096, 132, 16)]:
        p = mm.plan(B, P, device=dev, block_size_n=bs)
        assert "mid path" not in p.reason, (B, P, bs)
    assert mm.plan(4096, 132, device=dev, block_size_n=128).cluster_size == 2
    with pytest.raises(ValueError, match="topk"):
        mm.plan(4096, 132, device=dev, topk=-1)
    # on smaller clusters: the fewest of 4, 8, 16, 24 rows a thread that hold a CTA's slice on 512 threads
    for B, K, R in ((1793, 1, 4), (2049, 1, 8), (4096, 1, 8), (4097, 1, 16), (8193, 1, 24), (12288, 1, 24),
                    (12288, 2, 16), (8192, 2, 8), (4096, 2, 4)):
        assert _ffi.midpath_rows_per_thread(B, K) == R, (B, K)
