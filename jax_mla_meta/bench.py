"""The benchmark (``python benchmarks/bench.py`` or ``jax-mla-meta bench``).

Per case and kernel, in microseconds:
- device: the GPU time of one call (first kernel start to last kernel end), from a JAX profiler trace of one
  executable that makes 32 independent calls (8 at 1M rows); median and p10-p90 over the calls. This is the
  figure to compare with the original kernels (ORIGINAL_US below). The profiler runs the calls one by one.
- step: what one call adds to a jitted decode step: the wall time of a jitted 256-step ``fori_loop`` whose body
  calls ``schedule`` on lengths that depend on the loop state and reads two of its results, minus the same loop
  without the call, over 256; median of 7 runs. Command buffers on (``--xla_gpu_graph_min_graph_size=1
  --xla_gpu_enable_command_buffer=+WHILE``, set here unless XLA_FLAGS already names them), so XLA captures the
  whole loop as one CUDA graph: this is the cost inside a serving step.
- step, no graphs (``--no-graph-step``, GPU, auto only): the same loop in a child process with command buffers
  off (``--xla_gpu_enable_command_buffer=``): every call then pays its launch from the host.
- e2e: one jitted call dispatched from Python and waited for.
The CPU handler is timed against the pure-Python reference too. A table is printed last; ``results.json`` has
everything."""

from __future__ import annotations

import glob
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import api, reference, workloads
from .plan import plan

# The original kernels on one H100 (device time per call, CUDA-graph replay).
ORIGINAL_US = {
    # B: (smem dense P=132, fallback dense P=132, fallback sparse P=66)
    1: (18.1, 26.6, 13.9),
    512: (41.4, 101.8, 82.6),
    4096: (198.6, 613.6, 551.0),
    11622: (529.4, 1688.0, 1537.0),
    20000: (None, 2884.0, 2634.0),
    65536: (None, 10243.0, 8604.0),
    1048576: (None, 163808.0, 137340.0),
}
SWEEP_B = sorted(ORIGINAL_US)
GRAPH_FLAGS = "--xla_gpu_graph_min_graph_size=1 --xla_gpu_enable_command_buffer=+WHILE"
NO_GRAPH_FLAGS = "--xla_gpu_enable_command_buffer="
STEPS = 256

KERNEL_NAMES = {"smem": ("mla_smem_kernel",), "low_smem": ("mla_low_smem_kernel",)}
# Wide low_smem calls (more than 8,192 rows per CTA) add a kernel before (per-row lengths) and one after the main one.
PRE_KERNEL, POST_KERNEL = "mla_chunk_sums_kernel", "mla_splits_kernel"


def quantiles(xs):
    """(median, p10, p90) of a non-empty sequence."""
    xs = sorted(xs)
    q = lambda f: xs[min(len(xs) - 1, int(f * (len(xs) - 1) + 0.5))]
    return statistics.median(xs), q(0.1), q(0.9)


def kernel_events(fn, *args) -> list[dict]:
    """Our kernels' events ({name, ts, dur} in µs, sorted by start) from a profiler trace of fn(*args)."""
    names = sum(KERNEL_NAMES.values(), ()) + (PRE_KERNEL, POST_KERNEL)
    d = tempfile.mkdtemp(prefix="jax_mla_meta_trace_")
    with jax.profiler.trace(d, create_perfetto_trace=True):
        jax.block_until_ready(fn(*args))
    paths = glob.glob(os.path.join(d, "**", "perfetto_trace.json.gz"), recursive=True)
    if not paths:
        return []
    with gzip.open(paths[0]) as f:
        ev = json.load(f)
    ev = ev["traceEvents"] if isinstance(ev, dict) else ev
    out = [dict(name=next(k for k in names if k in e["name"]), ts=float(e["ts"]), dur=float(e["dur"]))
           for e in ev if e.get("ph") == "X" and any(k in e.get("name", "") for k in names)]
    return sorted(out, key=lambda e: e["ts"])


