"""Capture in XLA command buffers (CUDA graphs), proven from XLA's own thunk dump.

XLA builds command buffers from its compiled thunks (there is no HLO trace of them): with ``--xla_dump_to`` it
writes ``*thunk_sequence_after_thunk_passes.txt`` per module, where a captured thunk is nested under a
``kCommandBuffer`` line. On a GPU, a child process compiles four programs with the flags the README gives for
serving (``--xla_gpu_graph_min_graph_size=1 --xla_gpu_enable_command_buffer=+WHILE``): a lone call, a
``fori_loop`` and a ``scan`` whose bodies call the op on lengths that change every iteration, and a loop over a
wide 1M-row batch (three launches: chunk sums, a cluster, and num_splits as programmatic dependent launches). The
test fails unless the op's custom call sits inside a command buffer in every one, and every result equals the
reference, replayed with new inputs (the same programs and checks also run on the CPU backend). The same child
with command buffers switched off must find no capture (so the check can fail); the parser is also checked on
hand-written dumps, on the CPU. The child's inputs are seeded from the test's `rng` (the suite's
JAX_MLA_META_SEED), and every failure message names that seed.
"""

from __future__ import annotations

import json
import re
import textwrap

from test_transforms import run_child, with_xla_flags

from jax_mla_meta.bench import GRAPH_FLAGS as SERVING_FLAGS      # the flags the README gives and bench.py uses
from jax_mla_meta.bench import NO_GRAPH_FLAGS as OFF_FLAGS
PROGRAMS = ("lone", "fori", "scanned", "wide")


def captured_custom_calls(dump: str) -> tuple[int, int]:
    """(custom-call thunks inside a command buffer, custom-call thunks outside any) in one thunk-sequence dump:
    a thunk line nests under the nearest line above it with less indentation."""
    inside = outside = 0
    stack: list[tuple[int, bool]] = []   # (indent, is a command buffer) of the enclosing lines
    for line in dump.splitlines():
        text = line.strip()
        if not text:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if "kCustomCall" in text:
            if any(cb for _, cb in stack):
                inside += 1
            else:
                outside += 1
        stack.append((indent, "kCommandBuffer" in text))
    return inside, outside


def dumps_by_program(dump_dir) -> dict[str, str]:
    """The thunk dump of each program of the child (modules are named after the jitted function)."""
    out = {}
    for path in dump_dir.glob("*thunk_sequence*.txt"):
        for name in PROGRAMS:
            if re.search(rf"jit_{name}\b|jit_{name}\.", path.name):
                if "after_thunk_passes" in path.name or name not in out:
                    out[name] = path.read_text()
    return out


def test_parser_on_hand_written_dumps():
    captured = "000: kCommandBuffer\n  000: kKernel fusion\n  001: kCustomCall custom-call.1\n001: kKernel x\n"
    in_while = ("000: kCommandBuffer\n  000: kWhile\n    000: kSequential\n      000: kCustomCall cc\n"
                "      001: kKernel k\n")
    outside = "000: kKernel fusion\n001: kCustomCall custom-call.1\n002: kCommandBuffer\n  000: kKernel k\n"
    assert captured_custom_calls(captured) == (1, 0)
    assert captured_custom_calls(in_while) == (1, 0)
    assert captured_custom_calls(outside) == (0, 1)
    assert captured_custom_calls("") == (0, 0)


