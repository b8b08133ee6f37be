"""vitship bench: latency, throughput and memory of every artifact on every target."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from vitship.bench.commands.common import (
    ArchOpt,
    ArtifactsOpt,
    ModelOpt,
    WeightsOpt,
    batch_sizes,
    choices,
    console,
    csv_list,
    model_dir_option,
    wide_console,
)
from vitship.bench.report.sources import target_display
from vitship.bench.rows import Status, unavailable_by_target
from vitship.models import spec_for


def _bench_table(rows: list) -> Table:
    from vitship.bench.latency.results import roofline_cell, sorted_rows

    table = Table(title="Latency per call (sorted by batch, then p50); speedup vs torch fp32 eager in this run")
    for column in ("artifact", "target", "variant", "batch", "p50 ms", "p90 ms", "CV", "img/s", "speedup", "load s",
                   "peak RSS MB", "precision", "GFLOP/s (% of peak)", "status"):
        table.add_column(column, overflow="fold")
    for row in sorted_rows(rows):
        if row.status is Status.UNAVAILABLE:
            continue
        s = row.stats
        cells = [f"{s.p50_ms:.2f}", f"{s.p90_ms:.2f}", f"{s.cv:.1%}", f"{s.throughput_ips:.1f}",
                 f"{row.speedup:.2f}x" if row.speedup else "-", f"{s.load_s:.2f}", f"{s.peak_rss_mb:.0f}"] if s else ["-"] * 7
        status = "[green]ok[/green]" if row.ok else f"[red]{row.status}: {row.reason}[/red]"
        table.add_row(row.artifact, target_display(row.target), row.variant or "-", str(row.batch), *cells,
                      row.session.get("precision") or "-", roofline_cell(row.roofline), status)
    return table


def _bench_progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("[bold]bench[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def _warn_if_busy() -> None:
    import os

    from vitship.bench.latency.sweep import load_average

    load, cores = load_average(), os.cpu_count() or 1
    if load and load[0] > 0.5 * cores:
        console.print(f"[yellow]busy machine: load average {load[0]:.2f} on {cores} cores; latencies will be inflated "
                      "(recorded in bench.json)[/yellow]", highlight=False)


def _run_with_progress(model_dir: Path, arch: str, weights: str, config):
    """run_bench with a progress bar; a failing row is printed as it happens."""
    from vitship.bench.latency.sweep import run_bench

    _warn_if_busy()
    with _bench_progress() as progress:
        task = progress.add_task("planning", total=None)

        def on_row(done: int, total: int, job, row) -> None:
            label = f"{job.artifact_id} @ {job.target} [{job.variant}] batch {job.batch}"
            progress.update(task, total=total, completed=done, description=label if row is None else f"done {label}")
            if row is not None and not row.ok:
                progress.console.print(f"[red]{label}: {row.status}: {row.reason}[/red]", highlight=False)

        return run_bench(model_dir, spec_for(arch), weights, config, on_row)


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

    from vitship.bench.latency.results import write_report
    from vitship.bench.latency.sweep import BenchConfig, option_choices

    valid = option_choices()
    options = {"openvino_hints": choices("--hint", csv_list(hint), valid["openvino_hints"]),
               "ort_optimizations": choices("--ort-opt", csv_list(ort_opt), valid["ort_optimizations"]),
               "torch_variants": choices("--torch-variants", csv_list(torch_variants), valid["torch_variants"]),
               "batches": batch_sizes("--batch", batch), "artifacts": csv_list(artifact), "targets": csv_list(target)}
    choices("--openvino-precision", (openvino_precision,) if openvino_precision else None, valid["openvino_precision"])
    model_dir = model_dir_option(artifacts, model, arch)
    base = BenchConfig.quick() if quick else BenchConfig()
    timing = dataclasses.replace(base.timing, **{k: v for k, v in (("min_time_s", min_time), ("warmup_s", warmup),
                                                                    ("min_iterations", min_iterations)) if v is not None})
    config = dataclasses.replace(base, timing=timing, threads=threads, row_timeout_s=row_timeout,
                                 openvino_precision=openvino_precision, **{k: v for k, v in options.items() if v})
    report_ = _run_with_progress(model_dir, arch, weights, config)
    written = write_report(report_, out or model_dir / "bench", plots=plots)
    wide = wide_console()
    wide.print(_bench_table(report_.rows))
    for (target, reason), ids in unavailable_by_target(report_.rows).items():
        where = ", ".join(ids) if target == "-" else f"{target} ({', '.join(ids)})"
        wide.print(f"[yellow]{where}[/yellow]: unavailable: {reason}", highlight=False)
    wide.print("wrote " + ", ".join(str(p) for p in written.values()), highlight=False)
    if report_.errors:
        console.print(f"[bold red]{len(report_.errors)} row(s) failed[/bold red]")
        raise typer.Exit(code=1)
