"""vitship inspect ARTIFACT: the labels, threshold, input and preprocessing an artifact file carries, read from the file alone."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from vitship.bench.commands.common import console, wide_console


def facts_table(facts, title: str, everything: bool = False) -> Table:
    """The summary of an artifact's embedded facts (and, with ``everything``, every metadata key)."""
    from vitship.exporters.embedded import summary

    table = Table(title=title, show_header=False)
    table.add_column("fact", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in summary(facts).items():
        table.add_row(key, escape(value))
    for key, value in sorted(facts.metadata.items()) if everything else ():
        table.add_row(f"[dim]{escape(key)}[/dim]", f"[dim]{escape(value)}[/dim]")
    return table


def inspect_command(
    artifact: Path = typer.Argument(..., metavar="ARTIFACT", help="an artifact file (.onnx, .xml, .mlpackage, .tflite, .pte) "
                                                                  "or the folder holding it; no manifest needed"),
    all_keys: bool = typer.Option(False, "--all", help="also list every metadata key the file carries"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the facts as JSON to this file"),
) -> None:
    """Show the labels, decision threshold, input and preprocessing an artifact carries inside itself."""
    from vitship.exporters.embedded import read_embedded, summary
    from vitship.models import VitshipError
    from vitship.models.atomic import atomic_write_json

    facts = read_embedded(artifact)
    if not facts.metadata:
        raise VitshipError(f"{facts.path} carries no vitship metadata (exported by another tool, or a vitship before it "
                           "embedded its facts); re-export it with vitship export --force")
    wide_console().print(facts_table(facts, f"{facts.format} artifact {escape(facts.path)}", all_keys))
    if json_out:
        atomic_write_json(json_out, {**facts.to_dict(), "summary": summary(facts)})
        console.print(f"wrote {json_out}", highlight=False)
