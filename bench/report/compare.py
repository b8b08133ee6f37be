"""Compare two reports row by row and flag regressions, so that CI can gate a release.

A regression is: a p50 latency up by more than ``max_latency_increase`` at any batch both reports
timed, an artifact's accuracy down by more than ``max_accuracy_drop_points`` (trained weights
only), a parity verdict that turns to fail or error, or a row (or a timed batch) that disappeared.
Reports from different environments are not compared unless forced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FAILING_VERDICTS = ("fail", "error")


@dataclass(frozen=True)
class CompareThresholds:
    max_latency_increase: float = 0.10  # +10% p50
    max_accuracy_drop_points: float = 0.5


@dataclass
class RowDelta:
    """One (artifact, target, variant) in both reports and what changed."""

    artifact: str
    target: str
    variant: str
    status: str = "ok"  # ok | regression | new | missing | not compared
    p50_old_ms: float | None = None  # batch 1
    p50_new_ms: float | None = None
    p50_change: float | None = None  # relative, batch 1
    parity_old: str = "-"
    parity_new: str = "-"
    accuracy_old: float | None = None
    accuracy_new: float | None = None
    accuracy_change_points: float | None = None
    reasons: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    rows: list[RowDelta]
    compared: bool  # False when the environments differ and --force was not given
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[RowDelta]:
        return [r for r in self.rows if r.status in ("regression", "missing")]


def _key(row: dict) -> tuple[str, str, str]:
    return row["artifact"], row["target"], row.get("variant") or ""


def _ran(row: dict) -> bool:
    return row["parity"]["verdict"] in ("pass", "reference") or any(
        cell.get("status") == "ok" for cell in row["latency"].values())


def _p50(row: dict, batch: str) -> float | None:
    cell = row["latency"].get(batch) or {}
    return cell.get("p50_ms") if cell.get("status") == "ok" else None


def _latency_reasons(old: dict, new: dict, delta: RowDelta, limit: float) -> None:
    for batch in sorted(old["latency"], key=lambda b: int(b) if b.isdigit() else 0):
        before, after = _p50(old, batch), _p50(new, batch)
        if before is None:
            continue
        if after is None:
            delta.reasons.append(f"batch {batch} no longer timed ({(new['latency'].get(batch) or {}).get('status', 'not run')})")
            continue
        change = after / before - 1.0
        if batch == "1":
            delta.p50_change = change
        if change > limit:
            delta.reasons.append(f"p50 at batch {batch} {change:+.1%} ({before:.3g} -> {after:.3g} ms), over +{limit:.0%}")


def compare_rows(old: dict, new: dict, thresholds: CompareThresholds, judge_accuracy: bool) -> RowDelta:
    delta = RowDelta(*_key(old), p50_old_ms=_p50(old, "1"), p50_new_ms=_p50(new, "1"),
                     parity_old=old["parity"]["verdict"], parity_new=new["parity"]["verdict"],
                     accuracy_old=old["accuracy"].get("accuracy"), accuracy_new=new["accuracy"].get("accuracy"))
    _latency_reasons(old, new, delta, thresholds.max_latency_increase)
    if delta.parity_new in FAILING_VERDICTS and delta.parity_old not in FAILING_VERDICTS:
        delta.reasons.append(f"parity {delta.parity_old} -> {delta.parity_new}: {new['parity'].get('reason') or ''}".rstrip(": "))
    if delta.accuracy_old is not None and delta.accuracy_new is not None:
        delta.accuracy_change_points = (delta.accuracy_new - delta.accuracy_old) * 100.0
        if judge_accuracy and delta.accuracy_change_points < -thresholds.max_accuracy_drop_points:
            limit = thresholds.max_accuracy_drop_points
            delta.reasons.append(f"accuracy {delta.accuracy_change_points:+.2f} points, over -{limit:g}")
    delta.status = "regression" if delta.reasons else "ok"
    return delta


def compare_reports(old: dict, new: dict, thresholds: CompareThresholds = CompareThresholds(), force: bool = False) -> Comparison:
    """Row deltas of ``new`` against ``old``; rows are matched by (artifact, target, variant)."""
    from vitship.bench.report.document import REPORT_KIND, ReportError

    for document in (old, new):
        if document.get("kind") != REPORT_KIND:
            raise ReportError(f"{document.get('run_id')}: compare takes single-machine reports, not {document.get('kind')}")
    old_key = (old.get("environment") or {}).get("key")
    new_key = (new.get("environment") or {}).get("key")
    notes = []
    old_rows = {_key(r): r for r in old["sections"]["rows"]}
    new_rows = {_key(r): r for r in new["sections"]["rows"]}
    if old_key != new_key:
        notes.append(f"different environments: {old_key!r} vs {new_key!r}")
        if not force:
            notes.append("rows from different environments are not compared; pass --force to compare them anyway")
            rows = [RowDelta(*key, status="not compared") for key in dict.fromkeys([*old_rows, *new_rows])]
            return Comparison(rows, compared=False, notes=notes)
    if (old.get("weights") or {}).get("sha256") != (new.get("weights") or {}).get("sha256"):
        notes.append("the two reports use different weights (sha256 differs)")
    judge_accuracy = bool(old.get("trained")) and bool(new.get("trained"))
    if not judge_accuracy:
        notes.append("accuracy not judged: untrained weights in at least one report")
    rows = []
    for key, before in old_rows.items():
        if key in new_rows:
            rows.append(compare_rows(before, new_rows[key], thresholds, judge_accuracy))
        elif _ran(before):
            rows.append(RowDelta(*key, status="missing", parity_old=before["parity"]["verdict"],
                                 p50_old_ms=_p50(before, "1"), reasons=["missing from the new report"]))
    rows += [RowDelta(*key, status="new", parity_new=r["parity"]["verdict"], p50_new_ms=_p50(r, "1"))
             for key, r in new_rows.items() if key not in old_rows]
    return Comparison(rows, compared=True, notes=notes)
