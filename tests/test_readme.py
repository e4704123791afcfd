"""The README says what it does: its Python examples run and print what their comments say, the XLA flags it gives
are the ones tests/test_command_buffers.py proves capture with, and every file it links to exists.

Runs where the README is (a source checkout or an sdist); skips where the tests were installed without it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from test_command_buffers import SERVING_FLAGS

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
pytestmark = pytest.mark.skipif(not os.path.exists(README), reason="no README.md beside tests/")


def _readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def test_python_examples_run_and_print_what_they_say(tmp_path):
    """The README's python blocks, run one after the other in a fresh interpreter on the CPU (the second block uses
    the first's imports, as a reader would); the decode example's printed shapes are its comment's."""
    blocks = re.findall(r"```python\n(.*?)```", _readme(), re.S)
    assert len(blocks) >= 2, "the README lost its usage and decode examples"
    script = tmp_path / "readme_examples.py"
    script.write_text("\n".join(blocks))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    promised = re.findall(r"print\(out\.shape, lse\.shape\)\s*#\s*(.+)", _readme())
    assert promised, "the decode example no longer prints its shapes"
    assert promised[0].strip() in proc.stdout, (promised[0], proc.stdout[-2000:])


def test_command_buffer_flags_are_the_tested_ones():
    flags = re.search(r'XLA_FLAGS="([^"]+)"', _readme())
    assert flags, "the README no longer gives the serving flags"
    assert flags.group(1) == SERVING_FLAGS


def test_linked_files_exist():
    text = _readme()
    root = os.path.dirname(README)
    links = set(re.findall(r"\]\(([^)#:]+)\)", text)) | set(re.findall(r"`((?:scripts|docs|benchmarks)/[\w./-]+)`",
                                                                         text))
    assert links, "no links found: has the README's link syntax changed?"
    missing = sorted(p for p in links if not os.path.exists(os.path.join(root, p)))
    assert not missing, f"the README points at files that do not exist: {missing}"
