"""``plan()``: what a call would run on a device, in words. The decision itself is the CUDA handler's own
(``ffi/core/launch_plan.h``, reached through ``_ffi.plan_launch``); this module only reads the device's limits and
words the answer."""

from __future__ import annotations

import dataclasses
from typing import Literal

from . import _ffi
from ._args import as_int, choice, device_of
from .layouts import Layout, check_layout

__all__ = ["H100_CLUSTER_LIMIT", "H100_OPTIN_LIMIT", "Plan", "max_smem_rows", "plan"]

Kernel = Literal["auto", "smem", "low_smem"]
KERNELS = ("auto", "smem", "low_smem")

# Assumed for a device that is not a CUDA GPU (documented): an H100.
H100_OPTIN_LIMIT = 232448
H100_CLUSTER_LIMIT = 16   # measured: clusters of 16 CTAs of 1024 threads schedule on an H100

PATHS = {0: "general", 1: "warp", 2: "row", 3: "mid"}
PATH_WORDS = {
    "warp": "the warp path (one warp does the per-row work, then a thread per part)",
    "row": "the row path (per-row arithmetic on one CTA)",
    "mid": "the mid path (each thread's rows in registers)",
    "general": "the general path (records and a walk over the parts)",
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a call with ``batch_rows`` rows and ``num_sm_parts`` parts runs on ``device`` (see :func:`plan`)."""

    device: str
    platform: str
    batch_rows: int
    num_sm_parts: int
    kernel: str                 # "smem" / "low_smem" (CUDA), "cpu", "error" (forced smem cannot run), "unavailable"
    reason: str
    path: str | None            # CUDA: "warp", "row", "mid" or "general" (the path the kernel starts on)
    cluster_size: int | None    # CTAs per batch
    threads: int | None         # threads per CTA
    launches: int | None        # kernel launches per call (1; a wide low_smem batch 2 or 3), per 65,535 batches
    smem_bytes: int             # what the smem kernel needs per CTA for this batch
    optin_limit: int | None     # the device's opt-in shared memory per block
    cluster_limit: int | None   # the largest cluster both kernels can use there
    max_smem_rows: int | None   # largest B the smem kernel takes at this num_sm_parts there (a threshold past the
                                # mid path's rows; below them a smaller B may still not fit: see max_smem_rows)
    assumed_h100: bool = False  # a CPU device: the CUDA figures are for an H100
    layout: str = "2025"        # the metadata layout written (it does not change the launch)


def max_smem_rows(num_sm_parts: int, limit: int, cluster_limit: int = 1) -> int:
    """Largest B whose smem kernel fits ``limit`` bytes per CTA on clusters of up to ``cluster_limit`` CTAs (0 if
    none does). Past the mid path's last row every smaller B fits too; below it, where the fast paths' regions set
    the need, a small limit can leave gaps (on every CUDA device the package runs on, none)."""
    P = as_int("num_sm_parts", num_sm_parts, 1, _ffi.MAX_PARTS)
    limit = as_int("limit", limit, 0)
    K = as_int("cluster_limit", cluster_limit, 1, _ffi.MAX_CLUSTER)
    if K & (K - 1):
        raise ValueError(f"cluster_limit must be a power of two, got {K}")
    top = _ffi.MAX_ROWS - P - 1

    def fits(b: int) -> bool:
        return _ffi.smem_bytes(b, P, K) <= limit

    # Past the fast paths' batches the need grows with B (a bisection finds the largest B that fits); up to
    # there the paths' own regions make it jump up and down, so a small limit is searched row by row.
    mono = min(_ffi.MID_PATH_ROWS[1], top)
    if mono == top or not fits(mono + 1):
        return next((b for b in range(mono, -1, -1) if fits(b)), 0)
    lo, step = mono + 1, 1
    hi = lo + step
    while hi <= top and fits(hi):
        lo, step = hi, 2 * step
        hi = lo + step
    hi = min(hi, top + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _ctas(n: int) -> str:
    return f"{n} CTA{'s' if n != 1 else ''}"


def _words(d: dict, kernel: str, B: int, P: int, bs: int, limit: int, kmax: int, rows: bool) -> tuple[str, str]:
    """(kernel that runs, reason) from the launch decision."""
    need = d["smem_need"]
    if d["error"] == 1:
        return "error", (f"the smem kernel does not support block_size_n={bs} (a group of 32 rows could exceed "
                         "2^31 blocks)")
    if d["error"] == 2:
        return "error", (f"the smem kernel needs {need} bytes of shared memory per CTA for B={B}, num_sm_parts={P} "
                         f"even on a cluster of {kmax} CTAs, and the device allows {limit}")
    ran = "smem" if d["smem"] else "low_smem"
    if kernel != "auto":
        why = "forced"
    elif ran == "smem":
        why = f"needs {need} <= {limit} bytes of opt-in shared memory per CTA"
    else:
        why = (f"the smem kernel would need {need} > {limit} bytes of opt-in shared memory per CTA on "
               f"{_ctas(kmax)}" if need > limit else f"the smem kernel does not support block_size_n={bs}")
    path = PATHS[d["path"]]
    why += f"; {PATH_WORDS[path]}, on {_ctas(d['cluster'])} of {d['threads']} threads"
    if path in ("warp", "row", "mid"):
        why += " (a batch it cannot take exactly goes to the general path in the same launch)"
    if d["wide"]:
        why += (f", more than {_ffi.CHUNK_ROWS:,} rows each: "
                + ("a chunk-sums launch before the cluster and " if rows else "")
                + "a num_splits launch after it")
    return ran, why


def plan(B: int, num_sm_parts: int, *, kernel: Kernel = "auto", device=None, block_size_n: int = 64,
         fixed_overhead_num_blocks: int = 5, topk: int | None = None, per_row: bool = False,
         layout: Layout = "2025") -> Plan:
    """Which kernel a call with ``B`` rows and ``num_sm_parts`` parts runs on ``device``, on which path, how many
    CTAs of how many threads, in how many launches, and why: the CUDA handler's own decision.

    ``topk`` None (dense) or ``per_row`` (sparse with ``topk_length`` / ``extra_topk_length``) means lengths per
    row; sparse rows of one length take other paths. ``layout`` ("2025" or "2026", as for ``schedule``) is
    checked and reported; every path writes either layout in the same launch, so it does not change the
    decision. On a CPU device the sequential CPU handler runs; the CUDA figures then describe an H100
    (``assumed_h100``)."""
    B, P = _ffi.check_rows_parts(B, num_sm_parts)
    bs = as_int("block_size_n", block_size_n, 1, 2**31 - 1)
    F = as_int("fixed_overhead_num_blocks", fixed_overhead_num_blocks, 0, _ffi.MAX_OVERHEAD)
    if topk is not None:
        as_int("topk", topk, 0)
    choice("kernel", kernel, KERNELS)
    layout = check_layout(layout)
    rows = topk is None or bool(per_row)
    d = device_of(device)
    on_gpu = getattr(d, "platform", None) == "gpu"
    if on_gpu:
        limit, kmax = _ffi.optin_limit(d), _ffi.cluster_limit(d)
        if limit is None or kmax is None:
            why = ("the CUDA module is not built: the call cannot run on this GPU" if not _ffi.HAS_CUDA else
                   "the CUDA module cannot run on this GPU (it needs compute capability 9.0 or newer) or could not "
                   "read its limits")
            return Plan(str(d), d.platform, B, P, "unavailable", why, None, None, None, None, _ffi.smem_bytes(B, P),
                        None, None, None, layout=layout)
    else:
        limit, kmax = H100_OPTIN_LIMIT, H100_CLUSTER_LIMIT
    dec = _ffi.plan_launch(B, P, bs, F, rows, ("auto", "smem", "low_smem").index(kernel), limit, kmax)
    ran, why = _words(dec, kernel, B, P, bs, limit, kmax, rows)
    rows_max = max_smem_rows(P, limit, kmax) if _ffi.smem_supported(bs, F) else 0
    launches = None if ran == "error" else 1 + (dec["wide"] and (2 if rows else 1))
    fields = dict(path=None if ran == "error" else PATHS[dec["path"]],
                  cluster_size=None if ran == "error" else dec["cluster"],
                  threads=None if ran == "error" else dec["threads"], launches=launches,
                  smem_bytes=dec["smem_need"], optin_limit=limit, cluster_limit=kmax, max_smem_rows=rows_max,
                  layout=layout)
    if on_gpu:
        return Plan(str(d), d.platform, B, P, ran, why, **fields)
    h100 = "could not run kernel='smem'" if ran == "error" else f"would run {ran}"
    return Plan(str(d), d.platform, B, P, "cpu",
                f"CPU device: the sequential CPU handler runs (kernel is ignored). On an H100 ({H100_OPTIN_LIMIT} "
                f"bytes of opt-in shared memory, clusters of up to {H100_CLUSTER_LIMIT} CTAs) the call {h100}: "
                f"{why}", assumed_h100=True, **fields)
