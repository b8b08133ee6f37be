"""The vitship command line: creates the typer app and registers one module per command (bench/commands/)."""

from __future__ import annotations

import os
import sys
import traceback

import typer

# tqdm reads TQDM_* when it is first imported (coremltools, nncf and huggingface_hub all use it), so this
# must precede every backend import; rich shows vitship's own progress. TQDM_DISABLE=0 brings them back.
os.environ.setdefault("TQDM_DISABLE", "1")

from vitship.bench.commands import bench, bench_check, compare, doctor, export, parity, predict, report  # noqa: E402
from vitship.bench.commands import eval as eval_
from vitship.bench.commands import compat_check  # noqa: E402
from vitship.bench.commands import diagnose  # noqa: E402
from vitship.bench.commands.common import err_console, state  # noqa: E402
from vitship.models import VitshipError  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Ship the ViT deepfake detector: export, check parity, benchmark and report.")
app.command("doctor")(doctor.doctor)
app.command("export")(export.export)
app.command("parity")(parity.parity)
app.command("bench")(bench.bench)
app.command("bench-check")(bench_check.bench_check_command)
app.command("eval")(eval_.eval_command)
app.command("report")(report.report)
app.command("predict")(predict.predict)
app.command("compare", help=compare.HELP)(compare.compare)
app.command("compat-check")(compat_check.compat_check_command)
app.command("diagnose")(diagnose.diagnose)


def _quiet_backends() -> None:
    """Keep backend chatter out of vitship's own progress and tables (all of it returns with --debug).

    coremltools logs a warning per Apple runtime proxy it cannot load (always, off macOS) and runs tqdm bars
    for every conversion pass; NNCF and coremltools' tqdm bars interleave with rich's progress display.
    """
    import logging

    import os

    # ExecuTorch's Core ML partitioner logs INFO per node through its own levels; its env var sets them at import.
    os.environ.setdefault("ET_COREML_LOG_LEVEL", "ERROR")
    # A filter, not a level: nncf resets its logger's level when it is imported.
    for name in ("coremltools", "nncf", "torch.utils.cpp_extension"):
        logging.getLogger(name).addFilter(lambda record: record.levelno >= logging.ERROR)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and backend logs.")) -> None:
    state["debug"] = debug
    if not debug:
        _quiet_backends()


def _usage_errors(click) -> tuple[type, ...]:
    """click's ClickException and typer's: typer 0.25+ vendors click (typer._click), whose classes are not click's."""
    return click.ClickException, next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """Entry point: domain errors become one red line and a non-zero exit (tracebacks with --debug)."""
    import click

    try:
        code = app(standalone_mode=False)  # non-standalone click returns typer.Exit's code instead of exiting
        if isinstance(code, int) and code:
            sys.exit(code)
    except VitshipError as err:
        if state["debug"]:
            traceback.print_exc()
        err_console.print(f"[bold red]error:[/bold red] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)
    except click.exceptions.Abort:
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except _usage_errors(click) as err:  # a bad option value or an unknown option: click's own message, exit 2
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted; finished work is kept, partial writes were discarded[/yellow]")
        sys.exit(130)
    except Exception as err:  # an unexpected bug: still one line unless --debug
        if state["debug"]:
            traceback.print_exc()
        err_console.print(f"[bold red]internal error:[/bold red] {type(err).__name__}: {err} (rerun with --debug for the traceback)",
                          highlight=False, soft_wrap=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
