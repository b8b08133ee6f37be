"""The release report: manifest + parity + bench + eval -> reports/<run-id>/ (JSON, Markdown, CSV, HTML, plots).

The recommendation for each target is the fastest artifact at batch 1 that passes parity and whose
accuracy drop against the PyTorch reference is within the threshold (percentage points). With
untrained weights accuracy is not judged and the recommendation rests on parity and latency alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from vitship.bench.report.sources import build_rows, load_sources, target_display, weights_and_environment
from vitship.models import VitshipError
from vitship.models.atomic import atomic_directory, atomic_write_json

REPORT_SCHEMA_VERSION = 1
REPORT_KIND = "vitship-report"
MERGED_KIND = "vitship-merged-report"
PASSING_VERDICTS = ("pass", "reference")
UNTRAINED_BANNER = "untrained weights: accuracy is meaningless; artifacts are judged by parity and latency only"


class ReportError(VitshipError):
    """A report cannot be read, written or merged."""


@dataclass(frozen=True)
class ReportOptions:
    accuracy_threshold_points: float = 0.5  # largest accepted accuracy drop vs the reference
    batch: int = 1  # the batch the recommendation's latency is read at


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else (f"{value:.3g} ms" if value < 10 else f"{value:.1f} ms")


def _recommend_one(target: str, rows: list[dict], judged: bool, eval_ran: bool, options: ReportOptions) -> dict:
    batch = str(options.batch)
    passing = [r for r in rows if r["parity"]["verdict"] in PASSING_VERDICTS]
    timed = [r for r in passing if (r["latency"].get(batch) or {}).get("status") == "ok"]
    accepted = timed
    if judged and eval_ran:
        accepted = [r for r in timed if r["accuracy"]["delta_points"] is not None
                    and r["accuracy"]["delta_points"] >= -options.accuracy_threshold_points]
    entry = {"target": target, "artifact": None, "variant": "", "p50_ms": None, "line": ""}
    if not accepted:
        if not passing:
            why = "no artifact passes parity"
        elif not any(r["latency"] for r in passing):
            why = f"latency not measured on this target: vitship bench --target {target}"
        elif not timed:
            why = f"no parity-passing artifact was timed at batch {batch}"
        else:
            why = f"no artifact is within {options.accuracy_threshold_points:g} accuracy points of the reference"
        entry["line"] = f"{target_display(target)}: no recommendation ({why})"
        return entry
    best = min(accepted, key=lambda r: r["latency"][batch]["p50_ms"])
    p50 = best["latency"][batch]["p50_ms"]
    parity = best["parity"]
    parity_text = parity["verdict"] if parity["metric"] is None else f"{parity['verdict']}, {parity['metric']} {parity['value']:.6g}"
    if not judged:
        accuracy_text = "accuracy not judged (untrained weights): chosen by parity + latency"
    elif not eval_ran:
        accuracy_text = "accuracy not evaluated (run vitship eval): chosen by parity + latency"
    else:
        accuracy_text = f"accuracy {best['accuracy']['delta_points']:+.2f} points vs reference"
    name = best["artifact"] + (f" ({best['variant']})" if best["variant"] else "")
    entry.update(artifact=best["artifact"], variant=best["variant"], p50_ms=p50,
                 line=f"{target_display(target)}: ship {name}: p50 {_fmt_ms(p50)} at batch {batch}, parity {parity_text}, {accuracy_text}")
    return entry


def unavailable_reason(rows: list[dict]) -> str | None:
    """Why a target ran nothing here, when every row of it is unavailable (None when something ran or failed)."""
    statuses = [r["parity"]["verdict"] for r in rows] + [c.get("status", "") for r in rows for c in r["latency"].values()]
    if any(s not in ("unavailable", "not run") and not s.startswith("unavailable") for s in statuses):
        return None
    reasons = [r["parity"]["reason"] for r in rows if r["parity"]["reason"]]
    reasons += [c["status"].partition(":")[2].strip() for r in rows for c in r["latency"].values()]
    return next((reason for reason in reasons if reason), "not available here") if "unavailable" in " ".join(statuses) else None


def recommendations(rows: list[dict], judged: bool, eval_ran: bool, options: ReportOptions = ReportOptions()) -> list[dict]:
    """One summary entry per target that ran here (in name order): the recommended artifact and its reason."""
    targets = sorted({r["target"] for r in rows if r["target"]})
    by_target = {t: [r for r in rows if r["target"] == t] for t in targets}
    return [_recommend_one(t, mine, judged, eval_ran, options) for t, mine in by_target.items() if unavailable_reason(mine) is None]


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
    rows = build_rows(sources)
    evaluation = sources["eval"]["data"] if sources["eval"]["status"] == "ok" else None
    trained = bool(weights.get("trained", False))
    env = measured_env or current_environment()
    summary = recommendations(rows, trained, evaluation is not None, options)
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
            "summary": summary,
            "unavailable_targets": unavailable_targets(rows),
            "rows": rows,
            "accuracy": _accuracy_section(evaluation),
            "plots": [],
        },
    }


def _accuracy_section(evaluation: dict | None) -> dict | None:
    if not evaluation:
        return None
    return {key: evaluation.get(key) for key in ("accuracy_judged", "note", "threshold")} | {
        "data": {k: v for k, v in (evaluation.get("data") or {}).items()},
        "reference": next((r for r in evaluation.get("rows") or [] if r.get("artifact") == "torch-fp32"), {}).get("metrics"),
        "rows": [{k: r.get(k) for k in ("artifact", "target", "status", "metrics", "deltas", "agreement", "n_images")}
                 for r in evaluation.get("rows") or []],
    }


def write_report(document: dict, reports_dir: Path) -> Path:
    """Write reports/<run-id>/ atomically (JSON, Markdown, CSV, HTML and plots); point reports/latest at it."""
    from vitship.bench.report import html as report_html, plots as report_plots

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
        report_html.write_renderings(document, tmp)
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
        raise ReportError(f"{path}: not a vitship report of schema {REPORT_SCHEMA_VERSION} "
                          f"(kind {document.get('kind')!r}, schema {document.get('schema_version')!r})")
    return document


def machine_label(document: dict) -> str:
    env = document.get("environment") or {}
    gpus = "+".join(g.get("name", "?") for g in env.get("gpus") or [])
    cpu = (env.get("cpu") or {}).get("model") or "?"
    return f"{env.get('hostname') or '?'}: {cpu}" + (f" / {gpus}" if gpus else "")


def merge_reports(documents: list[dict]) -> dict:
    """One table across machines: rows keyed (artifact, target, variant), a column per report's environment."""
    if len(documents) < 2:
        raise ReportError("--merge needs at least two report.json files")
    machines, rows = [], {}
    for document in documents:
        if document.get("kind") != REPORT_KIND:
            raise ReportError(f"{document.get('run_id')}: only single-machine reports can be merged")
        label = machine_label(document)
        label = label if label not in [m["label"] for m in machines] else f"{label} [{document['run_id']}]"
        machines.append({"label": label, "key": (document.get("environment") or {}).get("key"),
                         "run_id": document.get("run_id"), "environment": document.get("environment"),
                         "weights_sha256": (document.get("weights") or {}).get("sha256"),
                         "summary": document["sections"]["summary"]})
        for row in document["sections"]["rows"]:
            key = f"{row['artifact']}|{row['target']}|{row['variant']}"
            merged = rows.setdefault(key, {"artifact": row["artifact"], "target": row["target"], "variant": row["variant"], "cells": {}})
            batch1 = row["latency"].get("1") or {}
            merged["cells"][label] = {"parity": row["parity"]["verdict"], "p50_ms": batch1.get("p50_ms"),
                                      "throughput_ips": batch1.get("throughput_ips"), "status": batch1.get("status", "not run"),
                                      "accuracy_delta_points": row["accuracy"]["delta_points"]}
    weights = documents[0].get("weights") or {}
    trained = all(d.get("trained") for d in documents)
    return {
        "schema_version": REPORT_SCHEMA_VERSION, "kind": MERGED_KIND,
        "run_id": run_id({"key": "|".join(m["key"] or "" for m in machines)}, weights) + "-merged",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": None, "weights": weights, "trained": trained, "banner": "" if trained else UNTRAINED_BANNER,
        "machines": machines,
        "notes": [] if len({m["weights_sha256"] for m in machines}) == 1 else
        ["note: the merged reports use different weights (sha256 differs); compare their rows with care"],
        "sections": {"rows": sorted(rows.values(), key=lambda r: (r["target"], r["artifact"], r["variant"])), "plots": []},
    }
