"""The report's inputs, read through the producers' own classes: manifest, parity.json, bench.json, eval.json.

A missing file is a source marked "not run" and the report still renders; a file with another
``schema_version`` (or one that cannot be read) is refused by its producer's loader with a message
that names the command to rerun. Report rows are plain dicts keyed by (artifact, target, variant);
their shape is documented in ``empty_row``.
"""

from __future__ import annotations

import math
from pathlib import Path

from vitship.bench.report.families import is_reference, table_group
from vitship.runtimes.base import target_display  # noqa: F401  (re-exported: bench's table shows the same label)

# Where each producer writes, relative to the model folder (first existing wins).
SOURCE_FILES = {"manifest": ("manifest.json",), "parity": ("parity.json",), "bench": ("bench/bench.json", "bench.json"),
                "eval": ("eval.json",)}
REFERENCE_ARTIFACTS = ("torch-fp32", "torch")  # the PyTorch reference: parity is 'reference' by definition
PARITY_KEY_METRICS = ("min_cosine", "max_abs_logit", "max_prob_err", "agreement")


def _load_manifest(path: Path) -> dict:
    from vitship.exporters.base import Artifact, read_manifest

    manifest = read_manifest(Path(path).parent)
    return {"weights": manifest.get("weights") or {},
            "artifacts": [Artifact.from_dict(a) for a in (manifest.get("artifacts") or {}).values()]}


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


LOADERS = {"manifest": _load_manifest, "parity": _load_parity, "bench": _load_bench, "eval": _load_eval}


def load_sources(model_dir: Path | None, overrides: dict[str, Path | None] | None = None) -> dict[str, dict]:
    """{name: {"path", "status", "data"}}: status "ok" with the producer's object as data, or "not run"."""
    overrides = overrides or {}
    sources = {}
    for name, filenames in SOURCE_FILES.items():
        candidates = [Path(model_dir) / f for f in filenames] if model_dir else []
        path = overrides.get(name) or next((p for p in candidates if p.is_file()), candidates[0] if candidates else None)
        entry = {"path": str(path) if path else None, "status": "not run", "data": None}
        if path and Path(path).is_file():
            entry["data"], entry["status"] = LOADERS[name](Path(path)), "ok"  # refuses another schema_version
        sources[name] = entry
    return sources


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def _status(status, reason: str = "") -> tuple[str, str]:
    """(word, reason) from a Status with its reason, or from an older "word: reason" string."""
    word, _, inline = str(status).partition(":")
    return word.strip(), (reason or inline.strip())


def empty_row(artifact: str, target: str, variant: str = "") -> dict:
    """A report row: one (artifact, target, variant), every section 'not run' until a source fills it."""
    fmt, _, precision = artifact.rpartition("-")
    return {
        "artifact": artifact, "target": target, "variant": variant or "", "machine": "",
        "format": artifact.split("-", 1)[0] if fmt else artifact, "precision": precision, "size_bytes": None,
        "reference_executor": is_reference(target), "apple": None, "group": "", "group_title": "",
        "parity": {"verdict": "not run", "reason": "", "metric": None, "value": None, "variant": "", "precision": "",
                   "metrics": {}, "variants": []},
        # str(batch) -> {"status", "reason", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips", "cv",
        #                "speedup" (torch eager p50 / this p50, same run), "roofline" (BenchRow.roofline or None)}
        "latency": {},
        "accuracy": {"status": "not run", "reason": "", "target": None, "accuracy": None, "delta_points": None,
                     "agreement": None, "metrics": {}, "deltas": {}},
    }


def _key_metrics(effective: str) -> tuple[str, ...]:
    """fp32 is judged first by its max logit error; lower precisions by the feature cosine."""
    return (("max_abs_logit",) if effective == "fp32" else ()) + PARITY_KEY_METRICS


def parity_cells(report) -> dict[tuple[str, str], dict]:
    """(artifact, target) -> the parity cell; the default row (no variant) is the main cell, others go under "variants"."""
    cells: dict[tuple[str, str], dict] = {}
    for row in report.rows if report else []:
        metrics = row.metrics or {}
        effective = row.effective_precision or row.artifact.rsplit("-", 1)[-1]
        metric, value = next(((n, _number(metrics[n])) for n in _key_metrics(effective) if n in metrics), (None, None))
        verdict, reason = _status(row.status, row.reason)
        cell = {"verdict": verdict, "reason": reason, "metric": metric, "value": value, "variant": row.variant or "",
                "precision": row.precision_label or row.effective_precision or "",
                "metrics": {k: _number(v) for k, v in metrics.items() if _number(v) is not None}}
        key = (row.artifact, row.target)
        if key not in cells:
            cells[key] = {**cell, "variants": []}
        elif not cell["variant"] and cells[key]["variant"]:  # the default row wins the main cell
            cells[key] = {**cell, "variants": cells[key]["variants"] + [{k: v for k, v in cells[key].items() if k != "variants"}]}
        else:
            cells[key]["variants"].append(cell)
    return cells


