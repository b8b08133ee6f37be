"""vitship parity: every artifact on every target against the PyTorch fp32 reference."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from vitship.bench.commands.common import (
    ArchOpt,
    ModelOpt,
    console,
    list_option,
    model_dir_option,
    number_option,
    row_progress,
)
from vitship.bench.parity.plan import NAMED_ONLY, ONE_IMAGE
from vitship.bench.parity.results import BatchConsistency, ParityResult, write_parity_report
from vitship.bench.parity.sweep import ParityRequest, run_parity
from vitship.bench.rows import unavailable_by_target
from vitship.models.judgement import Metrics
from vitship.models.status import Status


def _parity_agreement(metrics: Metrics | None) -> str:
    if metrics is None or metrics.agreement is None:
        return "-"
    text = "-" if metrics.decisive_agreement is None else f"{metrics.decisive_agreement:.1%}"
    text += f" of {metrics.n_photos - metrics.n_ambiguous} decisive"
    if metrics.n_ambiguous:
        text += f"\n{metrics.n_ambiguous} ambiguous, {metrics.ambiguous_flips} flipped"
    return text


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _consistency(consistency: BatchConsistency | None) -> str:
    if consistency is None:
        return "-"
    verdict = "[red]inconsistent[/red]" if consistency.status.failed else str(consistency.status)
    return f"{verdict}\nΔlogit {consistency.metrics.max_abs_logit:.1e}"


def _parity_table(results: list[ParityResult]) -> Table:
    """The rows that ran (pass, fail, error), one per line; unavailable ones go to _unavailable_table."""
    table = Table(title="Parity against the PyTorch fp32 reference (batch 1 and batch 8, a one-image program batch 1; "
                        "photos + random tensors; fp16/int8 figures are on the photos, random tensors held to a cosine "
                        "floor; image-input artifacts: decoded photos + random frames against PyTorch on Pillow's "
                        "preprocessing)")
    for column in ("artifact", "target", "runtime precision", "min cosine", "max abs logit err", "p99 abs logit err",
                   "max prob err", "agreement", "batch consistency", "status"):
        table.add_column(column, overflow="fold")
    colours = {Status.PASS: "green", Status.FAIL: "bold red", Status.ERROR: "bold red"}
    for r in (r for r in results if r.status is not Status.UNAVAILABLE):
        m = r.metrics
        numbers = [_number(m.min_cosine, ".6f"), _number(m.max_abs_logit, ".2e"), _number(m.p99_abs_logit, ".2e"),
                   _number(m.max_prob_err, ".2e")] if m else ["-"] * 4
        consistent = _consistency(r.batch_consistency)
        if r.inputs == "frames":  # end to end: decoded photos, the artifact's own resize and crop, one per call
            consistent = "frames, end to end\n(own sizes, batch 1)"
        target = r.target + (f"\n({r.note})" if r.note else "")
        table.add_row(r.artifact, target, r.precision_label or "-", *numbers, _parity_agreement(m),
                      consistent, f"[{colours[r.status]}]{r.status}[/]" + _export_gate(r))
    return table


def _export_gate(row) -> str:
    """An int8 the export's gate did not pass says so under its parity status ("export gate: not checked")."""
    if row.export_gate is None or row.export_gate is Status.PASS:
        return ""
    return f"\n[yellow]export gate: {row.export_gate}[/yellow]"


def _unavailable_table(results: list) -> Table | None:
    """Rows that could not be checked here, one line per (target, reason) with the artifacts it concerns."""
    grouped = unavailable_by_target(results)
    if not grouped:
        return None
    table = Table(title="Unavailable here (not checked, not passed)")
    for column in ("target", "artifacts", "status"):
        table.add_column(column, overflow="fold")
    for (target, reason), artifacts in grouped.items():
        table.add_row(target, ", ".join(artifacts), f"[yellow]{Status.UNAVAILABLE}[/yellow]: {reason}")
    return table


