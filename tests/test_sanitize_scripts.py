"""The compute-sanitizer scripts on the CPU: scripts/sanitize_driver.py and scripts/sanitize.sh in their dry-run
mode (no GPU, no compute-sanitizer), which runs the driver's workloads and edge cases on the CPU backend and
checks every output against the reference. Their real runs need a GPU and compute-sanitizer (docs: the scripts'
own headers). Quick; always run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _cpu_env() -> dict:
    """This environment on the CPU backend, without XLA flags meant for a GPU."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return env


def test_sanitize_driver_dry_run():
    """The sanitizer driver on the CPU: every workload up to 20k rows and every edge case, checked, exit 0."""
    r = subprocess.run([sys.executable, str(SCRIPTS / "sanitize_driver.py"), "--dry-run", "--max-b", "20000",
                        "--tag", "dry"], capture_output=True, text=True, timeout=600, env=_cpu_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("DRIVER SUMMARY:") and "mismatches=0" in last, last
    assert "pure-TP prefill B=16384" in r.stdout and "B = 0" in r.stdout and "FAIL" not in r.stdout
    bad = subprocess.run([sys.executable, str(SCRIPTS / "sanitize_driver.py"), "--kernels", "fast"],
                         capture_output=True, text=True, timeout=120, env=_cpu_env())
    assert bad.returncode == 2 and "--kernels" in bad.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_sanitize_script_dry_run(tmp_path):
    """sanitize.sh --dry-run: runs the driver per tool on the CPU and prints the summary table."""
    r = subprocess.run(["bash", str(SCRIPTS / "sanitize.sh"), "--dry-run", "--tools", "memcheck racecheck",
                        "--max-b", "600", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
                       env=dict(_cpu_env(), PYTHON=sys.executable))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = r.stdout[r.stdout.index("compute-sanitizer summary"):]
    rows = [line.split() for line in table.splitlines()[2:]]
    assert [row[0] for row in rows] == ["memcheck", "racecheck"]
    assert all(row[1] == "600" and row[4] == "0" and row[8] == "ok" for row in rows), table
    assert (tmp_path / "sanitize-memcheck.log").exists()
