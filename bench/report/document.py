"""The release report: manifest + parity + bench + eval -> reports/<run-id>/ (JSON, Markdown, CSV, HTML, plots).

The report opens with one shipping decision per device family (decide.py holds every rule), then the
results grouped by family. With untrained weights accuracy is not judged and the decisions rest on
parity, latency and what the manifest records. The document classes and their reader are in schema.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

from vitship.bench.report.cells import ReportError, ReportRow
from vitship.bench.report.decide import DecisionOptions, decide
from vitship.bench.report.host import Host
from vitship.bench.report.profile_section import section_of, write_section_plots
from vitship.bench.report.schema import (  # noqa: F401  (re-exported: the report's public names)
    MERGED_KIND,
    REPORT_KIND,
    REPORT_SCHEMA_VERSION,
    UNTRAINED_BANNER,
    AccuracySection,
    EvalData,
    MergedReport,
    Report,
    ReportOptions,
    SourceInfo,
    WeightsInfo,
    read_report,
    report_json,
)
from vitship.bench.report.sources import accuracy_cells, build_rows, load_sources, weights_and_environment
from vitship.models.atomic import atomic_directory, atomic_write_json, atomic_write_text
from vitship.models.status import Status
from vitship.models.typed import from_json


def unavailable_reason(rows: list[ReportRow]) -> str | None:
    """Why a target ran nothing here, when every row of it is unavailable (None when something ran or failed)."""
    statuses = [r.parity.status for r in rows] + [c.status for r in rows for c in r.latency]
    if Status.UNAVAILABLE not in statuses or any(s not in (Status.UNAVAILABLE, Status.NOT_RUN) for s in statuses):
        return None
    reasons = [r.parity.reason for r in rows] + [c.reason for r in rows for c in r.latency]
    return next((reason for reason in reasons if reason), "not available here")


def unavailable_targets(rows: list[ReportRow]) -> dict[str, str]:
    """target -> reason, for the targets this machine could not run at all."""
    targets = sorted({r.target for r in rows if r.target})
    reasons = {t: unavailable_reason([r for r in rows if r.target == t]) for t in targets}
    return {t: reason for t, reason in reasons.items() if reason is not None}


def run_id(environment_key: str | None, weights_sha256: str | None, now: dt.datetime | None = None) -> str:
    """UTC timestamp plus a short id of the environment and the weights."""
    now = now or dt.datetime.now(dt.timezone.utc)
    short = hashlib.sha256(f"{environment_key}|{weights_sha256}".encode()).hexdigest()[:8]
    return f"{now:%Y%m%dT%H%M%SZ}-{short}"


def build_report(model_dir: Path | None, options: ReportOptions = ReportOptions(),
                 overrides: dict[str, Path | None] | None = None) -> Report:
    """The report of the sources in ``model_dir`` (what report.json holds)."""
    from vitship.bench.environment import environment as current_environment

    sources = load_sources(model_dir, overrides)
    weights, measured_env = weights_and_environment(sources)
    env = measured_env or current_environment()
    rows = build_rows(sources, env)
    evaluation = sources.eval.loaded()
    trained = WeightsInfo.of(weights).trained
    decision_options = DecisionOptions(options.batch, options.accuracy_threshold_points,
                                       judge_accuracy=trained and evaluation is not None)
    return Report(
        run_id=run_id(Host.of(env).key, WeightsInfo.of(weights).sha256), environment=env, weights=weights,
        options=options, sources={name: SourceInfo(s.path, s.status) for name, s in sources.items()},
        decisions=decide(rows, {"": Host.of(env)}, decision_options), unavailable_targets=unavailable_targets(rows),
        rows=rows, accuracy=_accuracy_section(evaluation), profile=section_of(sources.profile.loaded()))


def _accuracy_section(evaluation) -> AccuracySection | None:
    """What the report shows of an EvalReport: the data, the note, and each artifact's metrics and deltas."""
    if evaluation is None:
        return None
    return AccuracySection(evaluation.accuracy_judged, evaluation.note, evaluation.threshold,
                           from_json(EvalData, dict(evaluation.data)), accuracy_cells(evaluation))


def write_report(document: Report | MergedReport, reports_dir: Path) -> Path:
    """Write reports/<run-id>/ atomically (JSON, Markdown, CSV, HTML and plots); point reports/latest at it."""
    from vitship.bench.report import html as report_html
    from vitship.bench.report import markdown as report_markdown
    from vitship.bench.report import plots as report_plots

    reports_dir = Path(reports_dir)
    final = reports_dir / document.run_id
    suffix = 1
    while final.exists():
        final = reports_dir / f"{document.run_id}-{suffix}"
        suffix += 1
    document.run_id = final.name
    with atomic_directory(final) as tmp:
        document.plots = report_plots.write_plots(document, tmp)
        write_section_plots(document, tmp)
        atomic_write_json(tmp / "report.json", report_json(document))
        atomic_write_text(tmp / "report.md", report_markdown.to_markdown(document))
        atomic_write_text(tmp / "report.csv", report_markdown.to_csv(document))
        atomic_write_text(tmp / "report.html", report_html.to_html(document, tmp))
    point_latest(reports_dir, final.name)
    return final


def point_latest(reports_dir: Path, name: str) -> None:
    """Swap reports/latest to ``name`` atomically: a temporary symlink renamed over the old one."""
    tmp = Path(reports_dir) / f".latest.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(name, tmp, target_is_directory=True)
    os.replace(tmp, Path(reports_dir) / "latest")


__all__ = ["ReportError", "ReportOptions", "Report", "MergedReport", "build_report", "read_report", "write_report"]