def call_groups(events: list[dict], ran: str) -> list[list[dict]]:
    """The kernels of each call (the calls' launches do not interleave): an optional chunk-sums kernel, the main
    kernel of ``ran``, an optional num_splits kernel."""
    main = KERNEL_NAMES[ran][0]
    groups, cur = [], []
    for e in events:
        if e["name"] == PRE_KERNEL or (e["name"] == main and [x["name"] for x in cur] != [PRE_KERNEL]):
            if cur:
                groups.append(cur)
            cur = [e]
        else:
            cur.append(e)
    if cur:
        groups.append(cur)
    return [g for g in groups if any(e["name"] == main for e in g)]


def call_spans_us(events: list[dict], ran: str) -> list[float]:
    """Device span of each call: its first kernel's start to its last kernel's end."""
    return [max(e["ts"] + e["dur"] for e in g) - g[0]["ts"] for g in call_groups(events, ran)]


def _split(kw: dict) -> tuple[dict, dict]:
    """A case's schedule() arguments: (arrays, static values)."""
    arrays = {k: v for k, v in kw.items() if isinstance(v, np.ndarray)}
    return arrays, {k: v for k, v in kw.items() if k not in arrays}


def device_time_us(lens: np.ndarray, P: int, kw: dict, kernel: str, device, ran: str):
    """(median, p10, p90) device span of one call, over K independent calls in one executable."""
    K = 32 if lens.shape[-1] <= 65536 else 8
    arrays, static = _split(kw)
    xs = [jax.device_put(lens, device) for _ in range(K)]
    rows = {k: jax.device_put(v, device) for k, v in arrays.items()}

    @jax.jit
    def many(xs, rows):   # results returned as they are: no extra kernels in the timed executable
        return [api.schedule(x, num_sm_parts=P, kernel=kernel, **static, **rows) for x in xs]

    jax.block_until_ready(many(xs, rows))   # compile + warm up
    spans = call_spans_us(kernel_events(many, xs, rows), ran)
    return quantiles(spans) if spans else (float("nan"),) * 3


def loop_cost_us(op: Callable, x, rows: dict, repeats: int = 7) -> float:
    """What ``op(lengths, rows) -> int32 scalar`` adds to a jitted STEPS-step ``fori_loop`` (µs per step): the
    loop's wall time with the op, minus without it, over STEPS; median of ``repeats`` runs after 3 warm-up runs
    (compile, and the first run of a command buffer records it). The lengths depend on the loop state, so XLA
    cannot hoist the op out of the loop."""

    def program(with_op: bool):
        def body(i, carry):
            acc, x, rows = carry
            xin = jnp.where(acc < 0, x + 1, x)
            acc = acc + (op(xin, rows) if with_op else (xin[0] & 1) + (xin[-1] & 1))
            return acc, x, rows

        return jax.jit(lambda x, rows: lax.fori_loop(0, STEPS, body, (jnp.int32(0), x, rows))[0])

    times = {}
    for with_op in (False, True):
        f = program(with_op)
        for _ in range(3):
            jax.block_until_ready(f(x, rows))
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(f(x, rows))
            ts.append(time.perf_counter() - t0)
        times[with_op] = statistics.median(ts)
    return (times[True] - times[False]) * 1e6 / STEPS


def schedule_op(P: int, kernel: str, static: dict) -> Callable:
    """A loop op that calls ``schedule`` and reads two of its results."""

    def op(xin, rows):
        meta, splits = api.schedule(xin, num_sm_parts=P, kernel=kernel, **static, **rows)
        return (meta[0, 0] & 1) + (splits[-1] & 1)

    return op


