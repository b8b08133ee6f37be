"""Parity results: one ParityResult per row, the ParityReport that parity.json holds, and its one loader."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from vitship.bench.rows import ResultsFileError, RowKey, RowsDocument, StatusRow, read_results
from vitship.models.atomic import atomic_write_json
from vitship.models.judgement import Metrics, Tolerance
from vitship.models.status import Status
from vitship.models.typed import from_json, to_json

PARITY_NAME = "parity.json"
# 2: "status" (pass/fail/error/unavailable) and "reason" replace "verdict".
# 3: metrics, batch_consistency and tolerance are typed records; batch_consistency nests its metrics beside the
#    batch sizes and its own status.
SCHEMA_VERSION = 3


@dataclass
class BatchConsistency:
    """The same images at the smallest and the largest batch size, compared with each other by the row's own gate."""

    batch_sizes: list[int]  # [smallest, largest]
    metrics: Metrics  # the largest batch's outputs against the smallest's
    status: Status = Status.PASS  # fail: the batches disagree (the row's failures say how)


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
    metrics: Metrics | None = None  # against the reference, every batch size together
    batch_consistency: BatchConsistency | None = None  # None with a single batch size
    tolerance: Tolerance | None = None  # the gate applied (looked up by format, precision and effective precision)
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

    def to_dict(self) -> dict:
        return to_json(self)

    @classmethod
    def from_dict(cls, data: dict) -> ParityResult:
        """The row from its JSON (parity.json, a worker's result); a wrong shape is a TypeError or ValueError."""
        return from_json(cls, data)


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
    """Read parity.json; another schema_version, an unreadable file or a malformed row is a ResultsFileError."""
    data = read_results(path, "parity results", SCHEMA_VERSION, "vitship parity")
    try:
        return ParityReport.from_dict(data)
    except (TypeError, ValueError, KeyError) as err:
        raise ResultsFileError(f"{path}: malformed parity results ({err}); rerun vitship parity to write a current one") from err


def write_parity_report(model_dir: Path, report: ParityReport) -> Path:
    path = Path(model_dir) / PARITY_NAME
    atomic_write_json(path, report.to_dict())
    return path
