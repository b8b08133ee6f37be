"""The one place that knows the producers' JSON: manifest, parity.json, bench.json and eval.json -> report rows.

Every reader is tolerant: a missing or unreadable file becomes a source marked "not run" (or
"unreadable: ...") and the report still renders. Report rows are plain dicts keyed by
(artifact, target, variant); their shape is documented in ``empty_row``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# Where each producer writes, relative to the model folder (first existing wins).
SOURCE_FILES = {"manifest": ("manifest.json",), "parity": ("parity.json",), "bench": ("bench/bench.json", "bench.json"),
                "eval": ("eval.json",)}
REFERENCE_ARTIFACTS = ("torch-fp32", "torch")  # the PyTorch reference: parity is 'reference' by definition
PARITY_KEY_METRICS = ("min_cosine", "max_abs_logit", "max_prob_err", "agreement")


def load_sources(model_dir: Path | None, overrides: dict[str, Path | None] | None = None) -> dict[str, dict]:
    """{name: {"path", "status", "data"}} for manifest/parity/bench/eval; status is ok, not run or unreadable."""
    overrides = overrides or {}
    sources = {}
    for name, filenames in SOURCE_FILES.items():
        candidates = [Path(model_dir) / f for f in filenames] if model_dir else []
        path = overrides.get(name) or next((p for p in candidates if p.is_file()), candidates[0] if candidates else None)
        entry = {"path": str(path) if path else None, "status": "not run", "data": None}
        if path and Path(path).is_file():
            try:
                entry["data"] = json.loads(Path(path).read_text())
                entry["status"] = "ok"
            except (OSError, json.JSONDecodeError) as err:
                entry["status"] = f"unreadable: {err}"
        sources[name] = entry
    return sources


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def empty_row(artifact: str, target: str, variant: str = "") -> dict:
    """A report row: one (artifact, target, variant), every section 'not run' until a source fills it."""
    return {
        "artifact": artifact, "target": target, "variant": variant or "",
        "format": artifact.split("-", 1)[0], "precision": artifact.split("-", 1)[-1], "size_bytes": None,
        "parity": {"verdict": "not run", "reason": "", "metric": None, "value": None, "variant": "", "precision": "",
                   "metrics": {}, "variants": []},
        "latency": {},  # str(batch) -> {"status", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips", "cv"}
        "accuracy": {"status": "not run", "target": None, "accuracy": None, "delta_points": None,
                     "agreement": None, "metrics": {}, "deltas": {}},
    }


def artifact_sizes(manifest: dict | None) -> dict[str, int]:
    artifacts = (manifest or {}).get("artifacts") or {}
    items = artifacts.values() if isinstance(artifacts, dict) else artifacts
    return {a["id"]: a.get("size_bytes") for a in items if isinstance(a, dict) and "id" in a}


def parity_cells(parity: dict | None) -> dict[tuple[str, str], dict]:
    """(artifact, target) -> the row's parity cell from parity.json.

    A target can have several parity rows (an fp32 OpenVINO IR is also checked with f32 inference);
    the default row (no variant) is the one that matches what bench measured, the others are kept
    under "variants".
    """
    cells: dict[tuple[str, str], dict] = {}
    for row in (parity or {}).get("rows") or []:
        metrics = row.get("metrics") or {}
        metric, value = next(((name, _number(metrics[name])) for name in _key_metrics(row) if name in metrics), (None, None))
        cell = {
            "verdict": str(row.get("verdict") or row.get("status") or "unknown").split(":", 1)[0].strip(),
            "reason": row.get("reason") or "", "metric": metric, "value": value, "variant": row.get("variant") or "",
            "precision": row.get("precision_label") or row.get("effective_precision") or "",
            "metrics": {k: _number(v) for k, v in metrics.items() if _number(v) is not None},
        }
        key = (row.get("artifact"), row.get("target"))
        if key not in cells:
            cells[key] = {**cell, "variants": []}
        elif not cell["variant"] and cells[key]["variant"]:  # the default row wins the main cell
            cells[key] = {**cell, "variants": cells[key]["variants"] + [{k: v for k, v in cells[key].items() if k != "variants"}]}
        else:
            cells[key]["variants"].append(cell)
    return cells


def _key_metrics(row: dict) -> tuple[str, ...]:
    """fp32 is judged first by its max logit error; lower precisions by the feature cosine."""
    effective = row.get("effective_precision") or str(row.get("artifact", "")).rsplit("-", 1)[-1]
    return (("max_abs_logit",) if effective == "fp32" else ()) + PARITY_KEY_METRICS


def latency_cells(bench: dict | None) -> dict[tuple[str, str, str], dict[str, dict]]:
    """(artifact, target, variant) -> {str(batch): latency cell} from bench.json (units: ms, img/s)."""
    cells: dict[tuple[str, str, str], dict[str, dict]] = {}
    for row in (bench or {}).get("rows") or []:
        stats = row.get("stats") or {}
        target = "" if row.get("target") in (None, "-") else row["target"]  # "-": bench's not-exported rows
        key = (row.get("artifact"), target, row.get("variant") or "")
        batch = str(row.get("batch") if row.get("batch") is not None else stats.get("batch", "-"))
        cells.setdefault(key, {})[batch] = {
            "status": row.get("status") or "unknown",
            **{name: _number(stats.get(name)) for name in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips", "cv")},
            "size_bytes": stats.get("artifact_size_bytes"),
            "speedup": _number(row.get("speedup")),
        }
    return cells


def accuracy_cells(evaluation: dict | None) -> dict[str, dict]:
    """artifact -> the accuracy cell from eval.json (the artifact was scored on one chosen target)."""
    cells = {}
    for row in (evaluation or {}).get("rows") or []:
        metrics, deltas = row.get("metrics") or {}, row.get("deltas") or {}
        cells[row.get("artifact")] = {
            "status": row.get("status") or "unknown", "target": row.get("target"),
            "accuracy": _number(metrics.get("accuracy")), "delta_points": _number(deltas.get("accuracy")),
            "agreement": _number(row.get("agreement")), "metrics": metrics, "deltas": deltas,
        }
    return cells


# Targets whose rows must say what they are wherever they appear (issue 7: the numpy CoreML executor).
TARGET_LABELS = {"coreml:reference": "reference executor, not the Apple runtime"}


def target_display(target: str) -> str:
    """The target as tables and recommendation lines show it, with its label where it has one."""
    return f"{target} ({TARGET_LABELS[target]})" if target in TARGET_LABELS else target


def build_rows(sources: dict[str, dict]) -> list[dict]:
    """Join the four sources on (artifact, target[, variant]); a row exists for every pair any source knows."""
    data = {name: entry["data"] if entry["status"] == "ok" else None for name, entry in sources.items()}
    sizes = artifact_sizes(data["manifest"])
    parity, latency, accuracy = parity_cells(data["parity"]), latency_cells(data["bench"]), accuracy_cells(data["eval"])
    keys = list(latency)
    keys += [(a, t, "") for a, t in parity if not any(k[:2] == (a, t) for k in latency)]
    known = {k[0] for k in keys}
    keys += [(a, "", "") for a in sizes if a not in known]
    rows = []
    for artifact, target, variant in keys:
        row = empty_row(artifact, target, variant)
        row["latency"] = latency.get((artifact, target, variant), {})
        row["size_bytes"] = sizes.get(artifact) or next(
            (cell["size_bytes"] for cell in row["latency"].values() if cell.get("size_bytes")), None)
        if (artifact, target) in parity:
            row["parity"] = parity[(artifact, target)]
        elif artifact in REFERENCE_ARTIFACTS:
            row["parity"] = {**row["parity"], "verdict": "reference", "reason": "the PyTorch fp32 reference itself"}
        if artifact in accuracy:
            row["accuracy"] = accuracy[artifact]
        rows.append(row)
    return sorted(rows, key=lambda r: (r["target"], _p50(r) if _p50(r) is not None else math.inf, r["artifact"]))


def _p50(row: dict, batch: str = "1") -> float | None:
    cell = row["latency"].get(batch) or {}
    return cell.get("p50_ms") if cell.get("status") == "ok" else None


def weights_and_environment(sources: dict[str, dict]) -> tuple[dict, dict | None]:
    """The weights info (manifest first) and the environment the measurements were made in (bench first)."""
    data = {name: entry["data"] or {} for name, entry in sources.items()}
    weights = data["manifest"].get("weights") or {}
    if not weights:
        artifacts = data["manifest"].get("artifacts") or {}
        first = next(iter(artifacts.values() if isinstance(artifacts, dict) else artifacts), None)
        weights = (first or {}).get("weights") or {}
    for name in ("bench", "parity", "eval"):
        weights = weights or data[name].get("weights") or {}
    environment = next((data[name]["environment"] for name in ("bench", "parity", "eval") if data[name].get("environment")), None)
    return weights, environment
