"""The report's tables as plain text cells, shared by report.md, report.html and the terminal.

The results table is grouped by device family (families.table_group); each group is a ``Table``.
Reference-executor rows carry a mark and a note: their time is not a device time and never ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vitship.bench.report.cells import FAILING, LatencyCell, ReportRow
from vitship.bench.report.families import REFERENCE_TIME_NOTE, group_order, table_group
from vitship.bench.report.host import HostKind
from vitship.bench.report.schema import MergedReport, MergedRow, Report
from vitship.models.status import Status
from vitship.runtimes.base import target_display

REFERENCE_MARK = "†"
ACCURACY_METRICS = ("accuracy", "balanced_accuracy", "auroc", "average_precision", "f1")


@dataclass
class Table:
    title: str
    headers: list[str]
    lines: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def num(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def size(size_bytes) -> str:
    return "-" if not size_bytes else f"{size_bytes / 1e6:.1f} MB"


def parity_cell(row: ReportRow) -> str:
    parity = row.parity
    text = str(parity.status)
    if parity.metric is not None:
        text += f" ({parity.metric} {num(parity.value, 6)})"
    if parity.status in FAILING and parity.reason:
        text += f": {parity.reason}"
    return text + "".join(f"; {v.variant}: {v.status}" for v in parity.variants)


def latency_cell(row: ReportRow, field_name: str) -> str:
    """p50 or throughput at batch 1; a row that did not run shows its status in the p50 column."""
    cell = row.latency_at(1)
    if cell is None:
        return str(Status.NOT_RUN) if field_name == "p50_ms" else "-"
    if not cell.ok:
        return str(cell.status) if field_name == "p50_ms" else "-"
    mark = REFERENCE_MARK if row.reference_executor and field_name == "p50_ms" else ""
    return num(getattr(cell, field_name)) + mark


def speedup_cell(row: ReportRow) -> str:
    cell = row.latency_at(1) or LatencyCell()
    if row.reference_executor or not cell.ok or not cell.speedup:
        return "-"
    return f"{cell.speedup:.2f}x"


def roofline_cells(row: ReportRow) -> list[str]:
    """Achieved GFLOP/s and % of the attainable peak at the precision the row ran at ('-' when not measured)."""
    cell = row.latency_at(1)
    roofline = cell.roofline if cell is not None and cell.ok else None
    if roofline is None or roofline.gflops is None:
        return ["-", "-"]
    if roofline.percent_of_peak is None:  # a reference executor's row: GFLOP/s, but no machine peak it could be held to
        return [num(roofline.gflops), "-"]
    peak = f"{roofline.percent_of_peak:.0f}% of {num(roofline.peak_gflops)} {roofline.peak_precision or ''}".rstrip()
    return [num(roofline.gflops), peak]


def best_throughput(row: ReportRow) -> str:
    cells = [(c.throughput_ips, c.batch) for c in row.latency if c.ok and c.throughput_ips]
    if not cells:
        return "-"
    value, batch = max(cells, key=lambda item: item[0])
    return f"{num(value)} (b{batch})"


def accuracy_cell(row: ReportRow) -> str:
    accuracy = row.accuracy
    if accuracy.delta_points is None:
        return str(accuracy.status) if accuracy.status is not Status.OK else "-"
    return f"{accuracy.delta_points:+.2f}"


def _group_tables(pairs: list[tuple[ReportRow | MergedRow, list[str]]], headers: list[str]) -> list[Table]:
    groups: dict[str, Table] = {}
    for row, line in pairs:
        slug, title = (row.group, row.group_title) if row.group else table_group(row.key.target, HostKind.UNKNOWN)
        table = groups.setdefault(slug, Table(title, headers))
        table.lines.append(line)
        if row.reference_executor and not table.notes:
            table.notes.append(f"{REFERENCE_MARK} {REFERENCE_TIME_NOTE}: shown, never ranked")
    order = group_order()
    return [groups[slug] for slug in sorted(groups, key=lambda s: order.index(s) if s in order else len(order))]


def results_tables(document: Report) -> list[Table]:
    """One table per device family: one line per (artifact, target, variant) that ran or was tried here."""
    headers = ["artifact", "target", "size", "parity", "p50 ms (b1)", "speed-up vs torch eager", "img/s (b1)",
               "best img/s", "GFLOP/s (b1)", "% of peak", "accuracy Δ (pts)" if document.trained
               else "accuracy Δ (pts, not judged)", "agreement"]
    pairs = []
    for r in document.rows:
        if r.target in document.unavailable_targets or not r.target:  # listed once, with the reason, under the decisions
            continue
        agreement = r.accuracy.agreement
        pairs.append((r, [r.label(), target_display(r.target), size(r.size_bytes), parity_cell(r),
                          latency_cell(r, "p50_ms"), speedup_cell(r), latency_cell(r, "throughput_ips"), best_throughput(r),
                          *roofline_cells(r), accuracy_cell(r), "-" if agreement is None else f"{agreement:.1%}"]))
    return _group_tables(pairs, headers)


def merged_tables(document: MergedReport) -> list[Table]:
    """A column per machine (p50 at batch 1 with the speed-up, and parity), grouped by device family."""
    labels = [m.label for m in document.machines]
    pairs = []
    for r in document.rows:
        cells = []
        for label in labels:
            cell = r.cells.get(label)
            if cell is None:
                cells.append(str(Status.NOT_RUN))
            elif cell.status is Status.OK:
                mark = REFERENCE_MARK if r.reference_executor else ""
                speed = f" ({cell.speedup:.2f}x)" if cell.speedup and not r.reference_executor else ""
                cells.append(f"{num(cell.p50_ms)} ms{mark}{speed}, {cell.parity}")
            else:
                cells.append(f"{cell.status}, {cell.parity}")
        name = r.key.artifact + (f" ({r.key.variant})" if r.key.variant else "")
        pairs.append((r, [name, target_display(r.key.target) or "-"] + cells))
    return _group_tables(pairs, ["artifact", "target"] + labels)


def accuracy_table(document: Report | MergedReport) -> Table | None:
    """Per artifact on its eval target: each metric with its delta (points) against the reference."""
    section = document.accuracy if isinstance(document, Report) else None
    if section is None or not section.rows:
        return None
    table = Table("Accuracy (Δ in points against the PyTorch reference)",
                  ["artifact", "target", "status", "accuracy", "balanced acc.", "AUROC", "avg precision", "F1", "agreement"])
    for artifact, cell in section.rows.items():
        metrics, deltas = cell.metrics, cell.deltas
        cells = [("-" if metrics.get(n) is None else f"{metrics.get(n):.3f}")
                 + ("" if not deltas.get(n) else f" ({deltas.get(n):+.2f})") for n in ACCURACY_METRICS]
        agreement = "-" if cell.agreement is None else f"{cell.agreement:.1%}"
        table.lines.append([artifact, target_display(cell.target or "-"), str(cell.status), *cells, agreement])
    return table
