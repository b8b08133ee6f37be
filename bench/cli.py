"""The vitship command line (typer). The only module that knows typer and every package."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from models import VitshipError, load_weights, spec_for

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Ship the ViT deepfake detector: export, check parity, benchmark and report.")
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}

WEIGHTS_HELP = ("seeded[:N] (default, untrained), a transformers-format directory, a timm state dict "
                "(.safetensors/.pt) or hf:ORG/NAME@REVISION")
WeightsOpt = typer.Option("seeded", "--weights", "-w", help=WEIGHTS_HELP)
ArchOpt = typer.Option("vit_small_patch16_384", "--arch", help="architecture for seeded/state-dict weights (tiny: tests)")


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


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


# --- eval, report, compare (bench/accuracy.py, bench/report.py, bench/compare.py) ---

ArtifactsOpt = typer.Option(Path("artifacts"), "--artifacts", help="folder that holds <model-name>/manifest.json")
ModelOpt = typer.Option(None, "--model", help="model folder name under --artifacts (default: the only one, or --arch's)")


def _model_dir(artifacts: Path, model: str | None, arch: str) -> Path:
    """artifacts/<model>: the named one, else the only folder with a manifest, else the --arch spec's name."""
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
    from bench.accuracy import DatasetError, EvalOptions, evaluate, reference_model, write_eval

    model_dir = _model_dir(artifacts, model, arch)
    targets = {}
    for item in target:
        key, sep, value = item.partition("=")
        if not sep:
            raise DatasetError(f"--target {item!r}: expected ARTIFACT_OR_FORMAT=TARGET, e.g. onnx=onnxruntime:cpu")
        targets[key] = value
    loaded = reference_model(model_dir, weights, spec_for(arch))
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
    merge: list[Path] = typer.Option([], "--merge", help="merge these report.json files (one per machine) instead"),
    accuracy_threshold: float = typer.Option(0.5, "--accuracy-threshold", help="largest accepted accuracy drop, in points"),
) -> None:
    """Write the release report (JSON, Markdown, CSV, HTML with plots) and print its path last."""
    from bench.report import ReportOptions, build_report, merge_reports, read_report, write_report

    if merge:
        document = merge_reports([read_report(path) for path in merge])
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
