"""The report's plots (matplotlib, Agg): latency vs size, accuracy delta vs latency (Pareto), throughput vs batch."""

from __future__ import annotations

from pathlib import Path

from vitship.bench.plots import line_chart, new_figure, png_bytes, save_png

PLOT_FILES = {
    "latency_vs_size": "latency_vs_size.png",
    "pareto": "accuracy_delta_vs_latency.png",
    "throughput_vs_batch": "throughput_vs_batch.png",
}


def _label(row: dict) -> str:
    return f"{row['artifact']}{'/' + row['variant'] if row['variant'] else ''} @ {row['target']}"


def _batch1(row: dict) -> float | None:
    cell = row["latency"].get("1") or {}
    return cell.get("p50_ms") if cell.get("status") == "ok" else None


def _figure(title: str):
    figure = new_figure(7.5, 4.2)
    ax = figure.add_subplot()
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    return figure, ax


def _save(figure, ax, path: Path) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    save_png(png_bytes(figure), path)


def latency_vs_size(rows: list[dict], path: Path) -> bool:
    points = [(r["size_bytes"] / 2**20, _batch1(r), r) for r in rows if r["size_bytes"] and _batch1(r) is not None]
    if not points:
        return False
    fig, ax = _figure("p50 latency (batch 1) against artifact size")
    for target in sorted({r["target"] for _, _, r in points}):
        mine = [(x, y, r) for x, y, r in points if r["target"] == target]
        ax.scatter([x for x, _, _ in mine], [y for _, y, _ in mine], label=target, s=30)
        for x, y, r in mine:
            ax.annotate(r["artifact"] + (f"/{r['variant']}" if r["variant"] else ""), (x, y), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("artifact size (MiB)")
    ax.set_ylabel("p50 latency (ms)")
    _save(fig, ax, path)
    return True


def pareto(rows: list[dict], path: Path, trained: bool) -> bool:
    points = sorted((_batch1(r), r["accuracy"]["delta_points"], r) for r in rows
                    if _batch1(r) is not None and r["accuracy"]["delta_points"] is not None)
    if not points:
        return False
    note = "" if trained else " (untrained weights: accuracy not judged)"
    fig, ax = _figure("accuracy delta against latency, batch 1" + note)
    frontier, best = [], -float("inf")
    for x, y, _ in points:  # sorted by latency: a point is on the frontier if no faster point is as accurate
        if y > best:
            frontier.append((x, y))
            best = y
    ax.plot([x for x, _ in frontier], [y for _, y in frontier], "--", color="grey", label="Pareto frontier")
    for target in sorted({r["target"] for _, _, r in points}):
        mine = [(x, y, r) for x, y, r in points if r["target"] == target]
        ax.scatter([x for x, _, _ in mine], [y for _, y, _ in mine], label=target, s=30)
        for x, y, r in mine:
            ax.annotate(r["artifact"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel("p50 latency (ms)")
    ax.set_ylabel("accuracy delta vs reference (points)")
    _save(fig, ax, path)
    return True


def throughput_vs_batch(rows: list[dict], path: Path) -> bool:
    series = []
    for r in rows:
        cells = sorted((int(b), c["throughput_ips"]) for b, c in r["latency"].items()
                       if b.isdigit() and c.get("status") == "ok" and c.get("throughput_ips") is not None)
        if cells:
            series.append((_label(r), cells))
    if not any(len(cells) > 1 for _, cells in series):  # one batch size: nothing to draw a curve through
        return False
    chart = line_chart({label: ([b for b, _ in cells], [t for _, t in cells]) for label, cells in series},
                       title="throughput against batch size", xlabel="batch size", ylabel="throughput (images/s)",
                       log_x=True)
    save_png(chart, path)
    return True


def write_plots(document: dict, folder: Path) -> list[str]:
    """Write every plot the data allows into ``folder``; return the file names written."""
    if document.get("kind") != "vitship-report":
        return []
    rows = document["sections"]["rows"]
    made = {
        "latency_vs_size": latency_vs_size(rows, folder / PLOT_FILES["latency_vs_size"]),
        "pareto": pareto(rows, folder / PLOT_FILES["pareto"], bool(document.get("trained"))),
        "throughput_vs_batch": throughput_vs_batch(rows, folder / PLOT_FILES["throughput_vs_batch"]),
    }
    return [PLOT_FILES[name] for name, ok in made.items() if ok]
