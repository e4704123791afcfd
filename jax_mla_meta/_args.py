"""Argument checks shared by every public function: each raises TypeError/ValueError naming the argument and
saying what to pass instead, before anything is traced, lowered or allocated."""

from __future__ import annotations

import operator
from typing import Any

import jax
import numpy as np

from .costs import uniform_sparse_too_long

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def as_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None, *,
           static: bool = True) -> int:
    """``value`` as a Python int in ``[minimum, maximum]``, or a TypeError/ValueError naming ``name``."""
    if static and is_traced(value):
        raise TypeError(
            f"{name} must be a static Python int, but got a traced value ({type(value).__name__}). Under jax.jit, "
            f"mark it static (jax.jit(f, static_argnames=({name!r},))) or close over it instead of passing it as a "
            "traced argument.")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return int(v)


def as_bool(name: str, value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {type(value).__name__}")


def choice(name: str, value: Any, options) -> Any:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(repr(o) for o in options)}; got {value!r}")
    return value


def int32_array(name: str, x: Any):
    """``x`` if it is an int32 array (NumPy or JAX, possibly traced) of rank >= 1, else a TypeError/ValueError."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        if isinstance(x, (list, tuple)):
            raise TypeError(f"{name} must be an int32 array; got a {type(x).__name__}. Convert it with "
                            f"jnp.asarray({name}, dtype=jnp.int32).")
        raise TypeError(f"{name} must be an int32 array, got {type(x).__name__}")
    if np.dtype(x.dtype) != np.int32:
        raise TypeError(f"{name} must have dtype int32, got {np.dtype(x.dtype).name}. Convert it with "
                        f"{name}.astype(jnp.int32) (values above 2**31 - 1 cannot be represented).")
    if len(x.shape) < 1:
        raise ValueError(f"{name} must have rank >= 1 ([..., B]), got a scalar")
    for k, d in enumerate(x.shape):
        if not isinstance(d, (int, np.integer)):
            raise ValueError(
                f"{name} has a symbolic dimension {k} ({d}): the batch size B and the leading dims must be static "
                "(the output shapes depend on B). With jax.export, export one artifact per shape.")
    return x


def check_extra_topk(extra_topk) -> int:
    if extra_topk is None:
        return 0
    if is_traced(extra_topk):
        as_int("extra_topk", extra_topk)   # raises the static-argument message
    if not isinstance(extra_topk, (bool, np.bool_)) and np.ndim(extra_topk) == 0:
        try:
            v = int(extra_topk)
        except (TypeError, ValueError):
            v = None
        if v is not None and v < 0:
            raise ValueError(
                f"extra_topk must be None or >= 0 (0 or None: no extra KV cache), got {v}. FlashMLA's sgl-kernel "
                "shim passes -1 for 'no extra cache' and the native API passes 0; here pass None (or 0), and the "
                "extra cache's size (extra_indices.shape[-1]) when there is one.")
    return as_int("extra_topk", extra_topk, 0, INT32_MAX)


def check_sparse_inputs(topk: int | None, extra_topk: int, has_topk_length: bool, has_extra_length: bool) -> None:
    """The per-row and extra-cache inputs (already checked one by one) against ``topk`` (None: dense)."""
    if topk is None and (has_topk_length or has_extra_length or extra_topk):
        raise ValueError("topk_length, extra_topk and extra_topk_length describe sparse rows: pass topk as well")
    if topk is not None and not has_topk_length and not has_extra_length and extra_topk:
        if uniform_sparse_too_long(topk, extra_topk):
            raise ValueError(f"topk ({topk}) rounded up to a multiple of 64, plus extra_topk ({extra_topk}), must "
                             "stay below 2**31: no row can be that long")


def concrete_int_values(name: str, x: Any, *, arrays_only: bool = False, shape: str = "") -> np.ndarray:
    """``x`` as int64 NumPy values, every one inside int32, for the functions that run in NumPy (the reference,
    the checker, to_2026): a TypeError/ValueError naming it if it is traced, not integer, or out of range.
    ``arrays_only``: a NumPy or JAX array, not a list; ``shape`` describes the expected shape in messages."""
    if is_traced(x):
        raise TypeError(f"{name} must be a concrete array: this runs in NumPy, outside jax.jit (got a traced "
                        f"{type(x).__name__})")
    if arrays_only and not (hasattr(x, "dtype") and hasattr(x, "shape")):
        raise TypeError(f"{name} must be an integer NumPy or JAX array {shape}, got {type(x).__name__}; convert it "
                        f"with np.asarray({name}, dtype=np.int32)")
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array{' ' + shape if shape else ''}, got dtype {a.dtype.name}")
    if a.size and (int(a.min()) < INT32_MIN or int(a.max()) > INT32_MAX):
        raise ValueError(f"{name} values must fit in int32 ({INT32_MIN}..{INT32_MAX}), found "
                         f"{int(a.min()) if int(a.min()) < INT32_MIN else int(a.max())}")
    return a.astype(np.int64)


def device_of(device: Any):
    """A JAX device from None (the default device), a platform name ('cpu', 'gpu'/'cuda') or a jax.Device."""
    if device is None:
        return jax.devices()[0]
    if isinstance(device, str):
        name = "gpu" if device == "cuda" else device
        try:
            devs = jax.devices(name)
        except RuntimeError as e:
            raise ValueError(f"device={device!r}: no such JAX backend here ({' '.join(str(e).split())})") from None
        return devs[0]
    if isinstance(device, jax.Device) or isinstance(getattr(device, "platform", None), str):
        return device
    raise TypeError(f"device must be None, a platform name such as 'cpu' or 'gpu', or a jax.Device (for example "
                    f"jax.devices()[0]); got {type(device).__name__}")
