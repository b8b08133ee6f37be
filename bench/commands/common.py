"""What every command shares: the consoles, the common options and their parsing. Only commands import typer."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import typer
from rich.console import Console

# Piped into a log (make, CI), rich would fold wide tables to 80 columns; COLUMNS still wins when set.
_LOG_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 180
console = Console(width=_LOG_WIDTH)
err_console = Console(stderr=True, width=_LOG_WIDTH)
state = {"debug": False}

WEIGHTS_HELP = ("seeded[:N] (default, untrained), seeded-outliers[:N] (untrained, trained-like outliers), seeded-outliers-trained[:N] "
                "(those plus a trained-like head, logits over +-4), a transformers-format directory, a timm state dict "
                "(.safetensors/.pt) or hf:ORG/NAME@REVISION")
WeightsOpt = typer.Option("seeded", "--weights", "-w", help=WEIGHTS_HELP)
ArchOpt = typer.Option("vit_small_patch16_384", "--arch", help="architecture for seeded/state-dict weights (tiny: tests)")
ArtifactsOpt = typer.Option(Path("artifacts"), "--artifacts", help="folder that holds <model-name>/manifest.json")
ModelOpt = typer.Option(None, "--model", help="model folder name under --artifacts (default: the only one, or --arch's)")


def wide_console() -> Console:
    """The console for wide tables: in a log (make, CI) never folded to 80 columns."""
    return console if console.is_terminal or console.width >= 150 else Console(width=160)


def split_names(values: list[str] | tuple[str, ...]) -> list[str]:
    """Repeatable options that also take comma lists: --precision fp32,int8 --precision fp16."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _close_match(value: str, valid: tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(str(value), valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def choices(option: str, values: tuple | list | None, valid: tuple[str, ...]) -> tuple | list | None:
    """``values`` unchanged if each is one of ``valid``; otherwise a usage error before any work starts."""
    for value in values or ():
        if value not in valid:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(valid)}{_close_match(value, valid)}", param_hint=option)
    return values


def _whole_numbers(option: str, values: list[str]) -> list[int]:
    """Comma/repeat-separated whole numbers >= 1 (batch sizes); anything else is a usage error."""
    text, parts = ",".join(values), split_names(values)
    if not all(part.isdigit() and int(part) >= 1 for part in parts):
        raise typer.BadParameter(f"{text!r}: batch sizes are whole numbers >= 1, as a comma list or repeated (e.g. 1,8)",
                                 param_hint=option)
    if values and not parts:
        raise typer.BadParameter(f"{text!r}: give at least one batch size (e.g. 1,8)", param_hint=option)
    return [int(part) for part in parts]


def list_option(*decls: str, help: str, item: str = "NAME", valid: Callable[[], tuple[str, ...]] | None = None,
                numbers: bool = False):
    """A list option that takes repeats and comma lists alike (--target a,b --target c), checked before any work.

    Args:
        item: the metavar of one element, shown as ``ITEM[,ITEM...]``.
        valid: returns the accepted names (called only when the option is given; a backend import may sit behind it).
        numbers: whole numbers >= 1 (batch sizes), passed on as ints.
    """

    def parse(param: typer.CallbackParam, values: list[str]) -> list:
        option = max(param.opts, key=len)
        if numbers:
            return _whole_numbers(option, values)
        names = split_names(values)
        if valid is not None and names:
            choices(option, names, valid())
        return names

    return typer.Option([], *decls, help=help, metavar=f"{item}[,{item}...]", callback=parse)


def _range_text(above: float | None, at_least: float | None, at_most: float | None) -> str:
    bounds = [f"> {above:g}" if above is not None else "", f">= {at_least:g}" if at_least is not None else "",
              f"<= {at_most:g}" if at_most is not None else ""]
    return " and ".join(b for b in bounds if b)


def number_option(default, *decls: str, help: str, above: float | None = None, at_least: float | None = None,
                  at_most: float | None = None, metavar: str | None = None):
    """A numeric option that must be finite and in range; nan, inf and -1 are usage errors before any work.

    ``above`` is an exclusive lower bound (times: above=0), ``at_least``/``at_most`` inclusive ones (threads: at_least=1).
    """
    import math

    wanted = _range_text(above, at_least, at_most)

    def check(param: typer.CallbackParam, value):
        if value is None:
            return value
        in_range = (math.isfinite(value) and (above is None or value > above) and (at_least is None or value >= at_least)
                    and (at_most is None or value <= at_most))
        if not in_range:
            kind = "whole number" if isinstance(value, int) else "finite number"
            raise typer.BadParameter(f"{value!r} is not a {kind} {wanted}", param_hint=max(param.opts, key=len))
        return value

    return typer.Option(default, *decls, help=f"{help} [{wanted}]" if wanted else help, metavar=metavar, callback=check)


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
