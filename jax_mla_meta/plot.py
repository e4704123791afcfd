"""The schedule picture of ``jax-mla-meta schedule --plot`` (needs matplotlib).

Top: every part's load, as its pieces lay it out: per piece F units of fixed cost (orange) and the row's blocks it
covers (blue, alternating shades from row to row), against the payload every part may carry (dashed). Past
MAX_PIECES pieces in all, each part is one bar instead: its pieces' fixed cost together (orange), then its blocks
(blue), so the picture costs the same whatever the number of rows. A red cap marks a part that ends inside a row:
the next part continues that row (a split row; a boundary between two rows carries no mark). Bottom: single rows
around the first split, on the global block axis (rows laid end to end), coloured by the part that covers them."""

from __future__ import annotations

import numpy as np

from .checker import ScheduleStats

__all__ = ["MAX_PARTS", "MAX_PIECES", "plot_schedule"]

MAX_PARTS = 4096          # more parts than this are refused (one line, exit status 2): bars would be sub-pixel
MAX_PIECES = 4000         # up to this many pieces in all, each is drawn; past it, one bar per part
BLUES = np.array([[0.16, 0.44, 0.71, 1.0], [0.55, 0.78, 0.93, 1.0]])
ORANGE = (0.96, 0.60, 0.20, 1.0)
RED = (0.85, 0.10, 0.10, 1.0)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _row_starts(st: ScheduleStats) -> np.ndarray:
    """``G[r]``: the first global block of valid row ``r`` (rows laid end to end); ``G[n]``: all blocks."""
    G = np.zeros(st.num_valid + 1, np.int64)
    np.cumsum(st.row_blocks, out=G[1:])
    return G


def _pieces(st: ScheduleStats, G: np.ndarray) -> list:
    """Per busy part: its pieces as (row, first block within the row, blocks). Only called for at most
    MAX_PIECES pieces in all."""
    out = []
    for p in np.flatnonzero(st.busy):
        a, b = int(st.first_block[p]), int(st.end_block[p])
        r0 = int(np.searchsorted(G, a, "right")) - 1
        r1 = int(np.searchsorted(G, b - 1, "right")) - 1
        out.append([(r, max(a, int(G[r])) - int(G[r]), min(b, int(G[r + 1])) - max(a, int(G[r])))
                    for r in range(r0, r1 + 1)])
    return out


def _bar(x0: float, x1: float, p: int, h: float) -> list:
    return [(x0, p - h / 2), (x0, p + h / 2), (x1, p + h / 2), (x1, p - h / 2)]


