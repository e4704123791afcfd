"""Where a call's cost inside a jitted loop goes beyond its device time (GPU).

python3 benchmarks/host_cost.py [--no-graphs] [B ...]

Per case, µs per loop step (bench.loop_cost_us: a 256-step ``fori_loop`` with the op minus without it):
- ``call``: one ``schedule`` call (bench.py's step column);
- ``native``: one XLA-native kernel instead, ``(lengths & 7).sum()`` (a reduction fusion over the same B rows): what
  any one-kernel op costs in the same loop, the floor XLA sets for a kernel thunk;
- ``device``: the call's device time (profiler trace, as in bench.py);
- ``handler`` and ``launch``: host time in our FFI handler per call, and within it in ``cudaLaunchKernelExC``, and
  ``calls/run``: handler calls per 256-step run. These need a build with ``-DMLA_HOST_TIMING`` (e.g.
  ``VARIANT_DEFS=-DMLA_HOST_TIMING bash scripts/gpu_ab.sh build`` and ``PYTHONPATH=.ab/pkgs/var``); other builds
  print "-".

Command buffers are on (the README's serving flags) unless ``--no-graphs``; the script sets XLA_FLAGS itself.
With graphs, ``calls/run`` near 0 means XLA replays a recorded graph (the handler does not run per step); with
graphs off it is 256 and ``call - handler`` is XLA's own per-thunk work around our handler.
"""

from __future__ import annotations

import os
import sys

NO_GRAPHS = "--no-graphs" in sys.argv
_args = [a for a in sys.argv[1:] if a != "--no-graphs"]

from jax_mla_meta.bench import GRAPH_FLAGS, NO_GRAPH_FLAGS, STEPS  # noqa: E402  (XLA reads XLA_FLAGS when its backend starts)

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + (NO_GRAPH_FLAGS if NO_GRAPHS else GRAPH_FLAGS))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jax_mla_meta import _ffi, bench, workloads  # noqa: E402

CASES = {   # B: (P, topk, length distribution)
    1: (132, None, "lognormal"),
    512: (132, None, "lognormal"),
    11623: (132, None, "lognormal"),
    16384: (66, 2048, "causal"),
    65536: (66, 2048, "causal"),
}
WARMUP_AND_REPEATS = 3 + 7   # loop_cost_us's runs of the loop with the op


def host_timing():
    cuda = getattr(_ffi, "_cuda", None)
    return cuda.host_timing() if cuda is not None and hasattr(cuda, "host_timing") else None


def main() -> int:
    dev = jax.devices()[0]
    if dev.platform != "gpu":
        sys.exit("host_cost.py measures the CUDA handler: it needs a GPU")
    print(f"{dev.device_kind}, jax {jax.__version__}, command buffers {'off' if NO_GRAPHS else 'on'} "
          f"(XLA_FLAGS={os.environ['XLA_FLAGS'].strip()!r}); µs per step of a {STEPS}-step loop")
    print(f"{'case':<24} {'call':>6} {'native':>7} {'device':>7} {'handler':>8} {'launch':>7} {'calls/run':>10}")
    for B in [int(a) for a in _args] or list(CASES):
        P, topk, dist = CASES.get(B, (132, None, "lognormal"))
        lens = workloads.lengths(dist, B, seed=B)
        x = jax.device_put(lens, dev)
        kw = {} if topk is None else {"topk": topk}
        t0 = host_timing()
        call = bench.loop_cost_us(bench.schedule_op(P, "auto", kw), x, {})
        t1 = host_timing()
        native = bench.loop_cost_us(lambda xin, rows: jnp.sum(xin & 7), x, {})
        device = bench.device_time_us(lens, P, kw, "auto", dev, bench.plan(B, P, device=dev, topk=topk).kernel)[0]
        if t0 is not None:
            calls = t1[1] - t0[1]
            handler = (t1[0] - t0[0]) / max(calls, 1) / 1e3
            launch = (t1[2] - t0[2]) / max(calls, 1) / 1e3
            extra = f"{handler:8.2f} {launch:7.2f} {calls / WARMUP_AND_REPEATS:10.1f}"
        else:
            extra = f"{'-':>8} {'-':>7} {'-':>10}"
        label = f"B={B} {'sparse' if topk else 'dense'} P={P}"
        print(f"{label:<24} {call:6.2f} {native:7.2f} {device:7.2f} {extra}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
