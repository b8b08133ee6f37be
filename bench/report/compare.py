"""Compare two reports row by row and flag regressions, so that CI can gate a release.

A regression is: a p50 latency up by more than ``max_latency_increase`` at any batch both reports
timed, an artifact's accuracy down by more than ``max_accuracy_drop_points`` (trained weights
only), a parity status that turns to fail or error, or a row (or a timed batch) that disappeared.
Reports from different environments are not compared unless forced.

Each row delta speaks the one status vocabulary (models/status.py), with the reason beside it:

| status | reason | what happened to the row |
|---|---|---|
| pass | | in both reports, nothing regressed |
| fail | the regressions, one per line | a regression |
| fail | ``MISSING`` | it ran in the old report and is gone from the new one |
| ok | ``NEW`` | only the new report has it |
| not run | ``NOT_COMPARED`` | the environments differ and ``--force`` was not given |
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vitship.bench.report.cells import FAILING, ReportError, ReportRow
from vitship.bench.report.schema import Report, WeightsInfo
from vitship.bench.rows import KeyedRow, RowKey
from vitship.models.status import Status

MISSING = "missing from the new report"
NEW = "new: not in the old report"
NOT_COMPARED = "the environments differ: rows not compared"


@dataclass(frozen=True)
class CompareThresholds:
    max_latency_increase: float = 0.10  # +10% p50
    max_accuracy_drop_points: float = 0.5


@dataclass
class RowDelta(KeyedRow):
    """One (artifact, target, variant) in either report, what changed, and why (``reasons``, one per regression)."""

    key: RowKey
    status: Status = Status.PASS
    p50_old_ms: float | None = None  # batch 1
    p50_new_ms: float | None = None
    p50_change: float | None = None  # relative, batch 1
    parity_old: Status = Status.NOT_RUN
    parity_new: Status = Status.NOT_RUN
    accuracy_old: float | None = None
    accuracy_new: float | None = None
    accuracy_change_points: float | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    @property
    def regressed(self) -> bool:
        return self.status.failed


@dataclass
class Comparison:
    rows: list[RowDelta]
    compared: bool  # False when the environments differ and --force was not given
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[RowDelta]:
        return [r for r in self.rows if r.regressed]


def _timed_batches(row: ReportRow) -> list[int]:
    return sorted(c.batch for c in row.latency if c.batch is not None and c.ok)


def _latency_reasons(old: ReportRow, new: ReportRow, delta: RowDelta, limit: float) -> None:
    for batch in _timed_batches(old):
        before, after = old.p50(batch), new.p50(batch)
        if after is None:
            cell = new.latency_at(batch)
            delta.reasons.append(f"batch {batch} no longer timed ({cell.status if cell else Status.NOT_RUN})")
            continue
        change = after / before - 1.0
        if batch == 1:
            delta.p50_change = change
        if change > limit:
            delta.reasons.append(f"p50 at batch {batch} {change:+.1%} ({before:.3g} -> {after:.3g} ms), over +{limit:.0%}")


def compare_rows(old: ReportRow, new: ReportRow, thresholds: CompareThresholds, judge_accuracy: bool) -> RowDelta:
    delta = RowDelta(old.key, p50_old_ms=old.p50(1), p50_new_ms=new.p50(1), parity_old=old.parity.status,
                     parity_new=new.parity.status, accuracy_old=old.accuracy.accuracy, accuracy_new=new.accuracy.accuracy)
    _latency_reasons(old, new, delta, thresholds.max_latency_increase)
    if delta.parity_new in FAILING and delta.parity_old not in FAILING:
        delta.reasons.append(f"parity {delta.parity_old} -> {delta.parity_new}: {new.parity.reason}".rstrip(": "))
    if delta.accuracy_old is not None and delta.accuracy_new is not None:
        delta.accuracy_change_points = (delta.accuracy_new - delta.accuracy_old) * 100.0
        if judge_accuracy and delta.accuracy_change_points < -thresholds.max_accuracy_drop_points:
            limit = thresholds.max_accuracy_drop_points
            delta.reasons.append(f"accuracy {delta.accuracy_change_points:+.2f} points, over -{limit:g}")
    delta.status = Status.FAIL if delta.reasons else Status.PASS
    return delta


def compare_reports(old: Report, new: Report, thresholds: CompareThresholds = CompareThresholds(),
                    force: bool = False) -> Comparison:
    """Row deltas of ``new`` against ``old``; rows are matched by RowKey (artifact, target, variant)."""
    for document in (old, new):
        if not isinstance(document, Report):
            raise ReportError(f"{document.run_id}: compare takes single-machine reports, not {document.kind}")
    notes = []
    old_rows, new_rows = {r.key: r for r in old.rows}, {r.key: r for r in new.rows}
    if old.host.key != new.host.key:
        notes.append(f"different environments: {old.host.key!r} vs {new.host.key!r}")
        if not force:
            notes.append("rows from different environments are not compared; pass --force to compare them anyway")
            rows = [RowDelta(key, status=Status.NOT_RUN, reasons=[NOT_COMPARED]) for key in dict.fromkeys([*old_rows, *new_rows])]
            return Comparison(rows, compared=False, notes=notes)
    if WeightsInfo.of(old.weights).sha256 != WeightsInfo.of(new.weights).sha256:
        notes.append("the two reports use different weights (sha256 differs)")
    judge_accuracy = old.trained and new.trained
    if not judge_accuracy:
        notes.append("accuracy not judged: untrained weights in at least one report")
    rows = []
    for key, before in old_rows.items():
        if key in new_rows:
            rows.append(compare_rows(before, new_rows[key], thresholds, judge_accuracy))
        elif before.ran:
            rows.append(RowDelta(key, status=Status.FAIL, parity_old=before.parity.status, p50_old_ms=before.p50(1),
                                 reasons=[MISSING]))
    rows += [RowDelta(key, status=Status.OK, parity_new=r.parity.status, p50_new_ms=r.p50(1), reasons=[NEW])
             for key, r in new_rows.items() if key not in old_rows]
    return Comparison(rows, compared=True, notes=notes)
