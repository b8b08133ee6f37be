"""The diagnose plot: per-layer min cosine along the depth, the gate, the first layer below it and the five worst."""

from __future__ import annotations

import math
from pathlib import Path

from vitship.bench.diagnose.result import DiagnoseResult
from vitship.bench.plots import new_figure, png_bytes, save_png

FLOOR = 1e-7  # 1 - cosine below this is drawn at it (fp32 rounding)


def _distance(cosine: float) -> float:
    return max(1.0 - cosine, FLOOR)


def _cosine_label(distance: float, _position=None) -> str:
    """A tick at 1 - cosine = 1e-k reads as the cosine with k decimals: 1e-2 -> 0.99, 1e-4 -> 0.9999."""
    if distance >= 1:
        return f"{1 - distance:g}"
    return f"{1 - distance:.{max(1, round(-math.log10(distance)))}f}"


def _block_ticks(modules: list[str]) -> tuple[list[int], list[str]]:
    """An x tick where each transformer block starts (its norm1), labelled by block number."""
    ticks = [(i, m.split(".")[1]) for i, m in enumerate(modules) if m.startswith("blocks.") and m.endswith(".norm1")]
    return [i for i, _ in ticks], [f"b{n}" for _, n in ticks]


def diagnose_plot(result: DiagnoseResult, n_worst: int = 5) -> bytes:
    """PNG bytes, two panels sharing the layer axis (graph order, input to logits).

    Top: min cosine per layer on a log scale of 1 - cosine (so 0.99 and 0.9999 both read), the gate and the first
    layer below it. Bottom: the cosine each layer adds as a loss over its input (the ranking), the worst numbered
    and named in a box.
    """
    modules = [layer.module for layer in result.layers]
    positions = range(len(modules))
    distances = [_distance(layer.min_cosine) for layer in result.layers]
    figure = new_figure(11, 7)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    top.plot(positions, distances, marker=".", color="#4C72B0", linewidth=1, label="min cosine over images")
    top.axhline(_distance(result.gate), color="#C44E52", linestyle="--", linewidth=1, label=f"gate {result.gate:g}")
    top.set_yscale("log")
    top.set_ylim(min(2.0, max(*distances, _distance(result.gate)) * 3), FLOOR / 2)  # inverted: cosine 1 at the top, up is better
    top.yaxis.set_major_formatter(_cosine_label)
    top.set_ylabel("min cosine vs fp32 sibling\n(log scale of 1 - cosine)")
    first = result.first_below()
    if first is not None:
        top.axvline(modules.index(first.module), color="#DD8452", linewidth=1.2, linestyle=":",
                    label=f"first below the gate: {first.module}")
    top.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    top.set_title(f"{result.artifact} vs {result.reference} on {result.target}, {result.n_images} images", fontsize=10, pad=22)
    worst = result.worst(n_worst)
    rank = {layer.module: i for i, layer in enumerate(worst, start=1)}
    drops = [layer.added_drop for layer in result.layers]
    colours = ["#C44E52" if module in rank else "#8DA0CB" for module in modules]
    bottom.bar(positions, drops, color=colours, width=0.8)
    for module, i in rank.items():
        index = modules.index(module)
        bottom.annotate(f"#{i}", (index, drops[index]), xytext=(0, 2), textcoords="offset points", ha="center",
                        fontsize=7, color="#8C1C13")
        top.plot([index], [distances[index]], "o", color="#C44E52", markersize=5)
    listing = "\n".join(f"#{i} {layer.module}  (-{layer.added_drop:.3g})" for i, layer in enumerate(worst, start=1))
    bottom.text(0.01, 0.97, f"adds the most divergence:\n{listing}", transform=bottom.transAxes, va="top", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "#cccccc"})
    bottom.set_ylim(0, max(max(drops, default=0.0), 1e-12) * 1.25)
    bottom.set_ylabel("cosine lost over\nthe layer's input")
    ticks, labels = _block_ticks(modules)
    bottom.set_xticks(ticks, labels, fontsize=8)
    bottom.set_xlabel("layer, input to logits (ticks: start of each transformer block)")
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
    return png_bytes(figure)


def write_plot(result: DiagnoseResult, path: Path, n_worst: int = 5) -> Path:
    return save_png(diagnose_plot(result, n_worst), Path(path))
