"""Command-line interface: ``jax-mla-meta {info,schedule,bench}`` (also ``python -m jax_mla_meta``).

- ``info``: JAX versions, whether the CUDA module is built, and every device's SM count, compute capability,
  opt-in shared-memory limit and the largest batch the "smem" kernel takes there.
- ``schedule``: compute the metadata for one workload (default: the original crash case, DeepSeek V3.2 pure-TP
  prefill, B = 16,384 sparse rows), print what runs and why (plan()), per-part load statistics (the checker's)
  and the time per call; optionally write everything as JSON (``--json``) and draw the schedule (``--plot``).
- ``bench``: run :func:`jax_mla_meta.bench.main` with a progress display.

Every failure prints one line, ``jax-mla-meta: error: ...``, on stderr and exits with status 2. Sizes are checked
before anything is allocated: at most MAX_ROWS rows, files of at most MAX_FILE_BYTES, pictures of at most
plot.MAX_PARTS parts; output paths are checked before anything is computed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import workloads

PROG = "jax-mla-meta"
MAX_ROWS = 1 << 24            # rows the command line generates or reads (the Python API takes up to 2**31 - 2)
MAX_FILE_BYTES = 256 << 20    # a lengths file is read up to this size
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class CliError(Exception):
    """An error the user can fix; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage block) and are raised, not exited on."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(message)


def _int_arg(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < minimum or (maximum is not None and v > maximum):
            raise argparse.ArgumentTypeError(f"must be >= {minimum}" + (f" and <= {maximum:,}" if maximum else "")
                                             + f", got {v}")
        return v

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _fmt(v: float | int | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return f"{v:,.1f}"


# --------------------------------------------------------------------------------------------------- inputs


def load_ints(path: str, what: str) -> np.ndarray:
    """int32 values from a ``.npy`` file or a text file of integers (whitespace/comma separated, ``#`` starts a
    comment); at most MAX_FILE_BYTES and MAX_ROWS values, each inside int32. A text file's values are counted
    first, then converted, a chunk at a time: the memory it takes does not grow with the file beyond its values."""
    p = Path(path)
    try:
        if not p.is_file():
            raise CliError(f"cannot read {what} file {path!r}: " + ("No such file" if not p.exists() else
                                                                    "not a regular file"))
        if p.stat().st_size > MAX_FILE_BYTES:
            raise CliError(f"{what} file {path!r} is larger than {MAX_FILE_BYTES >> 20} MiB")
        if p.suffix.lower() == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            with open(p, "rb") as f:
                if _count_tokens(f, MAX_ROWS) > MAX_ROWS:   # before converting anything; bounded memory
                    raise CliError(f"{what} file {path!r} holds more than {MAX_ROWS:,} values")
            with open(p, encoding="utf-8", errors="replace") as f:
                arr = _text_ints(f, path, what)
    except OSError as e:
        raise CliError(f"cannot read {what} file {path!r}: {e.strerror or _one_line(e)}") from None
    except (ValueError, EOFError):
        raise CliError(f"cannot read {what} file {path!r}: not a valid .npy file of numbers") from None
    if arr.ndim != 1:
        raise CliError(f"{what} file {path!r}: expected a 1-D array, got shape {arr.shape}")
    if arr.size > MAX_ROWS:
        raise CliError(f"{what} file {path!r} holds more than {MAX_ROWS:,} values")
    if arr.size and arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(np.isfinite(arr))
                                                          and np.all(arr == np.round(arr))):
        raise CliError(f"{what} file {path!r}: expected integers, got dtype {arr.dtype}")
    if arr.size:
        lo, hi = (int(v) for v in (arr.min(), arr.max()))   # exact for every integer dtype (no wrap)
        if lo < INT32_MIN or hi > INT32_MAX:
            raise CliError(f"{what} file {path!r}: values must fit in int32 ({INT32_MIN}..{INT32_MAX}), found "
                           f"{lo if lo < INT32_MIN else hi}")
    return arr.astype(np.int64).astype(np.int32)


TEXT_CHUNK = 1 << 18          # characters of a text lengths file read, split and converted at a time
COUNT_CHUNK = 1 << 20         # bytes of it read at a time to count its values
MAX_TOKEN_CHARS = 64          # a longer token is no int32 (the limit keeps an unbroken run from piling up)
_SEPARATOR = np.zeros(256, bool)
_SEPARATOR[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32, ord(",")]] = True   # ASCII whitespace (as re's \s) and ","


