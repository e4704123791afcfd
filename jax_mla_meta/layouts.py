"""The two packings of a part's row of ``tile_scheduler_metadata`` (int32 ``[P, 8]``), in one place.

* ``"2025"``, the seed's contract (FlashMLA's ``get_mla_metadata`` of 2025, sgl-kernel's ``get_mla_decoding_metadata``
  before 2026): ``[begin_req, begin_block, end_req, end_block, begin_split, 0, 0, 0]``; a part with no work left has
  ``begin_req = -1``.
* ``"2026"``, ``DecodingSchedMeta`` (every FlashMLA build since January 2026: deepseek-ai main, the sgl-project
  ``sgl`` branch that sgl-kernel ships, vLLM's fork): ``[begin_req, end_req, begin_block, end_block, begin_split,
  is_first_req_splitted, is_last_req_splitted, 0]``; a part with no work left has ``begin_req = B``.

``ffi/core/records.h`` is the same packing in C++.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ._args import as_int, concrete_int_values

__all__ = ["COLUMNS", "LAYOUTS", "Layout", "check_layout", "fields", "to_2026"]

Layout = Literal["2025", "2026"]
LAYOUTS = ("2025", "2026")

# column of each field in each layout (None: the layout has no such column)
COLUMNS = {
    "2025": dict(begin_req=0, begin_block=1, end_req=2, end_block=3, begin_split=4, first_split=None,
                 last_split=None),
    "2026": dict(begin_req=0, end_req=1, begin_block=2, end_block=3, begin_split=4, first_split=5, last_split=6),
}


def check_layout(layout) -> Layout:
    """``layout`` as given, or a ValueError that lists the two and who consumes each."""
    if layout not in LAYOUTS:
        raise ValueError(
            f"layout must be '2025' (FlashMLA's get_mla_metadata of 2025) or '2026' (DecodingSchedMeta, every "
            f"FlashMLA build since January 2026), got {layout!r}")
    return layout


def fields(meta, layout: Layout) -> dict[str, np.ndarray]:
    """The named columns of ``meta [..., P, 8]`` in ``layout`` (int64 views)."""
    meta = np.asarray(meta, dtype=np.int64)
    return {k: meta[..., c] for k, c in COLUMNS[check_layout(layout)].items() if c is not None}


def _int_matrix(name: str, x, shape: str, ndim: int) -> np.ndarray:
    """``x`` as an int64 array of rank ``ndim`` whose values fit in int32, or a TypeError/ValueError naming it."""
    a = concrete_int_values(name, x, arrays_only=True, shape=shape)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return a


def to_2026(meta_2025, num_splits, B: int) -> np.ndarray:
    """Repack one batch's 2025 metadata ``[P, 8]`` as 2026, with flags from ``num_splits``.

    ``[b, bb, e, eb, bs, 0, 0, 0]`` becomes ``[b (-1 -> B), e, bb, eb, bs, split(b), split(e), 0]`` with
    ``split(r) = num_splits[r + 1] - num_splits[r] > 1`` (0 for parts with no work). Exact for the same row costs,
    P and F (``docs/spec.md`` section 5). ``num_splits`` is ``[B + 1]`` or its first ``num_valid + 1`` entries;
    ``B`` is the batch's row count (``-1`` becomes ``B``). Bad arguments raise TypeError/ValueError naming them."""
    m = _int_matrix("meta_2025", meta_2025, "[P >= 1, 8]", 2)
    if m.shape[0] < 1 or m.shape[1] != 8:
        raise ValueError(f"meta_2025 must have shape [P >= 1, 8], got {m.shape}")
    B = as_int("B", B, 0, 2**31 - 2)
    s = _int_matrix("num_splits", num_splits, f"[B + 1] = [{B + 1}]", 1)
    if not 1 <= s.shape[0] <= B + 1:
        raise ValueError(f"num_splits must have shape [B + 1] = [{B + 1}] (or its first num_valid + 1 entries), "
                         f"got {s.shape}")
    old, new = COLUMNS["2025"], COLUMNS["2026"]
    out = np.zeros_like(m)
    for name, c in old.items():
        if c is not None:
            out[:, new[name]] = m[:, c]
    idle = m[:, old["begin_req"]] < 0
    pieces = np.diff(s)

    def split(rows: np.ndarray) -> np.ndarray:
        """Whether each part's row ``rows`` has more than one piece (0 for a part with no work)."""
        if not pieces.size:
            return np.zeros(m.shape[0], np.int64)
        return np.where(idle, 0, pieces[np.clip(rows, 0, pieces.size - 1)] > 1)

    out[:, new["begin_req"]] = np.where(idle, B, m[:, old["begin_req"]])
    out[:, new["first_split"]] = split(m[:, old["begin_req"]])
    out[:, new["last_split"]] = split(m[:, old["end_req"]])
    return out.astype(np.int32)
