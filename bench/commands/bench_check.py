"""vitship bench-check: vitship's p50 against OpenVINO benchmark_app's median."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from vitship.bench.commands.common import (
    ArchOpt,
    ArtifactsOpt,
    ModelOpt,
    WeightsOpt,
    console,
    model_dir_option,
    number_option,
)
from vitship.models import spec_for


def bench_check_command(
    artifacts: Path = ArtifactsOpt, model: str | None = ModelOpt, arch: str = ArchOpt, weights: str = WeightsOpt,
    seconds: float = number_option(10.0, "--seconds", "-t", above=0, help="measured seconds per side and round"),
    rounds: int = number_option(3, "--rounds", at_least=1,
                                help="alternate vitship / benchmark_app this many times (medians compared)"),
    threads: int | None = number_option(None, "--threads", at_least=1, help="inference threads (default: physical cores)"),
    tolerance: float = number_option(0.10, "--tolerance", above=0,
                                     help="largest accepted |vitship p50 / benchmark_app median - 1|"),
) -> None:
    """Honesty check: vitship's p50 for openvino-fp16 (CPU, batch 1, latency hint) vs OpenVINO benchmark_app's median."""
    import subprocess

    from vitship.bench.latency.honesty import CheckOptions, bench_check, find_artifact

    model_dir = model_dir_option(artifacts, model, arch)
    options = CheckOptions(seconds=seconds, rounds=rounds, threads=threads, tolerance=tolerance)
    if find_artifact(model_dir, options.artifact) is None:
        console.print(f"{options.artifact} is missing in {model_dir}: exporting it first", highlight=False)
        subprocess.run([sys.executable, "-P", "-m", "vitship.bench.cli", "export", "--format", "openvino", "--precision", "fp16",
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
