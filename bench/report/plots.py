"""The report's plots (matplotlib, Agg): latency vs size, accuracy delta vs latency (Pareto), throughput vs batch.

Colour says the device family, the marker the precision. Reference-executor rows are left out of every
plot (their time is not a device time) and each plot says so; labels never overlap (labels.py); an
axis spanning more than a decade is logarithmic.
"""

from __future__ import annotations

from pathlib import Path

from vitship.bench.plots import new_figure, png_bytes, save_png
from vitship.bench.report.cells import ReportRow
from vitship.bench.report.families import OTHER_GROUP, REFERENCE_TIME_NOTE, group_order
from vitship.bench.report.labels import place_labels
from vitship.bench.report.schema import Report

PLOT_FILES = {
    "latency_vs_size": "latency_vs_size.png",
    "pareto": "accuracy_delta_vs_latency.png",
    "throughput_vs_batch": "throughput_vs_batch.png",
}
GROUP_COLOURS = {"ios": "#8e44ad", "intel-cpu": "#1f77b4", "intel-gpu-npu": "#17becf", "nvidia": "#2ca02c",
                 "android": "#ff7f0e", "torch-baseline": "#555555", "other": "#999999"}
PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "bf16": "D", "int8": "^"}
SHORT_GROUP_NAMES = {"torch-baseline": "PyTorch reference"}


def _label(row: ReportRow, rows: list[ReportRow] | None = None) -> str:
    """artifact @ target; the variant only where another plotted row shares both."""
    twins = [r for r in rows or [] if (r.artifact, r.target) == (row.artifact, row.target)]
    variant = f" [{row.variant}]" if row.variant and len(twins) > 1 else ""
    return f"{row.artifact}{variant} @ {row.target}"


def _batch1(row: ReportRow) -> float | None:
    return row.p50(1)


def _plottable(rows: list[ReportRow]) -> tuple[list[ReportRow], list[ReportRow]]:
    """(rows to plot, reference-executor rows left out)."""
    return [r for r in rows if not r.reference_executor], [r for r in rows if r.reference_executor]


def _group(row: ReportRow) -> tuple[str, str]:
    return (row.group, row.group_title) if row.group else OTHER_GROUP


def _figure(title: str, width: float = 8.0, height: float = 4.8):
    figure = new_figure(width, height)
    ax = figure.add_subplot()
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3, which="both")
    return figure, ax


def _log_if_wide(ax, axis: str, values: list[float]) -> str:
    positive = [v for v in values if v and v > 0]
    if positive and max(positive) / min(positive) > 10:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        return " (log scale)"
    return ""


