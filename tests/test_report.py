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

from tests.conftest import parity_metrics
from vitship.bench.accuracy import AccuracyResult, EvalReport, write_eval
from vitship.bench.environment import environment
from vitship.bench.latency.results import BenchReport
from vitship.bench.latency.timing import BenchRow, LatencyStats
from vitship.bench.parity.results import ParityReport, ParityResult, write_parity_report
from vitship.bench.report.cells import FamilyDecision, Roofline
from vitship.bench.report.document import (
    REPORT_SCHEMA_VERSION,
    ReportError,
    ReportOptions,
    build_report,
    read_report,
    write_report,
)
from vitship.bench.report.merge import merge_reports
from vitship.bench.rows import ResultsFileError
from vitship.exporters.base import MANIFEST_SCHEMA_VERSION, Artifact
from vitship.exporters.coreml_apple import AppleDetails, NeuralEngine
from vitship.exporters.details import ArtifactDetails, CoremlDetails
from vitship.models.atomic import atomic_write_json
from vitship.models.status import Status

MIB = 2**20
# artifact -> (target, variant, p50 ms at batch 1, size MiB, parity status, accuracy)
TABLE = {
    "torch-fp32": ("torch:cpu", "eager", 240.0, None, None, 0.900),
    "onnx-fp32": ("onnxruntime:cpu", "opt=all", 90.0, 83, "pass", 0.900),
    "onnx-int8": ("onnxruntime:cpu", "opt=all", 57.0, 22, "fail", 0.880),
    "openvino-fp16": ("openvino:CPU", "hint=latency", 43.0, 42, "pass", 0.900),
    "openvino-int8": ("openvino:CPU", "hint=latency", 33.0, 22, "pass", 0.892),
    "coreml-fp16": ("coreml:reference", "", 480.0, 43, "pass", 0.900),
}
APPLE = AppleDetails(NeuralEngine.ELIGIBLE, "", "image", [1], "iOS17", "fp16", [])


def _stats(p50_ms: float, batch: int, size_mib) -> LatencyStats:
    samples = [int(p50_ms * batch * 1e6 * f) for f in (0.97, 0.99, 1.0, 1.0, 1.01, 1.03, 1.08)]
    return LatencyStats.from_samples(samples, batch=batch, artifact_size_bytes=size_mib * MIB if size_mib else None)


def _artifacts(weights: dict) -> dict:
    out = {}
    for aid, (_, _, _, size, _, _) in TABLE.items():
        if size:
            fmt, precision = aid.split("-")
            details = CoremlDetails(apple=APPLE) if fmt == "coreml" else ArtifactDetails()
            entry = Artifact(aid, fmt, precision, f"{aid}/x", size_bytes=size * MIB, weights=weights, details=details)
            out[aid] = entry.to_dict()
    return out


def _parity(env: dict, weights: dict) -> ParityReport:
    rows = [ParityResult(a, t, a.split("-")[0], a.split("-")[1], status=Status(v),
                         reason="" if v == "pass" else "feature cosine 0.9 < 0.98",
                         metrics=parity_metrics(0.999999 if v == "pass" else 0.9, 2e-5, 1e-5))
            for a, (t, _, _, _, v, _) in TABLE.items() if v]
    rows.append(ParityResult("coreml-fp16", "coreml:cpu_only", "coreml", "fp16", status=Status.UNAVAILABLE,
                             reason="CoreML runtime needs macOS"))
    return ParityReport(env, weights, {}, {}, {}, {}, rows=rows)


def _bench(env: dict, weights: dict, scale: dict | None) -> BenchReport:
    rows = [BenchRow(a, t, batch, v, knobs={"torch_variant": "eager", "torch_dtype": "fp32"} if a == "torch-fp32" else {},
                     stats=_stats(p50 * (scale or {}).get(a, 1.0), batch, size))
            for a, (t, v, p50, size, _, _) in TABLE.items() for batch in (1, 8)]
    rows.append(BenchRow("coreml-fp16", "coreml:cpu_only", None, "", status=Status.UNAVAILABLE,
                         reason="CoreML runtime needs macOS"))
    return BenchReport(model="tiny-vit", environment=env, weights=weights, config={}, rows=rows)


def _eval(env: dict, weights: dict) -> EvalReport:
    rows = [AccuracyResult(a, t, metrics={"accuracy": acc}, deltas={"accuracy": (acc - 0.9) * 100},
                           agreement=1.0 - abs(acc - 0.9))
            for a, (t, _, _, _, _, acc) in TABLE.items()]
    data = {"source": "data/", "n_images": 500, "n_real": 250, "n_fake": 250, "n_skipped": 1,
            "skipped": [{"path": "data/fake/broken.jpg", "reason": "corrupt or truncated image"}]}
    return EvalReport(env, weights, 0.5, data, [], [], rows=rows)


