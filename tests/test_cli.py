"""The command line (`python -m jax_mla_meta ...`), run as a subprocess on the CPU backend."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import tempfile
import sys
from pathlib import Path

import numpy as np
import pytest

from jax_mla_meta import reference, workloads

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
SMALL = ["--batch-size", "300", "--dist", "uniform1k8k", "--mode", "dense", "--repeats", "3"]


def cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "jax_mla_meta", *args]
    # run outside the repository: `python -m` puts the working directory first on sys.path, and the source
    # tree there has no compiled modules (the installed package must be the one imported)
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120, cwd=tempfile.gettempdir())


def ok(*args: str) -> str:
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_info():
    out = ok("info")
    assert "jax 0." in out and "CUDA module built:" in out
    assert "cpu" in out and "assumed H100" in out
    assert "max smem B (P=132)" in out  # largest B of the smem kernel (assumed H100 on CPU)


def test_schedule_default_is_the_crash_case():
    out = ok("schedule", "--repeats", "3")
    assert "preset pure-tp-prefill" in out
    assert "B=16,384" in out and "topk 2048" in out
    assert "num_sm_parts=66" in out
    assert "payload" in out and "rows split" in out and "µs per call" in out
    assert "metadata consistent: yes" in out
    assert "most loaded" in out


def _check_against_reference(doc: dict, lens: np.ndarray, topk=None) -> None:
    P = doc["num_sm_parts"]
    want_meta, want_splits = reference.schedule(lens, P, topk=topk)
    np.testing.assert_array_equal(np.asarray(doc["tile_scheduler_metadata"], np.int32), want_meta)
    np.testing.assert_array_equal(np.asarray(doc["num_splits"], np.int32), want_splits)
    st = doc["stats"]
    assert st["split_rows"] == int(np.sum(np.diff(want_splits) > 1))
    nblk = reference.num_blocks(np.full(len(lens), topk) if topk is not None else lens, 64)
    total = int(nblk.sum()) + 5 * len(lens)
    assert st["total_units"] == total and st["total_blocks"] == int(nblk.sum())
    assert st["payload"] == -(-total // P) + 5
    assert max(st["load"]) <= st["payload"]


def test_schedule_json_matches_reference(tmp_path):
    out = tmp_path / "s.json"
    ok("schedule", *SMALL, "--seed", "3", "--json", str(out))
    doc = json.loads(out.read_text())
    lens = workloads.lengths("uniform1k8k", 300, 3)
    assert doc["workload"]["B"] == 300 and doc["workload"]["mode"] == "dense"
    assert doc["num_sm_parts"] == 66  # dense, q_tokens_per_head_k=128 from the preset: 132 // 2
    assert doc["plan"]["num_sm_parts"] == 66 and doc["plan"]["smem_bytes"] > 0
    assert doc["timing"]["median_us"] > 0
    assert doc["seqlens"] == lens.tolist()
    _check_against_reference(doc, lens)


def test_schedule_sparse_preset_and_override(tmp_path):
    out = tmp_path / "s.json"
    ok("schedule", "--preset", "mtp-verify", "--num-sm-parts", "7", "--topk", "100", "--repeats", "1",
       "--json", str(out))
    doc = json.loads(out.read_text())
    assert doc["num_sm_parts"] == 7 and doc["workload"]["topk"] == 100
    _check_against_reference(doc, workloads.lengths("causal2048", 2048, 0), topk=100)


def test_schedule_plot(tmp_path):
    png = tmp_path / "s.png"
    ok("schedule", *SMALL, "--plot", str(png))
    w, h = png_size(png)
    assert 800 <= w <= 2400 and 500 <= h <= 1600


def test_plot_without_matplotlib(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; from jax_mla_meta.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    r = cli("schedule", "--batch-size", "4", "--plot", str(tmp_path / "x.png"), code=code)
    assert r.returncode == 2
    assert "pip install matplotlib" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("kind", ["npy", "txt"])
def test_schedule_lengths_file(tmp_path, kind):
    lens = np.array([0, 1, 63, 64, 65, 4096, 131072, 7, 5000, 12] * 5, dtype=np.int32)
    path = tmp_path / f"lens.{kind}"
    if kind == "npy":
        np.save(path, lens)
    else:
        path.write_text("# lengths\n" + ", ".join(map(str, lens[:20])) + "\n" + " ".join(map(str, lens[20:])) + "\n")
    out = tmp_path / "s.json"
    text = ok("schedule", "--lengths", str(path), "--mode", "dense", "--num-heads-q", "16",
              "--num-q-tokens-per-head-k", "16", "--repeats", "2", "--json", str(out))
    assert "B=50 rows" in text
    doc = json.loads(out.read_text())
    assert doc["num_sm_parts"] == 132
    _check_against_reference(doc, lens)


@pytest.mark.parametrize(
    "args,match",
    [
        (["schedule", "--preset", "nope"], "invalid choice"),
        (["schedule", "--batch-size", "-5"], "must be >= 0"),
        (["schedule", "--lengths", "/definitely/not/here.npy"], "No such file"),
        (["schedule", "--kernel", "foo"], "invalid choice"),
        (["schedule", "--lengths", "BADTXT"], "not an integer"),
        (["schedule", "--mode", "dense", "--fp8", "--batch-size", "3"], "--num-sm-parts"),
        (["bench", "--max-b", "many"], "expected an integer"),
    ],
)
def test_bad_arguments(tmp_path, args, match):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 x3\n")
    r = cli(*[str(bad) if a == "BADTXT" else a for a in args])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("jax-mla-meta: error: ") and match in lines[0]


def test_bench(tmp_path):
    out = ok("bench", "--max-b", "32", "--out", str(tmp_path))
    assert "CPU handler" in out
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["platform"] == "cpu" and [r["B"] for r in res["cpu"]] == [1]


def test_dist_choices_match_workloads():
    for name in workloads.DISTS:
        assert workloads.lengths(name, 3).shape == (3,)
    for preset in workloads.PRESETS.values():
        assert preset.dist in workloads.DISTS


def test_bench_span_covers_all_kernels_of_a_call():
    """The benchmark's device span of a call covers all of its kernels: one, or three for a wide low_smem
    batch (chunk sums, cluster, num_splits), and a call's kernels are told apart from the next call's."""
    from jax_mla_meta.bench import call_spans_us

    def ev(name, ts, dur):
        return dict(name=name, ts=float(ts), dur=float(dur))

    one = [ev("mla_smem_kernel", 10 * i, 4) for i in range(3)]
    assert call_spans_us(one, "smem") == [4.0, 4.0, 4.0]
    wide = []
    for i in range(2):   # dense: sums, cluster (starts early), num_splits (waits)
        t = 100 * i
        wide += [ev("mla_chunk_sums_kernel", t, 4), ev("mla_low_smem_kernel", t + 3, 10),
                 ev("mla_splits_kernel", t + 5, 12)]
    assert call_spans_us(wide, "low_smem") == [17.0, 17.0]
    sparse = [ev("mla_low_smem_kernel", 0, 5), ev("mla_splits_kernel", 2, 6),
              ev("mla_low_smem_kernel", 20, 5), ev("mla_splits_kernel", 22, 7)]
    assert call_spans_us(sparse, "low_smem") == [8.0, 9.0]
    # a lone num_splits kernel (its call's cluster kernel fell outside the trace) is not a call
    assert call_spans_us([ev("mla_splits_kernel", 0, 3)] + one, "smem") == [4.0, 4.0, 4.0]
