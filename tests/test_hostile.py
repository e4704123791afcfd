"""Hostile calls over the whole public surface: the Python API and its helpers, the pure-Python reference and the
checker (whose arguments are checked as the API's are), ``to_2026``, the decode consumer ``flash_mla_with_kvcache``,
the nanobind bindings they reach, and the command line (in a subprocess, under a memory limit). Each must raise
TypeError/ValueError naming the argument (or, on the command line, print one line and exit with status 2) quickly,
never crash the process, hang,
allocate what it does not need or print a traceback. CPU only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_mla_meta as mm
from jax_mla_meta import _cpu, _ffi, checker, layouts, reference

I32 = np.int32


@pytest.mark.parametrize("call,exc,match", [
    (lambda: mm.smem_bytes(1, 1, 0), ValueError, "cluster_size"),
    (lambda: mm.smem_bytes(-5, 132), ValueError, "B must be >= 0"),
    (lambda: mm.smem_bytes(1, 0), ValueError, "num_sm_parts"),
    (lambda: mm.smem_bytes(1, 132, 3), ValueError, "power of two"),
    (lambda: mm.smem_bytes(2**40, 132), ValueError, "2\\*\\*31"),
    (lambda: mm.smem_bytes("7", 132), TypeError, "B must be an int"),
    (lambda: mm.smem_supported(0, 5), ValueError, "block_size_n"),
    (lambda: mm.smem_supported(-1, 5), ValueError, "block_size_n"),
    (lambda: mm.smem_supported(64, -1), ValueError, "fixed_overhead_num_blocks"),
    (lambda: mm.smem_supported(64.0, 5), TypeError, "block_size_n must be an int"),
    (lambda: mm.workspace_bytes(-10**6, -5), ValueError, "B must be >= 0"),
    (lambda: mm.workspace_bytes(10, 2**21), ValueError, "num_sm_parts"),
    (lambda: mm.max_smem_rows(132, 232448, 0), ValueError, "cluster_limit"),
    (lambda: mm.max_smem_rows(0, 232448), ValueError, "num_sm_parts"),
    (lambda: mm.max_smem_rows(132, -1), ValueError, "limit"),
    (lambda: mm.plan(2**63 - 1, 132), ValueError, "2\\*\\*31"),
    (lambda: mm.plan(-1, 132), ValueError, "B must be >= 0"),
    (lambda: mm.plan(10, 132, device=123), TypeError, "device must be None"),
    (lambda: mm.plan(10, 132, kernel="fastest"), ValueError, "kernel must be one of"),
    (lambda: mm.plan(10, 132, topk=-2), ValueError, "topk"),
    (lambda: mm.get_mla_metadata(jnp.ones(3, I32), 16, 1, device=123), TypeError, "device must be None"),
    (lambda: mm.get_mla_metadata(jnp.ones(3, I32), 16, 1, layout="2027"), ValueError, "layout"),
    (lambda: mm.get_mla_metadata(jnp.ones(3, I32), 16, 1, scheduler="vllm"), ValueError, "scheduler"),
    (lambda: mm.get_mla_metadata([1, 2], 16, 1), TypeError, "cache_seqlens"),
    (lambda: mm.num_sm_parts_for(0, 1), ValueError, "num_q_tokens_per_head_k"),
    (lambda: mm.num_sm_parts_for(16, 1, sm_count=0), ValueError, "sm_count"),
    (lambda: mm.num_sm_parts_for(16, 1, compute_capability="nine"), ValueError, "compute_capability"),
    (lambda: mm.device_facts(123), TypeError, "device must be None"),
    (lambda: mm.schedule(jnp.ones(3, I32), num_sm_parts=2**20 + 1), ValueError, "num_sm_parts"),
    (lambda: mm.schedule(jnp.ones(3, I32), num_sm_parts=4, fixed_overhead_num_blocks=2**21), ValueError, "fixed_"),
    (lambda: mm.schedule(jnp.ones(3, I32), num_sm_parts=4, block_size_n=2**31), ValueError, "block_size_n"),
    (lambda: mm.schedule(jnp.ones(3, I32), num_sm_parts=4, num_valid=2**40), ValueError, "num_valid"),
    (lambda: mm.schedule(jnp.ones(3, I32), num_sm_parts=4, num_valid=np.ones((3,), I32)), ValueError,
     "not a per-row mask"),
    (lambda: mm.check_schedule(np.zeros((2, 8), I32), np.zeros(1, I32), np.zeros(0, I32), layout="2024"),
     ValueError, "layout"),
    (lambda: mm.to_2026(np.zeros((2, 8), I32), np.zeros(1, I32), 0).shape == (2, 8) or 1 / 0, None, None),
])
def test_python_surface(call, exc, match):
    if exc is None:
        assert call()
        return
    with pytest.raises(exc, match=match):
        call()


# ------------------------------------------------------------------------------- the reference and the checker

LENS = np.array([5, 600, 70000], I32)
ONES = np.ones(3, I32)

# keyword arguments both schedule and reference.schedule take, each bad in one way
BAD_SCHEDULE_KWARGS = {
    "P 0": (dict(num_sm_parts=0), ValueError, "num_sm_parts must be >= 1"),
    "P above the limit": (dict(num_sm_parts=2**20 + 1), ValueError, "num_sm_parts must be <="),
    "P float": (dict(num_sm_parts=4.0), TypeError, "num_sm_parts must be an int"),
    "P bool": (dict(num_sm_parts=True), TypeError, "num_sm_parts must be an int"),
    "P str": (dict(num_sm_parts="4"), TypeError, "num_sm_parts must be an int"),
    "block_size_n 0": (dict(block_size_n=0), ValueError, "block_size_n must be >= 1"),
    "block_size_n 2**31": (dict(block_size_n=2**31), ValueError, "block_size_n must be <="),
    "block_size_n float": (dict(block_size_n=64.0), TypeError, "block_size_n must be an int"),
    "F -1": (dict(fixed_overhead_num_blocks=-1), ValueError, "fixed_overhead_num_blocks must be >= 0"),
    "F above the limit": (dict(fixed_overhead_num_blocks=2**21), ValueError, "fixed_overhead_num_blocks must be <="),
    "F None": (dict(fixed_overhead_num_blocks=None), TypeError, "fixed_overhead_num_blocks must be an int"),
    "topk -1": (dict(topk=-1), ValueError, "topk must be >= 0"),
    "topk str": (dict(topk="a"), TypeError, "topk must be an int"),
    "topk 2**31": (dict(topk=2**31), ValueError, "topk must be <="),
    "num_valid float": (dict(num_valid=1.5), TypeError, "num_valid must be an int"),
    "num_valid 2**40": (dict(num_valid=2**40), ValueError, "num_valid must be <="),
    "layout 2027": (dict(layout="2027"), ValueError, "layout must be"),
    "layout int": (dict(layout=2026), ValueError, "layout must be"),
    "topk_length without topk": (dict(topk_length=ONES), ValueError, "pass topk as well"),
    "extra_topk without topk": (dict(extra_topk=64), ValueError, "pass topk as well"),
    "extra_topk -1": (dict(topk=64, extra_topk=-1), ValueError, "extra_topk must be None or >= 0"),
    "extra_topk str": (dict(topk=64, extra_topk="64"), TypeError, "extra_topk must be an int"),
    "topk + extra_topk past 2**31": (dict(topk=2**31 - 100, extra_topk=200), ValueError, "must stay below"),
    "topk_length shape": (dict(topk=64, topk_length=np.ones(2, I32)), ValueError, "topk_length must have the shape"),
    "topk_length float": (dict(topk=64, topk_length=np.ones(3)), TypeError, "topk_length must have dtype int32"),
    "topk_length list": (dict(topk=64, topk_length=[1, 2, 3]), TypeError, "topk_length must be an int32 array"),
    "extra_topk_length int64": (dict(topk=64, extra_topk_length=np.ones(3, np.int64)), TypeError,
                                "extra_topk_length must have dtype int32"),
}


@pytest.mark.parametrize("name", list(BAD_SCHEDULE_KWARGS))
def test_reference_schedule_rejects_what_schedule_rejects(name):
    """reference.schedule checks every argument as jax_mla_meta.schedule does: same exception, same message."""
    change, exc, match = BAD_SCHEDULE_KWARGS[name]
    kw = {"num_sm_parts": 4, **change}
    with pytest.raises(exc, match=match) as api:
        mm.schedule(jnp.asarray(LENS), **kw)
    with pytest.raises(exc, match=match) as ref:
        reference.schedule(LENS, **kw)
    assert str(ref.value) == str(api.value)


@pytest.mark.parametrize("seqlens,exc,match", [
    (LENS.astype(np.float64), TypeError, "seqlens must have dtype int32"),
    (LENS.astype(np.int64), TypeError, "seqlens must have dtype int32"),
    ([5, 600, 70000], TypeError, "seqlens must be an int32 array"),
    (np.int32(5), ValueError, "seqlens must have rank >= 1"),
    (LENS.reshape(1, 3), ValueError, "seqlens must be 1-D"),
    ("5 600", TypeError, "seqlens must be an int32 array"),
])
def test_reference_schedule_seqlens(seqlens, exc, match):
    with pytest.raises(exc, match=match):
        reference.schedule(seqlens, 4)


def test_reference_schedule_under_jit_names_the_argument():
    with pytest.raises(TypeError, match="seqlens must be a concrete array"):
        jax.jit(lambda s: reference.schedule(s, 4))(jnp.asarray(LENS))
    with pytest.raises(TypeError, match="num_sm_parts must be a static Python int"):
        jax.jit(lambda p: reference.schedule(LENS, p))(4)


def test_reference_schedule_still_takes_what_schedule_takes():
    """Valid edge values pass: JAX arrays, NumPy ints, topk 0, num_valid outside [0, B], F 0, extra_topk 0."""
    want = reference.schedule(LENS, 4)
    for got in (reference.schedule(jnp.asarray(LENS), np.int64(4)), reference.schedule(LENS, 4, num_valid=2**31 - 1)):
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
    assert reference.schedule(LENS, 4, num_valid=-(2**31))[1].tolist() == [0, 0, 0, 0]
    assert reference.schedule(LENS, 7, 1, 0, topk=0, extra_topk=0)[0].shape == (7, 8)


META, SPLITS = reference.schedule(LENS, 4)

BAD_CHECK_KWARGS = [
    (dict(topk="a"), TypeError, "topk must be an int"),
    (dict(topk=-5), ValueError, "topk must be >= 0"),
    (dict(block_size_n=0), ValueError, "block_size_n must be >= 1"),
    (dict(block_size_n=64.5), TypeError, "block_size_n must be an int"),
    (dict(fixed_overhead_num_blocks=-1), ValueError, "fixed_overhead_num_blocks must be >= 0"),
    (dict(fixed_overhead_num_blocks="5"), TypeError, "fixed_overhead_num_blocks must be an int"),
    (dict(num_valid="x"), TypeError, "num_valid must be an int"),
    (dict(num_valid=2**40), ValueError, "num_valid must be <="),
    (dict(layout="2024"), ValueError, "layout must be"),
    (dict(layout=None), ValueError, "layout must be"),
    (dict(topk_length=ONES), ValueError, "pass topk as well"),
    (dict(topk=64, topk_length=[1, 2]), ValueError, "topk_length must have the shape"),
    (dict(topk=64, topk_length=np.ones(3)), TypeError, "topk_length must be an integer array"),
    (dict(topk=64, topk_length=np.full(3, 2**40)), ValueError, "topk_length values must fit in int32"),
    (dict(topk=64, extra_topk=-1), ValueError, "extra_topk must be None or >= 0"),
    (dict(topk=64, extra_topk=1.5), TypeError, "extra_topk must be an int"),
    (dict(topk=64, extra_topk_length=np.ones((3, 1), I32)), ValueError, "extra_topk_length must have the shape"),
    (dict(topk=64, extra_topk_length=np.ones(3, bool)), TypeError, "extra_topk_length must be an integer array"),
]


@pytest.mark.parametrize("check", [checker.check_schedule, reference.check_schedule, mm.check_schedule])
@pytest.mark.parametrize("kwargs,exc,match", BAD_CHECK_KWARGS)
def test_check_schedule_keyword_arguments(check, kwargs, exc, match):
    """A bad keyword argument is a TypeError/ValueError naming it, never a ScheduleError (the metadata is fine)."""
    with pytest.raises(exc, match=match) as e:
        check(META, SPLITS, LENS, **kwargs)
    assert not isinstance(e.value, mm.ScheduleError)


def test_check_schedule_accepts_lists_and_other_integer_dtypes():
    st = mm.check_schedule(META.tolist(), SPLITS.astype(np.int64), LENS.astype(np.uint32), num_valid=np.int32(3))
    assert st.B == 3 and st.num_valid == 3
    rows = np.array([64, 64, 64], np.int64)
    m, s = reference.schedule(LENS, 4, topk=64, topk_length=rows.astype(I32))
    mm.check_schedule(m, s, LENS, topk=64, topk_length=rows.tolist())


@pytest.mark.parametrize("args,exc,match", [
    ((np.zeros((2, 7), I32), np.zeros(1, I32), 0), ValueError, "meta_2025 must have shape"),
    ((np.zeros((0, 8), I32), np.zeros(1, I32), 0), ValueError, "meta_2025 must have shape"),
    ((np.zeros((1, 2, 8), I32), np.zeros(1, I32), 0), ValueError, "meta_2025 must have shape"),
    ((np.zeros((2, 8)), np.zeros(1, I32), 0), TypeError, "meta_2025 must be an integer array"),
    ((np.zeros((2, 8), bool), np.zeros(1, I32), 0), TypeError, "meta_2025 must be an integer array"),
    (([[0] * 8], np.zeros(1, I32), 0), TypeError, "meta_2025 must be an integer NumPy or JAX array"),
    ((np.full((2, 8), 2**40), np.zeros(1, I32), 0), ValueError, "meta_2025 values must fit in int32"),
    ((np.zeros((2, 8), I32), np.zeros(1, I32), "a"), TypeError, "B must be an int"),
    ((np.zeros((2, 8), I32), np.zeros(1, I32), "x"), TypeError, "B must be an int"),
    ((np.zeros((2, 8), I32), np.zeros(1, I32), 1.0), TypeError, "B must be an int"),
    ((np.zeros((2, 8), I32), np.zeros(1, I32), -1), ValueError, "B must be >= 0"),
    ((np.zeros((2, 8), I32), np.zeros(5, I32), 3), ValueError, "num_splits must have shape"),
    ((np.zeros((2, 8), I32), np.zeros(0, I32), 3), ValueError, "num_splits must have shape"),
    ((np.zeros((2, 8), I32), np.zeros((2, 2), I32), 3), ValueError, "num_splits must have shape"),
    ((np.zeros((2, 8), I32), np.zeros(4, np.float32), 3), TypeError, "num_splits must be an integer array"),
    ((np.zeros((2, 8), I32), None, 3), TypeError, "num_splits must be an integer"),
])
def test_to_2026_checks_its_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        layouts.to_2026(*args)


def test_to_2026_takes_jax_arrays_and_a_num_valid_prefix():
    m5, s5 = reference.schedule(LENS, 4, num_valid=2)
    want = reference.schedule(LENS, 4, num_valid=2, layout="2026")[0]
    assert np.array_equal(mm.to_2026(jnp.asarray(m5), jnp.asarray(s5), np.int64(3)), want)
    assert np.array_equal(mm.to_2026(m5, s5[:3], 3), want)
    with pytest.raises(TypeError, match="meta_2025 must be a concrete array"):
        jax.jit(lambda m: mm.to_2026(m, s5, 3))(jnp.asarray(m5))


# ------------------------------------------------------------------------------------------ the decode consumer


def _decode_args(**change):
    """Valid dense arguments of flash_mla_with_kvcache (B = 2, s_q = 1, h_q = 4, d = 16, one KV head), then
    ``change``."""
    lens = np.array([10, 70], I32)
    meta, splits = reference.schedule(lens, 3)
    kw = dict(q=jnp.ones((2, 1, 4, 16), jnp.float32), k_cache=jnp.ones((4, 64, 1, 16), jnp.float32),
              block_table=jnp.zeros((2, 2), jnp.int32), cache_seqlens=jnp.asarray(lens), head_dim_v=8,
              tile_scheduler_metadata=jnp.asarray(meta), num_splits=jnp.asarray(splits))
    kw.update(change)
    return kw


BAD_DECODE = {
    "q rank 3": (dict(q=jnp.ones((1, 4, 16))), ValueError, "q must have shape"),
    "q rank 5": (dict(q=jnp.ones((2, 1, 1, 4, 16))), ValueError, "q must have shape"),
    "q B 0": (dict(q=jnp.ones((0, 1, 4, 16))), ValueError, "q must have shape"),
    "q s_q 0": (dict(q=jnp.ones((2, 0, 4, 16))), ValueError, "q must have shape"),
    "q h_q 0": (dict(q=jnp.ones((2, 1, 0, 16))), ValueError, "q must have shape"),
    "q int": (dict(q=jnp.ones((2, 1, 4, 16), jnp.int32)), TypeError, "q must be a floating-point array"),
    "q bool": (dict(q=jnp.ones((2, 1, 4, 16), bool)), TypeError, "q must be a floating-point array"),
    "q list": (dict(q=[[[[1.0]]]]), TypeError, "q must be an array"),
    "k_cache no pages": (dict(k_cache=jnp.ones((0, 64, 1, 16))), ValueError, "k_cache must have shape"),
    "k_cache page 32": (dict(k_cache=jnp.ones((4, 32, 1, 16))), ValueError, "k_cache must have shape"),
    "k_cache d": (dict(k_cache=jnp.ones((4, 64, 1, 8))), ValueError, "k_cache must have shape"),
    "k_cache rank 3": (dict(k_cache=jnp.ones((4, 64, 16))), ValueError, "k_cache must have shape"),
    "k_cache h_k 0": (dict(k_cache=jnp.ones((4, 64, 0, 16))), ValueError, "h_k"),
    "k_cache h_k 3": (dict(k_cache=jnp.ones((4, 64, 3, 16))), ValueError, "h_k"),
    "k_cache complex": (dict(k_cache=jnp.ones((4, 64, 1, 16), jnp.complex64)), TypeError, "k_cache must be a"),
    "block_table missing": (dict(block_table=None), ValueError, "block_table is required"),
    "block_table float": (dict(block_table=jnp.zeros((2, 2))), TypeError, "block_table must be an integer array"),
    "block_table rank 1": (dict(block_table=jnp.zeros(2, jnp.int32)), ValueError, "block_table must have shape"),
    "block_table no pages": (dict(block_table=jnp.zeros((2, 0), jnp.int32)), ValueError, "block_table must have"),
    "block_table list": (dict(block_table=[[0, 0], [0, 0]]), TypeError, "block_table must be an array"),
    "cache_seqlens B": (dict(cache_seqlens=jnp.zeros(3, jnp.int32)), ValueError, "cache_seqlens must have shape"),
    "cache_seqlens float": (dict(cache_seqlens=jnp.zeros(2)), TypeError, "cache_seqlens must be an integer array"),
    "cache_seqlens bool": (dict(cache_seqlens=jnp.zeros(2, bool)), TypeError, "cache_seqlens must be an integer"),
    "head_dim_v 0": (dict(head_dim_v=0), ValueError, "head_dim_v must be in"),
    "head_dim_v -8": (dict(head_dim_v=-8), ValueError, "head_dim_v must be in"),
    "head_dim_v > d": (dict(head_dim_v=17), ValueError, "head_dim_v must be in"),
    "head_dim_v float": (dict(head_dim_v=8.0), TypeError, "head_dim_v must be a Python int"),
    "head_dim_v bool": (dict(head_dim_v=True), TypeError, "head_dim_v must be a Python int"),
    "head_dim_v list": (dict(head_dim_v=[8]), TypeError, "head_dim_v must be a Python int"),
    "metadata [P, 7]": (dict(tile_scheduler_metadata=jnp.zeros((3, 7), jnp.int32)), ValueError,
                        "tile_scheduler_metadata must have shape"),
    "metadata [0, 8]": (dict(tile_scheduler_metadata=jnp.zeros((0, 8), jnp.int32)), ValueError,
                        "tile_scheduler_metadata must have shape"),
    "metadata rank 3": (dict(tile_scheduler_metadata=jnp.zeros((1, 3, 8), jnp.int32)), ValueError,
                        "tile_scheduler_metadata must have shape"),
    "metadata float": (dict(tile_scheduler_metadata=jnp.zeros((3, 8))), TypeError,
                       "tile_scheduler_metadata must have dtype int32"),
    "num_splits [B]": (dict(num_splits=jnp.zeros(2, jnp.int32)), ValueError, "num_splits must have shape"),
    "num_splits int16": (dict(num_splits=jnp.zeros(3, jnp.int16)), TypeError, "num_splits must have dtype int32"),
    "layout 2024": (dict(layout="2024"), ValueError, "layout must be"),
    "layout int": (dict(layout=2026), ValueError, "layout must be"),
    "layout list": (dict(layout=["2026"]), ValueError, "layout must be"),
    "softmax_scale str": (dict(softmax_scale="0.1"), TypeError, "softmax_scale must be None"),
    "softmax_scale array": (dict(softmax_scale=jnp.float32(0.1)), TypeError, "softmax_scale must be None"),
    "softmax_scale nan": (dict(softmax_scale=float("nan")), ValueError, "softmax_scale must be finite"),
    "softmax_scale inf": (dict(softmax_scale=float("inf")), ValueError, "softmax_scale must be finite"),
    "causal str": (dict(causal="yes"), TypeError, "causal must be True or False"),
    "causal list": (dict(causal=[True]), TypeError, "causal must be True or False"),
    "indices float": (dict(indices=jnp.zeros((2, 1, 64))), TypeError, "indices must be an integer array"),
    "indices shape": (dict(indices=jnp.zeros((2, 2, 64), jnp.int32)), ValueError, "indices must have shape"),
    "indices topk 0": (dict(indices=jnp.zeros((2, 1, 0), jnp.int32)), ValueError, "indices must have shape"),
    "topk_length dense": (dict(topk_length=jnp.zeros(2, jnp.int32)), ValueError, "topk_length is only meaningful"),
    "topk_length shape": (dict(indices=jnp.zeros((2, 1, 64), jnp.int32), topk_length=jnp.zeros(3, jnp.int32)),
                          ValueError, "topk_length must have shape"),
    "topk_length float": (dict(indices=jnp.zeros((2, 1, 64), jnp.int32), topk_length=jnp.zeros(2)), TypeError,
                          "topk_length must be an integer array"),
}


@pytest.mark.parametrize("name", list(BAD_DECODE))
def test_decode_checks_its_arguments(name):
    change, exc, match = BAD_DECODE[name]
    with pytest.raises(exc, match=match):
        mm.flash_mla_with_kvcache(**_decode_args(**change))


def test_decode_valid_statics_of_other_types_pass():
    """NumPy scalars for the static arguments are fine (hashable, exact), and the checked call still jits."""
    out, lse = mm.flash_mla_with_kvcache(**_decode_args(head_dim_v=np.int64(8), softmax_scale=np.float32(0.25),
                                                        causal=np.bool_(False)))
    assert out.shape == (2, 1, 4, 8) and lse.shape == (2, 4, 1)
    kw = _decode_args()
    q = kw.pop("q")
    out2, _ = jax.jit(lambda q: mm.flash_mla_with_kvcache(q, **kw))(q)
    assert np.allclose(np.asarray(out2), np.asarray(mm.flash_mla_with_kvcache(q, **kw)[0]))


@pytest.mark.parametrize("call,match", [
    (lambda: _cpu.smem_bytes(1, 1, 0), "cluster_size"),
    (lambda: _cpu.smem_bytes(1, 1, 32), "cluster_size"),
    (lambda: _cpu.smem_bytes(-1, 1, 1), "B must be >= 0"),
    (lambda: _cpu.smem_supported(0, 5), "block_size_n"),
    (lambda: _cpu.workspace_bytes(5, 0), "num_sm_parts"),
    (lambda: _cpu.workspace_offsets(-1, 1), "B must be >= 0"),
    (lambda: _cpu.plan_launch(10, 132, 64, 5, True, 7, 232448, 16), "kernel"),
    (lambda: _cpu.plan_launch(10, 132, 0, 5, True, 0, 232448, 16), "block_size_n"),
    (lambda: _cpu.plan_launch(10, 132, 64, 5, True, 0, 232448, 0), "kmax"),
    (lambda: _cpu.plan_launch(10, 132, 64, 5, True, 0, -1, 16), "optin"),
])
def test_bindings_check_their_arguments(call, match):
    """The nanobind bindings themselves (reached by the helpers above) raise ValueError, never divide by zero."""
    with pytest.raises(ValueError, match=match):
        call()


def test_binding_type_errors_are_type_errors():
    with pytest.raises(TypeError):
        _cpu.smem_bytes("1", 1, 1)
    with pytest.raises(TypeError, match="num_sm_parts must be an int"):
        _ffi.plan_launch(10, "132", 64, 5, True, 0, 232448, 16)


def test_raw_custom_call_with_bad_attributes_is_an_error_not_a_crash():
    """The primitive bound directly with attributes the handler rejects: an XLA error, the process survives."""
    from jax_mla_meta._primitive import schedule_p

    x = jnp.ones(4, I32)
    params = dict(num_sm_parts=3, block_size_n=64, fixed_overhead_num_blocks=5, topk=-1, extra_topk=0, row_inputs=0,
                  layout=0, kernel=0)
    bad = [dict(kernel=9), dict(layout=7), dict(block_size_n=0), dict(topk=5, extra_topk=-3),
           dict(topk=-1, extra_topk=4)]
    for change in bad:
        with pytest.raises(Exception, match="jax_mla_meta"):
            jax.block_until_ready(schedule_p.bind(x, jnp.int32(4), **{**params, **change}))
    assert np.asarray(mm.schedule(x, num_sm_parts=3)[1]).tolist() == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------------------------- command line

LIMIT_BYTES = 6 << 30   # the CLI child's address-space limit: JAX alone maps ~2-3 GB


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    code = ("import resource, sys\n"
            f"resource.setrlimit(resource.RLIMIT_AS, ({LIMIT_BYTES}, {LIMIT_BYTES}))\n"
            "from jax_mla_meta.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    full_env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=tempfile.gettempdir())


def one_line_error(r: subprocess.CompletedProcess, match: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jax-mla-meta: error: "), r.stderr
    assert match in lines[0], lines[0]


@pytest.mark.parametrize("args,match", [
    (["schedule", "-P", "1048576", "-B", "10", "--plot", "x.png"], "at most 4,096 parts"),
    (["schedule", "-B", "3000000000"], "<= 16,777,216"),
    (["schedule", "--lengths", "/dev/zero"], "not a regular file"),
    (["schedule", "--lengths", "/"], "not a regular file"),
    (["schedule", "--json", "/definitely/not/a/dir/x.json"], "does not exist"),
    (["schedule", "--plot", "/definitely/not/a/dir/x.png"], "does not exist"),
    (["schedule", "--plot", "x.gif"], ".png, .svg or .pdf"),
    (["schedule", "--mode", "dense", "--topk-length", "uniform"], "describe sparse rows"),
    (["schedule", "--topk", "64", "--extra-topk", "-1"], "must be >= 0"),
    (["schedule", "--layout", "2027"], "invalid choice"),
    (["schedule", "-P", "0"], "must be >= 1"),
    (["schedule", "--kernel", "smem", "-B", "3", "--fp8", "--mode", "dense"], "--num-sm-parts"),
    (["bench", "--out", "/definitely/not/here/x", "--max-b", "1"], "--out"),
])
def test_cli_failures_are_one_line_and_quick(args, match, tmp_path):
    t = time.perf_counter()
    r = cli(*args)
    one_line_error(r, match)
    assert time.perf_counter() - t < 60


def test_cli_file_checks(tmp_path):
    big = tmp_path / "u64.npy"
    np.save(big, np.array([1, 2, 2**64 - 5], np.uint64))
    one_line_error(cli("schedule", "--lengths", str(big)), "fit in int32")
    nan = tmp_path / "nan.npy"
    np.save(nan, np.array([1.0, np.nan]))
    one_line_error(cli("schedule", "--lengths", str(nan)), "expected integers")
    two_d = tmp_path / "m.npy"
    np.save(two_d, np.ones((2, 2), np.int32))
    one_line_error(cli("schedule", "--lengths", str(two_d)), "1-D")
    txt = tmp_path / "l.txt"
    txt.write_text("1 2 99999999999\n")
    one_line_error(cli("schedule", "--lengths", str(txt)), "fit in int32")
    folder = tmp_path / "out.json"
    folder.mkdir()
    one_line_error(cli("schedule", "--json", str(folder)), "is a directory")
    tl = tmp_path / "tl.txt"
    tl.write_text("1 2 3\n")
    one_line_error(cli("schedule", "-B", "5", "--topk-length", str(tl)), "3 values for 5 rows")


def test_cli_plot_without_suffix_reports_the_file_it_wrote(tmp_path):
    r = cli("schedule", "-B", "40", "--repeats", "1", "--plot", str(tmp_path / "picture"))
    assert r.returncode == 0, r.stderr
    assert f"wrote {tmp_path / 'picture.png'}" in r.stdout and (tmp_path / "picture.png").exists()


def test_cli_per_row_sparse_and_2026(tmp_path):
    out = tmp_path / "s.json"
    r = cli("schedule", "-B", "300", "--topk-length", "uniform", "--layout", "2026", "--repeats", "1",
            "--json", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    want = mm.reference.schedule(np.asarray(doc["seqlens"], I32), doc["num_sm_parts"], topk=2048, layout="2026",
                                 topk_length=np.asarray(doc["topk_length"], I32))
    assert np.array_equal(np.asarray(doc["tile_scheduler_metadata"], I32), want[0])
    assert "per-row top-k counts" in r.stdout and "layout 2026" in r.stdout


@pytest.mark.parametrize("value,cuda", [("false", True), ("0", True), ("no", True), ("1", False), ("true", False)])
def test_disable_cuda_switch_reads_booleans(value, cuda):
    code = "import jax_mla_meta._ffi as f; print(f._cuda is not None, f.CUDA_IMPORT_ERROR)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(),
                       env={**os.environ, "JAX_PLATFORMS": "cpu", "JAX_MLA_META_DISABLE_CUDA": value}, timeout=120)
    assert r.returncode == 0, r.stderr
    has, err = r.stdout.split(" ", 1)
    assert has == str(cuda and mm.HAS_CUDA), (value, r.stdout)
    if not cuda:
        assert "disabled by JAX_MLA_META_DISABLE_CUDA" in err


@pytest.mark.skipif(mm.HAS_CUDA, reason="the CUDA module is built here")
def test_missing_cuda_module_is_said_plainly():
    """A build without the CUDA module says so, and how to build it (README.md's set-up), not Python's import
    error ("cannot import name '_cuda' from partially initialized module ... circular import")."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_MLA_META_DISABLE_CUDA"}
    r = subprocess.run([sys.executable, "-m", "jax_mla_meta", "info"], capture_output=True, text=True,
                       cwd=tempfile.gettempdir(), env={**env, "JAX_PLATFORMS": "cpu"}, timeout=120)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("CUDA module usable:"))
    assert "no; the CUDA module was not built" in line and "`python -m pip install -e .`" in line, line
    for python_words in ("partially initialized", "circular import", "cannot import name"):
        assert python_words not in line


def test_disable_cuda_switch_rejects_other_values():
    r = subprocess.run([sys.executable, "-c", "import jax_mla_meta"], capture_output=True, text=True,
                       cwd=tempfile.gettempdir(), timeout=120,
                       env={**os.environ, "JAX_PLATFORMS": "cpu", "JAX_MLA_META_DISABLE_CUDA": "maybe"})
    assert r.returncode != 0 and "JAX_MLA_META_DISABLE_CUDA='maybe'" in r.stderr
