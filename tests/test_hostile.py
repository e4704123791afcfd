"""Hostile calls over the whole public surface: the Python API and its helpers, the nanobind bindings they reach,
and the command line (in a subprocess, under a memory limit). Each must raise TypeError/ValueError naming the
argument (or, on the command line, print one line and exit with status 2) quickly, never crash the process, hang,
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
from jax_mla_meta import _cpu, _ffi

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


def test_disable_cuda_switch_rejects_other_values():
    r = subprocess.run([sys.executable, "-c", "import jax_mla_meta"], capture_output=True, text=True,
                       cwd=tempfile.gettempdir(), timeout=120,
                       env={**os.environ, "JAX_PLATFORMS": "cpu", "JAX_MLA_META_DISABLE_CUDA": "maybe"})
    assert r.returncode != 0 and "JAX_MLA_META_DISABLE_CUDA='maybe'" in r.stderr
