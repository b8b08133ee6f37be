"""profile.json: per (artifact, target) the time of each part, with its FLOPs and % of the roofline's peak.

The file is a typed document like bench.json (schema_version, environment, weights, config, the peaks
measured in the same run, the load average); ``ProfileReport.load`` refuses another schema_version. Every
row keeps its ops (name, type, kind, part, ms) so that each part's figure can be traced to the profiler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from vitship.bench.profile import parts
from vitship.bench.profile.ops import OpTime, RawProfile
from vitship.bench.rows import KeyedRow, RowKey, read_results
from vitship.models.export_form import TIMM_FORM, ExportForm
from vitship.models.status import Status

PROFILE_SCHEMA_VERSION = 1
PROFILE_FILE = "profile.json"
TICK_MS = 0.001  # the profilers' clocks: OpenVINO, onnxruntime, LiteRT and XNNPACK count microseconds
TICKS_PER_OP = 20


@dataclass
class PartTime:
    """One part of a call: its time, its share of the call, its work and how close that work ran to the peak."""

    part: str
    ms: float
    share: float  # of the mean profiled call
    ops: int = 0
    gflop: float | None = None  # per call (the batch included); None for a part that is no matrix multiply
    gflops: float | None = None
    percent_of_peak: float | None = None
    outside_delegate_ms: float = 0.0  # of ``ms``, ops that ran outside the delegate (ExecuTorch's portable kernels)


@dataclass
class ProfileRow(KeyedRow):
    """One artifact on one target, profiled by the runtime's own profiler (or why not)."""

    key: RowKey
    status: Status = Status.OK
    reason: str = ""
    profiler: str = ""
    granularity: str = ""
    precision: str = ""  # what the runtime computed in, where it says
    peak_precision: str = ""  # the roofline peak the parts are held to
    peak_gflops: float | None = None
    wall_ms: float | None = None  # mean wall time of a profiled call
    unprofiled_p50_ms: float | None = None  # the same session without the profiler
    calls: int = 0
    parts: list[PartTime] = field(default_factory=list)
    ops: list[OpTime] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    worker: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def part(self, name: str) -> PartTime | None:
        return next((p for p in self.parts if p.part == name), None)


@dataclass
class ProfileReport:
    """One `vitship profile` run."""

    model: str
    environment: dict
    weights: dict
    config: dict
    peaks: dict = field(default_factory=dict)  # bench.latency.roofline.measure_peaks, measured in this run
    conditions: dict = field(default_factory=dict)  # load average at start and end
    rows: list[ProfileRow] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    schema_version: int = PROFILE_SCHEMA_VERSION

    @property
    def errors(self) -> list[ProfileRow]:
        return [r for r in self.rows if r.status is Status.ERROR]

    def to_dict(self) -> dict:
        from vitship.models.typed import to_json

        return to_json(self)

    @classmethod
    def from_dict(cls, data: dict) -> ProfileReport:
        from vitship.models.typed import from_json

        return from_json(cls, data)

    @classmethod
    def load(cls, path: Path) -> ProfileReport:
        """Read profile.json; another schema_version (or an unreadable file) is a ResultsFileError."""
        return cls.from_dict(read_results(path, "profile results", PROFILE_SCHEMA_VERSION, "vitship profile"))


def row_precision(artifact: str, ran: str) -> str:
    """The peak a row is held to, by the roofline's own rule (bench.latency.roofline.peak_precision)."""
    from vitship.bench.latency.roofline import peak_precision

    return peak_precision(SimpleNamespace(artifact=artifact, session={"precision": ran}))


MS_DIGITS = 4  # the decimals of a part's milliseconds: a tiny model's parts add up only to within this rounding


def part_times(raw: RawProfile, gflop: dict[str, float], batch: int, peak: float | None,
               reference_ms: float | None = None) -> tuple[list[PartTime], list[str]]:
    """The ops of ``raw`` summed by part (in PART_ORDER), the time outside the kernels last; and notes.

    The parts add up to ``reference_ms``, the call's p50 without the profiler where it was measured (the
    profiler's own cost between kernels is left out), else the profiled call's wall time.
    """
    notes = []
    total_ops = sum(op.ms for op in raw.ops)
    reference = reference_ms or raw.wall_ms
    outside = reference - total_ops
    if outside < 0:
        notes.append(f"the profiled ops add up to {total_ops:.2f} ms, more than the {reference:.2f} ms a call takes "
                     "without the profiler (the profiler slows the kernels or the machine was busy); the time outside "
                     "the kernels is shown as 0")
    total = max(reference, total_ops) or 1.0
    found = []
    for name in parts.PART_ORDER:
        mine = [op for op in raw.ops if op.part == name]
        ms = sum(op.ms for op in mine) + (max(outside, 0.0) if name == parts.OUTSIDE else 0.0)
        if not mine and name != parts.OUTSIDE:
            continue
        work = gflop.get(name) * batch if name in parts.GEMM_PARTS and name in gflop else None
        # a part whose ops average under TICKS_PER_OP profiler ticks has no reliable rate
        timed = ms > 0 and ms >= TICKS_PER_OP * TICK_MS * max(len(mine), 1)
        speed = work / (ms / 1e3) if work is not None and timed else None
        found.append(PartTime(name, round(ms, MS_DIGITS), round(ms / total, 4), len(mine), _significant(work), _round(speed, 1),
                              _round(100 * speed / peak, 1) if speed is not None and peak else None,
                              round(sum(op.ms for op in mine if op.outside), MS_DIGITS)))
    return found, notes


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _significant(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def profiled_row(key: RowKey, raw: RawProfile, spec, batch: int, peaks: dict, unprofiled_ms: float | None,
                 notes: list[str], form: ExportForm = TIMM_FORM) -> ProfileRow:
    """A row from a runtime's profile whose ops already carry their parts (attribute.py); ``form``: the artifact's."""
    precision = row_precision(key.artifact, raw.precision)
    on_cpu = key.target.split(":", 1)[-1] in ("cpu", "CPU")
    peak = (peaks.get(precision) or {}).get("gflops") if on_cpu else None
    found, part_notes = part_times(raw, parts.part_gflop(spec, form), batch, peak, unprofiled_ms)
    return ProfileRow(key, Status.OK, "", raw.profiler, raw.granularity, raw.precision, precision,
                      _round(peak, 1), round(raw.wall_ms, 4), _round(unprofiled_ms, 4), raw.calls, found, raw.ops,
                      [*raw.notes, *notes, *part_notes])


def unavailable_row(key: RowKey, reason: str, status: Status = Status.UNAVAILABLE, worker: dict | None = None) -> ProfileRow:
    return ProfileRow(key, status, reason, worker=worker or {})


def write_profile(report: ProfileReport, out_dir: Path, plots: bool = True) -> dict[str, Path]:
    """Write profile.json, profile.md and (with ``plots``) one stacked-bar PNG per profiled row, each atomically."""
    from vitship.bench.profile.table import to_markdown
    from vitship.models.atomic import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    written = {"json": out_dir / PROFILE_FILE, "md": out_dir / "profile.md"}
    atomic_write_json(written["json"], report.to_dict())
    atomic_write_text(written["md"], to_markdown(report))
    if plots:
        from vitship.bench.profile.plot import write_profile_plots

        written.update(write_profile_plots(report.rows, out_dir))
    return written


