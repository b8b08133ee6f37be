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
    choices,
    console,
    list_option,
    model_dir_option,
    number_option,
    wide_console,
)
from vitship.bench.latency.sweep import QUICK_ARTIFACTS, QUICK_TARGETS, SKIPPED_BY_DEFAULT, BenchConfig, TimingOptions
from vitship.bench.report.sources import target_display
from vitship.bench.rows import unavailable_by_target
from vitship.models import spec_for
from vitship.models.status import Status


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
        status = f"[green]{row.status}[/green]" if row.ok else f"[red]{row.status}: {row.reason}[/red]"
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


def _warn_if_busy(recorded_in: str = "bench.json") -> None:
    import os

    from vitship.bench.latency.sweep import load_average

    load, cores = load_average(), os.cpu_count() or 1
    if load and load[0] > 0.5 * cores:
        console.print(f"[yellow]busy machine: load average {load[0]:.2f} on {cores} cores; latencies will be inflated "
                      f"(recorded in {recorded_in})[/yellow]", highlight=False)


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


_FULL, _QUICK = TimingOptions(), BenchConfig.quick().timing
QUICK_HELP = (f"batch 1, torch eager, short timing ({_QUICK.warmup_s:g} s warm-up, {_QUICK.min_time_s:g} s measured), and fixed "
              f"lists (QUICK_ARTIFACTS, QUICK_TARGETS in bench/latency/sweep.py), not every target: the artifacts "
              f"{', '.join(QUICK_ARTIFACTS)}, each on those of {', '.join(QUICK_TARGETS)} that run it and are available "
              "(what make export-all runs; --artifact/--target replace the lists)")
TARGET_HELP = (f"targets (default: every available one except {' and '.join(SKIPPED_BY_DEFAULT)}, measured only when named; "
               "--quick: its list)")


def _valid(name: str):
    """The accepted values of one BenchConfig choice (imported only when the option is given)."""

    def names() -> tuple[str, ...]:
        from vitship.bench.latency.sweep import option_choices

        return option_choices()[name]

    return names


def bench(
    artifacts: Path = ArtifactsOpt, model: str | None = ModelOpt, arch: str = ArchOpt, weights: str = WeightsOpt,
    out: Path | None = typer.Option(None, "--out", help="output folder (default: artifacts/<model>/bench)"),
    batch: list[str] = list_option("--batch", item="N", numbers=True, help="batch sizes (default: 1,8,32; --quick: 1)"),
    threads: int | None = number_option(None, "--threads", at_least=1, help="intra-op threads (default: physical cores)"),
    hint: list[str] = list_option("--hint", item="HINT", valid=_valid("openvino_hints"),
                                  help="OpenVINO performance hints: latency, throughput (default: latency)"),
    openvino_precision: str | None = typer.Option(None, "--openvino-precision", help="f32|bf16|f16 (default: device default)"),
    ort_opt: list[str] = list_option("--ort-opt", item="LEVEL", valid=_valid("ort_optimizations"),
                                     help="onnxruntime graph optimization levels: disable, basic, extended, all (default: all)"),
    torch_variants: list[str] = list_option("--torch-variants", item="VARIANT", valid=_valid("torch_variants"),
                                            help="PyTorch rows: eager, compile, cudagraphs (default: eager and compile on CPU, "
                                                 "all three on CUDA; --quick: eager)"),
    artifact: list[str] = list_option("--artifact", item="ID", help="artifact ids to measure (default: every artifact in the manifest and "
                                                                     "torch-fp32; --quick: its list)"),
    target: list[str] = list_option("--target", item="TARGET", help=TARGET_HELP),
    min_time: float | None = number_option(None, "--min-time", above=0,
                                           help=f"seconds of measured iterations per row ({_FULL.min_time_s:g}; --quick "
                                                f"{_QUICK.min_time_s:g})"),
    warmup: float | None = number_option(None, "--warmup", at_least=0, help=f"seconds of warm-up per row ({_FULL.warmup_s:g}; --quick {_QUICK.warmup_s:g})"),
    min_iterations: int | None = number_option(None, "--min-iterations", at_least=1,
                                               help=f"minimum measured iterations per row ({_FULL.min_iterations})"),
    row_timeout: float = number_option(900.0, "--row-timeout", above=0, help="seconds before a row's worker is killed"),
    quick: bool = typer.Option(False, "--quick", help=QUICK_HELP),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="write the PNG plots"),
) -> None:
    """Measure latency, throughput and memory of every artifact on every available target (one process per row).

    Writes bench.json, bench.csv, bench.md and PNG plots to artifacts/<model>/bench/ (or --out); exits 1 if a row failed.
    """
    import dataclasses

    from vitship.bench.latency.results import write_report
    from vitship.bench.latency.sweep import BenchConfig, option_choices

    valid = option_choices()
    options = {"openvino_hints": tuple(hint), "ort_optimizations": tuple(ort_opt), "torch_variants": tuple(torch_variants),
               "batches": tuple(batch), "artifacts": tuple(artifact), "targets": tuple(target)}
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