def write_sources(model_dir, env_key: str = "box-a", trained: bool = False, scale: dict | None = None,
                  hostname: str = "") -> None:
    """manifest, parity.json, bench.json and eval.json, each written by its producer's own classes."""
    env = {**environment(), "key": env_key, "hostname": hostname or env_key}
    weights = {"source": "seeded:0" if not trained else "/weights", "kind": "seeded", "sha256": "ab" * 32, "trained": trained}
    atomic_write_json(model_dir / "manifest.json", {"schema_version": MANIFEST_SCHEMA_VERSION, "weights": weights,
                                                    "artifacts": _artifacts(weights)})
    write_parity_report(model_dir, _parity(env, weights))
    (model_dir / "bench").mkdir(exist_ok=True)
    atomic_write_json(model_dir / "bench" / "bench.json", _bench(env, weights, scale).to_dict())
    write_eval(model_dir, _eval(env, weights))


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


def _decision(document, slug: str) -> FamilyDecision:
    return next(d for d in document.decisions if d.slug == slug)


def test_decisions_per_family_open_the_report(written):
    document, _ = written
    intel = _decision(document, "intel-cpu")
    assert intel.pick.artifact == "openvino-int8"  # onnx-int8 is faster than onnx-fp32 but fails parity
    assert intel.sentence.startswith("Ship openvino-int8 on openvino:CPU [hint=latency]: p50 33 ms at batch 1, 7.27x faster")
    assert {a.artifact: a.reason for a in intel.avoid}["onnx-int8"].startswith("parity fail on onnxruntime:cpu")
    ios = _decision(document, "ios")  # coreml:reference is timed (480 ms) but never ranks
    assert ios.pick.artifact == "coreml-fp16" and ios.pick.p50_ms is None and "480" not in ios.sentence
    assert "Neural Engine eligible (fp16, image input, batch 1)" in ios.sentence and "iOS 17+" in ios.sentence
    assert document.unavailable_targets == {"coreml:cpu_only": "CoreML runtime needs macOS"}
    assert document.banner.startswith("untrained weights") and document.trained is False


def test_trained_weights_exclude_an_artifact_that_loses_accuracy(tmp_path):
    write_sources(tmp_path, trained=True)
    document = build_report(tmp_path)
    intel = _decision(document, "intel-cpu")
    assert intel.pick.artifact == "openvino-fp16"  # int8 lost 0.8 points > 0.5
    assert "accuracy +0.00 points against PyTorch" in intel.sentence
    assert "loses 0.80 accuracy points" in {a.artifact: a.reason for a in intel.avoid}["openvino-int8"]
    looser = build_report(tmp_path, ReportOptions(accuracy_threshold_points=1.0))
    assert _decision(looser, "intel-cpu").pick.artifact == "openvino-int8"
    assert document.banner == ""


def test_round_trip_files_and_latest(written, untrained, tmp_path):
    document, folder = written
    assert read_report(folder) == document  # every typed field survives report.json
    assert json.loads((folder / "report.json").read_text())["schema_version"] == REPORT_SCHEMA_VERSION
    assert {"report.json", "report.md", "report.csv", "report.html"} <= {p.name for p in folder.iterdir()}
    plots = document.plots
    assert len(plots) == 3 and all((folder / p).stat().st_size > 1000 for p in plots)
    latest = folder.parent / "latest"
    assert latest.is_symlink() and latest.resolve() == folder.resolve()
    second = write_report(build_report(untrained), folder.parent)
    assert second != folder and latest.resolve() == second.resolve() and folder.exists()


def test_html_is_self_contained_and_decides_first(written):
    _, folder = written
    page = (folder / "report.html").read_text()
    assert not re.search(r"https?://", page)
    assert not re.search(r"""(src|href)\s*=\s*["']?//""", page) and "url(" not in page and "@import" not in page
    assert page.count('src="data:image/png;base64,') == 3
    assert page.index("untrained weights") < page.index("Decision per device family") < page.index("Results")
    for title in ("iOS / Apple", "Intel CPU", "Intel GPU / NPU", "NVIDIA GPU", "Android / ARM CPU"):
        assert f"<h3>{title}</h3>" in page
    for text in ("Ship openvino-int8", "onnx-int8", "fail", "1 unreadable images skipped", "data/fake/broken.jpg",
                 "coreml:cpu_only: CoreML runtime needs macOS", "reference executor time, not a device time",
                 "<code>vitship report --merge reports/latest/report.json DEVICE/report.json</code>"):
        assert text in page, text


