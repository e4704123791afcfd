"""The command line (`python -m jax_mla_meta ...`), run as a subprocess on the CPU backend."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import tempfile
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from jax_mla_meta import cli as cli_module
from jax_mla_meta import reference, workloads
from jax_mla_meta.checker import check_schedule

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
    assert "jax 0." in out and "CUDA module usable:" in out
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
    assert doc["topk_length"] is None and doc["extra_topk_length"] is None
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


# a child that reports its own peak memory (kB) on stdout after the command
MEASURED = ("import resource, sys\nfrom jax_mla_meta.cli import main\nrc = main(sys.argv[1:])\n"
            "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)\n")


def measured(*args: str) -> tuple[subprocess.CompletedProcess, float, int]:
    """The command line in a child: its result, wall seconds and peak resident memory in MiB."""
    t = time.perf_counter()
    r = cli(*args, code=MEASURED)
    seconds = time.perf_counter() - t
    peak = re.search(r"maxrss_kb (\d+)", r.stdout)
    assert peak, (r.stdout[-2000:], r.stderr[-2000:])
    return r, seconds, int(peak.group(1)) >> 10


def test_plot_of_many_rows_is_bounded(tmp_path):
    """200,000 rows: far past plot.MAX_PIECES pieces, so one bar per part, and --plot adds little time or memory to
    the same command without it (two polygons per piece added ~12 s and ~570 MiB here)."""
    png = tmp_path / "big.png"
    args = ("schedule", "--preset", "stress", "-B", "200000", "-P", "132", "--repeats", "1")
    r, seconds, peak_mib = measured(*args, "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert f"wrote {png}" in r.stdout and png_size(png)[0] >= 800
    r0, seconds0, peak0_mib = measured(*args)
    assert r0.returncode == 0, r0.stderr
    assert peak_mib - peak0_mib < 256 and seconds - seconds0 < 30, (peak_mib, peak0_mib, seconds, seconds0)


def _polygons_drawn(monkeypatch, tmp_path, lens: np.ndarray, P: int) -> tuple[list[int], object]:
    """plot_schedule of the reference schedule of ``lens``; the number of polygons of each PolyCollection drawn."""
    pytest.importorskip("matplotlib")
    import matplotlib.collections
    from jax_mla_meta import plot

    counts = []

    class Counting(matplotlib.collections.PolyCollection):
        def __init__(self, verts, *args, **kwargs):
            counts.append(len(verts))
            super().__init__(verts, *args, **kwargs)

    plot._pyplot()   # matplotlib fully imported before the patch
    monkeypatch.setattr(matplotlib.collections, "PolyCollection", Counting)
    st = check_schedule(*reference.schedule(lens, P), lens)
    plot.plot_schedule(str(tmp_path / "p.png"), st, "test", plot.unit_of("dense"))
    return counts, st


def test_plot_draws_each_piece_up_to_the_limit_then_one_bar_per_part(monkeypatch, tmp_path):
    from jax_mla_meta import plot

    few = workloads.lengths("uniform1k8k", 100, 0)
    counts, st = _polygons_drawn(monkeypatch, tmp_path, few, 7)
    assert st.total_pieces <= plot.MAX_PIECES and counts[0] == 2 * st.total_pieces   # F and blocks of each piece
    many = workloads.lengths("uniform1k8k", 3 * plot.MAX_PIECES, 0)
    counts, st = _polygons_drawn(monkeypatch, tmp_path, many, 7)
    assert st.total_pieces > plot.MAX_PIECES and counts[0] == 2 * int(st.busy.sum())  # one F + blocks bar per part


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


def test_text_lengths_file_parses_across_chunks(monkeypatch, tmp_path):
    """Tiny chunks: values, commas and comments cut at every place still read as the whole file would."""
    text = "# head, 1 2\n12,34 ,5#x 9\n#\n\n 678\t-9,#,\n+10 # 11\n1_0 0012"
    path = tmp_path / "l.txt"
    path.write_text(text)
    want = [12, 34, 5, 678, -9, 10, 10, 12]
    for chunk in (1, 2, 3, 5, 8, 1 << 18):
        monkeypatch.setattr(cli_module, "TEXT_CHUNK", chunk)
        monkeypatch.setattr(cli_module, "COUNT_CHUNK", chunk)
        assert cli_module.load_ints(str(path), "lengths").tolist() == want, chunk
        with open(path, "rb") as f:
            assert cli_module._count_tokens(f, 10**9) == len(want), chunk


def test_text_lengths_file_over_the_row_limit_is_refused_in_bounded_memory(monkeypatch, tmp_path):
    """The values are counted before any is converted, a chunk at a time: a file far past MAX_ROWS is refused having
    read only what the count needs, in memory that does not grow with the file."""
    monkeypatch.setattr(cli_module, "MAX_ROWS", 1000)
    path = tmp_path / "ones.txt"
    path.write_bytes(b"1\n" * (8 << 20))   # 16 MiB, 8M values
    tracemalloc.start()
    try:
        with pytest.raises(cli_module.CliError, match="holds more than 1,000 values"):
            cli_module.load_ints(str(path), "lengths")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, peak   # reading it whole and splitting it took over 500 MiB


def test_text_lengths_file_over_the_row_limit_cli(tmp_path):
    """MAX_ROWS + 1 values (32 MiB) are refused in one line, with about the memory and time of refusing a one-value
    file (parsing it whole first added ~300 MiB here)."""
    path = tmp_path / "ones.txt"
    path.write_bytes(b"1\n" * (cli_module.MAX_ROWS + 1))
    r, seconds, peak_mib = measured("schedule", "--lengths", str(path), "--mode", "dense")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"jax-mla-meta: error: lengths file {str(path)!r} holds more than 16,777,216 values"
    small = tmp_path / "bad.txt"
    small.write_text("x\n")
    r0, seconds0, peak0_mib = measured("schedule", "--lengths", str(small), "--mode", "dense")
    assert r0.returncode == 2 and "is not an integer" in r0.stderr
    assert peak_mib - peak0_mib < 128 and seconds - seconds0 < 30, (peak_mib, peak0_mib, seconds, seconds0)


def test_topk_0_is_a_top_k_of_0(tmp_path):
    """--topk 0 is kept (it used to become 2048): rows of length 0, one block each, as schedule(topk=0) has it."""
    out = tmp_path / "s.json"
    text = ok("schedule", "-B", "40", "--topk", "0", "-P", "5", "--repeats", "1", "--json", str(out))
    assert "topk 0 " in text
    doc = json.loads(out.read_text())
    assert doc["workload"]["topk"] == 0 and doc["stats"]["total_blocks"] == 40
    lens = np.asarray(doc["seqlens"], np.int32)
    want_meta, want_splits = reference.schedule(lens, 5, topk=0)
    np.testing.assert_array_equal(np.asarray(doc["tile_scheduler_metadata"], np.int32), want_meta)
    np.testing.assert_array_equal(np.asarray(doc["num_splits"], np.int32), want_splits)


def test_json_holds_the_per_row_inputs(tmp_path):
    """--json writes everything the schedule depends on, extra_topk_length included: the reference reproduces it."""
    etl = (np.arange(30, dtype=np.int32) * 37) % 500
    np.save(tmp_path / "etl.npy", etl)
    out = tmp_path / "s.json"
    ok("schedule", "-B", "30", "--topk", "128", "--topk-length", "uniform", "--extra-topk-length",
       str(tmp_path / "etl.npy"), "--layout", "2026", "-P", "7", "--repeats", "1", "--json", str(out))
    doc = json.loads(out.read_text())
    assert doc["extra_topk_length"] == etl.tolist() and len(doc["topk_length"]) == 30
    want_meta, want_splits = reference.schedule(
        np.asarray(doc["seqlens"], np.int32), 7, topk=128, layout="2026",
        topk_length=np.asarray(doc["topk_length"], np.int32),
        extra_topk_length=np.asarray(doc["extra_topk_length"], np.int32))
    np.testing.assert_array_equal(np.asarray(doc["tile_scheduler_metadata"], np.int32), want_meta)
    np.testing.assert_array_equal(np.asarray(doc["num_splits"], np.int32), want_splits)


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