def step_time_us(lens: np.ndarray, P: int, kw: dict, kernel: str, device, repeats: int = 7) -> float:
    """What one call adds to a jitted STEPS-step loop (see the module docstring)."""
    arrays, static = _split(kw)
    x = jax.device_put(lens, device)
    rows = {k: jax.device_put(v, device) for k, v in arrays.items()}
    return loop_cost_us(schedule_op(P, kernel, static), x, rows, repeats)


def call_times_us(fn, x, repeats: int) -> list[float]:
    """Wall time (µs) of ``repeats`` calls of ``fn(x)``, each waited for (call it warm)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append((time.perf_counter() - t0) * 1e6)
    return times


def end_to_end_us(lens: np.ndarray, P: int, kw: dict, kernel: str, device, repeats: int = 30) -> float:
    arrays, static = _split(kw)
    x = jax.device_put(lens, device)
    rows = {k: jax.device_put(v, device) for k, v in arrays.items()}
    f = jax.jit(lambda s, r: api.schedule(s, num_sm_parts=P, kernel=kernel, **static, **r))
    jax.block_until_ready(f(x, rows))
    return statistics.median(call_times_us(lambda a: f(*a), (x, rows), repeats))


def cases(max_B: int | None = None, layouts=("2025", "2026"), per_row: bool = True):
    """(kind, label, lengths, P, schedule kwargs): the docs/spec.md section 8 workloads in each layout, the sparse
    ones also with per-row top-k counts (uniform in [0, topk]) in each layout, and the sweep of ORIGINAL_US
    (2025)."""
    out = []
    for w in workloads.spec_workloads(max_B):
        for layout in layouts:
            out.append(("workload", f"{w.label} {layout}", w.seqlens(seed=0), w.num_sm_parts,
                        dict(topk=w.topk, layout=layout)))
        if per_row and w.topk is not None:
            for layout in layouts:
                out.append(("per-row", f"{w.label} topk_length {layout}", w.seqlens(seed=0), w.num_sm_parts,
                            dict(topk=w.topk, layout=layout, topk_length=w.topk_length(seed=0))))
    for B in SWEEP_B:
        if max_B is not None and B > max_B:
            continue
        lens = workloads.lengths("lognormal", B, seed=B)
        out.append(("sweep", f"sweep dense B={B}", lens, 132, dict(topk=None)))
        out.append(("sweep", f"sweep sparse B={B}", lens, 66, dict(topk=workloads.TOPK)))
    return out


def run_gpu(device, max_B=None, progress=None, only=(), layouts=("2025", "2026"), kernels=("auto", "smem", "low_smem"),
            step: bool = True, on_row: Callable[[list[dict]], None] | None = None,
            step_only: bool = False) -> list[dict]:
    """Time each case with each kernel; ``on_row(rows)`` after each measured row (main saves a partial result).
    ``step_only``: the step column alone (the no-graph child), the other columns None."""
    rows = []
    for kind, label, lens, P, kw in cases(max_B, layouts):
        if only and not any(o in label for o in only):
            continue
        B = lens.shape[-1]
        per_row = "topk_length" in kw
        for kernel in kernels:
            pl = plan(B, P, kernel=kernel, device=device, topk=kw.get("topk"), per_row=per_row)
            if pl.kernel == "error":
                continue
            if progress:
                progress(f"{label} {kernel}")
            med, p10, p90 = (None,) * 3 if step_only else device_time_us(lens, P, kw, kernel, device, pl.kernel)
            orig = None
            if kind == "sweep" and B in ORIGINAL_US:
                o = ORIGINAL_US[B]
                orig = (o[0] if pl.kernel == "smem" else o[1]) if kw["topk"] is None else o[2]
            rows.append(dict(kind=kind, label=label, B=B, P=P, mode="sparse" if kw["topk"] is not None else "dense",
                             layout=kw.get("layout", "2025"), per_row=per_row, kernel=kernel, ran=pl.kernel,
                             path=pl.path, cluster=pl.cluster_size, device_us=med, p10_us=p10, p90_us=p90,
                             step_us=step_time_us(lens, P, kw, kernel, device) if step else None,
                             e2e_us=None if step_only else end_to_end_us(lens, P, kw, kernel, device),
                             original_us=orig))
            if on_row:
                on_row(rows)
    return rows


def run_cpu(max_B: int | None = None, progress=None) -> list[dict]:
    cpu = jax.devices("cpu")[0]
    rows = []
    for B in [b for b in (1, 512, 4096, 65536, 1048576) if max_B is None or b <= max_B]:
        lens = workloads.lengths("stress", B, seed=B)
        if progress:
            progress(f"cpu B={B}")
        handler_us = end_to_end_us(lens, 132, {}, "auto", cpu, repeats=15 if B < 100000 else 5)
        t0 = time.perf_counter()
        reference.schedule(lens, 132)
        ref_us = (time.perf_counter() - t0) * 1e6
        rows.append(dict(B=B, P=132, handler_us=handler_us, reference_us=ref_us, speedup=ref_us / handler_us))
    return rows


def _fmt(v):
    return "-" if v is None or v != v else (f"{v:,.2f}" if v < 100 else f"{v:,.0f}")


def gpu_table(rows: list[dict], no_graph: dict | None = None) -> str:
    no_graph = no_graph or {}
    lines = [f"{'case':<46} {'kernel':<9} {'ran':<9} {'path':<8} {'CTAs':>4} {'device':>7} {'p10-p90':>12} "
             f"{'step':>6} {'no-graph':>8} {'e2e':>7} {'original':>9}"]
    for r in rows:
        ng = no_graph.get(r["label"]) if r["kernel"] == "auto" else None
        lines.append(f"{r['label']:<46} {r['kernel']:<9} {r['ran']:<9} {r['path'] or '-':<8} "
                     f"{r.get('cluster') or '-':>4} "
                     f"{_fmt(r['device_us']):>7} {_fmt(r['p10_us']) + '-' + _fmt(r['p90_us']):>12} "
                     f"{_fmt(r['step_us']):>6} {_fmt(ng):>8} {_fmt(r['e2e_us']):>7} {_fmt(r['original_us']):>9}")
    return "\n".join(lines)


def layout_table(rows: list[dict]) -> str:
    """Device and step time of every case measured in both layouts, the 2025 and 2026 figures side by side."""
    pairs: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        base, _, layout = r["label"].rpartition(" ")
        if layout in ("2025", "2026"):
            pairs.setdefault((base, r["kernel"]), {})[layout] = r
    lines = [f"{'case':<46} {'kernel':<9} {'device 2025':>11} {'device 2026':>11} {'step 2025':>9} {'step 2026':>9}"]
    for (base, kernel), by in pairs.items():
        if len(by) == 2:
            a, b = by["2025"], by["2026"]
            lines.append(f"{base:<46} {kernel:<9} {_fmt(a['device_us']):>11} {_fmt(b['device_us']):>11} "
                         f"{_fmt(a['step_us']):>9} {_fmt(b['step_us']):>9}")
    return "\n".join(lines) if len(lines) > 1 else ""


def cpu_table(rows: list[dict]) -> str:
    lines = [f"{'B':>9} {'CPU handler µs':>15} {'reference µs':>14} {'speed-up':>9}"]
    for r in rows:
        lines.append(f"{r['B']:>9,} {_fmt(r['handler_us']):>15} {_fmt(r['reference_us']):>14} {r['speedup']:>8.0f}x")
    return "\n".join(lines)


def no_graph_steps(args) -> dict:
    """The step column with command buffers off, from a child process (XLA reads its flags once, at start)."""
    out = os.path.join(tempfile.mkdtemp(prefix="jax_mla_meta_nograph_"), "steps.json")
    env = {**os.environ, "XLA_FLAGS": NO_GRAPH_FLAGS, "JAX_MLA_META_STEP_CHILD": out}
    cmd = [sys.executable, "-m", "jax_mla_meta.bench", "--no-cpu", "--kernels", "auto", "--out", os.path.dirname(out)]
    if args.max_b is not None:
        cmd += ["--max-b", str(args.max_b)]
    if args.only:
        cmd += ["--only", args.only]
    cmd += ["--layouts", args.layouts]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.load(open(out))


def main(argv=None, progress: Callable[[str], None] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Benchmark jax_mla_meta on the default JAX device (and the CPU handler).")
    ap.add_argument("--max-b", type=int, default=None, help="skip workloads with more rows")
    ap.add_argument("--out", default="benchmarks/results", help="folder for results.json")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU-handler table")
    ap.add_argument("--only", default="", help="comma-separated label fragments: run only the GPU cases whose label "
                    "contains one (e.g. 'B=1048576,threshold')")
    ap.add_argument("--layouts", default="2025,2026", help="layouts of the workload cases (default: both)")
    ap.add_argument("--kernels", default="auto,smem,low_smem")
    ap.add_argument("--no-step", action="store_true", help="skip the step column")
    ap.add_argument("--no-graph-step", action="store_true",
                    help="also the step column with command buffers off (a child process, auto only)")
    args = ap.parse_args(argv)
    child = os.environ.get("JAX_MLA_META_STEP_CHILD")
    if not child and not any(f in os.environ.get("XLA_FLAGS", "") for f in ("graph_min_graph_size", "command_buffer")):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + GRAPH_FLAGS).strip()   # before start
    os.makedirs(args.out, exist_ok=True)
    dev = jax.devices()[0]
    card = dev.device_kind if dev.platform == "gpu" else platform.processor() or "cpu"
    only = [o for o in args.only.split(",") if o]
    layouts = tuple(args.layouts.split(","))
    if child:   # the no-graph step column only
        rows = run_gpu(dev, args.max_b, progress, only, layouts, ("auto",), step=True, step_only=True)
        json.dump({r["label"]: r["step_us"] for r in rows}, open(child, "w"))
        return 0
    result = dict(card=card, platform=dev.platform, jax=jax.__version__,
                  jaxlib=getattr(jax.lib, "__version__", None) or jax.__version__, date=time.strftime("%Y-%m-%d"),
                  python=sys.version.split()[0], xla_flags=os.environ.get("XLA_FLAGS", ""))
    path = os.path.join(args.out, "results.json")

    def save_partial(rows: list[dict]) -> None:   # a run cut short keeps what it measured
        with open(path, "w") as f:
            json.dump({**result, "partial": True, "gpu": rows}, f, indent=1)

    if dev.platform == "gpu":
        result["gpu"] = run_gpu(dev, args.max_b, progress, only, layouts, tuple(args.kernels.split(",")),
                                step=not args.no_step, on_row=save_partial)
        if args.no_graph_step:
            result["step_no_graphs"] = no_graph_steps(args)
    if not args.no_cpu:
        result["cpu"] = run_cpu(args.max_b, progress)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\njax_mla_meta benchmark on {card} ({dev.platform}), jax {result['jax']}, {result['date']}")
    if "cpu" in result:
        print("\nCPU handler vs pure-Python reference (P=132, stress lengths):")
        print(cpu_table(result["cpu"]))
    if "gpu" in result:
        print("\nGPU, µs per call. device: kernel span in a profiler trace (median, p10-p90); step: added to a "
              f"jitted {STEPS}-step loop\nwith command buffers on; no-graph: the same with them off; e2e: one "
              "dispatched jitted call. original: the original kernels (ORIGINAL_US).")
        print(gpu_table(result["gpu"], result.get("step_no_graphs")))
        both = layout_table(result["gpu"])
        if both:
            print("\nThe two layouts side by side (µs):")
            print(both)
    return 0


if __name__ == "__main__":
    sys.exit(main())
