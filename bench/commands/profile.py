"""vitship profile: where the time goes in each artifact, from each runtime's own profiler.

A command of its own, not ``bench --profile``: a profiler changes what it measures (PERF_COUNT, ETDump and
torch.profiler add time per op), so its figures must never land in bench.json's latency table; and it
answers another question (which part to attack) with another file (profile.json) and other settings
(a few calls, batch 1, one variant per runtime).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from vitship.bench.commands.common import (
    ArchOpt,
    ArtifactsOpt,
    ModelOpt,
    WeightsOpt,
    console,
    list_option,
    model_dir_option,
    number_option,
    row_progress,
    wide_console,
)
from vitship.models import spec_for
from vitship.models.status import Status


def _table(row) -> Table:
    from vitship.bench.profile.table import headers, lines, title

    table = Table(title=escape(title(row)), title_justify="left")
    for index, header in enumerate(headers(row)):
        table.add_column(header, justify="left" if index == 0 else "right")
    body = lines(row)
    for line in body[:-1]:
        table.add_row(*(escape(cell) for cell in line))
    table.add_row(*(f"[bold]{escape(cell)}[/bold]" for cell in body[-1]))
    return table


def _print(report, written: dict) -> None:
    from vitship.bench.profile.table import SUMMARY_HEADERS, notes, summary_lines
    from vitship.bench.rows import unavailable_by_target

    wide = wide_console()
    for row in report.rows:
        if row.ok:
            wide.print(_table(row))
            for note in notes(row):
                wide.print(f"  [dim]{escape(note)}[/dim]", highlight=False)
            wide.print()
        elif row.status is Status.ERROR:
            wide.print(f"[red]{escape(row.key.label())}: error: {escape(row.reason)}[/red]", highlight=False)
    summary = summary_lines(report.rows)
    if summary:
        table = Table(title="Where the time goes: every profiled artifact (details above)", title_justify="left")
        for index, header in enumerate(SUMMARY_HEADERS):
            table.add_column(header, justify="left" if index < 2 else "right", overflow="fold")
        for line in summary:
            table.add_row(*(escape(cell) for cell in line))
        wide.print(table)
    for (target, reason), ids in unavailable_by_target(report.rows).items():
        wide.print(f"[yellow]{target} ({', '.join(ids)})[/yellow]: not profiled: {escape(reason)}", highlight=False)
    wide.print("wrote " + ", ".join(str(p) for p in written.values()), highlight=False)


def profile(
    artifacts: Path = ArtifactsOpt, model: str | None = ModelOpt, arch: str = ArchOpt, weights: str = WeightsOpt,
    out: Path | None = typer.Option(None, "--out", help="output folder (default: artifacts/<model>/bench, beside bench.json)"),
    artifact: list[str] = list_option("--artifact", item="ID", help="artifact ids to profile (default: all, plus torch-fp32)"),
    target: list[str] = list_option("--target", item="TARGET", help="targets (default: every target; those without a "
                                    "profiler are listed as not profiled)"),
    batch: int = number_option(1, "--batch", at_least=1, help="batch size of the profiled calls"),
    threads: int | None = number_option(None, "--threads", at_least=1, help="intra-op threads (default: physical cores)"),
    calls: int = number_option(10, "--calls", at_least=1, help="profiled calls per row (each op's time is its mean)"),
    warmup: int = number_option(3, "--warmup", at_least=0, help="unprofiled warm-up calls per row"),
    row_timeout: float = number_option(900.0, "--row-timeout", above=0, help="seconds before a row's worker is killed"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="write a stacked-bar PNG per artifact"),
) -> None:
    """Time each part of the network (patch embedding, qkv/proj/fc1/fc2, attention, LayerNorm, the rest) per artifact
    with each runtime's own profiler, with its FLOPs and % of the roofline's peak (one process per row)."""
    from vitship.bench.commands.bench import _warn_if_busy
    from vitship.bench.profile.results import write_profile
    from vitship.bench.profile.run import ProfileConfig, run_profile

    model_dir = model_dir_option(artifacts, model, arch)
    config = ProfileConfig(batch=batch, threads=threads, calls=calls, warmup=warmup, artifacts=tuple(artifact) or None,
                           targets=tuple(target) or None, row_timeout_s=row_timeout)
    _warn_if_busy("profile.json")
    with row_progress("profile") as update:
        def on_row(done: int, total: int, key, row) -> None:
            update(done, total, key.label() if row is None else f"done {key.label()}")
        report = run_profile(model_dir, spec_for(arch), weights, config, on_row)
    written = write_profile(report, out or model_dir / "bench", plots=plots)
    _print(report, written)
    if report.errors:
        console.print(f"[bold red]{len(report.errors)} row(s) failed[/bold red]")
        raise typer.Exit(code=1)
