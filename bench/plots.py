"""PNG plots (matplotlib, Agg, no pyplot state): generic bar/line/scatter charts and the bench plots.

The generic helpers return PNG bytes so callers can embed them (HTML) or write them atomically
(``save_png``). Rows are ``vitship.bench.latency.timing.BenchRow``; only ``ok`` rows are plotted.
"""

from __future__ import annotations

import io
from pathlib import Path

from vitship.models.atomic import atomic_write_bytes

DPI = 110
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def new_figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas (no pyplot global state, safe in workers and threads)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})  # no version/URL stamp: same data, same bytes
    return buffer.getvalue()


def save_png(data: bytes, path: Path) -> Path:
    atomic_write_bytes(Path(path), data)
    return Path(path)


def bar_chart(labels: list[str], values: list[float], *, title: str, xlabel: str,
              errors: list[float] | None = None, annotate: str = "{:.3g}") -> bytes:
    """Horizontal bars, first label on top; ``errors`` draws one-sided whiskers (e.g. p90 - p50)."""
    figure = new_figure(8, max(2.0, 0.45 * len(labels) + 1.2))
    axes = figure.add_subplot()
    positions = list(range(len(labels)))[::-1]
    xerr = [[0] * len(errors), errors] if errors else None
    bars = axes.barh(positions, values, xerr=xerr, color="#4C72B0", capsize=3)
    axes.set_yticks(positions, labels, fontsize=8)
    axes.set_title(title, fontsize=10)
    axes.bar_label(bars, [annotate.format(v) for v in values], padding=3, fontsize=7)
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 50:  # otherwise the fast rows are invisible slivers
        axes.set_xscale("log")
        xlabel += " (log scale)"
    axes.set_xlabel(xlabel)
    axes.margins(x=0.15)
    axes.grid(axis="x", alpha=0.3)
    return png_bytes(figure)


def line_chart(series: dict[str, tuple[list[float], list[float]]], *, title: str, xlabel: str, ylabel: str,
               log_x: bool = False, log_y: bool = False) -> bytes:
    """line_figure as PNG bytes."""
    return png_bytes(line_figure(series, title=title, xlabel=xlabel, ylabel=ylabel, log_x=log_x, log_y=log_y))


def line_figure(series: dict[str, tuple[list[float], list[float]]], *, title: str, xlabel: str, ylabel: str,
                log_x: bool = False, log_y: bool = False):
    """One line with markers per named series of (xs, ys); the legend sits beside the axes, never on the lines.

    More than ten series take tab20's colours and a marker each, so no two series look the same.
    """
    from matplotlib import colormaps

    figure = new_figure(10, 4.5)
    axes = figure.add_subplot()
    colours = colormaps["tab10" if len(series) <= 10 else "tab20"].colors
    for index, (label, (xs, ys)) in enumerate(series.items()):
        axes.plot(xs, ys, marker=_MARKERS[index % len(_MARKERS)], color=colours[index % len(colours)], label=label)
    if log_x:
        axes.set_xscale("log", base=2)
        ticks = sorted({x for xs, _ in series.values() for x in xs})
        axes.set_xticks(ticks, [str(int(t)) if float(t).is_integer() else str(t) for t in ticks])
    if log_y:
        axes.set_yscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    if series:
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return figure


def row_label(row) -> str:
    """``artifact @ target [variant]`` for one bench row."""
    return f"{row.artifact} @ {row.target}" + (f" [{row.variant}]" if row.variant else "")


def latency_bars(rows, batch: int = 1) -> bytes | None:
    """p50 latency (whisker to p90) of every ok row at ``batch``, fastest on top; None if there is none."""
    chosen = sorted((r for r in rows if r.ok and r.stats and r.batch == batch), key=lambda r: r.stats.p50_ms)
    if not chosen:
        return None
    return bar_chart([row_label(r) for r in chosen], [r.stats.p50_ms for r in chosen],
                     errors=[r.stats.p90_ms - r.stats.p50_ms for r in chosen],
                     title=f"p50 latency at batch {batch} (whisker: p90)", xlabel="milliseconds per call")


def throughput_lines(rows) -> bytes | None:
    """Throughput (img/s) against batch size, one line per (artifact, target, variant); None if empty."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for row in sorted((r for r in rows if r.ok and r.stats), key=lambda r: r.batch):
        xs, ys = series.setdefault(row_label(row), ([], []))
        xs.append(row.batch)
        ys.append(row.stats.throughput_ips)
    if not series:
        return None
    return line_chart(series, title="Throughput against batch size", xlabel="batch size", ylabel="images per second",
                      log_x=True)


def write_bench_plots(rows, out_dir: Path) -> dict[str, Path]:
    """Write latency_batch1.png and throughput.png into ``out_dir`` (those that have data)."""
    written = {}
    for name, data in (("latency_batch1.png", latency_bars(rows, 1)), ("throughput.png", throughput_lines(rows))):
        if data is not None:
            written[name] = save_png(data, Path(out_dir) / name)
    return written
