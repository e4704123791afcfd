"""Command-line interface: ``jax-mla-meta {info,schedule,bench}`` (also ``python -m jax_mla_meta``).

- ``info``: JAX versions, whether the CUDA module is built, and every device's SM count, compute capability,
  opt-in shared-memory limit and the largest batch the "smem" kernel takes there.
- ``schedule``: compute the metadata for one workload (default: the original crash case, DeepSeek V3.2
  pure-TP prefill, B = 16,384 sparse rows), print the plan, per-part load statistics and the time per call;
  optionally write everything as JSON (``--json``) and draw the schedule (``--plot``).
- ``bench``: run :func:`jax_mla_meta.bench.main` with a progress display.

Bad arguments and unreadable or invalid files print one line, ``jax-mla-meta: error: ...``, on stderr and
exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

PROG = "jax-mla-meta"
BLOCK_SIZE_N = 64      # FlashMLA's KV block size
OVERHEAD_F = 5         # FlashMLA's fixed_overhead_num_blocks
# length distributions of jax_mla_meta.workloads.lengths (tests check the two agree)
DISTS = ("const4096", "uniform1k8k", "lognormal", "causal", "causal2048", "arange2048", "stress")


class CliError(Exception):
    """An error the user can fix; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage block) and are raised, not exited on."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(message)


