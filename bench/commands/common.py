"""What every command shares: the consoles, the common options and their parsing. Only commands import typer."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

# Piped into a log (make, CI), rich would fold wide tables to 80 columns; COLUMNS still wins when set.
_LOG_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 180
console = Console(width=_LOG_WIDTH)
err_console = Console(stderr=True, width=_LOG_WIDTH)
state = {"debug": False}

WEIGHTS_HELP = ("seeded[:N] (default, untrained), seeded-outliers[:N] (untrained, trained-like outliers), a transformers-format directory, a timm state dict "
                "(.safetensors/.pt) or hf:ORG/NAME@REVISION")
WeightsOpt = typer.Option("seeded", "--weights", "-w", help=WEIGHTS_HELP)
ArchOpt = typer.Option("vit_small_patch16_384", "--arch", help="architecture for seeded/state-dict weights (tiny: tests)")
ArtifactsOpt = typer.Option(Path("artifacts"), "--artifacts", help="folder that holds <model-name>/manifest.json")
ModelOpt = typer.Option(None, "--model", help="model folder name under --artifacts (default: the only one, or --arch's)")


def wide_console() -> Console:
    """The console for wide tables: in a log (make, CI) never folded to 80 columns."""
    return console if console.is_terminal or console.width >= 150 else Console(width=160)


def split_names(values: list[str]) -> list[str]:
    """Repeatable options that also take comma lists: --precision fp32,int8 --precision fp16."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def csv_list(value: str | None, cast=str) -> tuple | None:
    """A comma-separated option as a tuple (None when the option was not given)."""
    return None if value is None else tuple(cast(part.strip()) for part in value.split(",") if part.strip())


def choices(option: str, values: tuple | None, valid: tuple[str, ...]) -> tuple | None:
    """``values`` unchanged if each is one of ``valid``; otherwise a usage error before any work starts."""
    import difflib

    for value in values or ():
        if value not in valid:
            close = difflib.get_close_matches(str(value), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(valid)}{hint}", param_hint=option)
    return values


def batch_sizes(option: str, text: str | None) -> tuple[int, ...] | None:
    """Comma-separated batch sizes (each a whole number >= 1); anything else is a usage error."""
    if text is None:
        return None
    sizes = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if not part.isdigit() or int(part) < 1:
            raise typer.BadParameter(f"{text!r}: batch sizes are whole numbers >= 1, comma-separated (e.g. 1,8)",
                                     param_hint=option)
        sizes.append(int(part))
    if not sizes:
        raise typer.BadParameter(f"{text!r}: give at least one batch size (e.g. 1,8)", param_hint=option)
    return tuple(sizes)


@contextmanager
def row_progress(name: str):
    """A progress bar for a run of rows; yields ``update(done, total, what)`` (total None: not counted yet)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(f"[bold]{name}[/bold] {{task.description}}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("", total=None)
        yield lambda done, total, what: progress.update(task, total=total, completed=done, description=what)


def model_dir_option(artifacts: Path, model: str | None, arch: str) -> Path:
    """The model folder the --artifacts/--model/--arch options name (see exporters.pipeline.find_model_dir)."""
    from vitship.exporters.pipeline import find_model_dir

    return find_model_dir(artifacts, model, arch)
