"""vitship export: every requested format and precision, with progress and a graceful Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import typer
from rich.table import Table

from vitship.bench.commands.common import (
    ArchOpt,
    WeightsOpt,
    console,
    err_console,
    list_option,
    number_option,
    state,
    wide_console,
)
from vitship.bench.commands.int8_options import CALIBRATION_HELP, MODE_HELP, apply_int8_flags, int8_formats
from vitship.models import load_weights, spec_for
from vitship.models.judgement import Tolerance
from vitship.models.status import Status

COLOURS = {Status.OK: "green", Status.SKIPPED: "cyan", Status.PASS: "green", Status.NOT_CHECKED: "yellow"}


def _export_table(results: list) -> Table:
    table = Table(title="Exports")
    for column, justify in (("artifact", "left"), ("status", "left"), ("size", "right"), ("seconds", "right"),
                            ("int8 gate", "left"), ("reason", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for r in results:
        size = f"{r.size_bytes / 1e6:.1f} MB" if r.size_bytes else "-"
        gate = f"[{COLOURS.get(r.int8.verdict, 'red')}]{r.int8.summary()}[/]" if r.int8 else "-"
        reason = r.reason if r.status is not Status.FAIL else "no step of the int8 ladder passed (below)"
        table.add_row(r.id, f"[{COLOURS.get(r.status, 'red')}]{r.status}[/]", size, f"{r.seconds:.1f}", gate, reason or "")
    return table


def _ladder_table(results: list) -> Table | None:
    """Every step of each int8 that escalated or failed: the figures that chose (or refused) what shipped."""
    climbed = [r for r in results if r.int8 and (len(r.int8.steps) > 2 or r.status is Status.FAIL)]
    if not climbed:
        return None
    table = Table(title="int8 ladder: every step, judged on the gate's photos (held back from calibration, batch 1 and 8)")
    for column in ("artifact", "step", "recipe", "photos", "target", "min cosine", "max prob err", "verdict"):
        table.add_column(column, overflow="fold")
    for r in climbed:
        gate = r.int8.tolerance or Tolerance()
        for step in r.int8.steps:
            verdict = f"[green]{Status.PASS}[/]" if step.passed else f"[red]{Status.FAIL}[/] ({'; '.join(step.failures)})"
            table.add_row(r.id, f"{step.step}: {step.why}", step.recipe.describe(), step.photos, step.target,
                          f"{step.min_cosine:.4f} (>= {gate.min_cosine or 0:.4g})",
                          f"{step.max_prob_error:.4f} (<= {gate.max_prob or 0:.3g})", verdict)
    return table


@contextlib.contextmanager
def _stop_between_artifacts():
    """The first Ctrl-C stops the run before the next artifact; a second one aborts the current one.

    An interrupt inside a C extension's import or initialisation (onnx, openvino, ...) can abort the
    whole interpreter, so the first one is only noted. Either way finished artifacts stay in the manifest.
    """
    requested = []

    def on_sigint(signum, frame):
        requested.append(signum)
        if len(requested) > 1:
            raise KeyboardInterrupt
        os.write(2, b"\nstopping after the current artifacts (press Ctrl-C again to abort them now)\n")

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: keep the default behaviour
        yield requested
        return
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_exports(loaded, out: Path, requests: list, options, force: bool, gate: bool = True, jobs: int = 1) -> list:
    """export_all with a progress bar, exporter warnings on stderr and graceful Ctrl-C (``jobs`` formats at a time)."""
    import logging

    from rich.logging import RichHandler
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from vitship.bench.cli import quiet_worker
    from vitship.bench.int8_gate import int8_gate
    from vitship.exporters.pipeline import export_all

    handler = RichHandler(console=err_console, show_path=False, show_time=False)
    logging.getLogger("vitship.exporters").addHandler(handler)
    columns = (SpinnerColumn(), TextColumn("[bold]export[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    try:
        with _stop_between_artifacts() as stop, Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("", total=len(requests))

            def on_progress(aid: str, event: str) -> None:
                if event == "start" and stop:
                    raise KeyboardInterrupt
                progress.update(task, description=aid if event == "start" else f"{aid}: {event}")
                if event != "start":
                    progress.advance(task)

            return export_all(loaded, out, requests, options, force=force, progress=on_progress,
                              gate=int8_gate(loaded) if gate else False, jobs=jobs, worker_setup=quiet_worker)
    finally:
        logging.getLogger("vitship.exporters").removeHandler(handler)


RANGE_HELP = ("CoreML tensor batch: enumerated (--coreml-batch-shapes; the Neural Engine runs every one) or range "
              "(RangeDim 1..--coreml-max-batch: the Neural Engine runs it only at batch 1, other batches fall back to GPU/CPU)")


def _coremltools():
    try:
        import coremltools
    except ImportError:
        return None
    return coremltools


def _apple_options(coreml_input: str, coreml_batch: str, coreml_batch_shapes: list[int], coreml_max_batch: int,
                   coreml_min_target: str, executorch_max_batch: int) -> dict:
    """The CoreML and ExecuTorch options by registered name, each checked before any work starts (usage error)."""
    from vitship.exporters import coreml as coreml_exporter
    from vitship.exporters import executorch as executorch_exporter
    from vitship.models import VitshipError

    shapes = tuple(coreml_batch_shapes) or coreml_exporter.CoremlOptions.batch_shapes
    common = {"min_target": coreml_min_target}
    coreml = {"input": coreml_input, "batch": coreml_batch, "batch_shapes": shapes, "max_batch": coreml_max_batch, **common}
    executorch = {"max_batch": executorch_max_batch, **common}
    options = {"coreml": coreml_exporter.CoremlOptions(**coreml),
               "coreml-tensor": coreml_exporter.CoremlTensorOptions(**{**coreml, "input": "tensor"}),
               "executorch": executorch_exporter.ExecutorchOptions(**executorch),
               "executorch-coreml": executorch_exporter.ExecutorchCoremlOptions(**executorch)}
    try:
        executorch_exporter.check_options(options["executorch"].replace(precision="int8"))
        ct = _coremltools()
        for name, precisions in (("coreml", ("fp32", "fp16", "int8")), ("coreml-tensor", ("fp16", "int8"))):
            for precision in precisions if ct is not None else ():  # without coremltools the CoreML rows say what to install
                coreml_exporter.check_options(ct, options[name].replace(precision=precision))
    except VitshipError as err:
        raise typer.BadParameter(str(err)) from err
    return options


def export(
    all_: bool = typer.Option(False, "--all", help="every registered format and precision (the default without --format/--precision)"),
    fmt: list[str] = list_option("--format", "-f", item="FORMAT", help="onnx, openvino, coreml, coreml-tensor, executorch, "
                                                                       "executorch-coreml, litert; camera-frame input: "
                                                                       "onnx-image, openvino-image, litert-image, "
                                                                       "executorch-image"),
    precision: list[str] = list_option("--precision", "-p", item="PRECISION", help="fp32, fp16, int8"),
    weights: str = WeightsOpt, arch: str = ArchOpt,
    out: Path = typer.Option(Path("artifacts"), "--out", "--artifacts", help="writes OUT/<model-name>/<artifact-id>/ and manifest.json"),
    calibration: Path | None = typer.Option(None, "--calibration", help=CALIBRATION_HELP),
    int8_smooth: str | None = typer.Option(None, "--int8-smooth", metavar="ALPHA|off",
                                           help="SmoothQuant fold strength for every int8 format that takes it (0..1, or "
                                                "off); default: each format's own (0.5; LiteRT takes none)"),
    int8_gate: bool = typer.Option(True, "--int8-gate/--no-int8-gate",
                                   help="check each int8 on held-back photos and escalate a failing one along the ladder; "
                                        "--no-int8-gate ships the requested recipe marked 'not checked' (for vitship diagnose)"),
    int8_mode: list[str] = list_option("--int8-mode", item="MODE|FORMAT=MODE", help=MODE_HELP),
    onnx_contrib_ops: str = typer.Option("onnxruntime", "--onnx-contrib-ops",
                                         help="onnx-fp32 and dynamic onnx-int8: onnxruntime (attention as com.microsoft."
                                              "Attention, GELU as Gelu: faster on onnxruntime) or none (standard ONNX ops)"),
    class_token_tail: bool | None = typer.Option(None, "--class-token-tail/--no-class-token-tail",
                                                 help="compute the last block for the class token only (exact; default: "
                                                      "each format's measured choice)"),
    onnx_runtimes: str = typer.Option("compatible", "--onnx-runtimes", help="ONNX files for: compatible (IR 9: onnxruntime 1.16+, OpenVINO 2024.0+) or latest (the exporter's IR)"),
    coreml_input: str = typer.Option("auto", "--coreml-input", help="coreml-* input: auto (RGB image at batch 1 for fp16/int8, "
                                                                   "float tensor for the fp32 reference), image or tensor"),
    coreml_batch: str = typer.Option("enumerated", "--coreml-batch", help=RANGE_HELP),
    coreml_batch_shapes: list[str] = list_option("--coreml-batch-shapes", item="N", numbers=True,
                                                 help="CoreML enumerated batch sizes (default: 1,2,4,8; must include 1)"),
    coreml_max_batch: int = number_option(64, "--coreml-max-batch", at_least=1,
                                          help="CoreML RangeDim upper bound (--coreml-batch range only; "
                                               "the Neural Engine runs a RangeDim model only at batch 1)"),
    coreml_min_target: str = typer.Option("iOS17", "--coreml-min-target", help="CoreML (and ExecuTorch Core ML delegate) minimum "
                                                                               "deployment target, e.g. iOS17, macOS14"),
    executorch_max_batch: int = number_option(1, "--executorch-max-batch", at_least=1,
                                              help="ExecuTorch XNNPACK batch: 1, a fixed batch-1 program with every op in the "
                                                   "delegate (default); N, a dynamic batch 1..N (memory planned for N, reshapes "
                                                   "of the batch outside the delegate)"),
    executorch_int8_mode: str | None = typer.Option(None, "--executorch-int8-mode", hidden=True,
                                                    help="the same as --int8-mode executorch=MODE"),
    frame_size: str | None = typer.Option(None, "--frame-size", metavar="HEIGHTxWIDTH",
                                          help="the one camera-frame size litert-image-* and executorch-image-* take "
                                               "(default 1080x1920: landscape full HD); onnx-image and openvino-image "
                                               "take any size"),
    force: bool = typer.Option(False, "--force", help="rebuild artifacts that are up to date"),
    jobs: int = typer.Option(min(2, os.cpu_count() or 1), "--jobs", "-j", min=1,
                             help="formats built at a time, each in its own worker process (an export is mostly "
                                  "one core's work); 1: one after the other in this process"),
) -> None:
    """Export the model to every requested format and precision; skips what is up to date. Exits 1 if any failed."""
    from vitship.exporters import EXPORTERS, options_class
    from vitship.exporters.onnx import OnnxOptions
    from vitship.exporters.pipeline import model_dir_for, resolve_requests

    formats, precisions = fmt, precision
    if onnx_runtimes not in ("compatible", "latest"):
        raise typer.BadParameter(f"--onnx-runtimes {onnx_runtimes!r}: use compatible or latest")
    if all_ and (formats or precisions):
        raise typer.BadParameter("--all exports everything; leave out --format/--precision, or drop --all")
    requests = resolve_requests(formats or None, precisions or None)
    if not requests:
        raise typer.BadParameter(f"no registered exporter produces {formats or 'any format'} in {precisions or 'any precision'}")
    if onnx_contrib_ops not in ("onnxruntime", "none"):
        raise typer.BadParameter(f"--onnx-contrib-ops {onnx_contrib_ops!r}: use onnxruntime or none")
    options = {"onnx": OnnxOptions(runtimes=onnx_runtimes, contrib_ops=onnx_contrib_ops),
               **_apple_options(coreml_input, coreml_batch, coreml_batch_shapes, coreml_max_batch, coreml_min_target,
                                executorch_max_batch)}
    if frame_size is not None:
        size = _frame_size(frame_size)
        options |= {name: options_class(name)(frame_size=size) for name in ("litert-image", "executorch-image")}
    if class_token_tail is not None:  # each format's own default otherwise (models.export_form)
        options = {name: (options.get(name) or options_class(name)()).replace(class_token_tail=class_token_tail) for name in EXPORTERS}
    modes = list(int8_mode) + ([f"executorch={executorch_int8_mode}"] if executorch_int8_mode else [])
    options = apply_int8_flags(options, requests, bool(formats), modes, int8_smooth, calibration)
    _check_int8(options, requests)
    loaded = load_weights(weights, spec_for(arch))
    results = _run_exports(loaded, out, requests, options, force, int8_gate, jobs)
    _print_results(results, loaded, out, model_dir_for)
    if any(r.failed for r in results):
        raise typer.Exit(code=1)


def _frame_size(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not sep or not height.strip().isdigit() or not width.strip().isdigit() or min(int(height), int(width)) < 1:
        raise typer.BadParameter(f"{text!r}: give the frame's height and width in pixels, e.g. 1080x1920",
                                 param_hint="--frame-size")
    return int(height), int(width)


def _check_int8(options: dict, requests: list) -> None:
    """Every requested int8's options checked against its format's capabilities before any work (usage error)."""
    from vitship.exporters.int8.options import check_int8_options
    from vitship.models import VitshipError

    for fmt in int8_formats(requests):
        try:
            check_int8_options(fmt, options[fmt].replace(precision="int8"))
        except VitshipError as err:
            raise typer.BadParameter(str(err)) from err


def _print_results(results: list, loaded, out: Path, model_dir_for) -> None:
    wide = wide_console()
    wide.print(_export_table(results))
    ladder = _ladder_table(results)
    if ladder is not None:
        wide.print(ladder)
    for result in results:
        if result.failed and result.traceback and state["debug"]:
            err_console.print(f"[bold red]{result.id}[/bold red] traceback:\n{result.traceback}", highlight=False, markup=False)
    if not loaded.info.trained:
        console.print(f"[yellow]untrained weights ({loaded.info.kind}): artifacts are valid for export, parity and latency, "
                      "not accuracy[/yellow]", highlight=False)
    console.print(f"manifest: {model_dir_for(out, loaded) / 'manifest.json'}", highlight=False)
