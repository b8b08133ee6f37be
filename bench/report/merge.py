"""`vitship report --merge`: reports from many machines in one table, and one decision per family across them.

Each machine keeps its own rows (tagged with the machine's label), so that an Apple device's CoreML rows
rank the iOS family while this machine's rows still decide for Intel CPU (decide.py).
"""

from __future__ import annotations

import datetime as dt

from vitship.bench.report.decide import DecisionOptions, decide
from vitship.bench.report.document import MERGED_KIND, REPORT_KIND, REPORT_SCHEMA_VERSION, UNTRAINED_BANNER, ReportError, run_id
from vitship.bench.report.families import table_group


def machine_label(document: dict) -> str:
    env = document.get("environment") or {}
    gpus = "+".join(g.get("name", "?") for g in env.get("gpus") or [])
    cpu = (env.get("cpu") or {}).get("model") or "?"
    return f"{env.get('hostname') or '?'}: {cpu}" + (f" / {gpus}" if gpus else "")


def _machine(document: dict, taken: list[str]) -> dict:
    label = machine_label(document)
    label = label if label not in taken else f"{label} [{document['run_id']}]"
    return {"label": label, "key": (document.get("environment") or {}).get("key"), "run_id": document.get("run_id"),
            "environment": document.get("environment"), "weights_sha256": (document.get("weights") or {}).get("sha256")}


def _cell(row: dict) -> dict:
    batch1 = row["latency"].get("1") or {}
    return {"parity": row["parity"]["verdict"], "p50_ms": batch1.get("p50_ms"), "speedup": batch1.get("speedup"),
            "throughput_ips": batch1.get("throughput_ips"), "status": batch1.get("status", "not run"),
            "accuracy_delta_points": row["accuracy"]["delta_points"]}


def merge_reports(documents: list[dict]) -> dict:
    """One table across machines: rows keyed (artifact, target, variant), a column per report's environment."""
    if len(documents) < 2:
        raise ReportError("--merge needs at least two report.json files")
    machines, merged, machine_rows = [], {}, []
    for document in documents:
        if document.get("kind") != REPORT_KIND:
            raise ReportError(f"{document.get('run_id')}: only single-machine reports can be merged")
        machine = _machine(document, [m["label"] for m in machines])
        machines.append(machine)
        for row in document["sections"]["rows"]:
            machine_rows.append({**row, "machine": machine["label"]})
            key = f"{row['artifact']}|{row['target']}|{row['variant']}"
            group, title = table_group(row["target"], machine["environment"]) if row["target"] else ("", "")
            entry = merged.setdefault(key, {"artifact": row["artifact"], "target": row["target"], "variant": row["variant"],
                                            "reference_executor": row.get("reference_executor", False),
                                            "group": group, "group_title": title, "cells": {}})
            entry["cells"][machine["label"]] = _cell(row)
    weights = documents[0].get("weights") or {}
    trained = all(d.get("trained") for d in documents)
    options = documents[0].get("options") or {}
    judged = trained and any(r["accuracy"]["delta_points"] is not None for r in machine_rows)
    decisions = decide(machine_rows, {m["label"]: m["environment"] for m in machines},
                       DecisionOptions(batch=1, accuracy_threshold_points=options.get("accuracy_threshold_points", 0.5),
                                       judge_accuracy=judged))
    return {
        "schema_version": REPORT_SCHEMA_VERSION, "kind": MERGED_KIND,
        "run_id": run_id({"key": "|".join(m["key"] or "" for m in machines)}, weights) + "-merged",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": None, "weights": weights, "trained": trained, "banner": "" if trained else UNTRAINED_BANNER,
        "machines": machines,
        "notes": [] if len({m["weights_sha256"] for m in machines}) == 1 else
        ["note: the merged reports use different weights (sha256 differs); compare their rows with care"],
        "sections": {"decisions": decisions,
                     "rows": sorted(merged.values(), key=lambda r: (r["target"], r["artifact"], r["variant"])),
                     "machine_rows": machine_rows, "plots": []},
    }
