"""What a report shows, in order, as plain text pieces: report.md and the report.html template both render this view.

Nothing here is markup; escaping is the renderer's job (Jinja2 autoescapes report.html).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vitship.bench.report.cells import FamilyDecision
from vitship.bench.report.plots import PLOT_FILES
from vitship.bench.report.profile_section import ProfileView, not_profiled, profile_views, section_meta
from vitship.bench.report.schema import MergedReport, Report, WeightsInfo
from vitship.bench.report.tables import Table, accuracy_table, merged_tables, results_tables

MISSING_PLOT_REASONS = {
    "latency_vs_size": "latency against size: no batch-1 latency with a known artifact size",
    "pareto": "accuracy delta against latency: needs vitship eval and batch-1 latency",
    "throughput_vs_batch": "throughput against batch: needs two or more batch sizes (vitship bench --batch 1,8,32)",
}


@dataclass
class View:
    """Everything the page shows, top to bottom."""

    title: str
    banner: str
    meta: list[str]
    decisions: list[FamilyDecision]
    unavailable: list[str]
    tables: list[Table]
    accuracy_table: Table | None
    notes: list[str] = field(default_factory=list)
    missing_plots: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    profile: list[ProfileView] = field(default_factory=list)  # where the time goes, per profiled artifact
    profile_meta: list[str] = field(default_factory=list)  # how it was measured; or how to measure it
    not_profiled: list[str] = field(default_factory=list)


PROFILE_HINT = ("not profiled: vitship profile times each part (patch embedding, qkv, proj, fc1, fc2, attention, LayerNorm) "
                "with each runtime's own profiler")


def is_merged(document: Report | MergedReport) -> bool:
    return isinstance(document, MergedReport)


def missing_plots(document: Report | MergedReport) -> list[str]:
    """A line for each plot the data did not allow, saying what would make it."""
    if is_merged(document):
        return []
    return [f"not plotted: {text}" for name, text in MISSING_PLOT_REASONS.items() if PLOT_FILES[name] not in document.plots]


def unavailable_lines(document: Report | MergedReport) -> list[str]:
    targets = document.unavailable_targets if isinstance(document, Report) else {}
    return [f"{target}: {reason}" for target, reason in targets.items()]


def meta_lines(document: Report | MergedReport) -> list[str]:
    weights = WeightsInfo.of(document.weights)
    lines = [f"run {document.run_id}, created {document.created}",
             f"weights: {weights.source or '?'} ({weights.kind or '?'}), sha256 {weights.sha256 or '?'}, "
             f"{'trained' if weights.trained else 'untrained'}"]
    if isinstance(document, Report) and document.environment:
        host = document.host
        gpus = ", ".join(g.name for g in host.gpus) or "no GPU"
        lines.append(f"machine: {host.hostname}: {host.cpu.model}, {host.cpu.physical_cores} cores, "
                     f"{host.memory_gib} GiB, {gpus}, {host.os}, Python {host.python}")
    if isinstance(document, MergedReport):
        lines += [f"machine: {m.label} (run {m.run_id}, environment {m.key})" for m in document.machines]
        lines += document.notes
    return lines


def accuracy_lines(document: Report | MergedReport) -> list[str]:
    if is_merged(document):
        return []
    section = document.accuracy
    if section is None:
        return ["accuracy: not run (vitship eval --data DIR)"]
    data = section.data
    lines = [f"accuracy on {data.source}: {data.n_images} images ({data.n_real} real, "
             f"{data.n_fake} fake), threshold {section.threshold}; {data.n_skipped} unreadable images skipped"]
    lines += [f"unreadable: {item.reason if item.reason.startswith(item.path) else item.path + ': ' + item.reason}"
              for item in data.skipped[:20]]
    return lines + ([section.note] if section.note else [])


def source_lines(document: Report | MergedReport) -> list[str]:
    sources = document.sources if isinstance(document, Report) else {}
    return [f"{name}: {s.status} ({s.path})" for name, s in sources.items()]


def build_view(document: Report | MergedReport) -> View:
    """Everything the page shows, top to bottom."""
    merged = is_merged(document)
    return View(
        title=f"vitship {'merged ' if merged else ''}report {document.run_id}", banner=document.banner,
        meta=meta_lines(document), decisions=document.decisions, unavailable=unavailable_lines(document),
        tables=merged_tables(document) if merged else results_tables(document),
        accuracy_table=accuracy_table(document), notes=accuracy_lines(document) + source_lines(document),
        missing_plots=missing_plots(document), plots=document.plots, profile=profile_views(document),
        profile_meta=section_meta(document) if profile_views(document) else [PROFILE_HINT],
        not_profiled=not_profiled(document),
    )