def plot_schedule(path: str, st: ScheduleStats, title: str, unit: str) -> None:
    """Draw the picture of one batch's schedule into ``path`` (its suffix picks the format). ``unit`` names a
    block ("64-token KV block" for dense rows, "block of 64 top-k entries" for sparse rows)."""
    plt = _pyplot()
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    P, F = st.num_sm_parts, st.fixed_overhead_num_blocks
    thousands = FuncFormatter(lambda v, _: f"{v:,.0f}")
    fig = plt.figure(figsize=(12, 8), dpi=100)
    gs = fig.add_gridspec(2, 1, height_ratios=[3.2, 1], hspace=0.32)
    ax, axz = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    G = _row_starts(st)
    busy = np.flatnonzero(st.busy)
    h = 0.8 if P <= 200 else 1.0
    polys, faces, seps = [], [], []
    each_piece = st.total_pieces <= MAX_PIECES
    if each_piece:   # every piece: F, then the row's blocks, row boundaries in white
        for p, plist in zip(busy, _pieces(st, G)):
            x = 0
            for r, _, nb in plist:
                polys += [_bar(x, x + F, p, h), _bar(x + F, x + F + nb, p, h)]
                faces += [ORANGE, BLUES[r % 2]]
                if x > 0:
                    seps.append([(x, p - h / 2), (x, p + h / 2)])
                x += F + nb
    else:            # one bar per part: the fixed cost of all its pieces, then all its blocks
        for p in busy:
            fixed = F * int(st.pieces[p])
            polys += [_bar(0, fixed, p, h), _bar(fixed, int(st.load[p]), p, h)]
            faces += [ORANGE, BLUES[0]]
    ax.add_collection(PolyCollection(polys, facecolors=faces, edgecolors="none"))
    if seps:
        ax.add_collection(LineCollection(seps, colors="white", linewidths=0.6))
    cuts = [p for p in busy if st.ends_mid_row[p]]
    ax.scatter([st.load[p] for p in cuts], cuts, marker="|", s=60 if P <= 200 else 12, color=RED, zorder=3)
    ax.axvline(st.payload, color="black", ls="--", lw=1.2)
    ax.set_xlim(0, st.payload * 1.04 if st.payload else 1)
    ax.set_ylim(P - 0.5, -0.5)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=min(P, 24), integer=True))
    ax.xaxis.set_major_formatter(thousands)
    ax.set_xlabel(f"load of the part (units: one {unit}; each piece also costs F = {F})")
    ax.set_ylabel("part (SM group)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title, fontsize=11, loc="left", pad=28)
    blocks_label = ("blocks of a row (shade alternates per row)" if each_piece else
                    f"blocks of the part's rows ({st.total_pieces:,} pieces: one bar per part)")
    fixed_label = f"fixed cost F = {F} per piece" + ("" if each_piece else ", summed per part")
    ax.legend(handles=[Patch(color=BLUES[0], label=blocks_label),
                       Patch(color=ORANGE, label=fixed_label),
                       Line2D([], [], color="black", ls="--", label=f"payload {st.payload:,}"),
                       Line2D([], [], color=RED, marker="|", ls="none", markersize=10,
                              label=f"ends inside a row: split row ({st.split_rows:,} rows split)")],
              loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=4, fontsize=8.5, frameon=False)

    if len(busy):   # zoom: single rows around the first split (or the first boundary)
        first_cut = cuts[0] if cuts else busy[0]
        xc = int(st.end_block[first_cut])
        r_c = min(int(np.searchsorted(G, xc, "right")) - 1, st.num_valid - 1)
        r_lo, r_hi = max(r_c - 10, 0), min(r_c + 11, st.num_valid)
        lo, hi = int(G[r_lo]), int(G[r_hi])
        zparts = [p for p in busy if st.end_block[p] > lo and st.first_block[p] < hi]
        zpolys, zfaces = [], []
        for p in zparts:
            a, b = max(int(st.first_block[p]), lo), min(int(st.end_block[p]), hi)
            zpolys.append([(a, p - 0.4), (a, p + 0.4), (b, p + 0.4), (b, p - 0.4)])
            zfaces.append(BLUES[p % 2])
        axz.add_collection(PolyCollection(zpolys, facecolors=zfaces, edgecolors="white", linewidths=0.5))
        for r in range(r_lo, r_hi + 1):
            axz.axvline(G[r], color="gray", lw=0.5, alpha=0.6)
        for r in range(r_lo, r_hi):
            if G[r + 1] - G[r] > (hi - lo) / 60:
                axz.text((G[r] + G[r + 1]) / 2, min(zparts) - 0.55, str(r), ha="center", va="bottom", fontsize=7,
                         color="dimgray")
        axz.set_xlim(lo, max(hi, lo + 1))
        axz.set_ylim(max(zparts) + 0.6, min(zparts) - 1.0)
        axz.set_yticks(zparts if len(zparts) <= 12 else zparts[:: max(1, len(zparts) // 12)])
        axz.xaxis.set_major_formatter(thousands)
        what = (f"row {r_c} is split between parts {first_cut} and {first_cut + 1} at block {xc - int(G[r_c])} of "
                f"{int(st.row_blocks[r_c])}" if cuts else f"no row is split; part {first_cut} ends on a row boundary")
        axz.set_title(f"rows {r_lo}..{r_hi - 1} laid end to end (numbers: row index; grey lines: row boundaries): "
                      f"{what}", fontsize=9.5, loc="left")
        axz.set_ylabel("part")
        axz.set_xlabel(f"global block (the {unit.replace('block', 'blocks', 1)} of rows 0, 1, ... laid end to end)")
    else:
        axz.text(0.5, 0.5, "no rows to schedule: every part is idle", ha="center", va="center",
                 transform=axz.transAxes)
        axz.set_axis_off()
    fig.subplots_adjust(left=0.07, right=0.98, top=0.90, bottom=0.07)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def unit_of(mode: str, block_size_n: int = 64) -> str:
    return f"{block_size_n}-token KV block" if mode == "dense" else f"block of {block_size_n} top-k entries"