def _count_tokens(f, limit: int) -> int:
    """How many values a text lengths file (opened in binary) holds, counted in NumPy chunk by chunk without
    converting any, and only until the count passes ``limit``. A value is a run of bytes that are neither a
    separator nor inside a comment (``#`` to the end of the line). A file with non-ASCII bytes (whose whitespace
    this cannot tell) counts 0 here: the conversion, which stops at the limit, counts it instead."""
    count, in_token, in_comment = 0, False, False
    while count <= limit and (chunk := f.read(COUNT_CHUNK)):
        b = np.frombuffer(chunk, np.uint8)
        if np.any(b >= 0x80):
            return 0
        sep = _SEPARATOR[b]
        if in_comment or b"#" in chunk:
            # inside a comment: the last '#' so far comes after the last newline (a comment carried in from the
            # previous chunk counts as a '#' just before this one)
            at = np.arange(b.size, dtype=np.int64)
            last_nl = np.maximum.accumulate(np.where(b == 10, at, -2 if in_comment else -1))
            last_hash = np.maximum.accumulate(np.where(b == 35, at, -1 if in_comment else -2))
            comment = last_hash > last_nl
            sep |= comment
            in_comment = bool(comment[-1])
        token = ~sep
        count += int(np.count_nonzero(token[1:] & ~token[:-1])) + int(token[0] and not in_token)
        in_token = bool(token[-1])
    return count


def _text_tokens(f) -> Any:
    """The tokens of a text file (whitespace/comma separated, ``#`` to the end of the line is a comment), one list
    per chunk read, so memory stays bounded by the chunk whatever the file's size."""
    partial, in_comment = "", False
    while chunk := f.read(TEXT_CHUNK):
        body = []
        while chunk:
            if in_comment:
                nl = chunk.find("\n")
                if nl < 0:
                    break
                chunk, in_comment = chunk[nl + 1:], False
            h = chunk.find("#")
            body.append(chunk if h < 0 else chunk[:h] + " ")   # a comment ends the token before it
            chunk, in_comment = ("", False) if h < 0 else (chunk[h + 1:], True)
        tokens = re.split(r"[\s,]+", partial + "".join(body))
        partial = tokens.pop()           # unfinished (or "" after a separator): continued by the next chunk
        if len(partial) > MAX_TOKEN_CHARS:
            tokens.append(partial)       # reported as it stands, not piled up
            partial = ""
        yield [t for t in tokens if t]
    if partial:
        yield [partial]


