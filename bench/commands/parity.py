"""vitship parity: every artifact on every target against the PyTorch fp32 reference."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from vitship.bench.commands.common import ArchOpt, ModelOpt, console, model_dir_option


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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from vitship.bench.environment import environment
    from vitship.bench.parity.metrics import ToleranceError, ToleranceTable
    from vitship.bench.parity.run import (
        ParityConfig,
        check_row,
        load_reference,
        parity_report,
        prepare,
        select_rows,
        write_parity_report,
    )
    from vitship.runtimes import SessionOptions

    model_dir = artifacts if (artifacts / "manifest.json").is_file() else model_dir_option(artifacts, model, arch)
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
    plans = select_rows(model_dir, loaded, artifact, target, torch_rows, ctx.options)
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
