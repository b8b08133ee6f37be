"""The vitship command line (typer). The only module that knows typer and every package."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

# tqdm reads TQDM_* when it is first imported (coremltools, nncf and huggingface_hub all use it), so this
# must precede every backend import; rich shows vitship's own progress. TQDM_DISABLE=0 brings them back.
os.environ.setdefault("TQDM_DISABLE", "1")

from bench.report_sources import target_display  # noqa: E402
from models import VitshipError, load_weights, spec_for  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Ship the ViT deepfake detector: export, check parity, benchmark and report.")
# Piped into a log (make, CI), rich would fold wide tables to 80 columns; COLUMNS still wins when set.
_LOG_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 180
console = Console(width=_LOG_WIDTH)
err_console = Console(stderr=True, width=_LOG_WIDTH)
_state = {"debug": False}

WEIGHTS_HELP = ("seeded[:N] (default, untrained), a transformers-format directory, a timm state dict "
                "(.safetensors/.pt) or hf:ORG/NAME@REVISION")
WeightsOpt = typer.Option("seeded", "--weights", "-w", help=WEIGHTS_HELP)
ArchOpt = typer.Option("vit_small_patch16_384", "--arch", help="architecture for seeded/state-dict weights (tiny: tests)")


def _quiet_backends() -> None:
    """Keep backend chatter out of vitship's own progress and tables (all of it returns with --debug).

    coremltools logs a warning per Apple runtime proxy it cannot load (always, off macOS) and runs tqdm bars
    for every conversion pass; NNCF and coremltools' tqdm bars interleave with rich's progress display.
    """
    import logging

    # A filter, not a level: nncf resets its logger's level when it is imported.
    for name in ("coremltools", "nncf", "torch.utils.cpp_extension"):
        logging.getLogger(name).addFilter(lambda record: record.levelno >= logging.ERROR)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and backend logs.")) -> None:
    _state["debug"] = debug
    if not debug:
        _quiet_backends()


def _versions_table() -> Table:
    from bench.environment import package_versions

    table = Table(title="Packages", show_header=True)
    table.add_column("package")
    table.add_column("version")
    for name, version in package_versions().items():
        table.add_row(name, version or "[red]not installed[/red]")
    return table


def _cpu_table(env: dict) -> Table:
    cpu = env["cpu"]
    table = Table(title="Machine", show_header=False)
    table.add_column("key")
    table.add_column("value")
    table.add_row("CPU", f"{cpu['model']} ({cpu['arch']})")
    table.add_row("cores", f"{cpu['physical_cores']} physical / {cpu['logical_cores']} logical")
    table.add_row("memory", f"{env['memory_gib']} GiB")
    table.add_row("OS", f"{env['os']} / Python {env['python']}")
    flags = cpu["flags"]
    table.add_row("CPU flags", " ".join(f"[green]{f}[/green]" if on else f"[dim]-{f}[/dim]" for f, on in flags.items()) or "unknown")
    gpus = env["gpus"]
    table.add_row("GPU", "; ".join(f"{g['name']} (driver {g['driver']}, {g['memory']})" for g in gpus) or "none found (nvidia-smi)")
    return table


def _targets_table() -> Table | None:
    try:
        from runtimes import available_targets
    except ImportError:
        return None
    table = Table(title="Targets")
    table.add_column("target")
    table.add_column("status")
    for status in available_targets():
        table.add_row(status.target, "[green]available[/green]" if status.available else f"[yellow]unavailable: {status.reason}[/yellow]")
    return table


@app.command()
def doctor(weights: str = WeightsOpt, arch: str = ArchOpt) -> None:
    """Print package versions, CPU and GPU facts, targets, and the weights in use with their sha256."""
    from bench.environment import environment

    env = environment()
    console.print(_versions_table())
    console.print(_cpu_table(env))
    targets = _targets_table()
    if targets is not None:
        console.print(targets)
    loaded = load_weights(weights, spec_for(arch))
    info, spec = loaded.info, loaded.spec
    table = Table(title="Weights", show_header=False)
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("source", f"{info.source} ({info.kind})")
    table.add_row("sha256", info.sha256)
    table.add_row("revision", info.revision or "-")
    table.add_row("trained", "yes" if info.trained else "[yellow]no: untrained weights (accuracy is meaningless)[/yellow]")
    table.add_row("model", f"{spec.embed_dim}w x {spec.depth} blocks x {spec.num_heads} heads, {spec.image_size}px/{spec.patch_size}, "
                           f"{info.num_params / 1e6:.2f}M params, head {spec.head_kind} {list(spec.labels)}")
    table.add_row("preprocess", f"{spec.resize_mode} {spec.resize_size} {spec.interpolation}, crop {spec.crop_size if spec.do_center_crop else 'no'}, "
                                f"mean {spec.mean} std {spec.std}")
    console.print(table)


# --- export (exporters/pipeline.py) ---


def _split_names(values: list[str]) -> list[str]:
    """Repeatable options that also take comma lists: --precision fp32,int8 --precision fp16."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _export_table(results: list) -> Table:
    table = Table(title="Exports")
    for column, justify in (("artifact", "left"), ("status", "left"), ("size", "right"), ("seconds", "right"), ("reason", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    colours = {"ok": "green", "skipped": "cyan", "export_failed": "red"}
    for r in results:
        size = f"{r.size_bytes / 1e6:.1f} MB" if r.size_bytes else "-"
        table.add_row(r.id, f"[{colours.get(r.status, 'red')}]{r.status}[/]", size, f"{r.seconds:.1f}", r.reason or "")
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
        os.write(2, b"\nstopping after the current artifact (press Ctrl-C again to abort it now)\n")

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: keep the default behaviour
        yield requested
        return
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_exports(loaded, out: Path, requests: list, options, force: bool) -> list:
    """export_all with a progress bar, exporter warnings on stderr and graceful Ctrl-C."""
    import logging

    from rich.logging import RichHandler
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from exporters.pipeline import export_all

    handler = RichHandler(console=err_console, show_path=False, show_time=False)
    logging.getLogger("exporters").addHandler(handler)
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

            return export_all(loaded, out, requests, options, force=force, progress=on_progress)
    finally:
        logging.getLogger("exporters").removeHandler(handler)


@app.command()
def export(
    all_: bool = typer.Option(False, "--all", help="every registered format and precision (the default without --format/--precision)"),
    fmt: list[str] = typer.Option([], "--format", "-f", help="onnx, openvino, coreml (repeatable or comma list)"),
    precision: list[str] = typer.Option([], "--precision", "-p", help="fp32, fp16, int8 (repeatable or comma list)"),
    weights: str = WeightsOpt, arch: str = ArchOpt,
    out: Path = typer.Option(Path("artifacts"), "--out", "--artifacts", help="writes OUT/<model-name>/<artifact-id>/ and manifest.json"),
    calibration: Path | None = typer.Option(None, "--calibration", help="folder of real photos for int8 calibration (default: bundled samples)"),
    int8_mode: str = typer.Option("static", "--int8-mode", help="ONNX int8: static (QDQ, calibrated) or dynamic (weight-only)"),
    coreml_input: str = typer.Option("tensor", "--coreml-input", help="CoreML input: tensor (normalised float) or image (RGB pixel buffer)"),
    coreml_max_batch: int = typer.Option(64, "--coreml-max-batch", min=1, help="CoreML flexible batch upper bound"),
    coreml_min_target: str = typer.Option("iOS17", "--coreml-min-target", help="CoreML minimum deployment target, e.g. iOS17, macOS14"),
    force: bool = typer.Option(False, "--force", help="rebuild artifacts that are up to date"),
) -> None:
    """Export the model to every requested format and precision; skips what is up to date. Exits 1 if any failed."""
    from exporters import ExportOptions
    from exporters.pipeline import model_dir_for, resolve_requests

    formats, precisions = _split_names(fmt), _split_names(precision)
    if int8_mode not in ("static", "dynamic"):
        raise typer.BadParameter(f"--int8-mode {int8_mode!r}: use static or dynamic")
    if coreml_input not in ("tensor", "image"):
        raise typer.BadParameter(f"--coreml-input {coreml_input!r}: use tensor or image")
    if all_ and (formats or precisions):
        raise typer.BadParameter("--all exports everything; leave out --format/--precision, or drop --all")
    requests = resolve_requests(formats or None, precisions or None)
    if not requests:
        raise typer.BadParameter(f"no registered exporter produces {formats or 'any format'} in {precisions or 'any precision'}")
    options = ExportOptions(calibration_dir=calibration, onnx_int8_mode=int8_mode, coreml_input=coreml_input,
                            coreml_max_batch=coreml_max_batch, coreml_min_target=coreml_min_target)
    loaded = load_weights(weights, spec_for(arch))
    results = _run_exports(loaded, out, requests, options, force)
    wide = console if console.is_terminal or console.width >= 150 else Console(width=160)
    wide.print(_export_table(results))
    if not loaded.info.trained:
        console.print("[yellow]untrained weights (seeded): artifacts are valid for export, parity and latency, not accuracy[/yellow]")
    console.print(f"manifest: {model_dir_for(out, loaded) / 'manifest.json'}", highlight=False)
    if any(r.failed for r in results):
        raise typer.Exit(code=1)


# --- eval, report, compare (bench/accuracy.py, bench/report.py, bench/compare.py) ---

ArtifactsOpt = typer.Option(Path("artifacts"), "--artifacts", help="folder that holds <model-name>/manifest.json")
ModelOpt = typer.Option(None, "--model", help="model folder name under --artifacts (default: the only one, or --arch's)")


def _model_dir(artifacts: Path, model: str | None, arch: str) -> Path:
    """artifacts/<model>: --artifacts itself if it holds a manifest, the named one, the only one, else --arch's name."""
    if (artifacts / "manifest.json").is_file():
        return artifacts
    if model:
        return artifacts / model
    found = sorted(p.parent for p in artifacts.glob("*/manifest.json"))
    return found[0] if len(found) == 1 else artifacts / spec_for(arch).name


def _pts(value: float | None, delta: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + ("" if delta is None or delta == 0 else f" ({delta:+.2f})")


def _eval_table(document: dict) -> Table:
    table = Table(title=f"Accuracy at threshold {document['threshold']} (Δ in points vs the PyTorch reference)")
    for column in ("artifact", "target", "status", "accuracy", "balanced", "AUROC", "AP", "F1", "agreement"):
        table.add_column(column, overflow="fold")
    for row in document["rows"]:
        m, d = row["metrics"], row["deltas"]
        cells = [_pts(m.get(k), d.get(k)) for k in ("accuracy", "balanced_accuracy", "auroc", "average_precision", "f1")]
        ok = row["status"] == "ok"
        table.add_row(row["artifact"], row["target"], row["status"] if not ok else "[green]ok[/green]", *cells,
                      "-" if row["agreement"] is None else f"{row['agreement']:.1%}")
    return table


@app.command("eval")
def eval_command(
    data: Path = typer.Option(..., "--data", help="a folder with real/ and fake/ subfolders, or a CSV of path,label"),
    artifacts: Path = ArtifactsOpt, model: str | None = ModelOpt, arch: str = ArchOpt,
    weights: str | None = typer.Option(None, "--weights", "-w", help="reference weights (default: the source the manifest records)"),
    threshold: float = typer.Option(0.5, "--threshold", help="decision threshold on the 'fake' probability"),
    target: list[str] = typer.Option([], "--target", help="ARTIFACT_OR_FORMAT=TARGET, e.g. openvino=openvino:CPU (repeatable)"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
) -> None:
    """Score a labelled folder with every artifact and the PyTorch reference; write eval.json."""
    from bench.accuracy import DatasetError, EvalOptions, evaluate, write_eval
    from bench.parity import load_reference

    model_dir = _model_dir(artifacts, model, arch)
    targets = {}
    for item in target:
        key, sep, value = item.partition("=")
        if not sep:
            raise DatasetError(f"--target {item!r}: expected ARTIFACT_OR_FORMAT=TARGET, e.g. onnx=onnxruntime:cpu")
        targets[key] = value
    loaded = load_reference(model_dir, weights)
    with console.status(f"scoring {data} with every artifact in {model_dir} ..."):
        document = evaluate(model_dir, data, loaded, EvalOptions(threshold=threshold, batch_size=batch_size, targets=targets))
    if document["note"]:
        console.print(f"[bold yellow]{document['note']}[/bold yellow]")
    console.print(_eval_table(document))
    info = document["data"]
    console.print(f"{info['n_images']} images ({info['n_real']} real, {info['n_fake']} fake); "
                  f"{info['n_skipped']} unreadable images skipped")
    for item in info["skipped"]:
        console.print(f"  [yellow]skipped[/yellow] {item['reason']}", highlight=False)
    console.print(f"wrote {write_eval(model_dir, document)}")


@app.command()
def report(
    artifacts: Path = ArtifactsOpt, model: str | None = ModelOpt, arch: str = ArchOpt,
    reports: Path = typer.Option(Path("reports"), "--reports", help="where reports/<run-id>/ and reports/latest go"),
    merge: bool = typer.Option(False, "--merge", help="merge the REPORTS given (report.json per machine) into one table"),
    to_merge: list[Path] = typer.Argument(None, metavar="REPORTS", help="report.json files (or folders) for --merge"),
    accuracy_threshold: float = typer.Option(0.5, "--accuracy-threshold", help="largest accepted accuracy drop, in points"),
) -> None:
    """Write the release report (JSON, Markdown, CSV, HTML with plots) and print its path last."""
    from bench.report import ReportError, ReportOptions, build_report, merge_reports, read_report, write_report

    if to_merge and not merge:
        raise ReportError("report paths are only taken with --merge: vitship report --merge A/report.json B/report.json")
    if merge:
        document = merge_reports([read_report(path) for path in to_merge or []])
    else:
        document = build_report(_model_dir(artifacts, model, arch), ReportOptions(accuracy_threshold_points=accuracy_threshold))
    folder = write_report(document, reports)
    if document.get("banner"):
        console.print(f"[bold yellow]{document['banner']}[/bold yellow]")
    for entry in document["sections"].get("summary", []):
        console.print(entry["line"], highlight=False)
    for name, source in document["sections"].get("sources", {}).items():
        if source["status"] != "ok":
            console.print(f"[yellow]{name}: {source['status']}[/yellow] ({source['path']})", highlight=False)
    console.print("report.json, report.md, report.csv, report.html and plots in:")
    print(folder)


def _compare_table(comparison) -> Table:
    table = Table(title="Report comparison (batch-1 p50; accuracy in points)")
    for column in ("artifact", "target", "p50 old ms", "p50 new ms", "Δ p50", "parity", "Δ accuracy", "status"):
        table.add_column(column, overflow="fold")
    colours = {"ok": "green", "new": "cyan", "regression": "bold red", "missing": "bold red", "not compared": "yellow"}
    for row in comparison.rows:
        if row.status == "ok" and row.parity_old == row.parity_new == "unavailable" and row.p50_old_ms is None:
            continue  # a target neither machine could run: nothing to compare
        number = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        status = f"[{colours[row.status]}]{row.status}[/]" + ("".join(f"\n{r}" for r in row.reasons))
        table.add_row(row.artifact + (f" ({row.variant})" if row.variant else ""), row.target, number(row.p50_old_ms),
                      number(row.p50_new_ms), "-" if row.p50_change is None else f"{row.p50_change:+.1%}",
                      row.parity_old if row.parity_old == row.parity_new else f"{row.parity_old} -> {row.parity_new}",
                      "-" if row.accuracy_change_points is None else f"{row.accuracy_change_points:+.2f}", status)
    return table


@app.command()
def compare(
    old: Path = typer.Argument(..., help="the baseline report.json (or its folder)"),
    new: Path = typer.Argument(..., help="the candidate report.json (or its folder)"),
    force: bool = typer.Option(False, "--force", help="compare rows even when the environments differ"),
    max_latency_increase: float = typer.Option(0.10, "--max-latency-increase", help="allowed relative p50 increase"),
    max_accuracy_drop: float = typer.Option(0.5, "--max-accuracy-drop", help="allowed accuracy drop, in points"),
) -> None:
    """Per-row deltas between two reports; exit 1 on a regression, 2 when the environments differ (no --force)."""
    from bench.compare import CompareThresholds, compare_reports
    from bench.report import read_report

    comparison = compare_reports(read_report(old), read_report(new), CompareThresholds(max_latency_increase, max_accuracy_drop), force)
    console.print(_compare_table(comparison))
    for note in comparison.notes:
        console.print(f"[yellow]{note}[/yellow]", highlight=False)
    if not comparison.compared:
        raise typer.Exit(code=2)
    if comparison.regressions:
        console.print(f"[bold red]{len(comparison.regressions)} regression(s)[/bold red]")
        raise typer.Exit(code=1)
    console.print("[green]no regression[/green]")


def _parity_agreement(metrics: dict) -> str:
    if metrics.get("agreement") is None:
        return "-"
    text = "-" if metrics["decisive_agreement"] is None else f"{metrics['decisive_agreement']:.1%}"
    text += f" of {metrics['n_photos'] - metrics['n_ambiguous']} decisive"
    if metrics["n_ambiguous"]:
        text += f"\n{metrics['n_ambiguous']} ambiguous, {metrics['ambiguous_flips']} flipped"
    return text


def _parity_table(results: list) -> Table:
    """The rows that ran (pass, fail, error), one per line; unavailable ones go to _unavailable_table."""
    table = Table(title="Parity against the PyTorch fp32 reference (batch 1 and batch 8, photos + random tensors)")
    for column in ("artifact", "target", "runtime precision", "min cosine", "max abs logit err", "p99 abs logit err",
                   "max prob err", "agreement", "batch consistency", "verdict"):
        table.add_column(column, overflow="fold")
    colours = {"pass": "green", "fail": "bold red", "error": "bold red"}
    for r in (r for r in results if r.verdict != "unavailable"):
        m, b = r.metrics or {}, r.batch_consistency
        number = lambda key, fmt: "-" if m.get(key) is None else format(m[key], fmt)  # noqa: E731
        consistent = "-" if not b else ("[red]inconsistent[/red]" if any(f.startswith("batch") for f in r.failures)
                                        else "ok") + f"\nΔlogit {b['max_abs_logit']:.1e}"
        target = r.target + (f"\n({r.note})" if r.note else "")
        table.add_row(r.artifact, target, r.precision_label or "-", number("min_cosine", ".6f"), number("max_abs_logit", ".2e"),
                      number("p99_abs_logit", ".2e"), number("max_prob_err", ".2e"), _parity_agreement(m), consistent,
                      f"[{colours[r.verdict]}]{r.verdict}[/]")
    return table


def _unavailable_table(results: list) -> Table | None:
    """Rows that could not be checked here, one line per (target, reason) with the artifacts it concerns."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for r in (r for r in results if r.verdict == "unavailable"):
        grouped.setdefault((r.target, r.reason), []).append(r.artifact)
    if not grouped:
        return None
    table = Table(title="Unavailable here (not checked, not passed)")
    for column in ("target", "artifacts", "verdict"):
        table.add_column(column, overflow="fold")
    for (target, reason), artifacts in grouped.items():
        table.add_row(target, ", ".join(artifacts), f"[yellow]unavailable[/yellow]: {reason}")
    return table


def _parity_rows(model_dir: Path, loaded, artifact_ids: list[str], target_names: list[str], with_torch: bool, options):
    """The rows to check: manifest artifacts (+ PyTorch itself) x targets, narrowed by --artifact/--target."""
    from bench.parity import plan_rows
    from exporters.base import manifest_artifacts
    from models import UnknownNameError
    from runtimes import available_targets, torch_artifact

    artifacts = manifest_artifacts(model_dir)
    torch_rows = [torch_artifact(loaded, p) for p in ("fp32", "fp16", "bf16")]
    if artifact_ids:
        known = {a.id: a for a in artifacts + torch_rows}
        for name in artifact_ids:
            if name not in known:
                raise UnknownNameError("artifact", name, list(known))
        artifacts = [known[name] for name in artifact_ids]
    elif with_torch:
        artifacts = artifacts + torch_rows
    statuses = available_targets()
    if target_names:
        known_targets = {s.target.lower(): s for s in statuses}
        for name in target_names:
            if name.lower() not in known_targets:
                raise UnknownNameError("target", name, [s.target for s in statuses])
        statuses = [known_targets[name.lower()] for name in target_names]
    return plan_rows(artifacts, statuses, options, explicit=set(artifact_ids))


@app.command()
def parity(
    artifacts: Path = typer.Option(Path("artifacts"), "--artifacts", help="artifacts/ (with --model) or one model folder artifacts/<model>"),
    model: str | None = ModelOpt, arch: str = ArchOpt,
    weights: str | None = typer.Option(None, "--weights", "-w", help="reference weights (default: the source the manifest records; sha256 must match)"),
    artifact: list[str] = typer.Option([], "--artifact", help="only these artifact ids (repeatable); torch-fp16/torch-bf16 add PyTorch half-precision rows"),
    target: list[str] = typer.Option([], "--target", help="only these targets, e.g. onnxruntime:cpu (repeatable)"),
    tolerances: Path | None = typer.Option(None, "--tolerances", help="JSON/TOML tolerance overrides, e.g. {\"int8\": {\"max_prob\": 0.06}}"),
    tolerance: list[str] = typer.Option([], "--tolerance", help="KEY.FIELD=VALUE override, e.g. int8.max_prob=0.06 (repeatable)"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="runtime threads (default: physical cores)"),
    batch: str = typer.Option("1,8", "--batch", help="batch sizes; the first and last are compared for batch consistency"),
    random_inputs: int = typer.Option(5, "--random-inputs", min=0, help="seeded random tensors added to the photos"),
    torch_rows: bool = typer.Option(True, "--torch/--no-torch", help="also check the PyTorch model itself on every torch target"),
) -> None:
    """Check every artifact on every available target against the PyTorch fp32 reference; write parity.json."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.environment import environment
    from bench.parity import ParityConfig, check_row, load_reference, parity_report, prepare, write_parity_report
    from bench.parity_metrics import ToleranceTable, ToleranceError
    from runtimes import SessionOptions

    model_dir = artifacts if (artifacts / "manifest.json").is_file() else _model_dir(artifacts, model, arch)
    table = ToleranceTable.from_file(tolerances) if tolerances else ToleranceTable()
    table.apply_cli(tolerance)
    try:
        sizes = tuple(sorted({int(b) for b in batch.split(",") if b.strip()}))
    except ValueError as err:
        raise ToleranceError(f"--batch {batch!r}: expected sizes like 1,8") from err
    loaded = load_reference(model_dir, weights)
    config = ParityConfig(batch_sizes=sizes or (1,), random_inputs=random_inputs)
    with console.status(f"PyTorch fp32 reference on {len(config.batch_sizes)} batch sizes ..."):
        ctx = prepare(model_dir, loaded, config, table, SessionOptions(threads=threads))
    plans = _parity_rows(model_dir, loaded, artifact, target, torch_rows, ctx.options)
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("parity", total=len(plans))
        for plan in plans:
            progress.update(task, description=f"{plan.artifact.id} on {plan.status.target} {plan.variant}".strip())
            results.append(check_row(plan, ctx))
            progress.advance(task)
    if not loaded.info.trained:
        console.print("[yellow]untrained weights: parity is exact-computation checking; decisions sit near 0.5[/yellow]")
    console.print(_parity_table(results))
    unavailable = _unavailable_table(results)
    if unavailable is not None:
        console.print(unavailable)
    for r in results:
        where = f"{r.artifact} on {r.target}" + (f" ({r.variant})" if r.variant else "")
        if r.verdict in ("fail", "error"):
            console.print(f"[bold red]{r.verdict}[/bold red] {where}: {r.reason}", highlight=False, soft_wrap=True)
        for note in r.notes:
            console.print(f"[yellow]note[/yellow] {where}: {note}", highlight=False, soft_wrap=True)
    path = write_parity_report(model_dir, parity_report(results, ctx, environment()))
    counts = {v: sum(r.verdict == v for r in results) for v in ("pass", "fail", "error", "unavailable")}
    console.print(", ".join(f"{n} {v}" for v, n in counts.items()) + f"; wrote {path}", highlight=False)
    if counts["fail"] or counts["error"]:
        raise typer.Exit(code=1)


# --- bench, bench-check (bench/latency.py, bench/bench_sweep.py, bench/bench_check.py) ---


def _csv_list(value: str | None, cast=str) -> tuple | None:
    return None if value is None else tuple(cast(part.strip()) for part in value.split(",") if part.strip())


def _bench_table(rows: list) -> Table:
    from bench.bench_results import sorted_rows

    table = Table(title="Latency per call (sorted by batch, then p50); speedup vs torch fp32 eager in this run")
    for column in ("artifact", "target", "variant", "batch", "p50 ms", "p90 ms", "CV", "img/s", "speedup", "load s",
                   "peak RSS MB", "precision", "status"):
        table.add_column(column, overflow="fold")
    for row in sorted_rows(rows):
        if row.status.startswith("unavailable"):
            continue
        s = row.stats
        cells = [f"{s.p50_ms:.2f}", f"{s.p90_ms:.2f}", f"{s.cv:.1%}", f"{s.throughput_ips:.1f}",
                 f"{row.speedup:.2f}x" if row.speedup else "-", f"{s.load_s:.2f}", f"{s.peak_rss_mb:.0f}"] if s else ["-"] * 7
        status = "[green]ok[/green]" if row.ok else f"[red]{row.status}[/red]"
        table.add_row(row.artifact, target_display(row.target), row.variant or "-", str(row.batch), *cells,
                      row.session.get("precision") or "-", status)
    return table


def _bench_progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]bench[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


@app.command()
def bench(
    artifacts: Path = ArtifactsOpt, model: str | None = ModelOpt, arch: str = ArchOpt, weights: str = WeightsOpt,
    out: Path | None = typer.Option(None, "--out", help="output folder (default: artifacts/<model>/bench)"),
    batch: str | None = typer.Option(None, "--batch", help="batch sizes, comma-separated (default: 1,8,32; --quick: 1)"),
    threads: int | None = typer.Option(None, "--threads", help="intra-op threads (default: physical cores)"),
    hint: str = typer.Option("latency", "--hint", help="OpenVINO performance hints, comma-separated: latency,throughput"),
    openvino_precision: str | None = typer.Option(None, "--openvino-precision", help="f32|bf16|f16 (default: device default)"),
    ort_opt: str = typer.Option("all", "--ort-opt", help="onnxruntime graph optimization levels: disable,basic,extended,all"),
    torch_variants: str | None = typer.Option(None, "--torch-variants", help="eager,compile,cudagraphs (--quick: eager)"),
    artifact: str | None = typer.Option(None, "--artifact", help="artifact ids to measure, comma-separated (default: all)"),
    target: str | None = typer.Option(None, "--target", help="targets, comma-separated (default: every available one)"),
    min_time: float | None = typer.Option(None, "--min-time", help="seconds of measured iterations per row (3; --quick 1)"),
    warmup: float | None = typer.Option(None, "--warmup", help="seconds of warm-up per row (1; --quick 0.5)"),
    min_iterations: int | None = typer.Option(None, "--min-iterations", help="minimum measured iterations per row (5)"),
    row_timeout: float = typer.Option(900.0, "--row-timeout", help="seconds before a row's worker is killed"),
    quick: bool = typer.Option(False, "--quick", help="batch 1, short timing, every available target (what make export-all runs)"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="write the PNG plots"),
) -> None:
    """Measure latency, throughput and memory of every artifact on every available target (one process per row)."""
    import dataclasses
    import os

    from bench.bench_results import write_report
    from bench.bench_sweep import BenchConfig, run_bench
    from bench.latency import TimingOptions

    model_dir = _model_dir(artifacts, model, arch)
    base = BenchConfig.quick() if quick else BenchConfig()
    timing = TimingOptions(min_time_s=base.timing.min_time_s if min_time is None else min_time,
                           warmup_s=base.timing.warmup_s if warmup is None else warmup,
                           min_iterations=base.timing.min_iterations if min_iterations is None else min_iterations)
    config = dataclasses.replace(
        base, timing=timing, threads=threads, row_timeout_s=row_timeout, openvino_precision=openvino_precision,
        batches=_csv_list(batch, int) or base.batches, openvino_hints=_csv_list(hint), ort_optimizations=_csv_list(ort_opt),
        torch_variants=_csv_list(torch_variants) or base.torch_variants,
        artifacts=_csv_list(artifact) or base.artifacts, targets=_csv_list(target) or base.targets)
    from bench.bench_sweep import load_average

    load, cores = load_average(), os.cpu_count() or 1
    if load and load[0] > 0.5 * cores:
        console.print(f"[yellow]busy machine: load average {load[0]:.2f} on {cores} cores; latencies will be inflated "
                      "(recorded in bench.json)[/yellow]", highlight=False)
    with _bench_progress() as progress:
        task = progress.add_task("planning", total=None)

        def on_row(done: int, total: int, job, row) -> None:
            label = f"{job.artifact_id} @ {job.target} [{job.variant}] batch {job.batch}"
            progress.update(task, total=total, completed=done, description=label if row is None else f"done {label}")
            if row is not None and not row.ok:
                progress.console.print(f"[red]{label}: {row.status}[/red]", highlight=False)

        report_ = run_bench(model_dir, spec_for(arch), weights, config, on_row)
    written = write_report(report_, out or model_dir / "bench", plots=plots)
    wide = console if console.is_terminal or console.width >= 150 else Console(width=160)  # logs: no 80-column wrap
    wide.print(_bench_table(report_.rows))
    for row in report_.rows:
        if row.status.startswith("unavailable"):
            where = row.artifact if row.target == "-" else f"{row.target} ({row.artifact})"
            wide.print(f"[yellow]{where}[/yellow]: {row.status}", highlight=False)
    wide.print("wrote " + ", ".join(str(p) for p in written.values()), highlight=False)
    if report_.errors:
        console.print(f"[bold red]{len(report_.errors)} row(s) failed[/bold red]")
        raise typer.Exit(code=1)


@app.command("bench-check")
def bench_check_command(
    artifacts: Path = ArtifactsOpt, model: str | None = ModelOpt, arch: str = ArchOpt, weights: str = WeightsOpt,
    seconds: float = typer.Option(10.0, "--seconds", "-t", help="measured seconds per side and round"),
    rounds: int = typer.Option(3, "--rounds", help="alternate vitship / benchmark_app this many times (medians compared)"),
    threads: int | None = typer.Option(None, "--threads", help="inference threads (default: physical cores)"),
    tolerance: float = typer.Option(0.10, "--tolerance", help="largest accepted |vitship p50 / benchmark_app median - 1|"),
) -> None:
    """Honesty check: vitship's p50 for openvino-fp16 (CPU, batch 1, latency hint) vs OpenVINO benchmark_app's median."""
    import subprocess

    from bench.bench_check import CheckOptions, bench_check, find_artifact

    model_dir = _model_dir(artifacts, model, arch)
    options = CheckOptions(seconds=seconds, rounds=rounds, threads=threads, tolerance=tolerance)
    if find_artifact(model_dir, options.artifact) is None:
        console.print(f"{options.artifact} is missing in {model_dir}: exporting it first", highlight=False)
        subprocess.run([sys.executable, "-m", "bench.cli", "export", "--format", "openvino", "--precision", "fp16",
                        "--weights", weights, "--arch", arch, "--artifacts", str(artifacts)], check=True)
    with console.status(f"measuring {options.artifact} with vitship and benchmark_app ({rounds} x 2 x {seconds:.0f} s)"):
        result = bench_check(model_dir, spec_for(arch), options)
    for index, entry in enumerate(result.rounds, 1):
        app = entry["benchmark_app"]
        console.print(f"round {index}: vitship p50 {entry['vitship_p50_ms']:.3f} ms ({entry['vitship_iterations']} it), "
                      f"benchmark_app median {app['median_ms']:.3f} ms ({app.get('count')} it)", highlight=False)
    console.print(f"settings: {result.settings}", highlight=False)
    console.print(f"benchmark_app: {result.rounds[-1]['benchmark_app']['command']}", highlight=False, soft_wrap=True)
    for note in result.notes:
        console.print(f"[red]not like for like: {note}[/red]", highlight=False)
    verdict = "[green]PASS[/green]" if result.passed else "[bold red]FAIL[/bold red]"
    console.print(f"vitship p50 {result.vitship_p50_ms:.3f} ms, benchmark_app median {result.benchmark_app_median_ms:.3f} ms, "
                  f"ratio {result.ratio:.3f} (tolerance ±{tolerance:.0%}): {verdict}", highlight=False)
    if not result.passed:
        raise typer.Exit(code=1)


def main() -> None:
    """Entry point: domain errors become one red line and a non-zero exit (tracebacks with --debug)."""
    import click

    try:
        code = app(standalone_mode=False)  # non-standalone click returns typer.Exit's code instead of exiting
        if isinstance(code, int) and code:
            sys.exit(code)
    except VitshipError as err:
        if _state["debug"]:
            traceback.print_exc()
        err_console.print(f"[bold red]error:[/bold red] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)
    except click.exceptions.Abort:
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted; finished work is kept, partial writes were discarded[/yellow]")
        sys.exit(130)
    except Exception as err:  # an unexpected bug: still one line unless --debug
        if _state["debug"]:
            traceback.print_exc()
        err_console.print(f"[bold red]internal error:[/bold red] {type(err).__name__}: {err} (rerun with --debug for the traceback)",
                          highlight=False, soft_wrap=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
