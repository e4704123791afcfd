"""The benchmark (run by `python benchmarks/bench.py` and `jax-mla-meta bench`).

Three figures per case, in microseconds:
- device: the GPU time of one call (first kernel start to last kernel end), read from a JAX profiler trace (CUPTI) of one executable that makes K independent
  calls; median and p10-p90 over the K calls. This is the figure to compare with SPEC.md section 7.
- program: that executable's wall time over K, median of repeats: what a call costs inside a jitted program
  when XLA launches it from the host (XLA's per-op host overhead included; graph capture may hide it).
- e2e: one jitted call dispatched from Python and waited for."""

from __future__ import annotations

import glob
import gzip
import json
import os
import tempfile
import platform
import statistics
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import api, reference, workloads

# SPEC.md section 7: the original kernels on one H100 (device time per call, CUDA-graph replay).
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
GRAPH_FLAGS = " --xla_gpu_graph_min_graph_size=1"   # let XLA capture even small programs as CUDA graphs


def quantiles(xs):
    """(median, p10, p90) of a non-empty sequence."""
    xs = sorted(xs)
    q = lambda f: xs[min(len(xs) - 1, int(f * (len(xs) - 1) + 0.5))]
    return statistics.median(xs), q(0.1), q(0.9)


KERNEL_NAMES = {"smem": ("mla_smem_kernel",), "low_smem": ("mla_low_smem_kernel",)}
# Wide low_smem calls (more than 8,192 rows per CTA) add a kernel before (dense) and one after the main one.
PRE_KERNEL, POST_KERNEL = "mla_chunk_sums_kernel", "mla_splits_kernel"


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
    """The kernels of each call (the calls' launches do not interleave): an optional chunk-sums kernel,
    the main kernel of ``ran``, an optional num_splits kernel."""
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
    return [g[-1]["ts"] + g[-1]["dur"] - g[0]["ts"] for g in call_groups(events, ran)]


def device_time_us(lens: np.ndarray, P: int, topk, kernel: str, device, ran: str,
                   repeats: int = 7) -> tuple[float, float, float, float]:
    """(device median, p10, p90, program time per call) for K independent calls in one executable."""
    B = lens.shape[-1]
    K = 32 if B <= 65536 else (16 if B <= 262144 else 8)
    xs = [jax.device_put(lens, device) for _ in range(K)]

    @jax.jit
    def many(*inputs):   # results returned as they are: no extra kernels in the timed executable
        return [api.schedule(x, num_sm_parts=P, topk=topk, kernel=kernel) for x in inputs]

    jax.block_until_ready(many(*xs))   # compile + warm up
    jax.block_until_ready(many(*xs))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(many(*xs))
        times.append((time.perf_counter() - t0) * 1e6 / K)
    spans = call_spans_us(kernel_events(many, *xs), ran)
    med, p10, p90 = quantiles(spans) if spans else (float("nan"),) * 3
    return med, p10, p90, statistics.median(times)