def _scatter(ax, points: list[tuple[float, float, ReportRow]]) -> None:
    """Markers coloured by family, shaped by precision; one legend entry per family and per precision."""
    from matplotlib.lines import Line2D

    for x, y, row in points:
        ax.scatter([x], [y], s=42, color=GROUP_COLOURS.get(_group(row)[0], "#999999"),
                   marker=PRECISION_MARKERS.get(row.precision, "o"), edgecolor="white", linewidth=0.6, zorder=3)
    order = group_order()
    groups = sorted({_group(r) for _, _, r in points}, key=lambda g: order.index(g[0]) if g[0] in order else len(order))
    precisions = sorted({r.precision for _, _, r in points if r.precision in PRECISION_MARKERS},
                        key=list(PRECISION_MARKERS).index)
    handles = [Line2D([], [], color=GROUP_COLOURS.get(slug, "#999999"), marker="o", linestyle="",
                      label=SHORT_GROUP_NAMES.get(slug, title)) for slug, title in groups]
    if ax.get_lines():  # the Pareto frontier
        handles.append(Line2D([], [], color="grey", linestyle="--", label="Pareto frontier"))
    handles += [Line2D([], [], color="#444444", marker=PRECISION_MARKERS[p], linestyle="", label=p, markerfacecolor="none")
                for p in precisions]
    ax.legend(handles=handles, fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _left_out_note(left_out: list[ReportRow]) -> str:
    """A second x-label line naming the reference-executor targets left out (the layout makes room for it)."""
    if not left_out:
        return ""
    return f"\nleft out: {', '.join(sorted({r.target for r in left_out}))} ({REFERENCE_TIME_NOTE})"


def latency_vs_size(rows: list[ReportRow]):
    """The Figure of p50 latency at batch 1 against artifact size; None without a timed artifact."""
    shown, reference = _plottable(rows)
    points = [(r.size_bytes / 1e6, _batch1(r), r) for r in shown if r.size_bytes and _batch1(r) is not None]
    if not points:
        return None
    figure, ax = _figure("p50 latency at batch 1 against artifact size")
    _scatter(ax, points)
    left_out = _left_out_note([r for r in reference if _batch1(r) is not None])
    ax.set_xlabel("artifact size (MB)" + _log_if_wide(ax, "x", [x for x, _, _ in points]) + left_out)
    ax.set_ylabel("p50 latency, ms" + _log_if_wide(ax, "y", [y for _, y, _ in points]))
    ax.margins(0.12)
    place_labels(ax, [(x, y, _label(r, [p[2] for p in points])) for x, y, r in points])
    return figure


def _frontier(points: list[tuple[float, float, ReportRow]]) -> list[tuple[float, float]]:
    """Sorted by latency, a point is on the frontier if no faster point is as accurate."""
    frontier, best = [], -float("inf")
    for x, y, _ in sorted(points, key=lambda p: p[0]):
        if y > best:
            frontier.append((x, y))
            best = y
    return frontier


def pareto(rows: list[ReportRow], trained: bool):
    """The Figure of accuracy delta against p50 latency with its Pareto frontier; None without an eval."""
    shown, reference = _plottable(rows)
    points = [(_batch1(r), r.accuracy.delta_points, r) for r in shown
              if _batch1(r) is not None and r.accuracy.delta_points is not None]
    if not points:
        return None
    note = "" if trained else "\n(untrained weights: accuracy not judged)"
    figure, ax = _figure("accuracy delta against p50 latency, batch 1" + note)
    frontier = _frontier(points)
    ax.plot([x for x, _ in frontier], [y for _, y in frontier], "--", color="grey", linewidth=1, zorder=2)
    _scatter(ax, points)
    ax.axhline(0.0, color="black", linewidth=0.6)
    left_out = _left_out_note([r for r in reference if _batch1(r) is not None])
    ax.set_xlabel("p50 latency, ms" + _log_if_wide(ax, "x", [x for x, _, _ in points]) + left_out)
    ax.set_ylabel("accuracy delta against PyTorch (points)")
    ax.margins(0.12)
    place_labels(ax, [(x, y, r.artifact) for x, y, r in points])
    return figure


def throughput_vs_batch(rows: list[ReportRow]):
    """The Figure of throughput against batch size, a line per row; None with fewer than two batch sizes."""
    shown, reference = _plottable(rows)
    series = []
    for r in shown:
        cells = sorted((c.batch, c.throughput_ips) for c in r.latency
                       if c.batch is not None and c.ok and c.throughput_ips is not None)
        if len(cells) > 1:
            series.append((r, cells))
    if not series:  # one batch size: nothing to draw a curve through
        return None
    figure, ax = _figure("throughput against batch size", width=9.0)
    for r, cells in series:
        ax.plot([b for b, _ in cells], [t for _, t in cells], marker=PRECISION_MARKERS.get(r.precision, "o"),
                color=GROUP_COLOURS.get(_group(r)[0]), label=_label(r, [s[0] for s in series]), alpha=0.9)
    ax.set_xscale("log", base=2)
    batches = sorted({b for _, cells in series for b, _ in cells})
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch size" + _left_out_note([r for r in reference if _batch1(r) is not None]))
    ax.set_ylabel("images per second" + _log_if_wide(ax, "y", [t for _, cells in series for _, t in cells]))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return figure


def write_plots(document, folder: Path) -> list[str]:
    """Write every plot the data allows into ``folder``; return the file names written (none for a merged report)."""
    if not isinstance(document, Report):
        return []
    rows = document.rows
    figures = {"latency_vs_size": latency_vs_size(rows), "pareto": pareto(rows, document.trained),
               "throughput_vs_batch": throughput_vs_batch(rows)}
    written = []
    for name, figure in figures.items():
        if figure is not None:
            save_png(png_bytes(figure), folder / PLOT_FILES[name])
            written.append(PLOT_FILES[name])
    return written
