"""Loading the compiled modules, checking their FFI API against the running jaxlib, registering the targets, and
checked wrappers of what the modules compute (sizes, the launch decision, a device's limits).

Imported once by the package. ``_cpu`` is required; ``_cuda`` is optional (absent on a build without nvcc, or
switched off with ``JAX_MLA_META_DISABLE_CUDA=1``)."""

from __future__ import annotations

import importlib.util
import os
import re

import jax

from ._args import as_int, as_bool, device_of

try:
    from . import _cpu
except ImportError as _e:  # pragma: no cover - depends on how the package is imported
    raise ImportError(
        "jax_mla_meta's compiled module _cpu is missing next to "
        f"{os.path.dirname(__file__)}. If that is the source tree (for example `python -c ...` or `python -m ...` "
        "run from the repository root puts it first on sys.path), run from another directory or use an editable "
        "install (`python -m pip install -e .`); otherwise reinstall the package."
    ) from _e

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _disable_cuda() -> bool:
    v = os.environ.get("JAX_MLA_META_DISABLE_CUDA", "").strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ImportError(f"JAX_MLA_META_DISABLE_CUDA={os.environ['JAX_MLA_META_DISABLE_CUDA']!r}: use 1/true/yes/on "
                      "to run as a CPU-only build, or 0/false/no/off (or leave it unset)")


# How to get the CUDA module, as README.md's set-up says: the build makes it whenever nvcc is on the PATH.
CUDA_BUILD_HINT = ("To build it, reinstall from the source tree with CUDA's nvcc on the PATH: "
                   "`python -m pip install -e .` (README.md, Set-up)")

CUDA_IMPORT_ERROR: str | None = None   # why _cuda is None, in words (None when it loaded)
if _disable_cuda():   # documented: run as a CPU-only build
    _cuda = None
    CUDA_IMPORT_ERROR = "disabled by JAX_MLA_META_DISABLE_CUDA"
elif importlib.util.find_spec(f"{__package__}._cuda") is None:   # pragma: no cover - depends on the build
    # the build makes _cuda only where nvcc was found (or not at all with -Ccmake.define.JAX_MLA_META_CUDA=OFF);
    # importing it here would only say "cannot import name '_cuda' from partially initialized module"
    _cuda = None
    CUDA_IMPORT_ERROR = ("the CUDA module was not built: nvcc was not on the PATH when the package was built, or "
                         f"the build switched it off. {CUDA_BUILD_HINT}")
else:
    try:
        from . import _cuda  # type: ignore[attr-defined]
    except ImportError as _e:  # pragma: no cover - depends on the build
        _cuda = None
        CUDA_IMPORT_ERROR = (f"the CUDA module is there but could not be loaded: {' '.join(str(_e).split())}. "
                             "A missing CUDA runtime library is the usual cause")

CPU_TARGET = "jax_mla_meta_cpu_v2"
CUDA_TARGET = "jax_mla_meta_cuda_v2"


