"""The diagnose plot: per-layer min cosine along the depth, the gate, the first layer below it and the five worst."""

from __future__ import annotations

import math
from pathlib import Path

from vitship.bench.diagnose.result import DiagnoseResult
from vitship.bench.plots import new_figure, png_bytes, save_png

_OFFSETS = ((10, -22), (10, 14), (-40, -40), (-40, 28), (12, -52))  # staggered so near neighbours stay readable
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
    """PNG bytes: min cosine per layer in graph order (log distance to 1, so 0.99 and 0.9999 both read)."""
    modules = [layer.module for layer in result.layers]
    distances = [_distance(layer.min_cosine) for layer in result.layers]
    figure = new_figure(11, 4.8)
    axes = figure.add_subplot()
    axes.plot(range(len(distances)), distances, marker=".", color="#4C72B0", linewidth=1, label="min cosine over images")
    axes.axhline(_distance(result.gate), color="#C44E52", linestyle="--", linewidth=1, label=f"gate {result.gate:g}")
    axes.set_yscale("log")
    axes.invert_yaxis()  # up is better: cosine 1 at the top
    axes.yaxis.set_major_formatter(_cosine_label)
    axes.set_ylabel("min cosine vs fp32 sibling (log scale of 1 - cosine)")
    ticks, labels = _block_ticks(modules)
    axes.set_xticks(ticks, labels, fontsize=8)
    axes.set_xlabel("layer, input to logits (ticks: start of each transformer block)")
    axes.grid(alpha=0.3)
    for rank, layer in enumerate(result.worst(n_worst), start=1):
        index = modules.index(layer.module)
        axes.annotate(f"#{rank} {layer.module}\n(-{layer.added_drop:.2g})", (index, distances[index]), fontsize=7,
                      xytext=_OFFSETS[(rank - 1) % len(_OFFSETS)], textcoords="offset points", color="#8C1C13",
                      arrowprops={"arrowstyle": "-", "color": "#8C1C13", "linewidth": 0.6})
        axes.plot([index], [distances[index]], "o", color="#C44E52", markersize=6)
    first = result.first_below()
    if first is not None:
        axes.axvline(modules.index(first.module), color="#DD8452", linewidth=1, linestyle=":",
                     label=f"first below gate: {first.module}")
    axes.set_title(f"{result.artifact} vs {result.reference} on {result.target}, {result.n_images} images "
                   f"(red: the {n_worst} layers that add the most divergence)", fontsize=10)
    axes.legend(fontsize=8, loc="lower left")
    return png_bytes(figure)


def write_plot(result: DiagnoseResult, path: Path, n_worst: int = 5) -> Path:
    return save_png(diagnose_plot(result, n_worst), Path(path))