def _print_results(report) -> None:
    if report.untrained_weights:
        console.print("[yellow]untrained weights: parity is exact-computation checking; decisions sit near 0.5[/yellow]")
    console.print(_parity_table(report.rows))
    unavailable = _unavailable_table(report.rows)
    if unavailable is not None:
        console.print(unavailable)
    one_image = []  # one line for them all, not a note per row (parity.json keeps each row's note)
    for r in report.rows:
        where = r.key.label()
        if r.status.failed:
            console.print(f"[bold red]{r.status}[/bold red] {where}: {r.reason}", highlight=False, soft_wrap=True)
        for note in r.notes:
            if ONE_IMAGE in note:
                one_image.append(where)
                continue
            console.print(f"[yellow]note[/yellow] {where}: {note}", highlight=False, soft_wrap=True)
    if one_image:
        console.print(f"[yellow]note[/yellow] ran at batch 1 alone: each {ONE_IMAGE}, so a larger batch would repeat the "
                      f"same calls: {', '.join(one_image)}", highlight=False, soft_wrap=True)


def parity(
    artifacts: Path = typer.Option(Path("artifacts"), "--artifacts", help="artifacts/ (with --model) or one model folder artifacts/<model>"),
    model: str | None = ModelOpt, arch: str = ArchOpt,
    weights: str | None = typer.Option(None, "--weights", "-w", help="reference weights (default: the source the manifest records; sha256 must match)"),
    artifact: list[str] = list_option("--artifact", item="ID", help="only these artifact ids; torch-fp16/torch-bf16 add "
                                      "PyTorch half-precision rows"),
    target: list[str] = list_option("--target", item="TARGET", help="only these targets, e.g. onnxruntime:cpu (default: "
                                    f"every target but {'; '.join(f'{t}: {why}' for t, why in NAMED_ONLY.items())})"),
    tolerances: Path | None = typer.Option(None, "--tolerances", help="JSON/TOML tolerance overrides, e.g. {\"int8\": {\"max_prob\": 0.06}}"),
    tolerance: list[str] = list_option("--tolerance", item="KEY.FIELD=VALUE", help="tolerance override, e.g. int8.max_prob=0.06"),
    threads: int | None = number_option(None, "--threads", at_least=1, help="runtime threads (default: physical cores)"),
    batch: list[str] = list_option("--batch", item="N", numbers=True, help="batch sizes (default: 1,8); the first and last "
                                   "are compared for batch consistency"),
    random_inputs: int = number_option(5, "--random-inputs", at_least=0, help="seeded random tensors added to the photos"),
    random_frames: int = number_option(6, "--random-frames", at_least=0, help="seeded random frames of odd sizes added to the "
                                       "decoded photos (image-input artifacts)"),
    data: Path | None = typer.Option(None, "--data", help="a folder of more photos to check beside the bundled ones"),
    torch_rows: bool = typer.Option(True, "--torch/--no-torch", help="also check the PyTorch model itself on every torch target"),
    row_timeout: float = number_option(1800.0, "--row-timeout", above=0, help="seconds before a row's worker is killed"),
) -> None:
    """Check every artifact on every available target against the PyTorch fp32 reference; write parity.json."""
    from vitship.bench.parity.run import ParityConfig
    from vitship.models.judgement import ToleranceTable

    sizes = batch or [1, 8]
    model_dir = artifacts if (artifacts / "manifest.json").is_file() else model_dir_option(artifacts, model, arch)
    table = ToleranceTable.from_file(tolerances) if tolerances else ToleranceTable()
    table.apply_cli(tolerance)
    config = ParityConfig(batch_sizes=tuple(sorted(set(sizes))), random_inputs=random_inputs, random_frames=random_frames,
                          data_dir=str(data) if data else None, row_timeout_s=row_timeout)
    with row_progress("parity") as progress:
        report = run_parity(model_dir, ParityRequest(weights, tuple(artifact), tuple(target), torch_rows, threads),
                            config, table, progress)
    _print_results(report)
    path = write_parity_report(model_dir, report)
    console.print(", ".join(f"{n} {s}" for s, n in report.summary().items()) + f"; wrote {path}", highlight=False)
    if report.failed:
        raise typer.Exit(code=1)
