"""The vitship command line: creates the typer app and registers one module per command (bench/commands/)."""

from __future__ import annotations

import os
import sys
import traceback

import typer
from typer.core import TyperCommand, TyperGroup

# tqdm reads TQDM_* when it is first imported (coremltools, nncf and huggingface_hub all use it), so this
# must precede every backend import; rich shows vitship's own progress. TQDM_DISABLE=0 brings them back.
_TQDM_DISABLED_HERE = "TQDM_DISABLE" not in os.environ
os.environ.setdefault("TQDM_DISABLE", "1")

from vitship.bench.commands import (
    bench,
    bench_check,
    compare,
    compat_check,
    diagnose,
    doctor,
    export,
    inspect,
    parity,
    predict,
    profile,
    report,
)
from vitship.bench.commands import eval as eval_
from vitship.bench.commands.common import err_console, state
from vitship.models import VitshipError


class _FlagsWithoutMetavar:
    """typer's rich help prints a type for flags (``--quick <bool>``), which take no value, and ``<list[Path]>`` for
    variadic arguments (``IMAGE...`` already says it): show none there, as click does."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
            elif param.param_type_name == "argument" and param.nargs != 1:
                param.display_type_rich = lambda ctx: None  # instance attribute: typer has no per-argument hook
        return params


class VitshipCommand(_FlagsWithoutMetavar, TyperCommand):
    """Every vitship command (see _FlagsWithoutMetavar); it also takes the group's --debug (see VitshipGroup)."""

    def invoke(self, ctx):
        # the command's own --debug is not a parameter of its function: take it out before typer calls it
        if ctx.params.pop("debug", False):
            state["debug"] = True
        _apply_debug(state["debug"])
        return super().invoke(ctx)


class VitshipGroup(_FlagsWithoutMetavar, TyperGroup):
    """The vitship command group. Its --debug is declared once (_main) and also given to every command, so it works
    before and after the command name (``vitship --debug export`` and ``vitship export --debug``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        debug = next(param for param in self.params if param.name == "debug")
        for command in self.commands.values():
            command.params.append(debug)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, cls=VitshipGroup,
                  help="Ship the ViT deepfake detector: export, check parity, benchmark and report.")
COMMANDS = {"doctor": doctor.doctor, "export": export.export, "parity": parity.parity, "bench": bench.bench,
            "bench-check": bench_check.bench_check_command, "eval": eval_.eval_command, "report": report.report,
            "predict": predict.predict, "compare": compare.compare, "compat-check": compat_check.compat_check_command,
            "diagnose": diagnose.diagnose, "inspect": inspect.inspect_command, "profile": profile.profile}
for _name, _function in COMMANDS.items():
    app.command(_name, cls=VitshipCommand, help=compare.HELP if _name == "compare" else None)(_function)


# Loggers that talk through warnings or INFO lines a user cannot act on; --debug keeps them.
NOISY_LOGGERS = ("coremltools", "nncf", "torch.utils.cpp_extension", "torch.utils._pytree", "torch._export", "torchao",
                 "executorch", "onnxruntime", "onnxscript", "openvino")


def _quiet_backends() -> None:
    """Keep backend chatter out of vitship's own progress and tables (all of it returns with --debug).

    coremltools logs a warning per Apple runtime proxy it cannot load (always, off macOS) and runs tqdm bars
    for every conversion pass; NNCF draws its own progress bars (rich's default console) that interleave with
    vitship's progress display. vitship prints only through its own consoles (bench/commands/common.py).
    """
    import logging
    import warnings

    import rich

    # ExecuTorch's Core ML partitioner logs INFO per node through its own levels; its env var sets them at import.
    os.environ.setdefault("ET_COREML_LOG_LEVEL", "ERROR")
    # NNCF's track() draws on rich's global console and has no switch to turn it off; vitship never prints there.
    rich.reconfigure(quiet=True)
    # A filter, not a level: nncf resets its logger's level when it is imported.
    for name in NOISY_LOGGERS:
        logging.getLogger(name).addFilter(lambda record: record.levelno >= logging.ERROR)
    # jax (imported by LiteRT's converter) warns at every fork; vitship's workers start with subprocess, not fork
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)


def quiet_worker() -> None:
    """An export worker process's first step (exporters/workers.py): as quiet as its command, which ran with
    --debug if VITSHIP_DEBUG is set (the worker inherits the environment)."""
    if not os.environ.get("VITSHIP_DEBUG"):
        _quiet_backends()


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and backend logs (before or after the "
                                     "command name).")) -> None:
    state["debug"] = debug  # applied when the command runs (VitshipCommand.invoke): its own --debug may still turn it on


def _apply_debug(debug: bool) -> None:
    """Backend logs, progress bars and tracebacks on (--debug) or kept quiet."""
    if debug:
        # the runtimes layer (and every worker subprocess, which inherits it) keeps the backends' C++ logs visible
        os.environ["VITSHIP_DEBUG"] = "1"
        if _TQDM_DISABLED_HERE:
            os.environ["TQDM_DISABLE"] = "0"
    else:
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
    except OSError as err:  # a path from the command line that cannot be used: a file where a folder should be, ...
        if state["debug"]:
            traceback.print_exc()
        where = err.filename if err.filename is not None else "a path"
        err_console.print(f"[bold red]error:[/bold red] {where}: {err.strerror or err}; check the path and its permissions",
                          highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as err:  # an unexpected bug: still one line unless --debug
        if state["debug"]:
            traceback.print_exc()
        err_console.print(f"[bold red]internal error:[/bold red] {type(err).__name__}: {err} ({_debug_hint()})",
                          highlight=False, soft_wrap=True)
        sys.exit(3)


def _debug_hint() -> str:
    """Where --debug goes: the same command line with --debug after the program name."""
    import shlex

    if state["debug"]:
        return "a bug in vitship: please report it with the traceback above"
    return f"a bug in vitship; for the traceback rerun: {shlex.join(['vitship', '--debug', *sys.argv[1:]])}"


if __name__ == "__main__":
    main()
