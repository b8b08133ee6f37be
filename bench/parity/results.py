"""Parity results: one ParityResult per row, the ParityReport that parity.json holds, and its one loader."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from vitship.bench.rows import RowKey, RowsDocument, StatusRow, read_results
from vitship.models.atomic import atomic_write_json
from vitship.models.status import Status

PARITY_NAME = "parity.json"
SCHEMA_VERSION = 2  # 2: "status" (pass/fail/error/unavailable) and "reason" replace "verdict"


@dataclass
class ParityResult(StatusRow):
    """One (artifact, target[, variant]) row: every metric, the gate applied, its status and the reason."""

    artifact: str
    target: str
    format: str
    artifact_precision: str
    status: Status = Status.ERROR  # pass | fail | error | unavailable
    reason: str = ""
    variant: str = ""  # "" for the runtime's defaults; e.g. "f32 inference" for OpenVINO's explicit-f32 row
    inputs: str = "tensors"  # tensors (vitship's preprocessing) | frames (decoded photos at their own sizes: parity/frames.py)
    runtime_precision: str = ""
    effective_precision: str = ""
    precision_label: str = ""
    metrics: dict | None = None
    batch_consistency: dict | None = None
    tolerance: dict | None = None
    tolerance_keys: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was measured but could not be gated, and why
    session: dict | None = None
    note: str = ""  # what the target is, where it needs saying (the CoreML reference executor)
    seconds: float = 0.0
    worker: dict = field(default_factory=dict)  # pid, exit code, seconds; the log tail when the worker failed

    @property
    def key(self) -> RowKey:
        """Parity checks every batch size in one row: its key has no batch."""
        return RowKey(self.artifact, self.target, self.variant)

    @property
    def passed(self) -> bool:
        return self.status is Status.PASS



@dataclass
class ParityReport(RowsDocument):
    """What parity.json holds: the rows and what they were judged against (weights, spec, inputs, gates)."""

    row_class = ParityResult

    environment: dict
    weights: dict
    spec: dict
    config: dict
    inputs: dict  # {"names": [...], "photos": N}
    tolerances: dict
    rows: list[ParityResult] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    schema_version: int = SCHEMA_VERSION

    @property
    def untrained_weights(self) -> bool:
        return not self.weights.get("trained", False)

    def summary(self) -> dict[str, int]:
        """How many rows ended in each status (every status, zeros included)."""
        return {str(s): sum(r.status is s for r in self.rows) for s in (Status.PASS, Status.FAIL, Status.ERROR,
                                                                          Status.UNAVAILABLE)}

    @property
    def failed(self) -> list[ParityResult]:
        return [r for r in self.rows if r.status.failed]

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "rows"}
        return {"schema_version": data.pop("schema_version"), **data, "untrained_weights": self.untrained_weights,
                "summary": self.summary(), "rows": [r.to_dict() for r in self.rows]}


def read_parity(path: Path) -> ParityReport:
    """Read parity.json; another schema_version (or an unreadable file) is a ResultsFileError."""
    return ParityReport.from_dict(read_results(path, "parity results", SCHEMA_VERSION, "vitship parity"))


def write_parity_report(model_dir: Path, report: ParityReport) -> Path:
    path = Path(model_dir) / PARITY_NAME
    atomic_write_json(path, report.to_dict())
    return path
