"""Plain-language pieces of the report: figures (ms, MiB, speed-up, parity metrics) and the decision sentences."""

from __future__ import annotations

import dataclasses

from vitship.bench.report.cells import NeuralEngine, ParityCell, Summary
from vitship.bench.report.families import REFERENCE_TARGETS, Role
from vitship.models.status import Status

METRIC_NAMES = {"min_cosine": "min feature cosine", "max_abs_logit": "max logit error",
                "max_prob_err": "max probability error", "agreement": "decision agreement"}


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"


def size(size_bytes: int | None) -> str:
    return "size unknown" if not size_bytes else f"{size_bytes / 1e6:.1f} MB"


def speedup(value: float | None) -> str:
    """'3.1x faster than PyTorch eager' (or slower), from baseline p50 / row p50."""
    if not value:
        return "no PyTorch eager baseline in this run"
    if value >= 1.0:
        return f"{value:.2f}x faster than PyTorch eager"
    return f"{1 / value:.2f}x slower than PyTorch eager"


def metric(parity: ParityCell) -> str:
    """'min feature cosine 0.99998' for a parity cell's key metric."""
    name, value = parity.metric, parity.value
    if name is None or value is None:
        return ""
    shown = _decimals(value) if name in ("min_cosine", "agreement") else f"{value:.2g}"
    return f"{METRIC_NAMES.get(name, name)} {shown}"


def _decimals(value: float) -> str:
    """0.99570 -> '0.9957', 1.0 -> '1.0000': six decimals at most, four at least."""
    whole, fraction = f"{value:.6f}".split(".")
    return f"{whole}.{fraction.rstrip('0').ljust(4, '0')}"


def parity_text(parity: ParityCell) -> str:
    where = parity.target
    details = [d for d in ("the reference executor" if where in REFERENCE_TARGETS else "", metric(parity)) if d]
    return f"parity {parity.status}" + (f" on {where}" if where else "") + (f" ({'; '.join(details)})" if details else "")


def neural_engine(candidate) -> str:
    """What the manifest records about the Neural Engine for a CoreML/ExecuTorch artifact."""
    apple = candidate.row.apple
    if apple is None:
        if candidate.format == "executorch":
            return "runs on the CPU (XNNPACK)" if "coreml" not in candidate.artifact else "Core ML delegate"
        return "Neural Engine eligibility not recorded (older manifest: re-export)"
    if apple.neural_engine is not NeuralEngine.ELIGIBLE:
        return f"not for the Neural Engine ({apple.neural_engine_reason or 'see the manifest'})"
    shapes = apple.batch_shapes
    batch = f"batch {shapes[0]}" if len(shapes) == 1 else f"batches {', '.join(map(str, shapes))}" if shapes else "batch ?"
    precision = apple.compute_precision or candidate.precision
    return f"Neural Engine eligible ({precision}, {apple.input or '?'} input, {batch})"


def minimum_os(candidate) -> str:
    target = str(candidate.apple.minimum_deployment_target or "")
    for prefix in ("iOS", "macOS"):
        if target.startswith(prefix) and target[len(prefix):].strip():
            return f"{prefix} {target[len(prefix):].strip()}+"
    return target


def where(candidate) -> str:
    variant = f" [{candidate.variant}]" if candidate.variant else ""
    machine = f" ({candidate.machine})" if candidate.machine else ""
    return f"{candidate.target}{variant}{machine}"


def summary(candidate, parity: ParityCell, judged: bool) -> Summary:
    """The figures of a pick or runner-up, as report.json stores them (the accuracy delta only where judged)."""
    return Summary(candidate.artifact, candidate.target, candidate.variant, candidate.machine, str(candidate.role),
                   candidate.p50 if candidate.ranks else None, candidate.batch,
                   candidate.cell.speedup if candidate.ranks else None, candidate.size_bytes,
                   dataclasses.replace(parity, metrics={}, variants=[]),
                   candidate.row.accuracy.delta_points if judged else None, candidate.row.apple)


def _timed_figures(candidate, pick: Summary) -> list[str]:
    figures = [f"p50 {ms(pick.p50_ms)} at batch {pick.batch}", speedup(pick.speedup), size(pick.size_bytes),
               parity_text(pick.parity)]
    if candidate.role is Role.PROXY:
        figures.append("timed with the same kernels on this host, not on the device")
    return figures


def _apple_figures(candidate, pick: Summary) -> list[str]:
    figures = [parity_text(pick.parity), neural_engine(candidate), size(pick.size_bytes)]
    return figures + ([minimum_os(candidate)] if minimum_os(candidate) else [])


def _accuracy(pick: Summary) -> list[str]:
    delta = pick.accuracy_delta_points
    return [] if delta is None else [f"accuracy {delta:+.2f} points against PyTorch"]


def export_gate(candidate) -> list[str]:
    """An int8 the export's gate did not pass says so wherever it is picked."""
    verdict = getattr(candidate.row, "int8_gate", None)
    return [] if verdict in (None, Status.PASS) else [f"int8 {verdict} by the export's int8 gate"]


def pick_sentence(candidate, pick: Summary, basis: str) -> str:
    if candidate.ranks:
        figures = _timed_figures(candidate, pick) + export_gate(candidate) + _accuracy(pick)
        return f"Ship {candidate.artifact} on {where(candidate)}: " + ", ".join(figures) + "."
    return (f"Ship {candidate.artifact}: " + ", ".join(_apple_figures(candidate, pick) + export_gate(candidate) + _accuracy(pick))
            + "; latency not measured on an Apple device.")


def runner_up_sentence(candidate, second: Summary, best) -> str:
    if candidate.ranks and best.ranks:
        ratio = candidate.p50 / best.p50
        return (f"{candidate.artifact} on {where(candidate)}: p50 {ms(candidate.p50)} ({ratio:.2f}x the pick's), "
                f"{speedup(second.speedup)}, {size(second.size_bytes)}, {parity_text(second.parity)}.")
    return f"{candidate.artifact}: " + ", ".join(_apple_figures(candidate, second)) + "."


def no_pick_sentence(family, family_rows: list) -> str:
    tries = ", ".join(f"{artifact} on {target}" for target, (artifact, _) in family.first_try.items())
    if not family_rows:
        return (f"No artifact for this family in the manifest (vitship export --format {family.formats[0]}); "
                f"then try {tries} first.")
    if not any(c.p50 is not None or c.parity.status in (Status.PASS, Status.FAIL, Status.ERROR) for c in family_rows):
        return f"Nothing of this family could run on this machine: try {tries} first."
    return "No artifact meets the rules here (see what to avoid and why)."
