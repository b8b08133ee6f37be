"""Where the time goes, drawn: one stacked horizontal bar per profiled row, a segment per part (matplotlib, Agg)."""

from __future__ import annotations

import re
from pathlib import Path

from vitship.bench.plots import new_figure, png_bytes, save_png
from vitship.bench.profile import parts
from vitship.bench.profile.results import ProfileRow

COLOURS = {
    parts.PATCH: "#8c564b", parts.QKV: "#1f77b4", parts.PROJ: "#6baed6", parts.FC1: "#2ca02c", parts.FC2: "#98df8a",
    parts.QKV_ATTENTION: "#9467bd", parts.QK: "#ff7f0e", parts.SOFTMAX: "#d62728", parts.AV: "#ffbb78",
    parts.ATTENTION: "#ad494a", parts.ATTENTION_OTHER: "#e377c2", parts.LAYERNORM: "#bcbd22", parts.REST: "#c7c7c7",
    parts.UNATTRIBUTED: "#7f7f7f", parts.OUTSIDE: "#17becf",
}
LABEL_SHARE = 0.06  # a segment of at least this share of its bar gets its ms written on it


def plot_name(row: ProfileRow) -> str:
    """profile_<artifact>_<target>.png, with anything but letters, digits, - and _ replaced."""
    return "profile_" + re.sub(r"[^A-Za-z0-9_-]+", "-", f"{row.artifact}_{row.target}") + ".png"


OVERVIEW = "profile_overview.png"


def _label(value: float, share: bool) -> str:
    return f"{100 * value:.0f}%" if share else f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def stacked_bars(rows: list[ProfileRow], title: str, share: bool = False) -> bytes:
    """One horizontal bar per row (first on top), a segment per part in PART_ORDER; a legend of the parts shown.

    ``share``: each bar is the row's call as 100%, so that fast and slow artifacts compare part by part.
    """
    from matplotlib.patches import Patch

    figure = new_figure(9.0, 1.9 + 0.55 * len(rows))
    axes = figure.add_subplot()
    positions = list(range(len(rows)))[::-1]
    shown: list[str] = []
    for position, row in zip(positions, rows):
        left = 0.0
        total = sum(p.ms for p in row.parts) or 1.0
        for part in (p for p in row.parts if p.ms > 0):
            width = part.ms / total if share else part.ms
            axes.barh(position, width, left=left, color=COLOURS.get(part.part, "#333333"), edgecolor="white",
                      linewidth=0.5, height=0.6)
            if part.ms / total >= LABEL_SHARE:
                axes.text(left + width / 2, position, _label(width, share), ha="center", va="center", fontsize=7)
            left += width
            shown += [part.part] if part.part not in shown else []
    axes.set_yticks(positions, [f"{row.artifact} @ {row.target}" for row in rows], fontsize=8)
    axes.set_xlabel("share of the call" if share else "ms per call (each kernel's time from the runtime's profiler)")
    if share:
        from matplotlib.ticker import PercentFormatter

        axes.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_title(title, fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    order = [name for name in parts.PART_ORDER if name in shown]
    axes.legend(handles=[Patch(color=COLOURS.get(name, "#333333"), label=name) for name in order], fontsize=7,
                loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return png_bytes(figure)


def overview(rows: list[ProfileRow], where: str = "") -> bytes:
    return stacked_bars(rows, f"Where the time goes, as a share of each call{where}", share=True)


def write_profile_plots(rows: list[ProfileRow], out_dir: Path) -> dict[str, Path]:
    """One PNG per profiled row (where the time goes in that artifact) and an overview of every row's shares, in
    ``out_dir``; returns name -> path."""
    profiled = [row for row in rows if row.ok and row.parts]
    written = {OVERVIEW: save_png(overview(profiled), Path(out_dir) / OVERVIEW)} if profiled else {}
    for row in rows:
        if row.ok and row.parts:
            name = plot_name(row)
            written[name] = save_png(stacked_bars([row], f"Where the time goes: {row.artifact} on {row.target}"),
                                     Path(out_dir) / name)
    return written