def runtime_ffi_api_version() -> tuple[int, int] | None:
    """The XLA FFI API version of the running jaxlib, read from the headers it ships (None if absent)."""
    try:
        header = os.path.join(jax.ffi.include_dir(), "xla", "ffi", "api", "c_api.h")
        with open(header, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    major = re.search(r"#define\s+XLA_FFI_API_MAJOR\s+(\d+)", text)
    minor = re.search(r"#define\s+XLA_FFI_API_MINOR\s+(\d+)", text)
    if not (major and minor):
        return None
    return int(major.group(1)), int(minor.group(1))


def check_api_version(module_name: str, built: tuple[int, int], runtime: tuple[int, int] | None) -> None:
    """Raise ImportError when a module was compiled against newer FFI headers than the running jaxlib has.

    XLA rejects such a handler when the backend starts, and takes the whole backend down with it; this turns that
    into a readable message first."""
    if runtime is None:
        return
    if tuple(built) > tuple(runtime):
        raise ImportError(
            f"jax_mla_meta.{module_name} was compiled against XLA FFI API {built[0]}.{built[1]}, but the running "
            f"jaxlib {getattr(jax.lib, '__version__', '?')} provides {runtime[0]}.{runtime[1]}. Rebuild against "
            "this jaxlib: `python -m pip install --no-build-isolation --force-reinstall --no-deps .` (or upgrade "
            "jax/jaxlib to the version it was built with).")


_RUNTIME_API = runtime_ffi_api_version()
check_api_version("_cpu", tuple(_cpu.ffi_api_version), _RUNTIME_API)
for _name, _cap in _cpu.registrations().items():
    jax.ffi.register_ffi_target(_name, _cap, platform="cpu")

if _cuda is not None:
    check_api_version("_cuda", tuple(_cuda.ffi_api_version), _RUNTIME_API)
    for _name, _cap in _cuda.registrations().items():
        # "CUDA" (not "cuda"): the lowercase name is silently never registered
        jax.ffi.register_ffi_target(_name, _cap, platform="CUDA")

HAS_CUDA = _cuda is not None

MAX_PARTS = int(_cpu.max_parts)
MAX_OVERHEAD = int(_cpu.max_overhead)
MAX_ROWS = int(_cpu.max_rows)
MAX_CLUSTER = int(_cpu.max_cluster)
WARP_PATH_ROWS = int(_cpu.warp_path_rows)
ROW_PATH_ROWS = int(_cpu.row_path_rows)
MID_PATH_ROWS = tuple(int(v) for v in _cpu.mid_path_rows)   # (first, last) rows of the mid path
PATH_PARTS = int(_cpu.path_parts)                          # the warp, row and mid paths take P <= this
CHUNK_ROWS = int(_cpu.chunk_rows)


def check_rows_parts(B, num_sm_parts) -> tuple[int, int]:
    """B and P as ints, or a TypeError/ValueError naming them: the one check of a batch's size, for every caller."""
    B = as_int("B", B, 0)
    P = as_int("num_sm_parts", num_sm_parts, 1, MAX_PARTS)
    if B + P + 1 > MAX_ROWS:
        raise ValueError(f"batch too large: B ({B}) + num_sm_parts ({P}) must stay below 2**31 - 1")
    return B, P


def _cluster(name: str, K) -> int:
    K = as_int(name, K, 1, MAX_CLUSTER)
    if K & (K - 1):
        raise ValueError(f"{name} must be a power of two, got {K}")
    return K


def smem_bytes(B: int, num_sm_parts: int, cluster_size: int = 1) -> int:
    """Dynamic shared memory per CTA that the "smem" kernel needs for one batch of ``B`` rows and ``num_sm_parts``
    parts, when the batch is spread over a cluster of ``cluster_size`` CTAs (a power of two up to 16)."""
    B, P = check_rows_parts(B, num_sm_parts)
    return int(_cpu.smem_bytes(B, P, _cluster("cluster_size", cluster_size)))


def smem_supported(block_size_n: int, fixed_overhead_num_blocks: int) -> bool:
    """Whether the "smem" kernel can represent every row cost (False only for block sizes below 64)."""
    bs = as_int("block_size_n", block_size_n, 1, 2**31 - 1)
    F = as_int("fixed_overhead_num_blocks", fixed_overhead_num_blocks, 0, MAX_OVERHEAD)
    return bool(_cpu.smem_supported(bs, F))


def workspace_bytes(B: int, num_sm_parts: int) -> int:
    """Bytes of scratch per batch (a hidden extra output of the custom call)."""
    B, P = check_rows_parts(B, num_sm_parts)
    return int(_cpu.workspace_bytes(B, P))


def plan_launch(B: int, num_sm_parts: int, block_size_n: int, fixed_overhead_num_blocks: int, rows: bool,
                kernel: int, optin: int, kmax: int) -> dict:
    """The CUDA handler's launch decision (``ffi/core/launch_plan.h``) on a device with ``optin`` bytes of opt-in
    shared memory per block and clusters of up to ``kmax`` CTAs. ``rows``: lengths per row (dense, or sparse with
    per-row inputs). ``kernel``: 0 auto, 1 smem, 2 low_smem."""
    B, P = check_rows_parts(B, num_sm_parts)
    bs = as_int("block_size_n", block_size_n, 1, 2**31 - 1)
    F = as_int("fixed_overhead_num_blocks", fixed_overhead_num_blocks, 0, MAX_OVERHEAD)
    return dict(_cpu.plan_launch(B, P, bs, F, as_bool("rows", rows), as_int("kernel", kernel, 0, 2),
                                 as_int("optin", optin, 0, 2**30), _cluster("kmax", kmax)))


def _cuda_ordinal(device) -> int | None:
    d = device_of(device)
    if _cuda is None or getattr(d, "platform", None) != "gpu":
        return None
    return int(d.local_hardware_id)


def optin_limit(device) -> int | None:
    """cudaDevAttrMaxSharedMemoryPerBlockOptin of a JAX CUDA device, or None (not CUDA / no CUDA module)."""
    ordinal = _cuda_ordinal(device)
    if ordinal is None:
        return None
    v = int(_cuda.optin_limit(ordinal))
    return v if v > 0 else None


def cluster_limit(device) -> int | None:
    """Largest thread-block cluster both kernels can use on a JAX CUDA device, or None."""
    ordinal = _cuda_ordinal(device)
    if ordinal is None:
        return None
    v = int(_cuda.cluster_limit(ordinal))
    return v if v > 0 else None
