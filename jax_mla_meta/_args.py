"""Argument checks shared by every public function: each raises TypeError/ValueError naming the argument and
saying what to pass instead, before anything is traced, lowered or allocated."""

from __future__ import annotations

import operator
from typing import Any

import jax
import numpy as np

INT32_MAX = 2**31 - 1


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