def _int_arg(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fmt(v: float | int | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return f"{v:,.1f}"


# --------------------------------------------------------------------------------------------- inputs


def load_lengths(path: str) -> np.ndarray:
    """Read int32 row lengths from a ``.npy`` file or a text file of integers (whitespace/comma separated,
    ``#`` starts a comment)."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            text = p.read_text()
            arr = None
    except OSError as e:
        raise CliError(f"cannot read lengths file {path!r}: {e.strerror or _one_line(e)}") from None
    except (ValueError, EOFError) as e:
        reason = "not a valid .npy file of numbers" if p.suffix.lower() == ".npy" else _one_line(e)
        raise CliError(f"cannot read lengths file {path!r}: {reason}") from None
    if arr is None:
        body = re.sub(r"#[^\n]*", " ", text)
        tokens = [t for t in re.split(r"[\s,]+", body) if t]
        values = []
        for k, tok in enumerate(tokens):
            try:
                values.append(int(tok))
            except ValueError:
                raise CliError(f"lengths file {path!r}: value {k + 1} ({tok!r}) is not an integer") from None
        arr = np.asarray(values, dtype=np.int64) if values else np.zeros(0, np.int64)
    else:
        if arr.ndim != 1:
            raise CliError(f"lengths file {path!r}: expected a 1-D array, got shape {arr.shape}")
        if arr.dtype.kind == "f" and arr.size and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
            raise CliError(f"lengths file {path!r}: lengths must be integers")
        if arr.dtype.kind not in "iuf" and arr.size:
            raise CliError(f"lengths file {path!r}: expected integer lengths, got dtype {arr.dtype}")
        arr = arr.astype(np.float64 if arr.dtype.kind == "f" else np.int64) if arr.size else np.zeros(0, np.int64)
    lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise CliError(f"lengths file {path!r}: lengths must fit in int32 ({lo}..{hi})")
    return arr.astype(np.int32)


@dataclasses.dataclass
class Workload:
    """The fully resolved inputs of ``schedule``."""

    source: str                 # how the lengths were made (distribution / file)
    preset: str                 # the preset the defaults come from
    overridden: list[str]       # options that replaced the preset's values
    dist: str | None
    seed: int
    lengths_file: str | None
    seqlens: np.ndarray         # int32 [B]
    mode: str                   # "dense" | "sparse"
    topk: int | None
    num_heads_q: int
    num_heads_k: int
    num_q_tokens_per_head_k: int
    fp8: bool
    num_sm_parts: int | None    # explicit override
    kernel: str

    @property
    def B(self) -> int:
        return int(self.seqlens.shape[0])


def resolve_workload(args: argparse.Namespace) -> Workload:
    from . import workloads

    preset_name = args.preset or "pure-tp-prefill"
    B, dist, mode, h_q, h_k, q = workloads.PRESETS[preset_name]
    overridden = [f"--{k.replace('_', '-')}" for k in ("lengths", "batch_size", "dist", "mode", "topk", "num_heads_q",
                  "num_heads_k", "num_q_tokens_per_head_k", "fp8") if getattr(args, k) is not None]
    if args.lengths is not None:
        if args.batch_size is not None or args.dist is not None:
            raise CliError("--lengths cannot be combined with --batch-size or --dist")
        seqlens = load_lengths(args.lengths)
        dist = None
        source = f"lengths from {args.lengths}"
    else:
        if args.batch_size is not None:
            B = args.batch_size
        if args.dist is not None:
            dist = args.dist
        seqlens = workloads.lengths(dist, B, args.seed) if B else np.zeros(0, np.int32)
        source = f"'{dist}' lengths, seed {args.seed}"
    if args.mode is not None:
        mode = args.mode
    elif args.topk is not None:
        mode = "sparse"
    if mode == "dense" and args.topk is not None:
        raise CliError("--topk applies only to --mode sparse")
    topk = (args.topk if args.topk is not None else workloads.TOPK) if mode == "sparse" else None
    fp8 = args.fp8 if args.fp8 is not None else (mode == "sparse")
    return Workload(
        source=source,
        preset=preset_name,
        overridden=overridden,
        dist=dist,
        seed=args.seed,
        lengths_file=args.lengths,
        seqlens=np.ascontiguousarray(seqlens, dtype=np.int32),
        mode=mode,
        topk=topk,
        num_heads_q=args.num_heads_q if args.num_heads_q is not None else h_q,
        num_heads_k=args.num_heads_k if args.num_heads_k is not None else h_k,
        num_q_tokens_per_head_k=args.num_q_tokens_per_head_k if args.num_q_tokens_per_head_k is not None else q,
        fp8=fp8,
        num_sm_parts=args.num_sm_parts,
        kernel=args.kernel,
    )


def _pick_device(name: str | None) -> Any:
    import jax

    if name is None:
        return jax.devices()[0]
    try:
        devs = jax.devices(name)
    except RuntimeError as e:
        raise CliError(f"no {name} device available ({_one_line(e)})") from None
    if not devs:
        raise CliError(f"no {name} device available")
    return devs[0]


# ---------------------------------------------------------------------------------------------- stats


def part_stats(meta: np.ndarray, splits: np.ndarray, seqlens: np.ndarray, topk: int | None,
               block_size_n: int = BLOCK_SIZE_N, F: int = OVERHEAD_F) -> dict[str, Any]:
    """Per-part load of a schedule, recomputed from the metadata and the lengths.

    Row i occupies blocks ``[C_i, C_{i+1})`` of a global block axis (``C`` = cumulative blocks of rows). A part
    covers ``[C_b + begin_block, C_e + end)`` with ``end = end_block`` (or the whole row e when it ends on a row
    boundary); its load is ``blocks + F * pieces`` where ``pieces`` = rows it touches."""
    from . import reference

    meta = np.asarray(meta, dtype=np.int64)
    splits = np.asarray(splits, dtype=np.int64)
    B, P = int(seqlens.shape[0]), int(meta.shape[0])
    lens = np.full(B, topk, dtype=np.int64) if topk is not None else np.asarray(seqlens, dtype=np.int64)
    nblk = reference.num_blocks(lens, block_size_n) if B else np.zeros(0, np.int64)
    C = np.concatenate([[0], np.cumsum(nblk)]).astype(np.int64)
    total = int(C[-1]) + F * B
    payload = -(-total // P) + F

    b, bb, e, eb = meta[:, 0], meta[:, 1], meta[:, 2], meta[:, 3]
    active = b >= 0
    x0 = np.zeros(P, np.int64)
    x1 = np.zeros(P, np.int64)
    cut = np.zeros(P, bool)
    if B:
        bi, ei = np.clip(b, 0, B - 1), np.clip(e, 0, B - 1)
        end_in_row = np.where(eb > 0, eb, nblk[ei])
        x0 = np.where(active, C[bi] + bb, 0)
        x1 = np.where(active, C[ei] + end_in_row, 0)
        cut = active & (end_in_row < nblk[ei])
    rows = np.where(active, e - b + 1, 0)
    blocks = x1 - x0
    load = blocks + F * rows
    piece_counts = np.diff(splits[: B + 1]) if B else np.zeros(0, np.int64)
    split_rows = np.flatnonzero(piece_counts > 1)
    consistent = bool(int(blocks.sum()) == int(C[-1]) and int(rows.sum()) == int(splits[B]) and
                      np.all(blocks[active] > 0) and np.all(x0[1:][active[1:]] == x1[:-1][active[1:]]))
    return dict(
        B=B, num_sm_parts=P, block_size_n=block_size_n, fixed_overhead_num_blocks=F,
        total_blocks=int(C[-1]), total_units=total, payload=int(payload),
        max_load=int(load.max()) if P else 0, mean_load=float(load.mean()) if P else 0.0,
        min_load_active=int(load[active].min()) if active.any() else 0,
        idle_parts=int((~active).sum()), total_pieces=int(splits[B]),
        split_rows=int(split_rows.size), max_pieces_per_row=int(piece_counts.max()) if B else 0,
        consistent=consistent,
        parts=dict(rows=rows.tolist(), blocks=blocks.tolist(), load=load.tolist(),
                   first_block=x0.tolist(), end_block=x1.tolist(), ends_mid_row=cut.tolist()),
        _C=C, _cut=cut, _active=active, _split_rows=split_rows,
    )


# ---------------------------------------------------------------------------------------------- timing


def time_calls(fn: Callable[[Any], Any], x: Any, repeats: int) -> dict[str, Any]:
    """Compile + warm up, then time ``repeats`` calls (each waited for); microseconds."""
    import jax

    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(x))
    first_s = time.perf_counter() - t0
    jax.block_until_ready(fn(x))
    from .bench import call_times_us, quantiles

    ts = call_times_us(fn, x, repeats)
    res: dict[str, Any] = dict(repeats=repeats, first_call_s=first_s, median_us=None, p10_us=None, p90_us=None)
    if ts:
        res.update(zip(("median_us", "p10_us", "p90_us"), quantiles(ts)))
    res["_out"] = out
    return res


# ------------------------------------------------------------------------------------------------ plot


def _import_pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


ROW_COLORS = np.array([[0.16, 0.44, 0.71, 1.0], [0.55, 0.78, 0.93, 1.0]])


def _group_bounds(C: np.ndarray, min_width: float) -> np.ndarray:
    """Colour-group boundaries on the block axis: every row start, except that consecutive rows narrower than
    ``min_width`` blocks are merged (a row at least that wide stays on its own)."""
    if C.size <= 1 or min_width <= 1:
        return C
    bucket = np.floor(C / min_width).astype(np.int64)
    keep = np.ones(C.size, bool)
    keep[1:] = bucket[1:] != bucket[:-1]
    keep[-1] = True
    return C[keep]


def _draw_parts(ax: Any, parts: np.ndarray, x0: np.ndarray, x1: np.ndarray, bounds: np.ndarray, h: float,
                lo_clip: float = -np.inf, hi_clip: float = np.inf) -> None:
    from matplotlib.collections import PolyCollection

    verts, faces = [], []
    for p in parts:
        a, b = max(x0[p], lo_clip), min(x1[p], hi_clip)
        if b <= a:
            continue
        g0 = int(np.searchsorted(bounds, a, "right")) - 1
        g1 = int(np.searchsorted(bounds, b, "left"))
        g = np.arange(max(g0, 0), g1)
        lo = np.maximum(bounds[g], a)
        hi = np.minimum(bounds[g + 1], b)
        v = np.empty((g.size, 4, 2))
        v[:, 0, 0] = v[:, 1, 0] = lo
        v[:, 2, 0] = v[:, 3, 0] = hi
        v[:, [0, 3], 1] = p - h / 2
        v[:, [1, 2], 1] = p + h / 2
        verts.append(v)
        faces.append(ROW_COLORS[g % 2])
    if verts:
        ax.add_collection(PolyCollection(np.concatenate(verts), facecolors=np.concatenate(faces),
                                         edgecolors="none", linewidths=0))


def _draw_cuts(ax: Any, parts: np.ndarray, x1: np.ndarray) -> None:
    from matplotlib.collections import LineCollection

    if parts.size:
        ax.add_collection(LineCollection([((x1[p], p - 0.5), (x1[p], p + 1.5)) for p in parts],
                                         colors="red", linewidths=1.3, zorder=3))


def plot_schedule(path: str, stats: dict[str, Any], title: str) -> None:
    """Draw the schedule: one bar per part on the global block axis (colours alternate per row; red ticks where
    a row is cut between two parts), a zoom on the first cut showing single rows, and each part's load
    against the payload."""
    plt = _import_pyplot()
    assert plt is not None
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    P, B, F = stats["num_sm_parts"], stats["B"], stats["fixed_overhead_num_blocks"]
    C, cut, active = stats["_C"], stats["_cut"], stats["_active"]
    x0 = np.asarray(stats["parts"]["first_block"])
    x1 = np.asarray(stats["parts"]["end_block"])
    rows = np.asarray(stats["parts"]["rows"])
    blocks = np.asarray(stats["parts"]["blocks"])
    total_blocks = max(int(C[-1]), 1)
    thousands = FuncFormatter(lambda v, _: f"{v:,.0f}")

    fig = plt.figure(figsize=(12, 8), dpi=100)
    gs = fig.add_gridspec(2, 2, width_ratios=[3.2, 1], height_ratios=[3.3, 1], wspace=0.04, hspace=0.3)
    ax = fig.add_subplot(gs[0, 0])
    axl = fig.add_subplot(gs[0, 1], sharey=ax)
    axz = fig.add_subplot(gs[1, :])
    h = 0.8 if P <= 200 else 1.0
    parts = np.flatnonzero(active)

    # main view: rows narrower than ~3 px are merged into colour groups (they could not be told apart)
    axis_px = ax.get_position().width * fig.get_figwidth() * fig.dpi
    min_width = 3.0 * total_blocks / max(axis_px, 1.0)
    bounds = _group_bounds(C, min_width)
    merged = bounds.size < C.size
    _draw_parts(ax, parts, x0, x1, bounds, h)
    _draw_cuts(ax, np.flatnonzero(cut), x1)
    ax.set_xlim(0, total_blocks * 1.01)
    ax.set_ylim(P - 0.5, -0.5)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=min(P, 24), integer=True))
    ax.xaxis.set_major_formatter(thousands)
    ax.set_xlabel(f"global KV block (cumulative {BLOCK_SIZE_N}-token blocks of rows 0..B-1)")
    ax.set_ylabel("part (SM group)")
    ax.grid(True, axis="x", alpha=0.3)
    row_note = f"row{' (narrow rows merged)' if merged else ''}"
    ax.legend(handles=[Patch(color=ROW_COLORS[0], label=f"even {row_note}"),
                       Patch(color=ROW_COLORS[1], label=f"odd {row_note}"),
                       Line2D([], [], color="red", lw=1.5, label=f"cut: row split across parts ({stats['split_rows']:,} rows)")],
              loc="lower left", fontsize=9, framealpha=0.9)
    ax.set_title(title, fontsize=11, loc="left")

    # load panel: blocks + F * pieces per part vs payload
    y = np.arange(P)
    axl.barh(y, blocks, height=h, color=ROW_COLORS[0], label="blocks")
    axl.barh(y, F * rows, left=blocks, height=h, color="orange", label=f"F x pieces (F={F})")
    payload = stats["payload"]
    axl.axvline(payload, color="black", ls="--", lw=1.2, label=f"payload {payload:,}")
    axl.set_xlim(0, payload * 1.08)
    axl.xaxis.set_major_locator(MaxNLocator(nbins=4))
    axl.xaxis.set_major_formatter(thousands)
    axl.set_xlabel("load (blocks + F per piece)")
    axl.tick_params(labelleft=False)
    axl.grid(True, axis="x", alpha=0.3)
    axl.legend(loc="lower left", fontsize=8, framealpha=0.9)
    axl.set_title(f"max {stats['max_load']:,} / mean {stats['mean_load']:,.0f}", fontsize=10)

    # zoom: single rows around the first cut (or the first part boundary)
    if B and parts.size:
        cuts = np.flatnonzero(cut)
        p_c = int(cuts[0]) if cuts.size else int(parts[0])
        xc = int(x1[p_c])
        r_c = min(int(np.searchsorted(C, xc, "right")) - 1, B - 1)
        lo = int(C[max(r_c - 12, 0)])
        hi = int(C[min(r_c + 13, B)])
        zparts = np.array([p for p in parts if x1[p] > lo and x0[p] < hi])
        _draw_parts(axz, zparts, x0, x1, C, 0.8, lo, hi)
        _draw_cuts(axz, np.array([p for p in np.flatnonzero(cut) if lo <= x1[p] <= hi], dtype=np.int64), x1)
        axz.set_xlim(lo, hi)
        axz.set_ylim(zparts.max() + 0.6, zparts.min() - 0.85)
        axz.set_yticks(zparts)
        axz.xaxis.set_major_formatter(thousands)
        for r in range(max(r_c - 12, 0), min(r_c + 13, B)):
            mid = (max(C[r], lo) + min(C[r + 1], hi)) / 2
            if (min(C[r + 1], hi) - max(C[r], lo)) > (hi - lo) / 60:
                axz.text(mid, zparts.min() - 0.45, str(r), ha="center", va="bottom", fontsize=7, color="dimgray",
                         clip_on=True)
        what = (f"row {r_c} cut at block {xc - int(C[r_c])} of {int(C[r_c + 1] - C[r_c])} between parts "
                f"{p_c} and {p_c + 1}" if cuts.size else f"end of part {p_c}")
        axz.set_title(f"zoom on single rows (numbers = row index): {what}", fontsize=10, loc="left")
        axz.set_ylabel("part")
        axz.set_xlabel("global KV block")
    else:
        axz.text(0.5, 0.5, "no rows (B = 0): every part is idle", ha="center", va="center", transform=axz.transAxes)
        axz.set_axis_off()
    fig.subplots_adjust(left=0.06, right=0.98, top=0.95, bottom=0.07)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------- commands


def cmd_info(args: argparse.Namespace) -> int:
    from importlib import metadata

    import jax

    import jax_mla_meta as mm
    from . import api

    try:
        jaxlib_version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        jaxlib_version = getattr(jax.lib, "__version__", "?")
    print(f"jax_mla_meta {mm.__version__}")
    print(f"jax {jax.__version__}, jaxlib {jaxlib_version}, default backend {jax.default_backend()}")
    print(f"CUDA module built: {'yes' if mm.HAS_CUDA else 'no'}")
    print(f"{'device':<12} {'platform':<8} {'kind':<24} {'SMs':>5} {'cc':>5} {'opt-in smem B':>14} "
          f"{'max smem B (P=132)':>19} {'(P=66)':>8}")
    any_cpu = False
    for d in jax.devices():
        is_gpu = d.platform == "gpu"
        any_cpu |= not is_gpu
        sm = getattr(d, "core_count", None)
        cc = getattr(d, "compute_capability", None)
        p132, p66 = mm.plan(0, 132, device=d), mm.plan(0, 66, device=d)
        star = "" if is_gpu else "*"
        limit = p132.optin_limit
        sm_s = str(sm) if sm is not None else f"{api.DEFAULT_SM_COUNT}*"
        cc_s = str(cc) if cc is not None else f"{api.DEFAULT_COMPUTE_CAPABILITY}*"
        limit_s = _fmt(limit) if limit is not None else (f"{api.H100_OPTIN_LIMIT:,}*" if not is_gpu else "-")
        r132 = _fmt(p132.max_smem_rows) + star if p132.max_smem_rows is not None else "-"
        r66 = _fmt(p66.max_smem_rows) + star if p66.max_smem_rows is not None else "-"
        print(f"{str(d):<12} {d.platform:<8} {d.device_kind[:24]:<24} {sm_s:>5} {cc_s:>5} {limit_s:>14} "
              f"{r132:>19} {r66:>8}")
        if is_gpu and limit is None:
            print(f"  note: {p132.reason}")
    if any_cpu:
        print(f"* CPU device: assumed H100 figures ({api.DEFAULT_SM_COUNT} SMs, compute capability "
              f"{api.DEFAULT_COMPUTE_CAPABILITY}, {api.H100_OPTIN_LIMIT:,} B opt-in shared memory); "
              "the CPU handler itself has no limit.")
    return 0


def _parts_reason(w: Workload, dev: Any) -> str:
    from . import api

    sm, cc, is_cuda = api.device_facts(dev)
    where = f"{sm} SMs, SM{cc.replace('.', '')}" + ("" if is_cuda else ", assumed H100")
    kind = f"sparse {'fp8' if w.fp8 else 'bf16'}" if w.mode == "sparse" else f"dense {'fp8' if w.fp8 else 'bf16'}"
    return f"FlashMLA's get_attn_impl_meta rule: {kind}, {where}"


def cmd_schedule(args: argparse.Namespace) -> int:
    import jax

    import jax_mla_meta as mm
    from . import api

    if args.plot is not None and _import_pyplot() is None:
        print(f"{PROG}: error: --plot needs matplotlib: pip install matplotlib", file=sys.stderr)
        return 2
    w = resolve_workload(args)
    dev = _pick_device(args.device)
    if w.num_sm_parts is not None:
        P = w.num_sm_parts
        p_reason = "given with --num-sm-parts"
    else:
        sm, cc, _ = api.device_facts(dev)
        try:
            P = mm.num_sm_parts_for(w.num_q_tokens_per_head_k, w.num_heads_k, w.num_heads_q, w.fp8, w.topk,
                                    sm_count=sm, compute_capability=cc)
        except ValueError as e:
            raise CliError(str(e).replace("Pass num_sm_parts=... explicitly", "Pass --num-sm-parts N")) from None
        p_reason = _parts_reason(w, dev)
    plan = mm.plan(w.B, P, kernel=w.kernel, device=dev, topk=w.topk)

    x = jax.device_put(w.seqlens, dev)
    if w.num_sm_parts is not None:
        fn = jax.jit(lambda s: mm.schedule(s, num_sm_parts=P, topk=w.topk, kernel=w.kernel, device=dev))
    else:
        fn = jax.jit(lambda s: mm.get_mla_metadata(s, w.num_q_tokens_per_head_k, w.num_heads_k, w.num_heads_q,
                                                   w.fp8, w.topk, device=dev, kernel=w.kernel))
    timing = time_calls(fn, x, args.repeats)
    meta, splits = (np.asarray(a) for a in timing.pop("_out"))
    if meta.shape[0] != P:
        raise CliError(f"internal: expected {P} parts, got {meta.shape[0]}")
    stats = part_stats(meta, splits, w.seqlens, w.topk)

    _print_schedule(w, dev, P, p_reason, plan, stats, timing, args.top)

    if args.json is not None:
        doc = dict(
            workload=dict(preset=w.preset, overridden=w.overridden, source=w.source, dist=w.dist, seed=w.seed, lengths_file=w.lengths_file,
                          B=w.B, mode=w.mode, topk=w.topk, num_heads_q=w.num_heads_q, num_heads_k=w.num_heads_k,
                          num_q_tokens_per_head_k=w.num_q_tokens_per_head_k, is_fp8_kvcache=w.fp8,
                          kernel=w.kernel, block_size_n=BLOCK_SIZE_N, fixed_overhead_num_blocks=OVERHEAD_F),
            device=dict(name=str(dev), platform=dev.platform, kind=dev.device_kind,
                        jax=jax.__version__, has_cuda=bool(mm.HAS_CUDA)),
            num_sm_parts=P, num_sm_parts_reason=p_reason,
            plan=dataclasses.asdict(plan),
            stats={k: v for k, v in stats.items() if not k.startswith("_")},
            timing=timing,
            seqlens=w.seqlens.tolist(),
            tile_scheduler_metadata=meta.tolist(),
            num_splits=splits.tolist(),
        )
        try:
            with open(args.json, "w") as f:
                json.dump(doc, f)
        except OSError as e:
            raise CliError(f"cannot write {args.json!r}: {e.strerror or e}") from None
        print(f"wrote {args.json}")
    if args.plot is not None:
        mode = f"sparse topk={w.topk}" if w.mode == "sparse" else "dense"
        title = (f"{w.preset}{'*' if w.overridden else ''}: B={w.B:,} rows ({mode}), num_sm_parts={P}, "
                 f"kernel {plan.kernel}, payload {stats['payload']:,}")
        try:
            plot_schedule(args.plot, stats, title)
        except OSError as e:
            raise CliError(f"cannot write {args.plot!r}: {e.strerror or e}") from None
        print(f"wrote {args.plot}")
    return 0


def _print_schedule(w: Workload, dev: Any, P: int, p_reason: str, plan: Any, st: dict[str, Any],
                    timing: dict[str, Any], top: int) -> None:
    from . import api

    is_gpu = dev.platform == "gpu"
    F = st["fixed_overhead_num_blocks"]
    lines = []
    over = f" (overridden: {' '.join(w.overridden)})" if w.overridden else ""
    lines.append(f"{PROG} schedule: preset {w.preset}{over}")
    mode = (f"sparse, topk {w.topk} (every row costs topk; the lengths only give B)" if w.mode == "sparse"
            else "dense")
    lines.append(f"  workload   B={w.B:,} rows, {w.source}; {mode}")
    lines.append(f"  heads      h_q={w.num_heads_q} h_k={w.num_heads_k} q_tokens_per_head_k={w.num_q_tokens_per_head_k}, "
                 f"KV cache {'fp8' if w.fp8 else 'bf16'}")
    kind = "" if dev.device_kind == dev.platform else f", {dev.device_kind}"
    lines.append(f"  device     {dev} ({dev.platform}{kind})")
    lines.append(f"  parts      num_sm_parts={P} ({p_reason})")
    if is_gpu:
        lines.append(f"  kernel     {plan.kernel}: {plan.reason}")
        avail = _fmt(plan.optin_limit) if plan.optin_limit is not None else "unknown"
        lines.append(f"  smem       smem kernel needs {plan.smem_bytes:,} B, device allows {avail} B; "
                     f"it takes B <= {_fmt(plan.max_smem_rows)} at P={P}")
    else:
        limit = api.H100_OPTIN_LIMIT
        if w.kernel == "auto":
            h100 = "smem" if plan.smem_bytes <= limit else "low_smem"
        else:
            h100 = w.kernel if (w.kernel != "smem" or plan.smem_bytes <= limit) else "error (smem does not fit)"
        lines.append(f"  kernel     cpu handler (kernel={w.kernel} is ignored on CPU); an H100 would run {h100}")
        lines.append(f"  smem       smem kernel needs {plan.smem_bytes:,} B, H100 allows {limit:,} B (assumed); "
                     f"it takes B <= {_fmt(plan.max_smem_rows)} at P={P}")
    lines.append(f"  load       total {st['total_units']:,} = {st['total_blocks']:,} blocks + F*B (F={F}, "
                 f"block {st['block_size_n']}); payload {st['payload']:,} = ceil(total/P)+F")
    pct = 100.0 * st["max_load"] / st["payload"] if st["payload"] else 0.0
    if st["idle_parts"] < P:
        lines.append(f"             max {st['max_load']:,} ({pct:.1f}% of payload), mean {st['mean_load']:,.1f}, "
                     f"min {st['min_load_active']:,} (busy parts), idle parts {st['idle_parts']}")
    else:
        lines.append(f"             no rows: all {P} parts are idle")
    lines.append(f"  splits     {st['split_rows']:,} of {w.B:,} rows split (max {st['max_pieces_per_row']} pieces); "
                 f"{st['total_pieces']:,} pieces; metadata consistent: {'yes' if st['consistent'] else 'NO'}")
    if timing["median_us"] is not None:
        lines.append(f"  time       {timing['median_us']:,.1f} µs per call (median of {timing['repeats']} jitted calls, "
                     f"p10 {timing['p10_us']:,.1f}, p90 {timing['p90_us']:,.1f}; first call {timing['first_call_s']:.2f} s)")
    print("\n".join(lines))

    load = np.asarray(st["parts"]["load"])
    busy = [p for p in range(P) if st["_active"][p]]
    if top > 0 and busy:
        order = sorted(busy, key=lambda p: (-load[p], p))[:top]
        print(f"\n  {len(order)} most loaded of {P} parts (load = blocks + {F} x pieces):")
        print(f"  {'part':>5} {'first row:blk':>14} {'last row:blk':>14} {'pieces':>7} {'blocks':>9} "
              f"{'load':>9} {'% payload':>9}")
        x0 = st["parts"]["first_block"]
        x1 = st["parts"]["end_block"]
        C = st["_C"]
        for p in order:
            r0 = int(np.searchsorted(C, x0[p], "right")) - 1
            r1 = int(np.searchsorted(C, x1[p], "left")) - 1
            a = f"{r0}:{x0[p] - C[r0]}"
            b = f"{r1}:{x1[p] - C[r1]}"
            print(f"  {p:>5} {a:>14} {b:>14} {st['parts']['rows'][p]:>7,} {st['parts']['blocks'][p]:>9,} "
                  f"{load[p]:>9,} {100.0 * load[p] / st['payload']:>8.1f}%")


class _TextProgress:
    """Minimal progress display on stderr: rewrites one line on a terminal, one line per step otherwise."""

    def __init__(self, total: int | None) -> None:
        self.total, self.n = total, 0
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()

    def __call__(self, label: str) -> None:
        self.n += 1
        of = f"/{self.total}" if self.total else ""
        text = f"bench [{self.n}{of}] {time.perf_counter() - self.t0:6.1f}s  {label}"
        if self.tty:
            sys.stderr.write("\r\033[K" + text[:120])
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty and self.n:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _bench_steps(max_b: int | None, no_cpu: bool) -> int | None:
    """How many progress calls bench.main will make (an estimate used for the bar's total)."""
    try:
        import jax

        import jax_mla_meta as mm
        from . import bench

        n = 0
        dev = jax.devices()[0]
        if dev.platform == "gpu":
            for case in bench._cases(max_b):
                B, P = case[2], case[4]
                pl = mm.plan(B, P, device=dev)
                n += 2 + (pl.smem_bytes <= (pl.optin_limit or 0))
        if not no_cpu:
            n += sum(1 for b in (1, 512, 4096, 65536, 1048576) if max_b is None or b <= max_b)
        return n or None
    except Exception:  # the total is cosmetic
        return None


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    argv: list[str] = []
    if args.max_b is not None:
        argv += ["--max-b", str(args.max_b)]
    if args.out is not None:
        argv += ["--out", args.out]
    if args.no_cpu:
        argv.append("--no-cpu")
    total = _bench_steps(args.max_b, args.no_cpu)
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:
        prog = _TextProgress(total)
        try:
            return int(bench.main(argv, progress=prog) or 0)
        finally:
            prog.close()
    with Progress(TextColumn("[bold]bench[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("starting", total=total)
        done = [0]

        def progress(label: str) -> None:
            bar.update(task, completed=done[0], description=label)
            done[0] += 1

        rc = bench.main(argv, progress=progress)
        bar.update(task, completed=done[0])
    return int(rc or 0)


# ---------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from . import workloads

    ap = _Parser(prog=PROG, description="FlashMLA decode-scheduler metadata (get_mla_metadata) as a JAX custom call.")
    sub = ap.add_subparsers(dest="command", metavar="{info,schedule,bench}")

    sub.add_parser("info", help="JAX version, CUDA module, devices and their shared-memory limits",
                   description="Show JAX versions, whether the CUDA module is built, and each device's limits.")

    s = sub.add_parser("schedule", help="compute and inspect the metadata of one workload",
                       description="Compute the scheduler metadata of one workload and show the plan, the per-part "
                                   "load and the time per call. Default: preset pure-tp-prefill (the original crash: "
                                   "B=16,384 sparse rows, DeepSeek V3.2 heads).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--preset", choices=sorted(workloads.PRESETS), default=None,
                   help="workload preset (default pure-tp-prefill)")
    s.add_argument("--batch-size", "-B", metavar="B", type=_int_arg(0), default=None, help="rows B (overrides the preset)")
    s.add_argument("--dist", choices=DISTS, default=None,
                   help="length distribution (overrides the preset)")
    s.add_argument("--lengths", metavar="FILE", default=None,
                   help=".npy file or text file of integer lengths (whitespace/comma separated)")
    s.add_argument("--mode", choices=["dense", "sparse"], default=None, help="default: the preset's")
    s.add_argument("--topk", metavar="K", type=_int_arg(0), default=None, help="sparse top-k (default 2048; implies sparse)")
    s.add_argument("--num-heads-q", type=_int_arg(1), default=None, help="h_q (default: the preset's)")
    s.add_argument("--num-heads-k", type=_int_arg(1), default=None, help="h_k (default: the preset's)")
    s.add_argument("--num-q-tokens-per-head-k", type=_int_arg(1), default=None,
                   help="seq_len_q * h_q // h_k (default: the preset's)")
    s.add_argument("--fp8", action=argparse.BooleanOptionalAction, default=None,
                   help="fp8 KV cache (default: on for sparse, off for dense)")
    s.add_argument("--num-sm-parts", "-P", metavar="P", type=_int_arg(1), default=None,
                   help="override num_sm_parts (default: FlashMLA's rule for the device)")
    s.add_argument("--kernel", choices=["auto", "smem", "low_smem"], default="auto", help="CUDA kernel")
    s.add_argument("--seed", type=_int_arg(0), default=0, help="seed of the length distribution")
    s.add_argument("--device", choices=["cpu", "gpu"], default=None, help="default: JAX's default device")
    s.add_argument("--repeats", type=_int_arg(0), default=20, help="timed calls (0: no timing)")
    s.add_argument("--top", type=_int_arg(0), default=8, help="rows of the most-loaded-parts table")
    s.add_argument("--json", metavar="FILE", default=None, help="write everything as JSON")
    s.add_argument("--plot", metavar="FILE.png", default=None, help="draw the schedule (needs matplotlib)")

    b = sub.add_parser("bench", help="run the benchmark (jax_mla_meta.bench) with a progress display",
                       description="Benchmark on the default JAX device (and the CPU handler).")
    b.add_argument("--max-b", type=_int_arg(0), default=None, help="skip workloads with more rows")
    b.add_argument("--out", default=None, help="folder for results.json (bench default: benchmarks/results)")
    b.add_argument("--no-cpu", action="store_true", help="skip the CPU-handler table")
    return ap


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "info": cmd_info,
    "schedule": cmd_schedule,
    "bench": cmd_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jax-mla-meta``; returns the exit status."""
    try:
        parser = build_parser()
        args = parser.parse_args(list(argv) if argv is not None else None)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except CliError as e:
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        print(f"{PROG}: error: {_one_line(e) or type(e).__name__}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help / --version
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
