"""jax_mla_meta: FlashMLA's decode-scheduler metadata as a jittable JAX custom call (CPU and CUDA).

>>> import jax, jax.numpy as jnp, jax_mla_meta
>>> meta, splits = jax.jit(lambda s: jax_mla_meta.schedule(s, num_sm_parts=4))(jnp.array([100, 5000], jnp.int32))
"""

from . import reference
from ._ffi import HAS_CUDA, smem_bytes, smem_supported, workspace_bytes
from .api import get_mla_metadata, schedule
from .checker import ScheduleError, ScheduleStats, check_schedule
from .decode import flash_mla_with_kvcache
from .host_rules import HostRule, device_facts, host_rule, num_sm_parts_for
from .layouts import LAYOUTS, to_2026
from .plan import Plan, max_smem_rows, plan

__version__ = "0.2.0"

__all__ = [
    "HAS_CUDA",
    "HostRule",
    "LAYOUTS",
    "Plan",
    "ScheduleError",
    "ScheduleStats",
    "check_schedule",
    "device_facts",
    "flash_mla_with_kvcache",
    "get_mla_metadata",
    "host_rule",
    "max_smem_rows",
    "num_sm_parts_for",
    "plan",
    "reference",
    "schedule",
    "smem_bytes",
    "smem_supported",
    "to_2026",
    "workspace_bytes",
]
