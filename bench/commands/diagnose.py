"""vitship diagnose: where an artifact departs from its fp32 sibling, layer by layer (table, plot, JSON)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from vitship.bench.commands.common import ArchOpt, ModelOpt, console, model_dir_option, number_option, wide_console


def _table(result, n_worst: int) -> Table:
    """One line per layer in graph order; the first below the gate and the worst ones are marked."""
    first = result.first_below()
    ranks = {layer.module: rank for rank, layer in enumerate(result.worst(n_worst), start=1)}
    table = Table(title=f"{result.artifact} vs {result.reference} on {result.target}, {result.n_images} images, "
                        f"gate: cosine >= {result.gate:g}")
    for column, justify in (("#", "right"), ("layer (torch module)", "left"), ("tensor", "left"), ("input cos", "right"),
                            ("min cosine", "right"), ("added drop", "right"), ("max abs err", "right"), ("", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for index, layer in enumerate(result.layers):
        marks = [f"worst #{ranks[layer.module]}"] if layer.module in ranks else []
        marks += ["smoothed: rescaled, not ranked"] if layer.smoothed else []
        if first is not None and layer.module == first.module:
            marks.insert(0, "first below gate")
        colour = "red" if layer.min_cosine < result.gate and not layer.smoothed else ""
        cosine = f"[{colour}]{layer.min_cosine:.6f}[/]" if colour else f"{layer.min_cosine:.6f}"
        table.add_row(str(index), layer.module, layer.tensor, f"{layer.input_min_cosine:.6f}", cosine,
                      f"{layer.added_drop:.2e}", f"{layer.max_abs_error:.3g}", f"[bold]{', '.join(marks)}[/]")
    return table


def _summary(result, n_worst: int) -> str:
    first = result.first_below()
    where = (f"first layer below the gate {result.gate:g}: [bold red]{first.module}[/] ({first.tensor}, "
             f"min cosine {first.min_cosine:.4f})") if first else f"[green]every layer stays above the gate {result.gate:g}[/]"
    worst = ", ".join(f"{layer.module} (-{layer.added_drop:.2g})" for layer in result.worst(n_worst))
    return f"{where}\nworst {n_worst} (cosine each adds as a loss over its input): {worst}"


def diagnose(
    artifact: str = typer.Argument(..., help="the artifact id to diagnose, e.g. onnx-int8 (its fp32 sibling must be exported)"),
    artifacts: Path = typer.Option(Path("artifacts"), "--artifacts", help="artifacts/ (with --model) or one model folder"),
    model: str | None = ModelOpt, arch: str = ArchOpt,
    weights: str | None = typer.Option(None, "--weights", "-w", help="reference weights for the layer names "
                                       "(default: the source the manifest records; sha256 must match)"),
    images: Path | None = typer.Option(None, "--images", help="a folder of photos (default: the bundled sample photos)"),
    out: Path | None = typer.Option(None, "--out", help="folder for diagnose-<artifact>.json/.png (default: the model folder)"),
    worst: int = number_option(5, "--worst", at_least=1, help="how many of the worst layers to name"),
    threads: int | None = number_option(None, "--threads", at_least=1, help="runtime threads (default: the runtime's own)"),
) -> None:
    """Compare every layer of ARTIFACT with its fp32 sibling in the same format, on the bundled photos or --images.

    Prints the per-layer table, names the first layer below the gate and the worst ones; writes
    diagnose-<artifact>.json and .png next to the manifest (or to --out).
    """
    from vitship.bench.diagnose import locate
    from vitship.bench.diagnose.plot import write_plot
    from vitship.bench.parity.run import load_reference
    from vitship.models import image_files

    model_dir = artifacts if (artifacts / "manifest.json").is_file() else model_dir_option(artifacts, model, arch)
    loaded = load_reference(model_dir, weights)
    with console.status(f"[bold]diagnose[/bold] {artifact}: running it and its fp32 sibling layer by layer"):
        result = locate(model_dir, artifact, image_files(images) if images else None, loaded, threads)
    wide_console().print(_table(result, worst))
    console.print(_summary(result, worst), highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note[/yellow] {note}", highlight=False, soft_wrap=True)
    folder = Path(out) if out else model_dir
    folder.mkdir(parents=True, exist_ok=True)
    json_path = result.write_json(folder / f"diagnose-{artifact}.json")
    png_path = write_plot(result, folder / f"diagnose-{artifact}.png", worst)
    console.print(f"wrote {json_path} and {png_path}", highlight=False)
