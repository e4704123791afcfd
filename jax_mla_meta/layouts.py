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


def to_2026(meta_2025, num_splits, B: int) -> np.ndarray:
    """Repack one batch's 2025 metadata ``[P, 8]`` as 2026, with flags from ``num_splits``.

    ``[b, bb, e, eb, bs, 0, 0, 0]`` becomes ``[b (-1 -> B), e, bb, eb, bs, split(b), split(e), 0]`` with
    ``split(r) = num_splits[r + 1] - num_splits[r] > 1`` (0 for parts with no work). Exact for the same row costs,
    P and F (``docs/spec.md`` section 5)."""
    m = np.asarray(meta_2025, dtype=np.int64)
    s = np.asarray(num_splits, dtype=np.int64)
    out = np.zeros_like(m)
    idle = m[:, 0] < 0
    pieces = np.diff(s)
    if pieces.size:
        split = lambda r: np.where(idle, 0, pieces[np.clip(r, 0, pieces.size - 1)] > 1)
    else:
        split = lambda r: np.zeros(m.shape[0], np.int64)
    out[:, 0] = np.where(idle, B, m[:, 0])
    out[:, 1] = m[:, 2]
    out[:, 2] = m[:, 1]
    out[:, 3] = m[:, 3]
    out[:, 4] = m[:, 4]
    out[:, 5] = split(m[:, 0])
    out[:, 6] = split(m[:, 2])
    return out.astype(np.int32)
