"""vitship compare: per-row deltas between two reports, as a release gate."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from vitship.bench.commands.common import console, number_option

# Exit codes, distinct so that a CI gate can tell them apart (bad input is 2, as for every command).
EXIT_REGRESSION = 1
EXIT_NOT_COMPARED = 4
HELP = (f"Per-row deltas between two reports. Exit codes: 0 no regression; {EXIT_REGRESSION} a regression; "
        f"2 bad input (unreadable or not a vitship report, bad option); {EXIT_NOT_COMPARED} the environments differ "
        "and nothing was compared (pass --force to compare anyway).")


def _compare_table(comparison) -> Table:
    table = Table(title="Report comparison (batch-1 p50; accuracy in points)")
    for column in ("artifact", "target", "p50 old ms", "p50 new ms", "Δ p50", "parity", "Δ accuracy", "regression check"):
        table.add_column(column, overflow="fold")
    from vitship.models.status import Status

    colours = {Status.PASS: "green", Status.OK: "cyan", Status.FAIL: "bold red", Status.NOT_RUN: "yellow"}
    for row in comparison.rows:
        if row.status is Status.PASS and row.parity_old == row.parity_new == Status.UNAVAILABLE and row.p50_old_ms is None:
            continue  # a target neither machine could run: nothing to compare
        number = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        status = f"[{colours[row.status]}]{row.status}[/]" + ("".join(f"\n{escape(r)}" for r in row.reasons))
        table.add_row(escape(row.artifact + (f" ({row.variant})" if row.variant else "")), escape(row.target),
                      number(row.p50_old_ms), number(row.p50_new_ms), "-" if row.p50_change is None else f"{row.p50_change:+.1%}",
                      str(row.parity_old) if row.parity_old == row.parity_new else f"{row.parity_old} -> {row.parity_new}",
                      "-" if row.accuracy_change_points is None else f"{row.accuracy_change_points:+.2f}", status)
    return table


def compare(
    old: Path = typer.Argument(..., help="the baseline report.json (or its folder)"),
    new: Path = typer.Argument(..., help="the candidate report.json (or its folder)"),
    force: bool = typer.Option(False, "--force", help="compare rows even when the environments differ"),
    max_latency_increase: float = number_option(0.10, "--max-latency-increase", at_least=0,
                                                help="allowed relative p50 increase"),
    max_accuracy_drop: float = number_option(0.5, "--max-accuracy-drop", at_least=0, help="allowed accuracy drop, in points"),
) -> None:
    """Per-row deltas between two reports (exit codes in HELP)."""
    from vitship.bench.report.compare import CompareThresholds, compare_reports
    from vitship.bench.report.document import read_report

    thresholds = CompareThresholds(max_latency_increase, max_accuracy_drop)
    comparison = compare_reports(read_report(old), read_report(new), thresholds, force)
    console.print(_compare_table(comparison))
    for note in comparison.notes:
        console.print(f"[yellow]{escape(note)}[/yellow]", highlight=False)
    if not comparison.compared:
        raise typer.Exit(code=EXIT_NOT_COMPARED)
    if comparison.regressions:
        console.print(f"[bold red]{len(comparison.regressions)} regression(s)[/bold red]")
        raise typer.Exit(code=EXIT_REGRESSION)
    console.print("[green]no regression[/green]")