def test_markdown_has_a_heading_per_family_and_a_speedup_column(written):
    document, folder = written
    markdown = (folder / "report.md").read_text()
    assert markdown.index("untrained weights") < markdown.index("## Decision per device family") < markdown.index("## Results")
    for title in ("iOS / Apple", "Intel CPU", "Intel GPU / NPU", "NVIDIA GPU", "Android / ARM CPU"):
        assert f"\n### {title}\n" in markdown
    assert "| openvino-int8 (hint=latency) | openvino:CPU | 23.1 MB | pass (min_cosine 0.999999) | 33 | 7.27x |" in markdown
    reference = next(line for line in markdown.splitlines() if line.startswith("| coreml-fp16 | coreml:reference"))
    assert "| 480† | - |" in reference  # marked, and no speed-up: a reference executor's time is no device time
    assert markdown.index("**iOS / Apple**") < markdown.index("**Intel CPU**") < markdown.index("**PyTorch")
    rows = list(csv.DictReader(io.StringIO((folder / "report.csv").read_text())))
    assert len(rows) == 2 * len(TABLE) + 1  # two batches per timed row, one line for the unavailable CoreML row
    onnx = next(r for r in rows if r["artifact"] == "onnx-fp32" and r["batch"] == "1")  # a CSV record
    assert float(onnx["p50_ms"]) == pytest.approx(90.0) and onnx["parity_verdict"] == "pass"
    assert float(onnx["speedup"]) == pytest.approx(240 / 90)


def test_roofline_columns_show_the_bench_roofline_or_a_dash(written):
    from vitship.bench.report.tables import results_tables

    document = copy.deepcopy(written[0])
    row = next(r for r in document.rows if r.artifact == "openvino-int8")
    row.latency_at(1).roofline = Roofline(gflop_per_image=24.8, gflops=431.0, peak_gflops=800.0, peak_precision="int8",
                                          percent_of_peak=53.9, peak_source="onnxruntime")
    lines = {line[0]: line for table in results_tables(document) for line in table.lines}
    headers = results_tables(document)[0].headers
    gflops, percent = headers.index("GFLOP/s (b1)"), headers.index("% of peak")
    int8 = lines["openvino-int8 (hint=latency)"]
    assert int8[gflops] == "431" and int8[percent] == "54% of 800 int8"
    assert lines["onnx-fp32 (opt=all)"][gflops] == "-" and lines["onnx-fp32 (opt=all)"][percent] == "-"


def test_missing_sources_render_as_not_run_and_other_schemas_are_refused(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    atomic_write_json(model_dir / "manifest.json", {"schema_version": MANIFEST_SCHEMA_VERSION, "artifacts": {
        "onnx-fp32": Artifact("onnx-fp32", "onnx", "fp32", "x", size_bytes=MIB).to_dict()}})
    document = build_report(model_dir)
    sources = document.sources
    assert sources["parity"].status is Status.NOT_RUN and sources["eval"].status is Status.NOT_RUN
    folder = write_report(document, tmp_path / "reports")
    page = (folder / "report.html").read_text()
    assert "parity: not run" in page and "accuracy: not run" in page and "not run" in (folder / "report.md").read_text()
    assert "not plotted: throughput against batch" in page and "data:image/png" not in page
    (model_dir / "bench.json").write_text(json.dumps({"schema_version": 1, "rows": []}))
    with pytest.raises(ResultsFileError, match="bench results with schema_version 1.*rerun vitship bench"):
        build_report(model_dir)
    (model_dir / "bench.json").write_text("{ truncated")
    with pytest.raises(ResultsFileError, match="unreadable bench results"):
        build_report(model_dir)


def test_merge_has_a_column_per_machine_and_decides_across_them(untrained, tmp_path):
    other = tmp_path / "b"
    other.mkdir()
    write_sources(other, env_key="box-b", scale={"onnx-fp32": 0.5})
    a, b = build_report(untrained), build_report(other)
    merged = merge_reports([a, b])
    labels = [m.label for m in merged.machines]
    assert len(labels) == 2 and labels[0].startswith("box-a") and labels[1].startswith("box-b")
    onnx = next(r for r in merged.rows if r.artifact == "onnx-fp32")
    assert onnx.cells[labels[0]].p50_ms == pytest.approx(90.0) and onnx.cells[labels[1]].p50_ms == pytest.approx(45.0)
    intel = _decision(merged, "intel-cpu")
    assert intel.pick.artifact == "openvino-int8" and intel.pick.machine in labels
    paths = [write_report(d, tmp_path / "reports") / "report.json" for d in (a, b)]
    result = subprocess.run([sys.executable, "-m", "vitship.bench.cli", "report", "--merge", str(paths[0]), str(paths[1]),
                             "--reports", str(tmp_path / "reports")], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    folder = result.stdout.strip().splitlines()[-1]
    page = Path(folder, "report.html").read_text()
    assert all(label in page for label in labels) and "untrained weights" in page and "<h3>Intel CPU</h3>" in page


def test_markup_in_a_merged_report_comes_out_escaped(untrained, tmp_path):
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    write_sources(hostile, env_key="evil", hostname="<script>alert('host')</script>")
    document = build_report(hostile)
    row = next(r for r in document.rows if r.artifact == "onnx-int8")
    row.parity.reason = '<img src=x onerror="alert(1)">'
    folder = write_report(merge_reports([document, build_report(untrained)]), tmp_path / "reports")
    page = (folder / "report.html").read_text()
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#39;host&#39;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page


def test_merging_one_report_is_an_error(untrained):
    with pytest.raises(ReportError, match="at least two"):
        merge_reports([copy.deepcopy(build_report(untrained))])
