"""The report's inputs, read through the producers' own classes: manifest, parity.json, bench.json, eval.json.

A missing file is a source marked "not run" and the report still renders; a file with another
``schema_version`` (or one that cannot be read) is refused by its producer's loader with a message
that names the command to rerun. ``build_rows`` joins them into typed ReportRows (cells.py) on RowKey.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vitship.bench.report.cells import (
    AccuracyCell,
    LatencyCell,
    ParityCell,
    ReportError,
    ReportRow,
    Roofline,
)
from vitship.bench.report.families import is_reference, table_group
from vitship.bench.report.host import Host
from vitship.bench.rows import RowKey
from vitship.models.errors import VitshipError
from vitship.models.status import Status
from vitship.models.typed import from_json
from vitship.runtimes.base import target_display  # noqa: F401  (re-exported: bench's table shows the same label)

if TYPE_CHECKING:
    from vitship.exporters.base import Artifact

# Where each producer writes, relative to the model folder (first existing wins).
SOURCE_FILES = {"manifest": ("manifest.json",), "parity": ("parity.json",), "bench": ("bench/bench.json", "bench.json"),
                "eval": ("eval.json",), "profile": ("bench/profile.json", "profile.json")}
REFERENCE_ARTIFACTS = ("torch-fp32", "torch")  # the PyTorch reference: parity is 'reference' by definition
PARITY_KEY_METRICS = ("min_cosine", "max_abs_logit", "max_prob_err", "agreement")


@dataclass
class ManifestData:
    weights: dict  # the weights record, as the manifest holds it
    artifacts: list[Artifact]


@dataclass
class Source:
    """One input file: ``Status.OK`` with its producer's object as ``data``, or ``Status.NOT_RUN``."""

    path: str | None = None
    status: Status = Status.NOT_RUN
    data: object = None

    def loaded(self):
        return self.data if self.status is Status.OK else None


@dataclass
class Sources:
    manifest: Source = field(default_factory=Source)
    parity: Source = field(default_factory=Source)
    bench: Source = field(default_factory=Source)
    eval: Source = field(default_factory=Source)
    profile: Source = field(default_factory=Source)

    def items(self) -> list[tuple[str, Source]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]


def _load_manifest(path: Path) -> ManifestData:
    """The manifest's weights and artifacts; a malformed manifest is a one-line ReportError naming the file."""
    from vitship.exporters.base import resolve_artifact_path
    from vitship.exporters.manifest import Manifest

    folder = Path(path).parent
    try:
        manifest = Manifest.read(folder)  # validated: a malformed entry is a ManifestError naming the file
        for artifact in manifest.artifacts.values():
            resolve_artifact_path(folder, artifact)
    except VitshipError as err:
        message = str(err) if str(path) in str(err) else f"{path}: {err}"
        raise ReportError(message) from err
    return ManifestData(weights=manifest.reference_weights(), artifacts=list(manifest.artifacts.values()))


def _load_parity(path: Path):
    from vitship.bench.parity.results import read_parity

    return read_parity(path)


def _load_bench(path: Path):
    from vitship.bench.latency.results import BenchReport, apply_speedups

    report = BenchReport.load(path)
    apply_speedups(report.rows)  # against torch eager from the same run, whatever the file recorded
    return report


def _load_eval(path: Path):
    from vitship.bench.accuracy import read_eval

    return read_eval(path)


def _load_profile(path: Path):
    from vitship.bench.profile.results import ProfileReport

    return ProfileReport.load(path)


LOADERS = {"manifest": _load_manifest, "parity": _load_parity, "bench": _load_bench, "eval": _load_eval,
           "profile": _load_profile}


def load_sources(model_dir: Path | None, overrides: dict[str, Path | None] | None = None) -> Sources:
    """Every source of ``model_dir`` (or the override path given for it), loaded or marked not run."""
    overrides = overrides or {}
    sources = Sources()
    for name, source in sources.items():
        candidates = [Path(model_dir) / f for f in SOURCE_FILES[name]] if model_dir else []
        path = overrides.get(name) or next((p for p in candidates if p.is_file()), candidates[0] if candidates else None)
        source.path = str(path) if path else None
        if path and Path(path).is_file():
            source.data, source.status = _load(name, Path(path)), Status.OK
    return sources


def _load(name: str, path: Path):
    """The producer's object; its loader refuses another schema_version, and a malformed file is one line here."""
    try:
        return LOADERS[name](path)
    except (TypeError, KeyError, ValueError, AttributeError) as err:  # rows of the wrong shape, from a hand-edited file
        raise ReportError(f"{path}: malformed {name} results ({type(err).__name__}: {err}); "
                          f"rerun vitship {name} to write a current one") from err


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def _key_metrics(effective: str) -> tuple[str, ...]:
    """fp32 is judged first by its max logit error; lower precisions by the feature cosine."""
    return (("max_abs_logit",) if effective == "fp32" else ()) + PARITY_KEY_METRICS


def parity_cell(row) -> ParityCell:
    """A ParityResult as the report's cell: status, reason and the key metric of its precision."""
    recorded = dataclasses.asdict(row.metrics) if row.metrics else {}
    metrics = {name: _number(v) for name, v in recorded.items() if _number(v) is not None}
    effective = row.effective_precision or row.artifact.rsplit("-", 1)[-1]
    metric = next((name for name in _key_metrics(effective) if name in metrics), None)
    return ParityCell(row.status, row.reason, metric, metrics.get(metric), row.variant or "",
                      row.precision_label or row.effective_precision or "", row.target, metrics)


