"""What a report shows, in order, as plain text pieces: report.md and the report.html template both render this view.

Nothing here is markup; escaping is the renderer's job (Jinja2 autoescapes report.html).
"""

from __future__ import annotations

from vitship.bench.report.plots import PLOT_FILES
from vitship.bench.report.tables import accuracy_table, merged_tables, results_tables

MISSING_PLOT_REASONS = {
    "latency_vs_size": "latency against size: no batch-1 latency with a known artifact size",
    "pareto": "accuracy delta against latency: needs vitship eval and batch-1 latency",
    "throughput_vs_batch": "throughput against batch: needs two or more batch sizes (vitship bench --batch 1,8,32)",
}


def is_merged(document: dict) -> bool:
    return document.get("kind") != "vitship-report"


def missing_plots(document: dict) -> list[str]:
    """A line for each plot the data did not allow, saying what would make it."""
    if is_merged(document):
        return []
    made = document["sections"].get("plots") or []
    return [f"not plotted: {text}" for name, text in MISSING_PLOT_REASONS.items() if PLOT_FILES[name] not in made]


def unavailable_lines(document: dict) -> list[str]:
    targets = (document.get("sections") or {}).get("unavailable_targets") or {}
    return [f"{target}: {reason}" for target, reason in targets.items()]


def meta_lines(document: dict) -> list[str]:
    weights = document.get("weights") or {}
    lines = [f"run {document['run_id']}, created {document.get('created')}",
             f"weights: {weights.get('source', '?')} ({weights.get('kind', '?')}), sha256 {weights.get('sha256', '?')}, "
             f"{'trained' if document.get('trained') else 'untrained'}"]
    env = document.get("environment")
    if env:
        cpu = env.get("cpu") or {}
        gpus = ", ".join(g.get("name", "?") for g in env.get("gpus") or []) or "no GPU"
        lines.append(f"machine: {env.get('hostname')}: {cpu.get('model')}, {cpu.get('physical_cores')} cores, "
                     f"{env.get('memory_gib')} GiB, {gpus}, {env.get('os')}, Python {env.get('python')}")
    for machine in document.get("machines") or []:
        lines.append(f"machine: {machine['label']} (run {machine['run_id']}, environment {machine['key']})")
    return lines + list(document.get("notes") or [])


def accuracy_lines(document: dict) -> list[str]:
    if is_merged(document):
        return []
    section = (document.get("sections") or {}).get("accuracy")
    if not section:
        return ["accuracy: not run (vitship eval --data DIR)"]
    data = section.get("data") or {}
    lines = [f"accuracy on {data.get('source')}: {data.get('n_images')} images ({data.get('n_real')} real, "
             f"{data.get('n_fake')} fake), threshold {section.get('threshold')}; "
             f"{data.get('n_skipped', 0)} unreadable images skipped"]
    lines += [f"skipped: {item['reason'] if item['reason'].startswith(item['path']) else item['path'] + ': ' + item['reason']}"
              for item in (data.get("skipped") or [])[:20]]
    return lines + ([section["note"]] if section.get("note") else [])


def source_lines(document: dict) -> list[str]:
    sources = (document.get("sections") or {}).get("sources") or {}
    return [f"{name}: {s['status']} ({s['path']})" for name, s in sources.items()]


def build_view(document: dict) -> dict:
    """Everything the page shows, top to bottom."""
    merged = is_merged(document)
    return {
        "title": f"vitship {'merged ' if merged else ''}report {document['run_id']}",
        "banner": document.get("banner") or "",
        "meta": meta_lines(document),
        "decisions": (document.get("sections") or {}).get("decisions") or [],
        "unavailable": unavailable_lines(document),
        "tables": merged_tables(document) if merged else results_tables(document),
        "accuracy_table": accuracy_table(document),
        "notes": accuracy_lines(document) + source_lines(document),
        "missing_plots": missing_plots(document),
        "plots": document["sections"].get("plots") or [],
    }