def call_times_us(fn, x, repeats: int) -> list[float]:
    """Wall time (µs) of ``repeats`` calls of ``fn(x)``, each waited for (call it warm)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append((time.perf_counter() - t0) * 1e6)
    return times


def end_to_end_us(lens: np.ndarray, P: int, topk, kernel: str, device, repeats: int = 30) -> float:
    x = jax.device_put(lens, device)
    f = jax.jit(lambda s: api.schedule(s, num_sm_parts=P, topk=topk, kernel=kernel))
    jax.block_until_ready(f(x))
    return statistics.median(call_times_us(f, x, repeats))


def _cases(max_B: int | None):
    """(label, B, lens, P, topk): the SPEC section 6 workloads plus the section 7 sweep."""
    out = []
    for w in workloads.spec_workloads(max_B):
        out.append(("workload", w.label, w.B, w.seqlens(seed=0), w.num_sm_parts, w.topk))
    for B in SWEEP_B:
        if max_B is not None and B > max_B:
            continue
        lens = workloads.lengths("lognormal", B, seed=B)
        out.append(("sweep", f"sweep dense B={B}", B, lens, 132, None))
        out.append(("sweep", f"sweep sparse B={B}", B, lens, 66, workloads.TOPK))
    return out


def run_gpu(device, max_B: int | None = None, progress: Callable[[str], None] | None = None,
            only: list[str] | None = None) -> list[dict]:
    rows = []
    cases = [c for c in _cases(max_B) if not only or any(o in c[1] for o in only)]
    for kind, label, B, lens, P, topk in cases:
        for kernel in ("auto", "smem", "low_smem"):
            plan = api.plan(B, P, kernel=kernel, device=device, topk=topk)
            if plan.kernel == "error":
                continue
            if progress:
                progress(f"{label} {kernel}")
            ran = plan.kernel
            med, p10, p90, prog = device_time_us(lens, P, topk, kernel, device, ran)
            e2e = end_to_end_us(lens, P, topk, kernel, device)
            orig = None
            if kind == "sweep" and B in ORIGINAL_US:
                o = ORIGINAL_US[B]
                orig = (o[0] if ran == "smem" else o[1]) if topk is None else o[2]
            rows.append(dict(kind=kind, label=label, B=B, P=P, mode="sparse" if topk is not None else "dense",
                             kernel=kernel, ran=ran, cluster=plan.cluster_size, device_us=med, p10_us=p10, p90_us=p90, program_us=prog,
                             e2e_us=e2e,
                             original_us=orig))
    return rows


def run_cpu(max_B: int | None = None, progress=None) -> list[dict]:
    cpu = jax.devices("cpu")[0]
    rows = []
    for B in [b for b in (1, 512, 4096, 65536, 1048576) if max_B is None or b <= max_B]:
        lens = workloads.lengths("stress", B, seed=B)
        if progress:
            progress(f"cpu B={B}")
        handler_us = end_to_end_us(lens, 132, None, "auto", cpu, repeats=15 if B < 100000 else 5)
        t0 = time.perf_counter()
        reference.schedule(lens, 132)
        ref_us = (time.perf_counter() - t0) * 1e6
        rows.append(dict(B=B, P=132, handler_us=handler_us, reference_us=ref_us, speedup=ref_us / handler_us))
    return rows


def _fmt(v):
    return "-" if v is None else (f"{v:,.1f}" if v < 1000 else f"{v:,.0f}")


def gpu_table(rows: list[dict]) -> str:
    lines = [f"{'case':<40} {'kernel':<9} {'ran':<9} {'CTAs':>4} {'device µs':>10} {'p10-p90':>13} {'program µs':>11} "
             f"{'e2e µs':>8} {'original µs':>12}"]
    for r in rows:
        lines.append(f"{r['label']:<40} {r['kernel']:<9} {r['ran']:<9} {r.get('cluster') or '-':>4} "
                     f"{_fmt(r['device_us']):>10} "
                     f"{_fmt(r['p10_us']) + '-' + _fmt(r['p90_us']):>13} {_fmt(r['program_us']):>11} "
                     f"{_fmt(r['e2e_us']):>8} {_fmt(r['original_us']):>12}")
    return "\n".join(lines)


def cpu_table(rows: list[dict]) -> str:
    lines = [f"{'B':>9} {'CPU handler µs':>15} {'reference µs':>14} {'speed-up':>9}"]
    for r in rows:
        lines.append(f"{r['B']:>9,} {_fmt(r['handler_us']):>15} {_fmt(r['reference_us']):>14} {r['speedup']:>8.0f}x")
    return "\n".join(lines)


def plot(rows: list[dict], path: str, card: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, mode, P in ((axes[0], "dense", 132), (axes[1], "sparse", 66)):
        sweep = [r for r in rows if r["kind"] == "sweep" and r["mode"] == mode]
        for kernel, style in (("auto", "o-"), ("smem", "s--"), ("low_smem", "^-")):
            pts = sorted((r["B"], r["device_us"]) for r in sweep if r["kernel"] == kernel)
            if pts:
                ax.plot(*zip(*pts), style, label=f"ours: {kernel}")
        cols = (0, 1) if mode == "dense" else (2,)
        names = ("original smem", "original fallback") if mode == "dense" else ("original fallback",)
        for col, name in zip(cols, names):
            pts = [(B, v[col]) for B, v in ORIGINAL_US.items() if v[col] is not None]
            ax.plot(*zip(*pts), "x:", color="gray" if "fallback" in name else "black", label=f"{name} (SPEC §7)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("B (rows)")
        ax.set_title(f"{mode}, num_sm_parts={P}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("device time per call (µs)")
    fig.suptitle(f"jax_mla_meta scheduling time vs B on {card}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None, progress=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Benchmark jax_mla_meta on the current JAX device (and the CPU handler).")
    ap.add_argument("--max-b", type=int, default=None, help="skip workloads with more rows")
    ap.add_argument("--out", default="benchmarks/results", help="folder for results.json and time_vs_B.png")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU-handler table")
    ap.add_argument("--only", default="", help="comma-separated label fragments: run only the GPU cases whose "
                    "label contains one (e.g. 'B=1048576,threshold')")
    ap.add_argument("--no-graphs", action="store_true",
                    help="do not turn on XLA command buffers (CUDA graphs) for the timed executables")
    args = ap.parse_args(argv)
    if not args.no_graphs and "xla_gpu_graph_min_graph_size" not in os.environ.get("XLA_FLAGS", ""):
        # must happen before the GPU backend starts; harmless on CPU
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + GRAPH_FLAGS).strip()
    os.makedirs(args.out, exist_ok=True)
    dev = jax.devices()[0]
    card = dev.device_kind if dev.platform == "gpu" else platform.processor() or "cpu"
    result = dict(card=card, platform=dev.platform, jax=jax.__version__,
                  jaxlib=getattr(jax.lib, "__version__", None) or jax.__version__,
                  date=time.strftime("%Y-%m-%d"), python=sys.version.split()[0],
                  xla_flags=os.environ.get("XLA_FLAGS", ""))
    if dev.platform == "gpu":
        result["gpu"] = run_gpu(dev, args.max_b, progress, [o for o in args.only.split(",") if o])
        if plot(result["gpu"], os.path.join(args.out, "time_vs_B.png"), card):
            result["plot"] = os.path.join(args.out, "time_vs_B.png")
    if not args.no_cpu:
        result["cpu"] = run_cpu(args.max_b, progress)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"\njax_mla_meta benchmark on {card} ({dev.platform}), jax {result['jax']}, {result['date']}")
    if "cpu" in result:
        print("\nCPU handler vs pure-Python reference (P=132, stress lengths):")
        print(cpu_table(result["cpu"]))
    if "gpu" in result:
        print("\nGPU time per call. device: kernel span from a profiler trace (median, p10-p90 over K calls);"
              "\nprogram: executable wall time / K; e2e: one dispatched jitted call. original: SPEC.md section 7.")
        print(gpu_table(result["gpu"]))
    return 0