def parity_cells(report) -> dict[RowKey, ParityCell]:
    """(artifact, target) -> the parity cell; the default row (no variant) is the main cell, others go under variants."""
    cells: dict[RowKey, ParityCell] = {}
    for row in report.rows if report else []:
        cell, key = parity_cell(row), RowKey(row.artifact, row.target)
        main = cells.get(key)
        if main is None:
            cells[key] = cell
        elif not cell.variant and main.variant:  # the default row wins the main cell
            cell.variants = [dataclasses.replace(main, variants=[]), *main.variants]
            cells[key] = cell
        else:
            main.variants.append(cell)
    return cells


def latency_cell(row) -> LatencyCell:
    """A BenchRow as the report's cell at its batch."""
    stats = row.stats
    batch = row.batch if row.batch is not None else (stats.batch if stats else None)
    numbers = {f: _number(getattr(stats, f, None)) for f in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips", "cv")}
    return LatencyCell(batch, row.status, row.reason, **numbers, size_bytes=stats.artifact_size_bytes if stats else None,
                       speedup=_number(row.speedup), roofline=from_json(Roofline, row.roofline or None))


def latency_cells(report) -> dict[RowKey, list[LatencyCell]]:
    """(artifact, target, variant) -> its cells by batch, from the BenchReport."""
    cells: dict[RowKey, list[LatencyCell]] = {}
    for row in report.rows if report else []:
        target = "" if row.target in (None, "-") else row.target  # "-": bench's not-exported rows
        cells.setdefault(RowKey(row.artifact, target, row.variant or ""), []).append(latency_cell(row))
    for mine in cells.values():
        mine.sort(key=lambda c: -1 if c.batch is None else c.batch)
    return cells


def accuracy_cells(evaluation) -> dict[str, AccuracyCell]:
    """artifact -> the accuracy cell from the EvalReport (the artifact was scored on one chosen target)."""
    cells = {}
    for row in evaluation.rows if evaluation else []:
        metrics, deltas = row.metrics or {}, row.deltas or {}
        cells[row.artifact] = AccuracyCell(  # metrics and deltas are the producer's by-name dicts
            row.status, row.reason, row.target, _number(metrics.get("accuracy")), _number(deltas.get("accuracy")),
            _number(row.agreement), metrics, deltas, row.n_images)
    return cells


def _row_keys(parity, latency, artifacts) -> list[RowKey]:
    keys = list(latency)
    timed = {RowKey(k.artifact, k.target) for k in latency}
    keys += [k for k in parity if k not in timed]
    known = {k.artifact for k in keys}
    return keys + [RowKey(a, "") for a in artifacts if a not in known]


def build_rows(sources: Sources, environment: dict | None = None) -> list[ReportRow]:
    """Join the four sources on RowKey (artifact, target[, variant]); a row exists for every pair any source knows."""
    manifest = sources.manifest.loaded()
    artifacts = {a.id: a for a in (manifest.artifacts if manifest else [])}
    parity, latency = parity_cells(sources.parity.loaded()), latency_cells(sources.bench.loaded())
    accuracy, host = accuracy_cells(sources.eval.loaded()), Host.of(environment).kind
    rows = []
    for key in _row_keys(parity, latency, artifacts):
        fmt, _, precision = key.artifact.rpartition("-")
        row = ReportRow(key, key.artifact.split("-", 1)[0] if fmt else key.artifact, precision,
                        reference_executor=is_reference(key.target), latency=latency.get(key, []))
        if key.artifact in artifacts:
            entry = artifacts[key.artifact]
            row.format, row.precision, row.apple = entry.format, entry.precision, entry.details.apple
            row.input_type = (entry.input_spec or {}).get("input_type", "")
            row.size_bytes = entry.size_bytes or None
        row.size_bytes = row.size_bytes or next((c.size_bytes for c in row.latency if c.size_bytes), None)
        parity_key = RowKey(key.artifact, key.target)
        if parity_key in parity:
            row.parity = parity[parity_key]
        elif key.artifact in REFERENCE_ARTIFACTS:
            row.parity = ParityCell(Status.REFERENCE, "the PyTorch fp32 reference itself", target=key.target)
        row.accuracy = accuracy.get(key.artifact, row.accuracy)
        row.group, row.group_title = table_group(key.target, host) if key.target else ("", "")
        rows.append(row)
    return sorted(rows, key=lambda r: (r.target, r.p50() if r.p50() is not None else math.inf, r.artifact))


def weights_and_environment(sources: Sources) -> tuple[dict, dict | None]:
    """The weights info (manifest first) and the environment the measurements were made in (bench first)."""
    manifest = sources.manifest.loaded()
    weights = (manifest.weights if manifest else {}) or {}
    if not weights and manifest and manifest.artifacts:
        weights = manifest.artifacts[0].weights or {}
    producers = [s.loaded() for s in (sources.bench, sources.parity, sources.eval) if s.loaded() is not None]
    for producer in producers:
        weights = weights or producer.weights
    return weights, next((p.environment for p in producers if p.environment), None)
