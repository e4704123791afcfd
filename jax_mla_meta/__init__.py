"""jax_mla_meta: FlashMLA's decode-scheduler metadata as a jittable JAX custom call (CPU and CUDA).

>>> import jax, jax.numpy as jnp, jax_mla_meta
>>> meta, splits = jax.jit(lambda s: jax_mla_meta.schedule(s, num_sm_parts=4))(jnp.array([100, 5000], jnp.int32))
"""

from . import reference
from ._ffi import HAS_CUDA, smem_bytes, smem_supported, workspace_bytes
from .api import Plan, device_facts, get_mla_metadata, max_smem_rows, num_sm_parts_for, plan, schedule

__version__ = "0.1.0"

__all__ = [
    "HAS_CUDA",
    "Plan",
    "device_facts",
    "get_mla_metadata",
    "max_smem_rows",
    "num_sm_parts_for",
    "plan",
    "reference",
    "schedule",
    "smem_bytes",
    "smem_supported",
    "workspace_bytes",
]
