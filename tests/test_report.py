"""The release report: recommendation, round trip, self-contained HTML, tolerant sources, merge across machines."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vitship.bench.latency.results import BenchReport
from vitship.bench.environment import environment
from vitship.bench.latency.timing import BenchRow, LatencyStats
from vitship.bench.report.document import ReportOptions, build_report, merge_reports, read_report, write_report
from vitship.models.atomic import atomic_write_json

MIB = 2**20
# artifact -> (target, variant, p50 ms at batch 1, size MiB, parity verdict, accuracy)
TABLE = {
    "torch-fp32": ("torch:cpu", "eager", 240.0, None, None, 0.900),
    "onnx-fp32": ("onnxruntime:cpu", "opt=all", 90.0, 83, "pass", 0.900),
    "onnx-int8": ("onnxruntime:cpu", "opt=all", 57.0, 22, "fail", 0.880),
    "openvino-fp16": ("openvino:CPU", "hint=latency", 43.0, 42, "pass", 0.900),
    "openvino-int8": ("openvino:CPU", "hint=latency", 33.0, 22, "pass", 0.892),
}


def _stats(p50_ms: float, batch: int, size_mib) -> LatencyStats:
    samples = [int(p50_ms * batch * 1e6 * f) for f in (0.97, 0.99, 1.0, 1.0, 1.01, 1.03, 1.08)]
    return LatencyStats.from_samples(samples, batch=batch, artifact_size_bytes=size_mib * MIB if size_mib else None)


def write_sources(model_dir, env_key: str = "box-a", trained: bool = False, scale: dict | None = None) -> None:
    """manifest, parity.json, bench.json (written by the bench module's own classes) and eval.json."""
    env = {**environment(), "key": env_key, "hostname": env_key}
    weights = {"source": "seeded:0" if not trained else "/weights", "kind": "seeded", "sha256": "ab" * 32, "trained": trained}
    artifacts = {a: {"id": a, "format": a.split("-")[0], "precision": a.split("-")[1], "path": f"{a}/x",
                     "size_bytes": size * MIB, "weights": weights} for a, (_, _, _, size, _, _) in TABLE.items() if size}
    artifacts["coreml-fp16"] = {"id": "coreml-fp16", "format": "coreml", "precision": "fp16", "path": "c", "size_bytes": 43 * MIB}
    atomic_write_json(model_dir / "manifest.json", {"schema_version": 1, "artifacts": artifacts})
    parity_rows = [{"artifact": a, "target": t, "verdict": v, "reason": "" if v == "pass" else "feature cosine 0.9 < 0.98",
                    "metrics": {"min_cosine": 0.999999 if v == "pass" else 0.9, "max_abs_logit": 2e-5, "max_prob_err": 1e-5}}
                   for a, (t, _, _, _, v, _) in TABLE.items() if v]
    parity_rows.append({"artifact": "coreml-fp16", "target": "coreml:cpu_only", "verdict": "unavailable",
                        "reason": "CoreML runtime needs macOS", "metrics": {}})
    atomic_write_json(model_dir / "parity.json", {"schema_version": 1, "environment": env, "weights": weights, "rows": parity_rows})
    rows = [BenchRow(a, t, batch, v, stats=_stats(p50 * (scale or {}).get(a, 1.0), batch, size))
            for a, (t, v, p50, size, _, _) in TABLE.items() for batch in (1, 8)]
    rows.append(BenchRow("coreml-fp16", "coreml:cpu_only", None, "", status="unavailable: CoreML runtime needs macOS"))
    bench = BenchReport(model="tiny-vit", environment=env, weights=weights, config={}, rows=rows)
    atomic_write_json(model_dir / "bench.json", bench.to_dict())
    eval_rows = [{"artifact": a, "target": t, "status": "ok", "metrics": {"accuracy": acc},
                  "deltas": {"accuracy": (acc - 0.9) * 100}, "agreement": 1.0 - abs(acc - 0.9)}
                 for a, (t, _, _, _, _, acc) in TABLE.items()]
    atomic_write_json(model_dir / "eval.json", {
        "schema_version": 1, "environment": env, "weights": weights, "accuracy_judged": trained, "threshold": 0.5,
        "note": "" if trained else "untrained weights: accuracy is meaningless here", "rows": eval_rows,
        "data": {"source": "data/", "n_images": 500, "n_real": 250, "n_fake": 250, "n_skipped": 1,
                 "skipped": [{"path": "data/fake/broken.jpg", "reason": "corrupt or truncated image"}]}})


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("artifacts") / "tiny-vit"
    model_dir.mkdir()
    write_sources(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def written(untrained, tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    document = build_report(untrained)
    return document, write_report(document, reports)


def _line(document: dict, target: str) -> str:
    return next(s["line"] for s in document["sections"]["summary"] if s["target"] == target)


def test_recommendation_is_the_fastest_artifact_that_passes_parity(written):
    document, _ = written
    assert "ship onnx-fp32" in _line(document, "onnxruntime:cpu")  # onnx-int8 is faster but fails parity
    assert "ship openvino-int8" in _line(document, "openvino:CPU")
    assert "ship torch-fp32 (eager)" in _line(document, "torch:cpu")
    assert document["sections"]["unavailable_targets"] == {"coreml:cpu_only": "CoreML runtime needs macOS"}
    assert "coreml:cpu_only" not in [s["target"] for s in document["sections"]["summary"]]
    assert "accuracy not judged (untrained weights)" in _line(document, "openvino:CPU")
    assert document["banner"].startswith("untrained weights") and document["trained"] is False


def test_trained_weights_exclude_an_artifact_that_loses_accuracy(tmp_path):
    write_sources(tmp_path, trained=True)
    document = build_report(tmp_path)
    assert "ship openvino-fp16" in _line(document, "openvino:CPU")  # int8 lost 0.8 points > 0.5
    assert "accuracy +0.00 points" in _line(document, "openvino:CPU")
    assert "ship openvino-int8" in _line(build_report(tmp_path, ReportOptions(accuracy_threshold_points=1.0)), "openvino:CPU")
    assert document["banner"] == ""


def test_round_trip_files_and_latest(written, untrained, tmp_path):
    document, folder = written
    assert read_report(folder) == json.loads(json.dumps(document, default=str))
    assert {"report.json", "report.md", "report.csv", "report.html"} <= {p.name for p in folder.iterdir()}
    assert len(document["sections"]["plots"]) == 3 and all((folder / p).stat().st_size > 1000 for p in document["sections"]["plots"])
    latest = folder.parent / "latest"
    assert latest.is_symlink() and latest.resolve() == folder.resolve()
    second = write_report(build_report(untrained), folder.parent)
    assert second != folder and latest.resolve() == second.resolve() and folder.exists()


def test_html_is_self_contained_and_says_untrained_first(written):
    _, folder = written
    page = (folder / "report.html").read_text()
    assert not re.search(r"https?://", page)
    assert not re.search(r"""(src|href)\s*=\s*["']?//""", page) and "url(" not in page and "@import" not in page
    assert page.count('src="data:image/png;base64,') == 3
    assert page.index("untrained weights") < page.index("Recommendation")
    for text in ("ship openvino-int8", "onnx-int8", "fail", "1 unreadable images skipped", "data/fake/broken.jpg",
                 "not available on this machine: coreml:cpu_only (CoreML runtime needs macOS)"):
        assert text in page


def test_markdown_and_csv(written):
    document, folder = written
    markdown = (folder / "report.md").read_text()
    assert markdown.index("untrained weights") < markdown.index("## Recommendation")
    assert "ship onnx-fp32" in markdown and "| openvino-int8 (hint=latency) | openvino:CPU | 22.0 MiB | pass" in markdown
    rows = list(csv.DictReader(io.StringIO((folder / "report.csv").read_text())))
    assert len(rows) == 2 * len(TABLE) + 1  # two batches per timed row, one line for the unavailable CoreML row
    onnx = next(r for r in rows if r["artifact"] == "onnx-fp32" and r["batch"] == "1")
    assert float(onnx["p50_ms"]) == pytest.approx(90.0) and onnx["parity_verdict"] == "pass"


def test_missing_sources_render_as_not_run(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    atomic_write_json(model_dir / "manifest.json", {"schema_version": 1, "artifacts": {
        "onnx-fp32": {"id": "onnx-fp32", "format": "onnx", "precision": "fp32", "path": "x", "size_bytes": MIB}}})
    (model_dir / "bench.json").write_text("{ truncated")
    document = build_report(model_dir)
    sources = document["sections"]["sources"]
    assert sources["parity"]["status"] == "not run" and sources["eval"]["status"] == "not run"
    assert sources["bench"]["status"].startswith("unreadable")
    folder = write_report(document, tmp_path / "reports")
    page = (folder / "report.html").read_text()
    assert "parity: not run" in page and "accuracy: not run" in page and "not run" in (folder / "report.md").read_text()
    assert "not plotted: throughput against batch" in page and "data:image/png" not in page


def test_merge_has_a_column_per_machine(untrained, tmp_path):
    other = tmp_path / "b"
    other.mkdir()
    write_sources(other, env_key="box-b", scale={"onnx-fp32": 0.5})
    a, b = build_report(untrained), build_report(other)
    merged = merge_reports([a, b])
    labels = [m["label"] for m in merged["machines"]]
    assert len(labels) == 2 and labels[0].startswith("box-a") and labels[1].startswith("box-b")
    onnx = next(r for r in merged["sections"]["rows"] if r["artifact"] == "onnx-fp32")
    assert onnx["cells"][labels[0]]["p50_ms"] == pytest.approx(90.0) and onnx["cells"][labels[1]]["p50_ms"] == pytest.approx(45.0)
    paths = [write_report(d, tmp_path / "reports") / "report.json" for d in (a, b)]
    result = subprocess.run([sys.executable, "-m", "vitship.bench.cli", "report", "--merge", str(paths[0]), str(paths[1]),
                             "--reports", str(tmp_path / "reports")], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    folder = result.stdout.strip().splitlines()[-1]
    page = open(os.path.join(folder, "report.html")).read()
    assert all(label in page for label in labels) and "untrained weights" in page
    assert f"{labels[1]}: onnxruntime:cpu: ship onnx-fp32" in page  # each machine keeps its recommendation


def test_merging_one_report_is_an_error(untrained):
    from vitship.bench.report.document import ReportError

    with pytest.raises(ReportError, match="at least two"):
        merge_reports([copy.deepcopy(build_report(untrained))])


def test_real_chain_on_the_tiny_model(tmp_path):
    """vitship export onnx-fp32 -> parity -> eval -> bench -> report -> compare, on the tiny ViT."""
    import shutil

    from vitship.models import sample_images

    for index, photo in enumerate(sample_images(limit=8)):
        (tmp_path / "data" / ("fake" if index % 2 else "real")).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, tmp_path / "data" / ("fake" if index % 2 else "real") / photo.name)

    def cli(*args):
        result = subprocess.run([sys.executable, "-m", "vitship.bench.cli", *args], capture_output=True, text=True, timeout=600,
                                cwd=tmp_path, env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    cli("export", "--format", "onnx", "--precision", "fp32", "--arch", "tiny", "--out", "artifacts")
    cli("parity", "--artifacts", "artifacts", "--target", "onnxruntime:cpu")
    cli("eval", "--data", "data", "--artifacts", "artifacts")
    cli("bench", "--artifacts", "artifacts", "--arch", "tiny", "--quick", "--target", "onnxruntime:cpu",
        "--min-time", "0.2", "--warmup", "0.1", "--no-plots")
    folder = tmp_path / cli("report", "--artifacts", "artifacts").strip().splitlines()[-1]
    document = read_report(folder)
    (row,) = [r for r in document["sections"]["rows"] if r["target"] == "onnxruntime:cpu"]
    assert row["artifact"] == "onnx-fp32" and row["parity"]["verdict"] == "pass" and row["parity"]["value"] <= 1e-4
    assert row["latency"]["1"]["status"] == "ok" and row["latency"]["1"]["p50_ms"] > 0
    assert row["accuracy"]["agreement"] == 1.0 and row["accuracy"]["status"] == "ok"
    assert "onnxruntime:cpu: ship onnx-fp32" in (folder / "report.md").read_text()
    assert "untrained weights" in (folder / "report.html").read_text()
    cli("compare", str(folder), str(tmp_path / "reports" / "latest"))
