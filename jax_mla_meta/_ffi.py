"""Loading the compiled modules, checking their FFI API against the running jaxlib, registering targets.

Imported once by the package. `_cpu` is required; `_cuda` is optional (absent on a build without nvcc)."""

from __future__ import annotations

import os
import re

import jax

try:
    from . import _cpu
except ImportError as _e:  # pragma: no cover - depends on how the package is imported
    raise ImportError(
        "jax_mla_meta's compiled module _cpu is missing next to "
        f"{os.path.dirname(__file__)}. If that is the source tree (for example `python -m ...` run from the "
        "repository root puts it first on sys.path), run from another directory or use an editable install "
        "(`python -m pip install --no-build-isolation -e .`); otherwise reinstall the package."
    ) from _e

CUDA_IMPORT_ERROR: str | None = None
if os.environ.get("JAX_MLA_META_DISABLE_CUDA", "") not in ("", "0"):   # documented: run as a CPU-only build
    _cuda = None
    CUDA_IMPORT_ERROR = "disabled by JAX_MLA_META_DISABLE_CUDA"
else:
    try:  # the CUDA module is built only where nvcc was found
        from . import _cuda  # type: ignore[attr-defined]
    except ImportError as _e:  # pragma: no cover - depends on the build
        _cuda = None
        CUDA_IMPORT_ERROR = str(_e)

CPU_TARGET = "jax_mla_meta_cpu_v1"
CUDA_TARGET = "jax_mla_meta_cuda_v1"


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

    XLA rejects such a handler when the backend starts, and takes the whole backend down with it; this
    turns that into a readable message first."""
    if runtime is None:
        return
    if tuple(built) > tuple(runtime):
        raise ImportError(
            f"jax_mla_meta.{module_name} was compiled against XLA FFI API {built[0]}.{built[1]}, but the running "
            f"jaxlib {getattr(jax.lib, '__version__', '?')} provides "
            f"{runtime[0]}.{runtime[1]}. Rebuild against this jaxlib: "
            "`python -m pip install --no-build-isolation --force-reinstall --no-deps .` "
            "(or upgrade jax/jaxlib to the version it was built with)."
        )


_RUNTIME_API = runtime_ffi_api_version()
check_api_version("_cpu", tuple(_cpu.ffi_api_version), _RUNTIME_API)
for _name, _cap in _cpu.registrations().items():
    jax.ffi.register_ffi_target(_name, _cap, platform="cpu")

if _cuda is not None:
    check_api_version("_cuda", tuple(_cuda.ffi_api_version), _RUNTIME_API)
    for _name, _cap in _cuda.registrations().items():
        # "CUDA" (not "cuda"): the lowercase name is silently never registered (FFI_NOTES.md section 0).
        jax.ffi.register_ffi_target(_name, _cap, platform="CUDA")

HAS_CUDA = _cuda is not None


def smem_bytes(B: int, num_sm_parts: int, cluster_size: int = 1) -> int:
    """Dynamic shared memory per CTA that the "smem" kernel needs for one batch of B rows and num_sm_parts
    parts, when the batch is spread over a cluster of ``cluster_size`` CTAs."""
    return int(_cpu.smem_bytes(int(B), int(num_sm_parts), int(cluster_size)))


def smem_cluster(B: int, num_sm_parts: int, optin: int, kmax: int) -> int:
    """Cluster size the "smem" kernel runs with (0: it does not fit the device)."""
    return int(_cpu.smem_cluster(int(B), int(num_sm_parts), int(optin), int(kmax)))


def cluster_for(B: int, kmax: int) -> int:
    """Cluster size for B rows (about 4096 rows per CTA, a power of two up to kmax)."""
    return int(_cpu.cluster_for(int(B), int(kmax)))


def low_smem_cluster(B: int, kmax: int) -> int:
    """Cluster size of the "low_smem" kernel outside the mid path: ``cluster_for(B, kmax)``, at most 8 when a
    CTA would hold more than 8,192 rows (a wide batch: three launches)."""
    return int(_cpu.low_smem_cluster(int(B), int(kmax)))


def midpath_fits(B: int, num_sm_parts: int, block_size_n: int) -> bool:
    """Whether a dense batch takes the CUDA kernels' mid path: 1,793-12,288 rows, num_sm_parts <= 256,
    block_size_n a power of two >= 64."""
    return bool(_cpu.midpath_fits(int(B), int(num_sm_parts), int(block_size_n)))


def midpath_cluster(B: int, kmax: int) -> int:
    """CTAs (of 512 threads) the mid path runs a batch of B rows on: the fewest, a power of two up to kmax,
    that leave each at most 2,048 rows."""
    return int(_cpu.midpath_cluster(int(B), int(kmax)))


def midpath_rows_per_thread(B: int, cluster_size: int) -> int:
    """Consecutive rows (4, 8, 16 or 24) each of the mid path's 512 threads a CTA holds, for B rows on a
    cluster of cluster_size CTAs."""
    return int(_cpu.midpath_rows_per_thread(int(B), int(cluster_size)))


def smem_supported(block_size_n: int, fixed_overhead_num_blocks: int) -> bool:
    """Whether the "smem" kernel can represent every row cost (False only for block sizes below 64)."""
    return bool(_cpu.smem_supported(int(block_size_n), int(fixed_overhead_num_blocks)))


def workspace_bytes(B: int, num_sm_parts: int) -> int:
    """Bytes of scratch per batch (a hidden extra output of the custom call)."""
    return int(_cpu.workspace_bytes(int(B), int(num_sm_parts)))


def optin_limit(device) -> int | None:
    """cudaDevAttrMaxSharedMemoryPerBlockOptin of a JAX CUDA device, or None (not CUDA / no CUDA module)."""
    if _cuda is None or getattr(device, "platform", None) != "gpu":
        return None
    v = int(_cuda.optin_limit(int(device.local_hardware_id)))
    return v if v > 0 else None


def cluster_limit(device) -> int | None:
    """Largest thread-block cluster both kernels can use on a JAX CUDA device, or None."""
    if _cuda is None or getattr(device, "platform", None) != "gpu":
        return None
    v = int(_cuda.cluster_limit(int(device.local_hardware_id)))
    return v if v > 0 else None


MAX_PARTS = int(_cpu.max_parts)
MAX_CLUSTER = int(_cpu.max_cluster)
MAX_OVERHEAD = int(_cpu.max_overhead)
MAX_ROWS = int(_cpu.max_rows)
