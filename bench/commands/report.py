"""vitship report: the release report, or a merge of reports from many machines."""

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
    model_dir_option,
    number_option,
    wide_console,
)


def _decisions_table(decisions) -> Table:
    """The decisions (cells.FamilyDecision), one line per family."""
    table = Table(title="Decision per device family (details and what to verify: report.md / report.html)", show_lines=True)
    for column, ratio in (("family", 1), ("ship", 5), ("runner-up", 3)):
        table.add_column(column, ratio=ratio, overflow="fold")
    for decision in decisions:
        style = "" if decision.pick else "[dim]"
        table.add_row(f"[bold]{escape(decision.title)}[/bold]", style + escape(decision.sentence),
                      escape(decision.runner_up_sentence or "-"))
    return table


def report(
    artifacts: Path = ArtifactsOpt, model: str | None = ModelOpt, arch: str = ArchOpt,
    reports: Path = typer.Option(Path("reports"), "--reports", help="where reports/<run-id>/ and reports/latest go"),
    merge: bool = typer.Option(False, "--merge", help="merge the REPORTS given (report.json per machine) into one table"),
    to_merge: list[Path] = typer.Argument(None, metavar="REPORTS", help="report.json files (or folders) for --merge"),
    accuracy_threshold: float = number_option(0.5, "--accuracy-threshold", at_least=0,
                                              help="largest accepted accuracy drop, in points"),
) -> None:
    """Write the release report (JSON, Markdown, CSV, HTML with plots) and print its path last."""
    from vitship.bench.report.document import Report, ReportError, ReportOptions, build_report, read_report, write_report
    from vitship.bench.report.merge import merge_reports
    from vitship.models.status import Status

    if to_merge and not merge:
        raise ReportError("report paths are only taken with --merge: vitship report --merge A/report.json B/report.json")
    if merge:
        document = merge_reports([read_report(path) for path in to_merge or []])
    else:
        options = ReportOptions(accuracy_threshold_points=accuracy_threshold)
        document = build_report(model_dir_option(artifacts, model, arch), options)
    folder = write_report(document, reports)
    if document.banner:
        console.print(f"[bold yellow]{document.banner}[/bold yellow]")
    wide_console().print(_decisions_table(document.decisions))
    for name, source in (document.sources if isinstance(document, Report) else {}).items():
        if source.status is not Status.OK:
            console.print(f"[yellow]{name}: {source.status}[/yellow] ({escape(str(source.path))})", highlight=False)
    console.print("report.json, report.md, report.csv, report.html and plots in:")
    print(folder)
