"""vitship compat-check: every ONNX and OpenVINO artifact in the oldest supported runtimes (a throwaway venv)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from vitship.bench.commands.common import ArchOpt, ArtifactsOpt, ModelOpt, console, model_dir_option, number_option, wide_console
from vitship.models import spec_for
from vitship.models.status import Status


def _table(report) -> Table:
    old, new = report.old_versions, report.current_versions
    table = Table(title="Oldest supported runtimes vs the current ones, same artifact, same inputs (one image per call)")
    for column in ("artifact", "runtime", "oldest", "current", "min feature cosine", "max prob error", "status"):
        table.add_column(column, overflow="fold")
    for row in report.rows:
        status = f"[green]{row.status}[/green]" if row.status is Status.PASS else f"[red]{row.status}: {row.reason}[/red]"
        table.add_row(row.artifact, row.runtime, old.get(row.runtime, "-"), new.get(row.runtime, "-"),
                      "-" if row.min_cosine is None else f"{row.min_cosine:.6f}",
                      "-" if row.max_prob_err is None else f"{row.max_prob_err:.2g}", status)
    return table


def compat_check_command(
    artifacts: Path = ArtifactsOpt, model: str | None = ModelOpt, arch: str = ArchOpt,
    onnxruntime: str | None = typer.Option(None, "--onnxruntime", help="oldest onnxruntime to check (default 1.16.3)"),
    openvino: str | None = typer.Option(None, "--openvino", help="oldest OpenVINO to check (default 2024.0.0)"),
    venv: Path | None = typer.Option(None, "--venv", help="keep (or reuse) the old-runtime venv here instead of a temporary one"),
    photos: int = number_option(4, "--photos", at_least=1, help="bundled photos to run (plus one random input)"),
) -> None:
    """Load every ONNX and OpenVINO artifact in onnxruntime 1.16 / OpenVINO 2024.0 (from PyPI) and compare outputs."""
    import numpy as np

    from vitship.bench.compat import OLDEST, compat_check
    from vitship.models import preprocess, sample_images

    model_dir = model_dir_option(artifacts, model, arch)
    spec = spec_for(arch)
    noise = np.random.default_rng(0).uniform(-1, 1, size=(1, *spec.input_shape)).astype(np.float32)
    pixels = np.concatenate([preprocess(sample_images(photos), spec), noise])
    versions = {"onnxruntime": onnxruntime or OLDEST["onnxruntime"], "openvino": openvino or OLDEST["openvino"]}
    with console.status("compat-check") as status:
        report = compat_check(model_dir, pixels, versions, venv, progress=lambda m: status.update(m))
    wide_console().print(_table(report))
    old, new = report.old_versions, report.current_versions
    console.print(f"oldest: onnxruntime {old.get('onnxruntime', '-')}, openvino {old.get('openvino', '-')} "
                  f"(Python {old.get('python')}, numpy {old.get('numpy')}); current: onnxruntime "
                  f"{new.get('onnxruntime', '-')}, openvino {new.get('openvino', '-')} (numpy {new.get('numpy')})",
                  highlight=False)
    if not report.passed:
        console.print("[bold red]compat-check failed[/bold red]")
        raise typer.Exit(code=1)
    console.print(f"[green]compat-check passed: {len(report.rows)} artifact/runtime pairs[/green]")
