"""The report's tables as plain text cells, shared by report.md, report.html and the terminal.

The results table is grouped by device family (families.table_group); each group is a ``Table``.
Reference-executor rows carry a mark and a note: their time is not a device time and never ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vitship.bench.report.families import REFERENCE_TIME_NOTE, group_order, table_group
from vitship.runtimes.base import target_display

REFERENCE_MARK = "†"


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


def parity_cell(row: dict) -> str:
    parity = row["parity"]
    text = parity["verdict"]
    if parity["metric"] is not None:
        text += f" ({parity['metric']} {num(parity['value'], 6)})"
    if parity["verdict"] in ("fail", "error") and parity.get("reason"):
        text += f": {parity['reason']}"
    return text + "".join(f"; {v['variant']}: {v['verdict']}" for v in parity.get("variants") or [])


def batch_cell(row: dict, batch: str = "1") -> dict:
    return row["latency"].get(batch) or next((c for b, c in row["latency"].items() if not b.isdigit()), None) or {}


def latency_cell(row: dict, field_name: str) -> str:
    cell = batch_cell(row)
    if not cell:
        return "not run" if field_name == "p50_ms" else "-"
    if cell.get("status") != "ok":
        return cell.get("status", "-") if field_name == "p50_ms" else "-"
    mark = REFERENCE_MARK if row["reference_executor"] and field_name == "p50_ms" else ""
    return num(cell.get(field_name)) + mark


def speedup_cell(row: dict) -> str:
    cell = batch_cell(row)
    if row["reference_executor"] or cell.get("status") != "ok" or not cell.get("speedup"):
        return "-"
    return f"{cell['speedup']:.2f}x"


def roofline_cells(row: dict) -> list[str]:
    """Achieved GFLOP/s and % of the attainable peak at the precision the row ran at ('-' when not measured)."""
    roofline = batch_cell(row).get("roofline") if batch_cell(row).get("status") == "ok" else None
    if not roofline or roofline.get("gflops") is None:
        return ["-", "-"]
    percent = roofline.get("percent_of_peak")
    if percent is None:  # a reference executor's row: GFLOP/s, but no machine peak it could be held to
        return [num(roofline["gflops"]), "-"]
    peak = f"{percent:.0f}% of {num(roofline.get('peak_gflops'))} {roofline.get('peak_precision') or ''}".rstrip()
    return [num(roofline["gflops"]), peak]


def best_throughput(row: dict) -> str:
    cells = [(c["throughput_ips"], b) for b, c in row["latency"].items() if c.get("status") == "ok" and c.get("throughput_ips")]
    if not cells:
        return "-"
    value, batch = max(cells, key=lambda item: item[0])
    return f"{num(value)} (b{batch})"


def accuracy_cell(row: dict) -> str:
    acc = row["accuracy"]
    if acc["delta_points"] is None:
        return acc["status"] if acc["status"] != "ok" else "-"
    return f"{acc['delta_points']:+.2f}"


def _name(row: dict) -> str:
    return row["artifact"] + (f" ({row['variant']})" if row["variant"] else "")


def _group_tables(pairs: list[tuple[dict, list[str]]], headers: list[str]) -> list[Table]:
    groups: dict[str, Table] = {}
    for row, line in pairs:
        slug, title = (row["group"], row["group_title"]) if row.get("group") else table_group(row["target"], None)
        table = groups.setdefault(slug, Table(title, headers))
        table.lines.append(line)
        if row["reference_executor"] and not table.notes:
            table.notes.append(f"{REFERENCE_MARK} {REFERENCE_TIME_NOTE}: shown, never ranked")
    order = group_order()
    return [groups[slug] for slug in sorted(groups, key=lambda s: order.index(s) if s in order else len(order))]


def results_tables(document: dict) -> list[Table]:
    """One table per device family: one line per (artifact, target, variant) that ran or was tried here."""
    headers = ["artifact", "target", "size", "parity", "p50 ms (b1)", "speed-up vs torch eager", "img/s (b1)",
               "best img/s", "GFLOP/s (b1)", "% of peak", "accuracy Δ (pts)" if document.get("trained")
               else "accuracy Δ (pts, not judged)", "agreement"]
    unavailable = document["sections"].get("unavailable_targets") or {}
    pairs = []
    for r in document["sections"]["rows"]:
        if r["target"] in unavailable or not r["target"]:  # listed once, with the reason, under the decisions
            continue
        agreement = r["accuracy"]["agreement"]
        pairs.append((r, [_name(r), target_display(r["target"]), size(r["size_bytes"]), parity_cell(r),
                          latency_cell(r, "p50_ms"), speedup_cell(r), latency_cell(r, "throughput_ips"), best_throughput(r),
                          *roofline_cells(r), accuracy_cell(r), "-" if agreement is None else f"{agreement:.1%}"]))
    return _group_tables(pairs, headers)


def merged_tables(document: dict) -> list[Table]:
    """A column per machine (p50 at batch 1 with the speed-up, and parity), grouped by device family."""
    labels = [m["label"] for m in document["machines"]]
    pairs = []
    for r in document["sections"]["rows"]:
        cells = []
        for label in labels:
            cell = r["cells"].get(label)
            if cell is None:
                cells.append("not run")
            elif cell["status"] == "ok":
                mark = REFERENCE_MARK if r["reference_executor"] else ""
                speed = f" ({cell['speedup']:.2f}x)" if cell.get("speedup") and not r["reference_executor"] else ""
                cells.append(f"{num(cell['p50_ms'])} ms{mark}{speed}, {cell['parity']}")
            else:
                cells.append(f"{cell['status']}, {cell['parity']}")
        pairs.append((r, [_name(r), target_display(r["target"]) or "-"] + cells))
    return _group_tables(pairs, ["artifact", "target"] + labels)


def accuracy_table(document: dict) -> Table | None:
    """Per artifact on its eval target: each metric with its delta (points) against the reference."""
    section = (document.get("sections") or {}).get("accuracy") or {}
    if not section.get("rows"):
        return None
    names = ("accuracy", "balanced_accuracy", "auroc", "average_precision", "f1")
    table = Table("Accuracy (Δ in points against the PyTorch reference)",
                  ["artifact", "target", "status", "accuracy", "balanced acc.", "AUROC", "avg precision", "F1", "agreement"])
    for r in section["rows"]:
        metrics, deltas = r.get("metrics") or {}, r.get("deltas") or {}
        cells = [("-" if metrics.get(n) is None else f"{metrics[n]:.3f}")
                 + ("" if not deltas.get(n) else f" ({deltas[n]:+.2f})") for n in names]
        agreement = "-" if r.get("agreement") is None else f"{r['agreement']:.1%}"
        table.lines.append([r["artifact"], target_display(r.get("target") or "-"), r.get("status") or "-", *cells, agreement])
    return table
