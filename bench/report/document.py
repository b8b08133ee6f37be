"""The release report: manifest + parity + bench + eval -> reports/<run-id>/ (JSON, Markdown, CSV, HTML, plots).

The report opens with one shipping decision per device family (decide.py holds every rule), then the
results grouped by family. With untrained weights accuracy is not judged and the decisions rest on
parity, latency and what the manifest records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from vitship.bench.report.decide import DecisionOptions, decide
from vitship.bench.report.sources import build_rows, load_sources, weights_and_environment
from vitship.models import VitshipError
from vitship.models.atomic import atomic_directory, atomic_write_json, atomic_write_text

REPORT_SCHEMA_VERSION = 2  # 2: decisions per device family, statuses with their reason apart
REPORT_KIND = "vitship-report"
MERGED_KIND = "vitship-merged-report"
UNTRAINED_BANNER = "untrained weights: accuracy is meaningless; artifacts are judged by parity and latency only"


class ReportError(VitshipError):
    """A report cannot be read, written or merged."""


@dataclass(frozen=True)
class ReportOptions:
    accuracy_threshold_points: float = 0.5  # largest accepted accuracy drop vs the reference
    batch: int = 1  # the batch the decisions read latency at


def unavailable_reason(rows: list[dict]) -> str | None:
    """Why a target ran nothing here, when every row of it is unavailable (None when something ran or failed)."""
    statuses = [r["parity"]["verdict"] for r in rows] + [c.get("status", "") for r in rows for c in r["latency"].values()]
    if "unavailable" not in statuses or any(s not in ("unavailable", "not run") for s in statuses):
        return None
    reasons = [r["parity"]["reason"] for r in rows] + [c.get("reason", "") for r in rows for c in r["latency"].values()]
    return next((reason for reason in reasons if reason), "not available here")


def unavailable_targets(rows: list[dict]) -> dict[str, str]:
    """target -> reason, for the targets this machine could not run at all."""
    targets = sorted({r["target"] for r in rows if r["target"]})
    reasons = {t: unavailable_reason([r for r in rows if r["target"] == t]) for t in targets}
    return {t: reason for t, reason in reasons.items() if reason is not None}


def run_id(environment: dict | None, weights: dict, now: dt.datetime | None = None) -> str:
    """UTC timestamp plus a short id of the environment and the weights."""
    now = now or dt.datetime.now(dt.timezone.utc)
    short = hashlib.sha256(f"{(environment or {}).get('key')}|{weights.get('sha256')}".encode()).hexdigest()[:8]
    return f"{now:%Y%m%dT%H%M%SZ}-{short}"


def build_report(model_dir: Path | None, options: ReportOptions = ReportOptions(),
                 overrides: dict[str, Path | None] | None = None) -> dict:
    """The report document (what report.json holds) from the sources in ``model_dir``."""
    from vitship.bench.environment import environment as current_environment

    sources = load_sources(model_dir, overrides)
    weights, measured_env = weights_and_environment(sources)
    env = measured_env or current_environment()
    rows = build_rows(sources, env)
    evaluation = sources["eval"]["data"] if sources["eval"]["status"] == "ok" else None
    trained = bool(weights.get("trained", False))
    decision_options = DecisionOptions(options.batch, options.accuracy_threshold_points,
                                       judge_accuracy=trained and evaluation is not None)
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": REPORT_KIND,
        "run_id": run_id(env, weights),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": env,
        "weights": weights,
        "trained": trained,
        "banner": "" if trained else UNTRAINED_BANNER,
        "options": {"accuracy_threshold_points": options.accuracy_threshold_points, "batch": options.batch},
        "sections": {
            "sources": {name: {"path": e["path"], "status": e["status"]} for name, e in sources.items()},
            "decisions": decide(rows, {"": env}, decision_options),
            "unavailable_targets": unavailable_targets(rows),
            "rows": rows,
            "accuracy": _accuracy_section(evaluation),
            "plots": [],
        },
    }


def _accuracy_section(evaluation) -> dict | None:
    """What the report shows of an EvalReport: the data, the note, and each artifact's metrics and deltas."""
    if evaluation is None:
        return None
    return {"accuracy_judged": evaluation.accuracy_judged, "note": evaluation.note, "threshold": evaluation.threshold,
            "data": dict(evaluation.data),
            "rows": [{"artifact": r.artifact, "target": r.target, "status": str(r.status), "reason": r.reason,
                      "metrics": r.metrics, "deltas": r.deltas, "agreement": r.agreement, "n_images": r.n_images}
                     for r in evaluation.rows]}


def write_report(document: dict, reports_dir: Path) -> Path:
    """Write reports/<run-id>/ atomically (JSON, Markdown, CSV, HTML and plots); point reports/latest at it."""
    from vitship.bench.report import html as report_html
    from vitship.bench.report import markdown as report_markdown
    from vitship.bench.report import plots as report_plots

    reports_dir = Path(reports_dir)
    final = reports_dir / document["run_id"]
    suffix = 1
    while final.exists():
        final = reports_dir / f"{document['run_id']}-{suffix}"
        suffix += 1
    document["run_id"] = final.name
    with atomic_directory(final) as tmp:
        document["sections"]["plots"] = report_plots.write_plots(document, tmp)
        atomic_write_json(tmp / "report.json", document)
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


def read_report(path: Path) -> dict:
    """A report.json (or the folder that holds one), schema-checked."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: cannot read the report ({err}); pass a report.json written by vitship report") from err
    if document.get("schema_version") != REPORT_SCHEMA_VERSION or document.get("kind") not in (REPORT_KIND, MERGED_KIND):
        raise ReportError(f"{path}: not a vitship report of schema {REPORT_SCHEMA_VERSION} (kind {document.get('kind')!r}, "
                          f"schema {document.get('schema_version')!r}); rerun vitship report with this vitship")
    return document
