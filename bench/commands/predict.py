"""vitship predict: try images on the artifacts (the recommended one per available target by default)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from vitship.bench.commands.common import (
    ArchOpt,
    ArtifactsOpt,
    ModelOpt,
    console,
    list_option,
    model_dir_option,
    number_option,
    wide_console,
)
from vitship.models.status import Status


def _table(result) -> Table:
    from vitship.runtimes.base import target_display

    table = Table(title=f"vitship predict (label: fake probability >= {result.threshold:g})")
    for column in ("image", "artifact", "target", "preprocessing", "label", "fake probability", "agrees with PyTorch"):
        table.add_column(column, overflow="fold", justify="right" if column == "fake probability" else "left")
    for row in result.rows:
        if row.status is not Status.OK:
            table.add_row(escape(Path(row.image).name), row.artifact, target_display(row.target), row.preprocessing,
                          f"[yellow]{row.status}[/yellow]", "-", escape(row.reason))
            continue
        delta = row.probability_delta
        agrees = str(Status.REFERENCE) if row.agrees is None else (
            f"[green]yes[/green] (Δp {delta:+.1e})" if row.agrees else f"[bold red]no[/bold red] (Δp {delta:+.3f})")
        table.add_row(escape(Path(row.image).name), row.artifact, target_display(row.target), row.preprocessing, row.label,
                      f"{row.fake_probability:.4f}", agrees)
    return table


def predict(
    images: list[Path] = typer.Argument(..., metavar="IMAGE", help="image files to classify"),
    artifact: list[str] = list_option("--artifact", item="ID", help="artifact ids (default: the artifact the report "
                                                                    "recommends per available target; before parity and bench "
                                                                    "have run, every artifact in the manifest)"),
    target: str | None = typer.Option(None, "--target", help="run every chosen artifact on this target (default: "
                                           "the target it was recommended for, else the first available CPU target that runs it)"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the table as JSON to this file"),
    threshold: float = number_option(0.5, "--threshold", at_least=0, at_most=1,
                                     help="fake probability from which the label is fake"),
    artifacts: Path = ArtifactsOpt, model: str | None = ModelOpt, arch: str = ArchOpt,
) -> None:
    """Classify IMAGE... with each artifact and the PyTorch reference; unreadable images are listed, not fatal.

    Reads the manifest (run vitship export first); prints one line per image and artifact, exits 1 if an artifact failed.
    """
    from vitship.bench.predict import PredictOptions
    from vitship.bench.predict import predict as run_predict
    from vitship.models.atomic import atomic_write_json

    options = PredictOptions(artifacts=tuple(artifact), target=target, threshold=threshold)
    result = run_predict(model_dir_option(artifacts, model, arch), images, options)
    wide_console().print(_table(result))
    for note in result.notes:
        console.print(f"[yellow]{escape(note)}[/yellow]", highlight=False)
    for item in result.unreadable:
        reason = item["reason"] if item["reason"].startswith(item["path"]) else f"{item['path']}: {item['reason']}"
        console.print(f"[yellow]unreadable:[/yellow] {escape(reason)}", highlight=False)
    if json_out:
        atomic_write_json(json_out, result.to_dict())
        console.print(f"wrote {json_out}", highlight=False)
    if result.failed:
        raise typer.Exit(code=1)
