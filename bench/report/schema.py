"""What report.json holds: a Report (one machine) or a MergedReport (many), typed, and their one reader.

The documents are dataclasses; ``to_json`` writes them and ``read_report`` rebuilds them (typed.from_json),
refusing anything that is not a report of this ``schema_version`` with a one-line error naming the file.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from vitship.bench.report.cells import AccuracyCell, FamilyDecision, ReportError, ReportRow
from vitship.bench.report.host import Host
from vitship.bench.report.profile_section import ProfileSection
from vitship.bench.rows import KeyedRow, RowKey
from vitship.models.status import Status
from vitship.models.typed import from_json, to_json

REPORT_SCHEMA_VERSION = 3  # 3: typed rows keyed by RowKey, latency cells a list by batch, no "sections" level
REPORT_KIND = "vitship-report"
MERGED_KIND = "vitship-merged-report"
UNTRAINED_BANNER = "untrained weights: accuracy is meaningless; artifacts are judged by parity and latency only"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ReportOptions:
    accuracy_threshold_points: float = 0.5  # largest accepted accuracy drop vs the reference
    batch: int = 1  # the batch the decisions read latency at


@dataclass
class WeightsInfo:
    """What the report reads of a weights record (the record itself travels untouched)."""

    source: str | None = None
    kind: str | None = None
    sha256: str | None = None
    trained: bool = False

    @classmethod
    def of(cls, weights: dict | None) -> "WeightsInfo":
        return from_json(cls, weights or {})


@dataclass
class SourceInfo:
    path: str | None = None
    status: Status = Status.NOT_RUN


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class EvalData:
    """The labelled folder eval scored (EvalReport.data)."""

    source: str | None = None
    n_images: int = 0
    n_real: int = 0
    n_fake: int = 0
    n_skipped: int = 0
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class AccuracySection:
    """What the report shows of an EvalReport: the data, the note, and each artifact's cell (artifact -> cell)."""

    accuracy_judged: bool
    note: str
    threshold: float
    data: EvalData
    rows: dict[str, AccuracyCell] = field(default_factory=dict)


@dataclass
class Report:
    """One machine's report: decisions per device family, then the joined rows."""

    run_id: str
    environment: dict | None  # the environment record (bench/environment.py) the measurements were made in
    weights: dict  # the weights record, as the manifest holds it
    options: ReportOptions = field(default_factory=ReportOptions)
    sources: dict[str, SourceInfo] = field(default_factory=dict)
    decisions: list[FamilyDecision] = field(default_factory=list)
    unavailable_targets: dict[str, str] = field(default_factory=dict)  # target -> why nothing ran on it here
    rows: list[ReportRow] = field(default_factory=list)
    accuracy: AccuracySection | None = None
    profile: ProfileSection | None = None  # where the time goes (vitship profile), when it ran
    plots: list[str] = field(default_factory=list)
    created: str = field(default_factory=_now)
    schema_version: int = REPORT_SCHEMA_VERSION
    kind: str = REPORT_KIND

    @property
    def trained(self) -> bool:
        return WeightsInfo.of(self.weights).trained

    @property
    def banner(self) -> str:
        return "" if self.trained else UNTRAINED_BANNER

    @property
    def host(self) -> Host:
        return Host.of(self.environment)

    def row(self, key: RowKey) -> ReportRow | None:
        return next((r for r in self.rows if r.key == key), None)


@dataclass
class Machine:
    """One merged report's machine: its column label and where its rows came from."""

    label: str
    key: str | None
    run_id: str
    environment: dict | None
    weights_sha256: str | None


@dataclass
class MachineCell:
    """A row on one machine: batch-1 latency and the parity status."""

    parity: Status = Status.NOT_RUN
    status: Status = Status.NOT_RUN
    p50_ms: float | None = None
    speedup: float | None = None
    throughput_ips: float | None = None
    accuracy_delta_points: float | None = None


@dataclass
class MergedRow(KeyedRow):
    key: RowKey
    reference_executor: bool = False
    group: str = ""
    group_title: str = ""
    cells: dict[str, MachineCell] = field(default_factory=dict)  # machine label -> its cell



@dataclass
class MergedReport:
    """Reports from many machines in one table, and one decision per family across them."""

    run_id: str
    weights: dict
    trained: bool
    machines: list[Machine]
    decisions: list[FamilyDecision]
    rows: list[MergedRow]
    machine_rows: list[ReportRow]  # every machine's own rows, each with its machine's label
    notes: list[str] = field(default_factory=list)
    profiles: dict[str, ProfileSection] = field(default_factory=dict)  # machine label -> its profile, where it ran
    plots: list[str] = field(default_factory=list)
    created: str = field(default_factory=_now)
    schema_version: int = REPORT_SCHEMA_VERSION
    kind: str = MERGED_KIND

    @property
    def banner(self) -> str:
        return "" if self.trained else UNTRAINED_BANNER


DOCUMENTS = {REPORT_KIND: Report, MERGED_KIND: MergedReport}


def report_from_json(data, path: Path | str) -> Report | MergedReport:
    """A parsed report.json as its document class; anything else is a one-line ReportError naming ``path``."""
    shape = "a JSON " + type(data).__name__ if not isinstance(data, dict) else None
    # The two fields that say which class reads the rest: the one place a report is read by key.
    kind, version = (data.get("kind"), data.get("schema_version")) if isinstance(data, dict) else (None, None)
    if shape or kind not in DOCUMENTS or version != REPORT_SCHEMA_VERSION:
        found = shape or f"kind {kind!r}, schema {version!r}"
        raise ReportError(f"{path}: not a vitship report of schema {REPORT_SCHEMA_VERSION} ({found}); "
                          "pass a report.json written by vitship report with this vitship")
    try:
        return from_json(DOCUMENTS[kind], data)
    except (TypeError, ValueError) as err:
        raise ReportError(f"{path}: malformed report ({err}); rerun vitship report with this vitship") from err


def read_report(path: Path) -> Report | MergedReport:
    """A report.json (or the folder that holds one), schema-checked and typed."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: cannot read the report ({err}); pass a report.json written by vitship report") from err
    return report_from_json(data, path)


def report_json(document: Report | MergedReport) -> dict:
    return to_json(document)
