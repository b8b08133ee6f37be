"""The report's typed rows: one ReportRow per (artifact, target, variant), with its parity, latency and accuracy cells.

sources.py fills them from the producers' own classes (ParityReport, BenchReport, EvalReport, the manifest);
decide.py, tables.py, plots.py, merge.py and compare.py read them. report.json holds ``typed.to_json`` of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vitship.bench.rows import KeyedRow, RowKey
from vitship.exporters.coreml_apple import AppleDetails, NeuralEngine  # noqa: F401  (the iOS decision reads them)
from vitship.models.errors import VitshipError
from vitship.models.status import Status

PASSING = (Status.PASS, Status.REFERENCE)
FAILING = (Status.FAIL, Status.ERROR)


class ReportError(VitshipError):
    """A report cannot be read, written or merged."""


@dataclass
class Roofline:
    """Achieved GFLOP/s and its share of the attainable peak (bench.latency.roofline.row_roofline)."""

    gflops: float | None = None
    gflop_per_image: float | None = None
    peak_gflops: float | None = None
    peak_precision: str | None = None
    percent_of_peak: float | None = None  # None on a reference executor: no machine peak it could be held to
    peak_source: str | None = None


@dataclass
class ParityCell:
    """A row's parity: its status, the key metric, and the rows of other runtime variants."""

    status: Status = Status.NOT_RUN
    reason: str = ""
    metric: str | None = None
    value: float | None = None
    variant: str = ""
    precision: str = ""
    target: str = ""  # where it was measured (a decision may rest on another target's passing cell)
    metrics: dict[str, float] = field(default_factory=dict)
    variants: list[ParityCell] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        return self.status in PASSING + FAILING

    def measured(self, name: str) -> float | None:
        """The recorded value of the parity metric ``name`` (a Metrics field name), None if it was not measured."""
        return self.metrics.get(name)


@dataclass
class LatencyCell:
    """One batch size of a bench row (units: ms, images/s); ``batch`` None for a row that never got to a batch."""

    batch: int | None = None
    status: Status = Status.NOT_RUN
    reason: str = ""
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    throughput_ips: float | None = None
    cv: float | None = None
    size_bytes: int | None = None
    speedup: float | None = None  # torch eager p50 / this p50, same run
    roofline: Roofline | None = None

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


@dataclass
class AccuracyCell:
    """The artifact's accuracy on the one target eval scored it on, with deltas in points against the reference."""

    status: Status = Status.NOT_RUN
    reason: str = ""
    target: str | None = None
    accuracy: float | None = None
    delta_points: float | None = None
    agreement: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    deltas: dict[str, float | None] = field(default_factory=dict)
    n_images: int = 0


@dataclass
class ReportRow(KeyedRow):
    """One (artifact, target, variant) of the report; every cell 'not run' until a source fills it."""

    key: RowKey
    format: str = ""
    precision: str = ""
    size_bytes: int | None = None
    reference_executor: bool = False  # a reference implementation ran it: its time is no device time and never ranks
    input_type: str = ""  # the manifest's input_spec input_type: tensor, image (CoreML), frame (preprocessing inside)
    apple: AppleDetails | None = None
    group: str = ""
    group_title: str = ""
    machine: str = ""  # the machine's label in a merged report
    parity: ParityCell = field(default_factory=ParityCell)
    latency: list[LatencyCell] = field(default_factory=list)  # by batch
    accuracy: AccuracyCell = field(default_factory=AccuracyCell)


    def latency_at(self, batch: int = 1) -> LatencyCell | None:
        """The cell at ``batch``, else the cell of a row that never got to a batch (unavailable, error)."""
        return next((c for c in self.latency if c.batch == batch), None) or next(
            (c for c in self.latency if c.batch is None), None)

    def p50(self, batch: int = 1) -> float | None:
        cell = self.latency_at(batch)
        return cell.p50_ms if cell and cell.ok else None

    @property
    def ran(self) -> bool:
        """Parity passed (or is the reference) or some batch was timed."""
        return self.parity.status in PASSING or any(c.ok for c in self.latency)

    def label(self) -> str:
        return self.artifact + (f" ({self.variant})" if self.variant else "")


@dataclass
class Summary:
    """The figures of a pick or runner-up, as report.json stores them (the accuracy delta only where judged)."""

    artifact: str
    target: str
    variant: str = ""
    machine: str = ""
    role: str = ""  # families.Role
    p50_ms: float | None = None  # only when its latency ranks
    batch: int = 1
    speedup: float | None = None
    size_bytes: int | None = None
    parity: ParityCell = field(default_factory=ParityCell)
    accuracy_delta_points: float | None = None
    apple: AppleDetails | None = None


@dataclass
class Avoid:
    artifact: str
    target: str
    reason: str


@dataclass
class FamilyDecision:
    """One device family's decision: the pick, the runner-up, what to avoid and what is left to verify."""

    slug: str
    title: str
    basis: str  # what the ranking rests on
    pick: Summary | None = None
    sentence: str = ""
    runner_up: Summary | None = None
    runner_up_sentence: str = ""
    input_form: str = ""  # which input form to ship: the camera frame or the tensor (bench/report/input_form.py)
    not_verified: list[str] = field(default_factory=list)  # what this machine could not verify for the family
    verify_command: str = ""  # how to verify it on the device (empty when nothing is left to verify)
    merge_command: str = ""
    avoid: list[Avoid] = field(default_factory=list)