def _text_ints(f, path: str, what: str) -> np.ndarray:
    """int32 values of a text lengths file, read in chunks: the count is checked before a chunk is converted, and
    each chunk's values are checked against int32 as they are converted."""
    parts, count = [], 0
    for tokens in _text_tokens(f):
        if count + len(tokens) > MAX_ROWS:
            raise CliError(f"{what} file {path!r} holds more than {MAX_ROWS:,} values")
        try:
            values = list(map(int, tokens))
        except ValueError:
            values = None
        if values is None or (values and max(map(len, tokens)) > MAX_TOKEN_CHARS):
            for k, tok in enumerate(tokens):   # the first value that is not an int32 integer
                try:
                    if len(tok) <= MAX_TOKEN_CHARS:
                        int(tok)
                        continue
                except ValueError:
                    pass
                raise CliError(f"{what} file {path!r}: value {count + k + 1} ({tok[:20]!r}) is not an integer"
                               if len(tok) <= MAX_TOKEN_CHARS else f"{what} file {path!r}: value {count + k + 1} "
                               f"({tok[:20]!r}...) is longer than {MAX_TOKEN_CHARS} characters: not an int32 value")
        if values:
            lo, hi = min(values), max(values)
            if lo < INT32_MIN or hi > INT32_MAX:
                raise CliError(f"{what} file {path!r}: values must fit in int32 ({INT32_MIN}..{INT32_MAX}), found "
                               f"{lo if lo < INT32_MIN else hi}")
            parts.append(np.asarray(values, dtype=np.int32))
        count += len(values)
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def _check_output(path: str | None, what: str) -> str | None:
    """The path as it will be written (a picture without a suffix gets .png), checked before computing."""
    if path is None:
        return None
    p = Path(path)
    if what == "--plot" and not p.suffix:
        p = p.with_suffix(".png")
    if what == "--plot" and p.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise CliError(f"--plot {path!r}: the picture is written as .png, .svg or .pdf")
    if p.is_dir():
        raise CliError(f"{what} {str(p)!r} is a directory; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise CliError(f"{what} {str(p)!r}: the folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise CliError(f"{what} {str(p)!r}: not writable")
    return str(p)


@dataclasses.dataclass
class Inputs:
    """One ``schedule`` call, resolved: the workload (preset plus overrides) and its arrays."""

    workload: workloads.Workload
    source: str
    overridden: list[str]
    seqlens: np.ndarray
    topk_length: np.ndarray | None
    extra_topk_length: np.ndarray | None


def resolve(args: argparse.Namespace) -> Inputs:
    w = workloads.PRESETS[args.preset or "pure-tp-prefill"]
    names = ("batch_size", "dist", "mode", "topk", "num_heads_q", "num_heads_k", "num_q_tokens_per_head_k",
             "lengths")
    overridden = [f"--{k.replace('_', '-')}" for k in names if getattr(args, k) is not None]
    mode = args.mode or ("sparse" if args.topk is not None or args.topk_length is not None else w.mode)
    if mode == "dense" and (args.topk is not None or args.topk_length is not None or args.extra_topk is not None
                            or args.extra_topk_length is not None):
        raise CliError("--topk, --topk-length, --extra-topk and --extra-topk-length describe sparse rows: drop them "
                       "or use --mode sparse")
    topk = args.topk if args.topk is not None else w.topk   # --topk 0 is a top-k of 0, as schedule(topk=0) takes it
    changes: dict[str, Any] = dict(mode=mode, topk=None if mode == "dense" else topk)
    for k in ("num_heads_q", "num_heads_k", "num_q_tokens_per_head_k", "dist"):
        if getattr(args, k) is not None:
            changes[k] = getattr(args, k)
    if args.lengths is not None:
        if args.batch_size is not None or args.dist is not None:
            raise CliError("--lengths cannot be combined with --batch-size or --dist")
        seqlens = load_ints(args.lengths, "lengths")
        source = f"lengths from {args.lengths}"
        changes["B"] = len(seqlens)
    else:
        if args.batch_size is not None:
            changes["B"] = args.batch_size
        source = None
    try:
        w = dataclasses.replace(w, **changes)
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.lengths is None:
        seqlens = w.seqlens(args.seed) if w.B else np.zeros(0, np.int32)
        source = f"'{w.dist}' lengths, seed {args.seed}"
    tl = etl = None
    if args.topk_length is not None:
        if args.topk_length == "uniform":
            tl = w.topk_length(args.seed)
        else:
            tl = load_ints(args.topk_length, "--topk-length")
            if len(tl) != w.B:
                raise CliError(f"--topk-length holds {len(tl):,} values for {w.B:,} rows")
    if args.extra_topk_length is not None:
        etl = load_ints(args.extra_topk_length, "--extra-topk-length")
        if len(etl) != w.B:
            raise CliError(f"--extra-topk-length holds {len(etl):,} values for {w.B:,} rows")
    return Inputs(w, source, overridden, np.ascontiguousarray(seqlens, np.int32), tl, etl)


def _pick_device(name: str | None) -> Any:
    import jax

    if name is None:
        return jax.devices()[0]
    try:
        devs = jax.devices(name)
    except RuntimeError as e:
        raise CliError(f"no {name} device available ({_one_line(e)})") from None
    return devs[0]


# ------------------------------------------------------------------------------------------------- commands


def cmd_info(args: argparse.Namespace) -> int:
    from importlib import metadata

    import jax

    import jax_mla_meta as mm
    from . import host_rules

    try:
        jaxlib_version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        jaxlib_version = getattr(jax.lib, "__version__", "?")
    print(f"jax_mla_meta {mm.__version__}")
    print(f"jax {jax.__version__}, jaxlib {jaxlib_version}, default backend {jax.default_backend()}")
    from ._ffi import CUDA_IMPORT_ERROR

    print(f"CUDA module usable: {'yes' if mm.HAS_CUDA else 'no'}"
          + (f"; {CUDA_IMPORT_ERROR}" if not mm.HAS_CUDA and CUDA_IMPORT_ERROR else ""))
    print(f"{'device':<12} {'platform':<8} {'kind':<24} {'SMs':>5} {'cc':>5} {'opt-in smem B':>14} "
          f"{'max smem B (P=132)':>19} {'(P=66)':>8}")
    any_cpu = False
    for d in jax.devices():
        sm, cc, is_cuda = host_rules.device_facts(d)
        any_cpu |= not is_cuda
        p132, p66 = mm.plan(0, 132, device=d), mm.plan(0, 66, device=d)
        star = "" if is_cuda else "*"
        print(f"{str(d):<12} {d.platform:<8} {d.device_kind[:24]:<24} {str(sm) + star:>5} {cc + star:>5} "
              f"{_fmt(p132.optin_limit) + star:>14} {_fmt(p132.max_smem_rows) + star:>19} "
              f"{_fmt(p66.max_smem_rows) + star:>8}")
        if d.platform == "gpu" and p132.kernel == "unavailable":
            print(f"  note: {p132.reason}")
    if any_cpu:
        print("* CPU device: assumed H100 figures (132 SMs, compute capability 9.0, 232,448 B opt-in shared memory, "
              "clusters of 16); the CPU handler itself has no limit.")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    import jax

    import jax_mla_meta as mm
    from . import host_rules, plot

    json_path = _check_output(args.json, "--json")
    plot_path = _check_output(args.plot, "--plot")
    if plot_path is not None:
        try:
            plot._pyplot()
        except ImportError:
            raise CliError("--plot needs matplotlib: pip install matplotlib") from None
    inp = resolve(args)
    w = inp.workload
    dev = _pick_device(args.device)
    if args.num_sm_parts is not None:
        P, F = args.num_sm_parts, args.fixed_overhead_num_blocks if args.fixed_overhead_num_blocks is not None else 5
        p_reason = "given with --num-sm-parts"
    else:
        try:
            rule = host_rules.rule_for_device(dev, w.num_q_tokens_per_head_k, w.num_heads_k, w.num_heads_q,
                                              args.fp8 if args.fp8 is not None else w.is_fp8_kvcache, w.topk,
                                              layout=args.layout, scheduler=args.scheduler,
                                              head_dim_qk=args.head_dim_qk)
        except ValueError as e:
            raise CliError(str(e).replace("Pass num_sm_parts=... and fixed_overhead_num_blocks=...",
                                          "Pass --num-sm-parts and --fixed-overhead-num-blocks")) from None
        P = rule.num_sm_parts
        F = args.fixed_overhead_num_blocks
        if F is None:
            F = rule.fixed_overhead_num_blocks
        assumed = "" if host_rules.device_facts(dev)[2] else ", assumed H100"
        p_reason = f"FlashMLA's host rule: {rule.rule}{assumed}"
    if plot_path is not None and P > plot.MAX_PARTS:
        raise CliError(f"--plot draws at most {plot.MAX_PARTS:,} parts; this schedule has {P:,}")
    per_row = inp.topk_length is not None or inp.extra_topk_length is not None
    pl = mm.plan(w.B, P, kernel=args.kernel, device=dev, fixed_overhead_num_blocks=F, topk=w.topk, per_row=per_row)
    if pl.kernel == "error":
        raise CliError(f"kernel={args.kernel} cannot run here: {pl.reason}")
    kw = dict(num_sm_parts=P, fixed_overhead_num_blocks=F, topk=w.topk, kernel=args.kernel, device=dev,
              layout=args.layout, extra_topk=args.extra_topk)
    put = lambda x: None if x is None else jax.device_put(x, dev)
    fn = jax.jit(lambda s, t, e: mm.schedule(s, topk_length=t, extra_topk_length=e, **kw))
    timing = time_calls(fn, (put(inp.seqlens), put(inp.topk_length), put(inp.extra_topk_length)), args.repeats)
    meta, splits = (np.asarray(a) for a in timing.pop("_out"))
    rows = dict(topk_length=inp.topk_length, extra_topk=args.extra_topk, extra_topk_length=inp.extra_topk_length)
    try:
        st = mm.check_schedule(meta, splits, inp.seqlens, fixed_overhead_num_blocks=F, topk=w.topk, layout=args.layout,
                               **rows)
        consistent = "yes (checked as FlashMLA's consumers read it)"
    except mm.ScheduleError as e:   # not expected: say so, and still show what came out
        raise CliError(f"the metadata failed the consumer check: {_one_line(e)}") from None
    _print_schedule(args, inp, dev, P, F, p_reason, pl, st, timing, consistent)
    if json_path is not None:
        doc = dict(
            workload=dict(dataclasses.asdict(w), source=inp.source, overridden=inp.overridden, seed=args.seed,
                          layout=args.layout, extra_topk=args.extra_topk, kernel=args.kernel,
                          block_size_n=64, fixed_overhead_num_blocks=F),
            device=dict(name=str(dev), platform=dev.platform, kind=dev.device_kind, jax=jax.__version__,
                        has_cuda=bool(mm.HAS_CUDA)),
            num_sm_parts=P, num_sm_parts_reason=p_reason, plan=dataclasses.asdict(pl),
            stats=dict(total_blocks=st.total_blocks, total_units=st.total_units, payload=st.payload,
                       split_rows=st.split_rows, total_pieces=st.total_pieces, idle_parts=st.idle_parts,
                       load=st.load.tolist(), pieces=st.pieces.tolist(), ends_mid_row=st.ends_mid_row.tolist()),
            timing=timing, seqlens=inp.seqlens.tolist(),
            topk_length=None if inp.topk_length is None else inp.topk_length.tolist(),
            extra_topk_length=None if inp.extra_topk_length is None else inp.extra_topk_length.tolist(),
            tile_scheduler_metadata=meta.tolist(), num_splits=splits.tolist())
        try:
            with open(json_path, "w") as f:
                json.dump(doc, f)
        except OSError as e:
            raise CliError(f"cannot write {json_path!r}: {e.strerror or e}") from None
        print(f"wrote {json_path}")
    if plot_path is not None:
        mode = f"sparse topk={w.topk}" + (" per-row" if per_row else "") if w.mode == "sparse" else "dense"
        title = (f"{w.name}{'*' if inp.overridden else ''}: B={w.B:,} rows ({mode}), num_sm_parts={P}, layout "
                 f"{args.layout}, kernel {pl.kernel}")
        try:
            plot.plot_schedule(plot_path, st, title, plot.unit_of(w.mode))
        except OSError as e:
            raise CliError(f"cannot write {plot_path!r}: {e.strerror or e}") from None
        print(f"wrote {plot_path}")
    return 0


def time_calls(fn: Callable, args: tuple, repeats: int) -> dict[str, Any]:
    """Compile and warm up, then time ``repeats`` calls (each waited for); microseconds."""
    import jax

    from .bench import call_times_us, quantiles

    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first_s = time.perf_counter() - t0
    jax.block_until_ready(fn(*args))
    ts = call_times_us(lambda a: fn(*a), args, repeats)
    res: dict[str, Any] = dict(repeats=repeats, first_call_s=first_s, median_us=None, p10_us=None, p90_us=None)
    if ts:
        res.update(zip(("median_us", "p10_us", "p90_us"), quantiles(ts)))
    res["_out"] = out
    return res


def _print_schedule(args, inp: Inputs, dev, P: int, F: int, p_reason: str, pl, st, timing, consistent: str) -> None:
    w = inp.workload
    over = f" (overridden: {' '.join(inp.overridden)})" if inp.overridden else ""
    if w.mode == "sparse":
        cost = ("per-row top-k counts" + (" and extra-cache counts" if inp.extra_topk_length is not None else "")
                if inp.topk_length is not None or inp.extra_topk_length is not None
                else "every row costs topk" + (f" + extra {args.extra_topk}" if args.extra_topk else ""))
        mode = f"sparse, topk {w.topk} ({cost}; the lengths only give B)"
    else:
        mode = "dense"
    fp8 = args.fp8 if args.fp8 is not None else w.is_fp8_kvcache
    lines = [
        f"{PROG} schedule: preset {args.preset or 'pure-tp-prefill'}{over}",
        f"  workload   B={w.B:,} rows, {inp.source}; {mode}",
        f"  heads      h_q={w.num_heads_q} h_k={w.num_heads_k} q_tokens_per_head_k={w.num_q_tokens_per_head_k}, "
        f"KV cache {'fp8' if fp8 else 'bf16'}; layout {args.layout}",
        f"  device     {dev} ({dev.platform}{'' if dev.device_kind == dev.platform else ', ' + dev.device_kind})",
        f"  parts      num_sm_parts={P}, F={F} ({p_reason})",
        f"  kernel     {pl.kernel}: {pl.reason}",
        f"  load       total {st.total_units:,} = {st.total_blocks:,} blocks + F*B (block 64); payload "
        f"{st.payload:,} = ceil(total/P)+F",
    ]
    busy = st.busy
    if busy.any():
        lines.append(f"             max {int(st.load.max()):,} ({100.0 * st.load.max() / st.payload:.1f}% of payload), "
                     f"mean {st.load.mean():,.1f}, min {int(st.load[busy].min()):,} (busy parts), idle parts "
                     f"{st.idle_parts}")
    else:
        lines.append(f"             no rows: all {P} parts are idle")
    lines.append(f"  splits     {st.split_rows:,} of {w.B:,} rows split (max {int(st.row_pieces.max()) if w.B else 0} "
                 f"pieces); {st.total_pieces:,} pieces; metadata consistent: {consistent}")
    if timing["median_us"] is not None:
        lines.append(f"  time       {timing['median_us']:,.1f} µs per call (median of {timing['repeats']} jitted "
                     f"calls from Python, p10 {timing['p10_us']:,.1f}, p90 {timing['p90_us']:,.1f}; first call "
                     f"{timing['first_call_s']:.2f} s)")
    print("\n".join(lines))
    order = sorted(np.flatnonzero(busy).tolist(), key=lambda p: (-int(st.load[p]), p))[: args.top]
    if order:
        print(f"\n  {len(order)} most loaded of {P} parts (load = blocks + {F} x pieces):")
        print(f"  {'part':>5} {'pieces':>7} {'blocks':>9} {'load':>9} {'% payload':>9} {'ends mid-row':>13}")
        for p in order:
            blocks = int(st.end_block[p] - st.first_block[p])
            print(f"  {p:>5} {int(st.pieces[p]):>7,} {blocks:>9,} {int(st.load[p]):>9,} "
                  f"{100.0 * st.load[p] / st.payload:>8.1f}% {'yes' if st.ends_mid_row[p] else 'no':>13}")


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CliError(f"--out {args.out!r} is a file; give a folder")
    parent = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(parent):
        raise CliError(f"--out {args.out!r}: folder {parent!r} does not exist "
                       "(bench creates only the last folder of the path)")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise CliError(f"--out {args.out!r}: {e.strerror or e}") from None
    out = _check_output(os.path.join(args.out, "results.json"), "--out")
    argv = ["--out", os.path.dirname(out)]
    if args.max_b is not None:
        argv += ["--max-b", str(args.max_b)]
    if args.no_cpu:
        argv.append("--no-cpu")
    rc = bench.main(argv, progress=_progress())
    print(f"wrote {out}")
    return int(rc or 0)


def _progress() -> Callable[[str], None]:
    """One line per step on stderr (rewritten in place on a terminal)."""
    tty, t0 = sys.stderr.isatty(), time.perf_counter()

    def progress(label: str) -> None:
        text = f"bench {time.perf_counter() - t0:6.1f}s  {label}"
        sys.stderr.write(("\r\033[K" + text[:120]) if tty else text + "\n")
        sys.stderr.flush()

    return progress


# --------------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog=PROG, description="FlashMLA decode-scheduler metadata (get_mla_metadata) as a JAX custom call.")
    sub = ap.add_subparsers(dest="command", metavar="{info,schedule,bench}")
    sub.add_parser("info", help="JAX version, CUDA module, devices and their shared-memory limits",
                   description="Show JAX versions, whether the CUDA module is built, and each device's limits.")

    s = sub.add_parser("schedule", help="compute and inspect the metadata of one workload",
                       description="Compute the scheduler metadata of one workload and show what runs and why, the "
                                   "per-part load and the time per call. Default: preset pure-tp-prefill (the "
                                   "original crash: B=16,384 sparse rows, DeepSeek V3.2 heads). At most "
                                   f"{MAX_ROWS:,} rows; lengths files of at most {MAX_FILE_BYTES >> 20} MiB.")
    s.add_argument("--preset", choices=sorted(workloads.PRESETS), help="workload preset (default: pure-tp-prefill)")
    s.add_argument("--batch-size", "-B", metavar="B", type=_int_arg(0, MAX_ROWS), help="rows (default: the preset's)")
    s.add_argument("--dist", choices=workloads.DISTS, help="length distribution (default: the preset's)")
    s.add_argument("--lengths", metavar="FILE", help=".npy or text file of integer lengths (sets B)")
    s.add_argument("--mode", choices=["dense", "sparse"], help="default: the preset's (sparse if --topk is given)")
    s.add_argument("--topk", metavar="K", type=_int_arg(0, INT32_MAX), help="sparse top-k (default: 2048)")
    s.add_argument("--topk-length", metavar="FILE|uniform",
                   help="per-row top-k counts: a file, or 'uniform' in [0, topk]")
    s.add_argument("--extra-topk", metavar="N", type=_int_arg(0, INT32_MAX), help="size of an extra KV cache (sparse)")
    s.add_argument("--extra-topk-length", metavar="FILE", help="per-row extra-cache counts (sparse)")
    s.add_argument("--layout", choices=["2025", "2026"], default="2025",
                   help="2025: FlashMLA's get_mla_metadata of 2025; 2026: DecodingSchedMeta (default: %(default)s)")
    s.add_argument("--scheduler", choices=["flashmla", "sgl-kernel"], default="flashmla",
                   help="whose host rule computes num_sm_parts with --layout 2026 (default: %(default)s)")
    s.add_argument("--head-dim-qk", type=_int_arg(1), help="q's head dim (576 V3.2, 512 V4): sparse SM100, 128 heads")
    s.add_argument("--num-heads-q", type=_int_arg(1), help="h_q (default: the preset's)")
    s.add_argument("--num-heads-k", type=_int_arg(1), help="h_k (default: the preset's)")
    s.add_argument("--num-q-tokens-per-head-k", type=_int_arg(1), help="seq_len_q * h_q // h_k (default: the preset's)")
    s.add_argument("--fp8", action=argparse.BooleanOptionalAction, help="fp8 KV cache (default: on for sparse)")
    s.add_argument("--num-sm-parts", "-P", metavar="P", type=_int_arg(1, 1 << 20),
                   help="override num_sm_parts (default: FlashMLA's host rule for the device)")
    s.add_argument("--fixed-overhead-num-blocks", "-F", metavar="F", type=_int_arg(0, 1 << 20),
                   help="override F (default: the host rule's, 5; 3 for DeepSeek V4 on SM100)")
    s.add_argument("--kernel", choices=["auto", "smem", "low_smem"], default="auto",
                   help="CUDA kernel (default: %(default)s)")
    s.add_argument("--seed", type=_int_arg(0), default=0, help="seed of the generated lengths (default: %(default)s)")
    s.add_argument("--device", choices=["cpu", "gpu"], help="default: JAX's default device")
    s.add_argument("--repeats", type=_int_arg(0, 100000), default=20,
                   help="timed calls, 0: none (default: %(default)s)")
    s.add_argument("--top", type=_int_arg(0), default=8,
                   help="rows of the most-loaded-parts table (default: %(default)s)")
    s.add_argument("--json", metavar="FILE", help="write everything as JSON")
    s.add_argument("--plot", metavar="FILE",
                   help="draw the schedule as .png, .svg or .pdf (no suffix: .png; needs matplotlib; at most "
                        "4,096 parts)")

    b = sub.add_parser("bench", help="run the benchmark (jax_mla_meta.bench) with a progress display",
                       description="Benchmark on the default JAX device (and the CPU handler); writes results.json "
                                   "into --out.")
    b.add_argument("--max-b", type=_int_arg(0), help="skip workloads with more rows")
    b.add_argument("--out", default="jax-mla-meta-bench", help="folder for results.json (default: %(default)s)")
    b.add_argument("--no-cpu", action="store_true", help="skip the CPU-handler table")
    return ap


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"info": cmd_info, "schedule": cmd_schedule,
                                                            "bench": cmd_bench}


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
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except CliError as e:
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, RuntimeError, MemoryError) as e:
        print(f"{PROG}: error: {_one_line(e) or type(e).__name__}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
