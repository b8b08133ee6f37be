"""vitship eval: score a labelled folder with every artifact and the PyTorch reference."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from vitship.bench.commands.common import (
    ArchOpt,
    ArtifactsOpt,
    ModelOpt,
    console,
    list_option,
    model_dir_option,
    number_option,
)
from vitship.models.status import Status


def _pts(value: float | None, delta: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + ("" if delta is None or delta == 0 else f" ({delta:+.2f})")


def _eval_table(report) -> Table:
    table = Table(title=f"Accuracy at threshold {report.threshold} (Δ in points vs the PyTorch reference)")
    for column in ("artifact", "target", "status", "accuracy", "balanced", "AUROC", "AP", "F1", "agreement"):
        table.add_column(column, overflow="fold")
    for row in report.rows:
        m, d = row.metrics, row.deltas
        cells = [_pts(m.get(k), d.get(k)) for k in ("accuracy", "balanced_accuracy", "auroc", "average_precision", "f1")]
        status = f"[green]{row.status}[/green]" if row.status is Status.OK else f"[red]{row.status}[/red]: {row.reason}"
        own = "\n(decoded photos, its own preprocessing)" if row.session.get("preprocessing") == "in the artifact" else ""
        table.add_row(row.artifact + own, row.target, status, *cells, "-" if row.agreement is None else f"{row.agreement:.1%}")
    return table


def eval_command(
    data: Path = typer.Option(..., "--data", help="a folder with real/ and fake/ subfolders, or a CSV of path,label"),
    artifacts: Path = ArtifactsOpt, model: str | None = ModelOpt, arch: str = ArchOpt,
    weights: str | None = typer.Option(None, "--weights", "-w", help="reference weights (default: the source the manifest records)"),
    threshold: float = number_option(0.5, "--threshold", at_least=0, at_most=1,
                                     help="decision threshold on the 'fake' probability"),
    target: list[str] = list_option("--target", item="ARTIFACT_OR_FORMAT=TARGET", help="the target for an artifact id or a whole format, "
                                    "e.g. openvino=openvino:CPU (default: the first available CPU target that runs it)"),
    batch_size: int = number_option(8, "--batch-size", at_least=1, help="images per call"),
) -> None:
    """Score a labelled folder with every artifact and the PyTorch reference; write eval.json."""
    from vitship.bench.accuracy import EvalOptions, evaluate, write_eval
    from vitship.bench.parity.run import load_reference
    from vitship.bench.report.schema import EvalData
    from vitship.models.typed import from_json

    model_dir = model_dir_option(artifacts, model, arch)
    targets = {}
    for item in target:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: expected ARTIFACT_OR_FORMAT=TARGET, e.g. onnx=onnxruntime:cpu",
                                     param_hint="--target")
        targets[key] = value
    loaded = load_reference(model_dir, weights)
    with console.status(f"scoring {data} with every artifact in {model_dir} ..."):
        report = evaluate(model_dir, data, loaded, EvalOptions(threshold=threshold, batch_size=batch_size, targets=targets))
    if report.note:
        console.print(f"[bold yellow]{report.note}[/bold yellow]")
    console.print(_eval_table(report))
    data = from_json(EvalData, report.data)
    console.print(f"{data.n_images} images ({data.n_real} real, {data.n_fake} fake); "
                  f"{data.n_skipped} unreadable images skipped")
    for item in data.skipped:
        console.print(f"  [yellow]unreadable:[/yellow] {item.reason}", highlight=False)
    console.print(f"wrote {write_eval(model_dir, report)}")
