"""`vitship report --merge`: reports from many machines in one table, and one decision per family across them.

Each machine keeps its own rows (tagged with the machine's label), so that an Apple device's CoreML rows
rank the iOS family while this machine's rows still decide for Intel CPU (decide.py).
"""

from __future__ import annotations

import dataclasses

from vitship.bench.report.cells import ReportError, ReportRow
from vitship.bench.report.decide import DecisionOptions, decide
from vitship.bench.report.document import run_id
from vitship.bench.report.families import table_group
from vitship.bench.report.host import Host
from vitship.bench.report.schema import Machine, MachineCell, MergedReport, MergedRow, Report, WeightsInfo
from vitship.bench.rows import RowKey
from vitship.models.status import Status


def _machine(document: Report, taken: list[str]) -> Machine:
    label = document.host.label()
    label = label if label not in taken else f"{label} [{document.run_id}]"
    return Machine(label, document.host.key, document.run_id, document.environment, WeightsInfo.of(document.weights).sha256)


def _cell(row: ReportRow) -> MachineCell:
    batch1 = row.latency_at(1)
    if batch1 is None:
        return MachineCell(row.parity.status, Status.NOT_RUN, accuracy_delta_points=row.accuracy.delta_points)
    return MachineCell(row.parity.status, batch1.status, batch1.p50_ms, batch1.speedup, batch1.throughput_ips,
                       row.accuracy.delta_points)


def merge_reports(documents: list[Report]) -> MergedReport:
    """One table across machines: rows keyed by RowKey (artifact, target, variant), a column per report's machine."""
    if len(documents) < 2:
        raise ReportError("--merge needs at least two report.json files")
    machines: list[Machine] = []
    merged: dict[RowKey, MergedRow] = {}
    machine_rows: list[ReportRow] = []
    for document in documents:
        if not isinstance(document, Report):
            raise ReportError(f"{document.run_id}: only single-machine reports can be merged")
        machine = _machine(document, [m.label for m in machines])
        machines.append(machine)
        for row in document.rows:
            machine_rows.append(dataclasses.replace(row, machine=machine.label))
            group, title = table_group(row.target, document.host.kind) if row.target else ("", "")
            entry = merged.setdefault(row.key, MergedRow(row.key, row.reference_executor, group, title))
            entry.cells[machine.label] = _cell(row)
    first = documents[0]
    trained = all(d.trained for d in documents)
    judged = trained and any(r.accuracy.delta_points is not None for r in machine_rows)
    options = DecisionOptions(batch=1, accuracy_threshold_points=first.options.accuracy_threshold_points,
                              judge_accuracy=judged)
    decisions = decide(machine_rows, {m.label: Host.of(m.environment) for m in machines}, options)
    notes = [] if len({m.weights_sha256 for m in machines}) == 1 else [
        "note: the merged reports use different weights (sha256 differs); compare their rows with care"]
    return MergedReport(
        run_id=run_id("|".join(m.key or "" for m in machines), WeightsInfo.of(first.weights).sha256) + "-merged",
        weights=first.weights, trained=trained, machines=machines, decisions=decisions,
        rows=sorted(merged.values(), key=lambda r: (r.key.target, r.key.artifact, r.key.variant)),
        machine_rows=machine_rows, notes=notes,
        profiles={m.label: d.profile for m, d in zip(machines, documents) if d.profile is not None})