def latency_cells(report) -> dict[tuple[str, str, str], dict[str, dict]]:
    """(artifact, target, variant) -> {str(batch): latency cell} from the BenchReport (units: ms, img/s)."""
    cells: dict[tuple[str, str, str], dict[str, dict]] = {}
    for row in report.rows if report else []:
        stats = row.stats
        target = "" if row.target in (None, "-") else row.target  # "-": bench's not-exported rows
        status, reason = _status(row.status, getattr(row, "reason", ""))
        batch = str(row.batch if row.batch is not None else (stats.batch if stats else "-"))
        numbers = {name: _number(getattr(stats, name, None)) for name in
                   ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips", "cv")}
        cells.setdefault((row.artifact, target, row.variant or ""), {})[batch] = {
            "status": status, "reason": reason, **numbers, "size_bytes": stats.artifact_size_bytes if stats else None,
            "speedup": _number(row.speedup), "roofline": getattr(row, "roofline", None) or None,
        }
    return cells


def accuracy_cells(evaluation) -> dict[str, dict]:
    """artifact -> the accuracy cell from the EvalReport (the artifact was scored on one chosen target)."""
    cells = {}
    for row in evaluation.rows if evaluation else []:
        metrics, deltas = row.metrics or {}, row.deltas or {}
        status, reason = _status(row.status, row.reason)
        cells[row.artifact] = {
            "status": status, "reason": reason, "target": row.target,
            "accuracy": _number(metrics.get("accuracy")), "delta_points": _number(deltas.get("accuracy")),
            "agreement": _number(row.agreement), "metrics": metrics, "deltas": deltas,
        }
    return cells


def build_rows(sources: dict[str, dict], environment: dict | None = None) -> list[dict]:
    """Join the four sources on (artifact, target[, variant]); a row exists for every pair any source knows."""
    data = {name: entry["data"] if entry["status"] == "ok" else None for name, entry in sources.items()}
    artifacts = {a.id: a for a in (data["manifest"] or {}).get("artifacts", [])}
    parity, latency, accuracy = parity_cells(data["parity"]), latency_cells(data["bench"]), accuracy_cells(data["eval"])
    keys = list(latency)
    keys += [(a, t, "") for a, t in parity if not any(k[:2] == (a, t) for k in latency)]
    known = {k[0] for k in keys}
    keys += [(a, "", "") for a in artifacts if a not in known]
    rows = []
    for artifact, target, variant in keys:
        row = empty_row(artifact, target, variant)
        row["latency"] = latency.get((artifact, target, variant), {})
        if artifact in artifacts:
            entry = artifacts[artifact]
            row.update(format=entry.format, precision=entry.precision, size_bytes=entry.size_bytes or None,
                       apple=(entry.details or {}).get("apple"))
        row["size_bytes"] = row["size_bytes"] or next(
            (cell["size_bytes"] for cell in row["latency"].values() if cell.get("size_bytes")), None)
        if (artifact, target) in parity:
            row["parity"] = parity[(artifact, target)]
        elif artifact in REFERENCE_ARTIFACTS:
            row["parity"] = {**row["parity"], "verdict": "reference", "reason": "the PyTorch fp32 reference itself"}
        if artifact in accuracy:
            row["accuracy"] = accuracy[artifact]
        row["group"], row["group_title"] = table_group(target, environment) if target else ("", "")
        rows.append(row)
    return sorted(rows, key=lambda r: (r["target"], _p50(r) if _p50(r) is not None else math.inf, r["artifact"]))


def _p50(row: dict, batch: str = "1") -> float | None:
    cell = row["latency"].get(batch) or {}
    return cell.get("p50_ms") if cell.get("status") == "ok" else None


def weights_and_environment(sources: dict[str, dict]) -> tuple[dict, dict | None]:
    """The weights info (manifest first) and the environment the measurements were made in (bench first)."""
    data = {name: entry["data"] for name, entry in sources.items()}
    weights = (data["manifest"] or {}).get("weights") or {}
    if not weights:
        first = next(iter((data["manifest"] or {}).get("artifacts") or []), None)
        weights = (first.weights if first else {}) or {}
    for name in ("bench", "parity", "eval"):
        weights = weights or (data[name].weights if data[name] else {})
    environments = [data[name].environment for name in ("bench", "parity", "eval") if data[name]]
    return weights, next((env for env in environments if env), None)
