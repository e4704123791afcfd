"""The public API's contract: argument checking, FlashMLA's host rules (P and F), plan() as the handler's own
launch decision, get_mla_metadata. CPU only (plan() is checked against stand-in CUDA devices)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_mla_meta as mm
from conftest import assert_same, ref
from lengths import between
from jax_mla_meta import _ffi


def s32(*v):
    return jnp.asarray(v, jnp.int32)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(seqlens=np.ones(4, np.int64)), TypeError, "int32.*astype"),
        (dict(seqlens=np.ones(4, np.float32)), TypeError, "dtype int32"),
        (dict(seqlens=[1, 2, 3]), TypeError, "jnp.asarray"),
        (dict(seqlens=np.int32(5)), ValueError, "rank"),
        (dict(num_sm_parts=0), ValueError, "num_sm_parts must be >= 1"),
        (dict(num_sm_parts=2.5), TypeError, "num_sm_parts must be an int"),
        (dict(block_size_n=0), ValueError, "block_size_n"),
        (dict(fixed_overhead_num_blocks=-1), ValueError, "fixed_overhead_num_blocks"),
        (dict(topk=-3), ValueError, "topk"),
        (dict(kernel="fast"), ValueError, "kernel must be one of"),
        (dict(layout="2024"), ValueError, "layout must be '2025'.*'2026'"),
        (dict(layout=2026), ValueError, "layout must be"),
        (dict(topk_length=s32(1, 2, 3)), ValueError, "pass topk as well"),
        (dict(topk=64, extra_topk=-1), ValueError, "-1 for 'no extra cache'.*None"),
        (dict(topk=64, extra_topk=2.0), TypeError, "extra_topk must be an int"),
        (dict(topk=64, topk_length=s32(1, 2)), ValueError, r"topk_length must have the shape of seqlens \(3,\)"),
        (dict(topk=64, topk_length=np.ones(3, np.int64)), TypeError, "topk_length must have dtype int32"),
        (dict(topk=64, extra_topk_length=np.ones(3, np.float32)), TypeError, "extra_topk_length must have dtype"),
        (dict(topk=2**31 - 1, extra_topk=1), ValueError, "must stay below 2\\*\\*31"),
        (dict(num_valid=np.ones(3, np.int32)), ValueError, "num_valid must be a scalar or have the leading shape"),
        (dict(num_valid=np.int64(2)), TypeError, "num_valid must be int32"),
        (dict(device=123), TypeError, "device must be None"),
        (dict(device="tpu"), ValueError, "device='tpu'"),
    ],
)
def test_schedule_argument_errors(kwargs, exc, match):
    args = dict(seqlens=s32(1, 2, 3), num_sm_parts=4)
    args.update(kwargs)
    seqlens = args.pop("seqlens")
    with pytest.raises(exc, match=match):
        mm.schedule(seqlens, **args)


def test_traced_static_argument_says_how_to_mark_it_static():
    with pytest.raises(TypeError, match=r"static_argnames=\('num_sm_parts',\)"):
        jax.jit(mm.schedule)(s32(1, 2, 3), num_sm_parts=3)
    with pytest.raises(TypeError, match="static_argnames"):
        jax.jit(lambda x, t: mm.schedule(x, num_sm_parts=3, topk=t))(s32(1, 2, 3), 64)


def test_symbolic_batch_size_is_refused_with_a_message():
    (b,) = jax.export.symbolic_shape("b")
    with pytest.raises(ValueError, match="symbolic dimension.*export one artifact per shape"):
        jax.export.export(jax.jit(lambda s: mm.schedule(s, num_sm_parts=4)))(jax.ShapeDtypeStruct((b,), jnp.int32))


# (q, h_k, h_q, fp8, topk, layout, scheduler, d_qk, sm, cc) -> (P, F)
HOST_RULES = [
    # 2025, docs/spec.md section 6
    ((16, 1, 16, False, None, "2025", "flashmla", None, 132, "9.0"), (132, 5)),   # dense decode, 16 heads, H100
    ((128, 1, 128, False, None, "2025", "flashmla", None, 132, "9.0"), (66, 5)),  # dense, 128 heads
    ((128, 1, 128, True, 2048, "2025", "flashmla", None, 132, "9.0"), (66, 5)),   # DeepSeek V3.2 sparse fp8, H100
    ((64, 1, 64, True, 2048, "2025", "flashmla", None, 148, "10.0"), (148, 5)),   # sparse fp8 on B200
    ((128, 1, 128, True, 2048, "2025", "flashmla", None, 148, "10.0"), (74, 5)),  # B200 with 128 heads
    ((1, 1, 1, False, None, "2025", "flashmla", None, 132, "9.0"), (132, 5)),
    ((256, 2, 128, True, 2048, "2025", "flashmla", None, 132, "9.0"), (8, 5)),    # s_q = 4, h_k = 2
    # 2026, section 6
    ((16, 1, 16, False, None, "2026", "flashmla", None, 132, "9.0"), (132, 5)),   # dense as 2025
    ((128, 1, 128, False, 2048, "2026", "flashmla", None, 132, "9.0"), (66, 5)),  # sparse SM90, s_q 1, 128 heads
    ((64, 1, 64, False, 2048, "2026", "flashmla", None, 132, "9.0"), (132, 5)),   # sparse SM90, 64 heads
    ((256, 1, 128, False, 2048, "2026", "flashmla", None, 132, "9.0"), (33, 5)),  # s_q 2: 132 // 2 // 2
    ((64, 1, 64, False, 2048, "2026", "flashmla", None, 148, "10.0"), (148, 5)),  # SM100, 64 heads
    ((128, 1, 128, False, 2048, "2026", "flashmla", 576, 148, "10.0"), (148, 5)),  # SM100 V3.2
    ((128, 1, 128, False, 2048, "2026", "flashmla", 512, 148, "10.0"), (74, 3)),   # SM100 V4 MODEL1: F = 3
    ((256, 1, 128, False, 2048, "2026", "flashmla", 512, 148, "10.0"), (37, 3)),   # V4 with s_q 2
    ((128, 1, 128, False, 2048, "2026", "sgl-kernel", None, 132, "9.0"), (66, 5)),  # shim SM90: 132 // 1 // 2
    ((128, 1, 128, False, 2048, "2026", "sgl-kernel", None, 148, "10.0"), (148, 5)),  # shim SM100
    ((256, 1, 128, False, 2048, "2026", "sgl-kernel", None, 148, "10.0"), (74, 5)),   # shim SM100, s_q 2
    ((16, 1, 16, False, None, "2026", "sgl-kernel", None, 132, "9.0"), (132, 5)),     # shim dense = native
]


@pytest.mark.parametrize("args,want", HOST_RULES)
def test_host_rules(args, want):
    q, hk, hq, fp8, topk, layout, sched, dqk, sm, cc = args
    rule = mm.host_rule(q, hk, hq, fp8, topk, layout=layout, scheduler=sched, head_dim_qk=dqk, sm_count=sm,
                        compute_capability=cc)
    assert (rule.num_sm_parts, rule.fixed_overhead_num_blocks, rule.block_size_n) == (*want, 64), rule
    assert mm.num_sm_parts_for(q, hk, hq, fp8, topk, layout=layout, scheduler=sched, head_dim_qk=dqk, sm_count=sm,
                               compute_capability=cc) == want[0]


@pytest.mark.parametrize(
    "args,match",
    [
        ((128, 1, 128, False, 2048, "2025", 132, "9.0"), "fp8"),        # 2025 sparse bf16
        ((16, 1, 16, True, None, "2025", 132, "9.0"), "bf16"),          # dense fp8
        ((16, 1, 16, False, None, "2026", 148, "10.0"), "SM90"),        # dense on SM100
        ((128, 1, 128, True, 2048, "2025", 84, "8.0"), "SM90 and SM100"),
        ((128, 3, 128, True, 2048, "2025", 132, "9.0"), "multiple"),     # h_q % h_k
        ((128, 1, None, True, 2048, "2025", 132, "9.0"), "num_heads_q"),
        ((16, 0, 16, False, None, "2025", 132, "9.0"), "num_heads_k"),
        ((0, 1, 16, False, None, "2025", 132, "9.0"), "num_q_tokens_per_head_k"),
        ((96, 1, 96, False, 2048, "2026", 132, "9.0"), "64 or 128 query heads"),
        ((128, 1, 128, False, 2048, "2026", 148, "10.0"), "head_dim_qk=576.*512"),
    ],
)
def test_host_rule_errors_say_how_to_pass_p_and_f(args, match):
    q, hk, hq, fp8, topk, layout, sm, cc = args
    with pytest.raises(ValueError, match=match) as e:
        mm.host_rule(q, hk, hq, fp8, topk, layout=layout, sm_count=sm, compute_capability=cc)
    if "num_heads" not in match and "num_q_tokens" not in match:
        assert "num_sm_parts=" in str(e.value) and "fixed_overhead_num_blocks=" in str(e.value)


def test_host_rule_argument_types():
    with pytest.raises(ValueError, match="scheduler must be one of"):
        mm.host_rule(16, 1, scheduler="vllm")
    with pytest.raises(TypeError, match="compute_capability must be a string"):
        mm.host_rule(16, 1, compute_capability=9.0)
    with pytest.raises(TypeError, match="is_fp8_kvcache must be True or False"):
        mm.host_rule(16, 1, is_fp8_kvcache="yes")


def test_get_mla_metadata_on_cpu_assumes_h100(rng):
    lens = between(rng, 32, 1, 9000)
    cpu = jax.devices("cpu")[0]
    x = jax.device_put(lens, cpu)
    got = mm.get_mla_metadata(x, 16, 1, device=cpu)
    assert got[0].shape == (132, 8)
    assert_same(tuple(np.asarray(v) for v in got), ref(lens, 132), f"seed {rng.seed}")
    got = mm.get_mla_metadata(x, 128, 1, 128, True, 2048, device=cpu)
    assert_same(tuple(np.asarray(v) for v in got), ref(lens, 66, 2048), f"seed {rng.seed}")
    got = mm.get_mla_metadata(x, 128, 1, 128, True, 2048, device=cpu, num_sm_parts=7)
    assert got[0].shape == (7, 8)
    # 2026 on an SM90 host: P = 132 // 1 // 2; F = 5
    tl = jax.device_put(between(rng, 32, 0, 2049), cpu)
    got = mm.get_mla_metadata(x, 128, 1, 128, False, 2048, layout="2026", topk_length=tl, device=cpu)
    want = mm.reference.schedule(lens, 66, topk=2048, layout="2026", topk_length=np.asarray(tl))
    assert_same(tuple(np.asarray(v) for v in got), want, f"seed {rng.seed}")


class FakeGpu:
    """A stand-in CUDA device for plan(): the limits come from the monkeypatched _ffi queries."""

    platform = "gpu"

    def __str__(self):
        return "fake H100"


@pytest.fixture
def h100(monkeypatch):
    monkeypatch.setattr(_ffi, "optin_limit", lambda d: 232448)
    monkeypatch.setattr(_ffi, "cluster_limit", lambda d: 16)
    return FakeGpu()


def test_plan_on_cpu_describes_an_h100():
    p = mm.plan(16384, 66, topk=2048, device=jax.devices("cpu")[0])
    assert p.kernel == "cpu" and p.assumed_h100 and "would run smem" in p.reason
    assert (p.path, p.cluster_size, p.threads, p.launches) == ("general", 4, 512, 1)
    assert p.smem_bytes == mm.smem_bytes(16384, 66, 4) < mm.smem_bytes(16384, 66)
    # a CTA needs about 4.25 bytes per row of its slice, against the original's 20 bytes per row
    assert mm.max_smem_rows(66, 232448) > 4 * 11622
    assert p.max_smem_rows > 16 * 50000
    assert mm.smem_bytes(p.max_smem_rows, 66, 16) <= 232448 < mm.smem_bytes(p.max_smem_rows + 1, 66, 16)


def test_plan_takes_the_layout_and_words_a_forced_smem_it_cannot_run():
    cpu = jax.devices("cpu")[0]
    for layout in ("2025", "2026"):
        p = mm.plan(4096, 132, layout=layout, device=cpu)
        assert p.layout == layout
        # the layout changes the packing only: the launch is the same
        q = mm.plan(4096, 132, device=cpu)
        assert (p.path, p.cluster_size, p.threads, p.launches) == (q.path, q.cluster_size, q.threads, q.launches)
    with pytest.raises(ValueError, match="layout must be '2025'"):
        mm.plan(4096, 132, layout="2027", device=cpu)
    p = mm.plan(900000, 132, kernel="smem", device=cpu)
    assert "could not run kernel='smem'" in p.reason and "run error" not in p.reason


def test_plan_follows_the_launch_decision(h100):
    """Cluster sizes, threads, paths and launches as the handler decides them (core/launch_plan.h)."""
    def shape(B, P=132, **kw):
        p = mm.plan(B, P, device=h100, **kw)
        return p.kernel, p.path, p.cluster_size, p.threads, p.launches

    assert shape(1) == ("smem", "warp", 1, 256, 1)
    assert shape(512) == ("smem", "warp", 1, 256, 1)
    assert shape(513) == ("smem", "row", 1, 256, 1)
    assert shape(1792) == ("smem", "row", 1, 256, 1)
    lo, hi = _ffi.MID_PATH_ROWS
    assert shape(lo) == ("smem", "mid", 1, 512, 1) and shape(hi)[1] == "mid" and shape(hi + 1)[1] == "general"
    assert shape(11622) == ("smem", "mid", 8, 512, 1)
    assert shape(20000) == ("smem", "general", 8, 512, 1)
    assert shape(65536) == ("smem", "general", 16, 512, 1)
    assert shape(200000) == ("smem", "general", 16, 1024, 1)
    assert shape(1 << 20, kernel="low_smem") == ("low_smem", "general", 8, 1024, 3)
    assert shape(1 << 20, P=66, topk=2048, kernel="low_smem") == ("low_smem", "general", 8, 1024, 2)
    assert shape(1 << 20, P=66, topk=2048, per_row=True, kernel="low_smem")[4] == 3
    # rows of one length never take the warp, row or mid paths; per-row sparse lengths do
    assert shape(100, P=66, topk=2048)[1] == "general" and shape(100, P=66, topk=2048, per_row=True)[1] == "warp"
    assert shape(11622, P=66, topk=2048)[1] == "general" and shape(11622, P=66, topk=2048, per_row=True)[1] == "mid"
    # the mid path needs P <= 256 and a power-of-two block size of at least 64
    for B, P, bs in [(4096, 257, 64), (4096, 132, 96), (4096, 132, 16)]:
        assert mm.plan(B, P, device=h100, block_size_n=bs).path != "mid", (B, P, bs)
    assert mm.plan(4096, 132, device=h100, block_size_n=128).path == "mid"


def test_forced_smem_refusal_follows_plan(monkeypatch):
    monkeypatch.setattr(_ffi, "optin_limit", lambda d: 232448)
    monkeypatch.setattr(_ffi, "cluster_limit", lambda d: 2)   # a small cluster keeps the edge B small
    dev = FakeGpu()
    edge = mm.plan(0, 132, device=dev).max_smem_rows
    assert mm.plan(edge, 132, kernel="smem", device=dev).kernel == "smem"
    assert mm.plan(edge + 1, 132, kernel="smem", device=dev).kernel == "error"
    assert mm.plan(edge + 1, 132, device=dev).kernel == "low_smem"
    x = np.zeros(edge + 1, np.int32)
    with pytest.raises(ValueError, match=r"kernel='smem' cannot run on fake H100: the smem kernel needs \d+ bytes"):
        mm.schedule(x, num_sm_parts=132, kernel="smem", device=dev)
    with pytest.raises(ValueError, match="block_size_n=16"):
        mm.schedule(x[:10], num_sm_parts=132, kernel="smem", device=dev, block_size_n=16)


def test_shapes_under_jit_and_eval_shape():
    out = jax.eval_shape(lambda s: mm.schedule(s, num_sm_parts=7), jax.ShapeDtypeStruct((3, 100), jnp.int32))
    assert out[0].shape == (3, 7, 8) and out[1].shape == (3, 101)
    assert out[0].dtype == jnp.int32 and out[1].dtype == jnp.int32
    out = jax.eval_shape(lambda s, t: mm.schedule(s, num_sm_parts=7, topk=64, topk_length=t, layout="2026"),
                         jax.ShapeDtypeStruct((3, 100), jnp.int32), jax.ShapeDtypeStruct((3, 100), jnp.int32))
    assert out[0].shape == (3, 7, 8)


def test_jaxpr_shows_named_primitive():
    jaxpr = jax.make_jaxpr(lambda s: mm.schedule(s, num_sm_parts=3, layout="2026"))(s32(1, 2))
    assert "jax_mla_meta_schedule" in str(jaxpr) and "layout=1" in str(jaxpr)


def test_invalid_call_leaves_later_calls_working():
    with pytest.raises(TypeError):
        mm.schedule(np.ones(3, np.float64), num_sm_parts=2)
    lens = np.array([5, 600, 70000], np.int32)
    assert_same(tuple(np.asarray(v) for v in mm.schedule(jnp.asarray(lens), num_sm_parts=4)), ref(lens, 4))


def test_missing_cuda_module_gives_a_clear_error(tmp_path):
    """A build without the CUDA module (simulated) refuses to lower for a GPU with an actionable message."""
    import os
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
    env = {**os.environ, "JAX_MLA_META_DISABLE_CUDA": "1", "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=120)
    assert "ERR" in r.stdout, r.stdout + r.stderr
    assert "cannot run on a GPU here: disabled by JAX_MLA_META_DISABLE_CUDA." in r.stdout, r.stdout
    assert "jax.devices('cpu')" in r.stdout and "no-build-isolation" not in r.stdout


@pytest.mark.parametrize("P, limit, K", [(1, 10000, 16), (1, 2000, 1), (132, 60000, 1), (256, 50000, 4)])
def test_max_smem_rows_is_the_largest_batch_that_fits(P, limit, K):
    """Below the mid path's last row the fast paths' regions make the need jump up and down: a small limit must
    still give the largest B that fits, not the first B that does not."""
    from jax_mla_meta import _ffi
    got = mm.max_smem_rows(P, limit, K)
    fitting = [b for b in range(0, 40000) if _ffi.smem_bytes(b, P, K) <= limit]
    assert got == max(fitting), (got, max(fitting))