CHILD = """
    import json, os
    import jax, jax.numpy as jnp, numpy as np
    from jax import lax
    import jax_mla_meta as mm
    from lengths import between
    devs = [d for d in jax.devices() if d.platform == PLATFORM]
    assert devs, f"no {PLATFORM} device in the child: {jax.devices()}"
    dev = devs[0]
    rng = np.random.default_rng(SEED)
    report = {}

    def lone(s):
        return mm.schedule(s, num_sm_parts=132, layout="2026")

    def fori(s):
        def body(t, carry):
            s, acc = carry
            m, sp = mm.schedule(s, num_sm_parts=66, topk=2048, topk_length=s, layout="2026")
            return (s + sp[1:] % 7 + 1) % 2049, acc + m.sum() + sp.sum()
        return lax.fori_loop(0, 5, body, (s, jnp.int32(0)))

    def scanned(s):
        def body(s, t):
            m, sp = mm.schedule(s, num_sm_parts=132)
            return (s + sp[1:] % 5 + t) % 70000, (m, sp)
        return lax.scan(body, s, jnp.arange(4, dtype=jnp.int32))

    def wide(s):
        def body(t, carry):
            s, acc = carry
            m, sp = mm.schedule(s, num_sm_parts=132, kernel="low_smem")
            return (s + t) % 9000, acc + m.sum() + sp[-1]
        return lax.fori_loop(0, 2, body, (s, jnp.int32(0)))

    def ref_fori(s):
        acc = 0
        for t in range(5):
            m, sp = mm.reference.schedule(s, 66, topk=2048, topk_length=s, layout="2026")
            acc += int(m.astype(np.int64).sum() + sp.astype(np.int64).sum())
            s = (s + sp[1:] % 7 + 1) % 2049
        return s, acc

    for name, f, B, high in (("lone", lone, 300, 90000), ("fori", fori, 700, 2049), ("scanned", scanned, 2500, 70000),
                             ("wide", wide, 1 << 20, 9000)):
        jf = jax.jit(f)
        for rep in range(3):   # replays with new inputs: a captured graph must not serve stale ones
            x = between(rng, B, 0, high)
            got = jax.tree_util.tree_map(np.asarray, jf(jax.device_put(x, dev)))
            if name == "lone":
                want = mm.reference.schedule(x, 132, layout="2026")
                ok = all(np.array_equal(a, b) for a, b in zip(got, want))
            elif name == "fori":
                s, acc = ref_fori(x)
                ok = np.array_equal(got[0], s) and int(got[1]) == acc % 2**32 - (2**32 if acc % 2**32 >= 2**31 else 0)
            elif name == "scanned":
                s, ok = x, True
                for t in range(4):
                    m, sp = mm.reference.schedule(s, 132)
                    ok &= np.array_equal(got[1][0][t], m) and np.array_equal(got[1][1][t], sp)
                    s = (s + sp[1:] % 5 + t) % 70000
                ok &= np.array_equal(got[0], s)
            else:
                s, acc = x, 0
                for t in range(2):
                    m, sp = mm.reference.schedule(s, 132)
                    acc += int(m.astype(np.int64).sum()) + int(sp[-1])
                    s = (s + t) % 9000
                ok = np.array_equal(got[0], s) and int(got[1]) == (acc + 2**31) % 2**32 - 2**31
            report[f"{name}/{rep}"] = bool(ok)
    print("REPORT " + json.dumps(report))
"""


def child_code(seed: int, platform: str = "gpu") -> str:
    return f"SEED = {seed}\nPLATFORM = {platform!r}\n" + textwrap.dedent(CHILD)


def test_child_programs_are_right_on_cpu(tmp_path, rng):
    """The child's programs and checks on the CPU backend, so their logic is tested where no GPU is (a stray
    indent in the child once failed only on a GPU)."""
    proc = run_child(child_code(rng.seed, "cpu"), {"JAX_PLATFORMS": "cpu"}, tmp_path, what=f"seed {rng.seed}")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("REPORT ")]
    assert lines, f"seed {rng.seed}: the child printed no REPORT line\n{proc.stdout[-3000:]}"
    report = json.loads(lines[-1][len("REPORT "):])
    assert len(report) == 3 * len(PROGRAMS) and all(report.values()), f"seed {rng.seed}: {report}"


def _run(tmp_path, flags: str, seed: int) -> tuple[dict, dict]:
    """The child's report and thunk dumps, its inputs drawn from ``seed`` (the test's rng seed)."""
    dump = tmp_path / "dump"
    code = child_code(seed)
    proc = run_child(code, {"XLA_FLAGS": with_xla_flags(f"{flags} --xla_dump_to={dump}")}, tmp_path,
                     what=f"seed {seed}")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("REPORT ")]
    assert lines, f"seed {seed}: the child printed no REPORT line\n{proc.stdout[-3000:]}"
    return json.loads(lines[-1][len("REPORT "):]), dumps_by_program(dump)


def test_calls_are_captured_in_command_buffers_and_right(tmp_path, gpus, rng):
    results, dumps = _run(tmp_path, SERVING_FLAGS, rng.seed)
    assert all(results.values()), f"seed {rng.seed}: results differ from the reference: {results}"
    for name in PROGRAMS:
        assert name in dumps, f"seed {rng.seed}: no thunk dump for program {name}: {sorted(dumps)}"
        inside, outside = captured_custom_calls(dumps[name])
        assert inside >= 1 and outside == 0, (
            f"seed {rng.seed}: {name}: {inside} custom call(s) inside a command buffer, {outside} outside; with "
            f"{SERVING_FLAGS} every call must be captured (is the CUDA handler still built with "
            "Traits::kCmdBufferCompatible?)\n" + dumps[name][:3000])


def test_without_command_buffers_nothing_is_captured(tmp_path, gpus, rng):
    """The negative control: the same programs with command buffers off give no captured call (and the same
    results), so the test above can fail."""
    results, dumps = _run(tmp_path, OFF_FLAGS, rng.seed)
    assert all(results.values()), f"seed {rng.seed}: results differ from the reference: {results}"
    assert sorted(dumps) == sorted(PROGRAMS), f"seed {rng.seed}: thunk dumps missing: {sorted(dumps)}"
    for name, text in dumps.items():
        assert captured_custom_calls(text)[0] == 0, (
            f"seed {rng.seed}: {name}: captured with command buffers off?\n{text[:2000]}")
