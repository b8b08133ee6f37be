"""A profile row as a table of plain text cells: the terminal, profile.md and the report all show this one."""

from __future__ import annotations

from vitship.bench.profile import parts
from vitship.bench.profile.results import ProfileReport, ProfileRow
from vitship.bench.rows import unavailable_by_target
from vitship.models.status import Status

HEADERS = ["part", "ms", "% of total", "GFLOP", "GFLOP/s", "% of peak"]
OUTSIDE_HEADER = "of which outside the delegate (ms)"


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def title(row: ProfileRow) -> str:
    """One line that says what was profiled, how long a call took with and without the profiler, and the peak."""
    variant = f" [{row.variant}]" if row.variant else ""
    batch = f", batch {row.key.batch}" if row.key.batch and row.key.batch != 1 else ""
    if not row.ok:
        return f"{row.artifact} on {row.target}{variant}: {row.status}: {row.reason}"
    unprofiled = f"; {row.unprofiled_p50_ms:.2f} ms p50 without the profiler" if row.unprofiled_p50_ms else ""
    ran = f", ran in {row.precision}" if row.precision else ""
    if row.peak_precision == "int8" and row.precision not in ("", "int8"):  # OpenVINO: its hint covers the float ops
        ran = f", int8 matmuls, float ops in {row.precision}"
    peak = f"; parts held to the {row.peak_precision} peak {row.peak_gflops:.0f} GFLOP/s" if row.peak_gflops else ""
    return (f"{row.artifact} on {row.target}{variant}{batch}: {row.wall_ms:.2f} ms per call under the profiler"
            f"{unprofiled}{ran}{peak}")


TOTAL_NOTE = ("the parts add up to the call's p50 without the profiler: the kernels' times from the profiler, "
              "the remainder outside the kernels (the profiler's own cost between kernels is left out)")


def headers(row: ProfileRow) -> list[str]:
    outside = any(p.outside_delegate_ms for p in row.parts)
    return HEADERS[:-1] + [f"% of {row.peak_precision} peak" if row.peak_precision else HEADERS[-1]] + (
        [OUTSIDE_HEADER] if outside else [])


def lines(row: ProfileRow) -> list[list[str]]:
    """One line per part, then the total."""
    outside = any(p.outside_delegate_ms for p in row.parts)
    out = []
    for part in row.parts:
        cells = [part.part, f"{part.ms:.3f}", f"{100 * part.share:.1f}%", _number(part.gflop), _number(part.gflops),
                 "-" if part.percent_of_peak is None else f"{part.percent_of_peak:.0f}%"]
        out.append(cells + ([f"{part.outside_delegate_ms:.3f}"] if outside else []))
    total = sum(p.ms for p in row.parts)
    work = sum(p.gflop or 0.0 for p in row.parts)
    speed = work / (total / 1e3) if total else None
    share = f"{100 * speed / row.peak_gflops:.0f}%" if speed and row.peak_gflops else "-"
    outside_total = [f"{sum(p.outside_delegate_ms for p in row.parts):.3f}"] if outside else []
    return out + [["total", f"{total:.3f}", "100%", _number(work), _number(speed), share] + outside_total]


def notes(row: ProfileRow) -> list[str]:
    """What the reader needs to trust the figures: the profiler, what one op is, and what could not be placed."""
    out = [f"profiler: {row.profiler}; one op is {row.granularity}"] if row.profiler else []
    out += [TOTAL_NOTE] if row.unprofiled_p50_ms else []
    out += row.notes
    present = {p.part for p in row.parts}
    out += [f"{name}: {text}" for name, text in parts.PART_NOTES.items() if name in present]
    return out


SUMMARY_HEADERS = ["artifact", "target", "ms per call", "linear (qkv, proj, fc1, fc2)", "attention", "of which other ops",
                   "LayerNorm", "rest", "outside the kernels", "linear: % of peak", "attention matmuls: % of peak"]
_ATTENTION = (parts.QKV_ATTENTION, parts.QK, parts.SOFTMAX, parts.AV, parts.ATTENTION, parts.ATTENTION_OTHER)


def _share(row: ProfileRow, names) -> str:
    total = sum(p.ms for p in row.parts)
    return f"{100 * sum(p.ms for p in row.parts if p.part in names) / total:.0f}%" if total else "-"


def _rate(row: ProfileRow, names) -> str:
    """The parts' GFLOP over their time, as % of the row's peak (the parts together, not an average of rates)."""
    timed = [p for p in row.parts if p.part in names and p.gflop and p.gflops is not None]
    ms, work = sum(p.ms for p in timed), sum(p.gflop for p in timed)
    return f"{100 * work / (ms / 1e3) / row.peak_gflops:.0f}% {row.peak_precision}" if ms and row.peak_gflops else "-"


def summary_lines(rows: list[ProfileRow]) -> list[list[str]]:
    """One line per profiled row: each kind of work's share of the call, and how close its matmuls ran to the peak."""
    return [[row.artifact, row.target, f"{sum(p.ms for p in row.parts):.1f}", _share(row, parts.LINEAR_PARTS),
             _share(row, _ATTENTION), _share(row, (parts.ATTENTION_OTHER,)), _share(row, (parts.LAYERNORM,)),
             _share(row, (parts.REST,)), _share(row, (parts.OUTSIDE,)), _rate(row, parts.LINEAR_PARTS),
             _rate(row, (parts.QKV_ATTENTION, parts.QK, parts.AV, parts.ATTENTION))] for row in rows if row.ok]


def to_markdown(report: ProfileReport) -> str:
    """profile.md: every row's table, its notes, and how it was measured."""
    load = report.conditions.get("load_average_start")
    settings = f"{report.created}; weights `{report.weights.get('source')}`; settings {report.config}"
    cores = report.conditions.get("logical_cores")
    out = [f"# vitship profile: {report.model}", "", settings, f"load average at start {load} on {cores} logical cores"
           if load else "", ""]
    summary = summary_lines(report.rows)
    if summary:
        out += ["## Summary", "", "| " + " | ".join(SUMMARY_HEADERS) + " |", "|" + "---|" * len(SUMMARY_HEADERS)]
        out += ["| " + " | ".join(line) + " |" for line in summary] + [""]
    for row in report.rows:
        if row.status is Status.UNAVAILABLE:
            continue
        out += [f"## {title(row)}", ""]
        if row.ok:
            head = headers(row)
            out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            out += ["| " + " | ".join(line) + " |" for line in lines(row)] + [""]
            out += [f"- {note}" for note in notes(row)] + [""]
    unavailable = unavailable_by_target(report.rows)
    if unavailable:
        out += ["## Not profiled here", ""] + [f"- {target} ({', '.join(ids)}): {reason}"
                                              for (target, reason), ids in unavailable.items()]
    return "\n".join(out) + "\n"
