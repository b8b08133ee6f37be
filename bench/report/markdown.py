"""report.md and report.csv from a report document (report.md renders the same view as report.html)."""

from __future__ import annotations

import csv
import io

from vitship.bench.report.cells import FamilyDecision, LatencyCell, ReportRow, Roofline
from vitship.bench.report.profile_section import SECTION_TITLE
from vitship.bench.report.schema import MergedReport, Report
from vitship.bench.report.tables import Table
from vitship.bench.report.view import build_view, is_merged

CSV_FIELDS = ("artifact", "target", "variant", "batch", "size_bytes", "parity_verdict", "parity_metric", "parity_value",
              "latency_status", "latency_reason", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips", "speedup",
              "gflops", "percent_of_peak", "accuracy", "accuracy_delta_points", "agreement", "accuracy_target")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_lines(table: Table) -> list[str]:
    out = ["| " + " | ".join(table.headers) + " |", "|" + "---|" * len(table.headers)]
    out += ["| " + " | ".join(_cell(c) for c in line) + " |" for line in table.lines]
    return out + [""] + [f"{note}" for note in table.notes] + ([""] if table.notes else [])


def decision_lines(decision: FamilyDecision) -> list[str]:
    out = [f"### {decision.title}", "", f"**{decision.sentence}**", ""]
    if decision.runner_up_sentence:
        out.append(f"- Runner-up: {decision.runner_up_sentence}")
    if decision.input_form:
        out.append(f"- {decision.input_form}")
    out.append(f"- Chosen by: {decision.basis}")
    out += [f"- Not verified on this machine: {what}" for what in decision.not_verified]
    if decision.verify_command:
        out.append(f"- To verify on the device: {decision.verify_command}; then {decision.merge_command}")
    out += [f"- Avoid {item.artifact} ({item.target}): {item.reason}" for item in decision.avoid]
    return out + [""]


def profile_lines(view) -> list[str]:
    """The "Where the time goes" section: each profiled artifact's part table, notes and stacked bar."""
    out = [f"## {SECTION_TITLE}", ""] + [f"- {line}" for line in view.profile_meta] + [""]
    for profiled in view.profile:
        out += [f"**{profiled.title}**", ""] + (table_lines(profiled.table) if profiled.table else [])
        out += [f"![{profiled.plot}]({profiled.plot})", ""] if profiled.plot else []
    if view.not_profiled:
        out += ["Not profiled:", ""] + [f"- {line}" for line in view.not_profiled] + [""]
    return out


def to_markdown(document: Report | MergedReport) -> str:
    view = build_view(document)
    out = [f"# {view.title}", ""]
    if view.banner:
        out += [f"> **{view.banner}**", ""]
    out += [f"- {line}" for line in view.meta] + [""]
    out += ["## Decision per device family", ""]
    for decision in view.decisions:
        out += decision_lines(decision)
    if view.unavailable:
        out += ["Not available on this machine:", ""] + [f"- {line}" for line in view.unavailable] + [""]
    out += ["## Results", ""]
    for table in view.tables:
        out += [f"**{table.title}**", ""] + table_lines(table)
    if view.accuracy_table:
        out += [f"## {view.accuracy_table.title}", ""] + table_lines(view.accuracy_table)
    out += profile_lines(view)
    out += ["## Notes and sources", ""] + [f"- {line}" for line in view.notes + view.missing_plots] + [""]
    out += [f"![{name}]({name})" for name in view.plots]
    return "\n".join(out) + "\n"


def _row_records(row: ReportRow):
    """One CSV record per latency cell of ``row`` (one 'not run' record when it has none)."""
    base = {"artifact": row.artifact, "target": row.target, "variant": row.variant, "size_bytes": row.size_bytes,
            "parity_verdict": str(row.parity.status), "parity_metric": row.parity.metric, "parity_value": row.parity.value,
            "accuracy": row.accuracy.accuracy, "accuracy_delta_points": row.accuracy.delta_points,
            "agreement": row.accuracy.agreement, "accuracy_target": row.accuracy.target}
    for cell in row.latency or [LatencyCell()]:
        roofline = cell.roofline or Roofline()
        yield base | {"batch": "" if cell.batch is None else cell.batch, "latency_status": str(cell.status),
                      "latency_reason": cell.reason, "gflops": roofline.gflops, "percent_of_peak": roofline.percent_of_peak,
                      "p50_ms": cell.p50_ms, "p90_ms": cell.p90_ms, "p99_ms": cell.p99_ms, "mean_ms": cell.mean_ms,
                      "throughput_ips": cell.throughput_ips, "speedup": cell.speedup}


def to_csv(document: Report | MergedReport) -> str:
    """One line per (artifact, target, variant, batch); a merged report writes its per-machine table."""
    buffer = io.StringIO()
    if is_merged(document):
        writer = csv.writer(buffer)
        tables = build_view(document).tables
        writer.writerow(["group"] + (tables[0].headers if tables else []))
        writer.writerows([table.title] + line for table in tables for line in table.lines)
        return buffer.getvalue()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for row in document.rows:
        writer.writerows(_row_records(row))
    return buffer.getvalue()
