"""`vitship report` on real parity.json, bench.json and manifest files with every kind of row.

The files are written by the producers' own classes and writers (ParityReport/ParityResult and
write_parity_report, BenchReport/BenchRow and bench's write_report, the exporters' write_manifest), and
the report runs through the CLI's own entry point, in process. Rows: a reference executor with GFLOP/s but
no % of peak (coreml:reference), unavailable, failed, error, parity-only, bench-only, inputs with one file
missing, and two environments merged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import parity_metrics
from vitship.bench.cli import main
from vitship.bench.environment import environment
from vitship.bench.latency.results import BenchReport
from vitship.bench.latency.results import write_report as write_bench
from vitship.bench.latency.timing import BenchRow, LatencyStats
from vitship.bench.parity.results import ParityReport, ParityResult, write_parity_report
from vitship.bench.report.document import REPORT_SCHEMA_VERSION, Report, read_report
from vitship.bench.report.schema import MergedReport
from vitship.bench.rows import RowKey
from vitship.exporters.base import MANIFEST_SCHEMA_VERSION, Artifact, write_manifest
from vitship.exporters.coreml_apple import AppleDetails, NeuralEngine
from vitship.exporters.details import ArtifactDetails
from vitship.models.spec import tiny_spec
from vitship.models.status import Status

SPEC = tiny_spec()
WEIGHTS = {"source": "seeded:0", "kind": "seeded", "sha256": "cd" * 32, "trained": False}
APPLE = AppleDetails(NeuralEngine.ELIGIBLE, "", "image", [1], "iOS17", "fp16", [])
MACOS = "the CoreML runtime needs macOS"
CRASH = "worker exited with code -11"
ROOFLINE = {"gflop_per_image": 0.05, "gflops": 50.0, "peak_gflops": 200.0, "peak_precision": "fp32",
            "percent_of_peak": 25.0, "peak_source": "onnxruntime"}
REFERENCE_ROOFLINE = {"gflop_per_image": 0.05, "gflops": 2.5, "peak_gflops": None, "peak_precision": None,
                      "percent_of_peak": None, "peak_source": None}  # a reference executor: no machine peak


def _artifact(aid: str, mib: int) -> Artifact:
    fmt, precision = aid.rsplit("-", 1)
    return Artifact(aid, fmt, precision, f"{aid}/model", size_bytes=mib * 2**20, weights=WEIGHTS,
                    input_spec=SPEC.to_dict(), details=ArtifactDetails(apple=APPLE if fmt == "coreml" else None))


ARTIFACTS = [_artifact(a, mib) for a, mib in (("onnx-fp32", 22), ("onnx-int8", 6), ("onnx-fp16", 11), ("openvino-fp32", 22),
                                               ("openvino-fp16", 11), ("coreml-fp16", 11))]


def _parity_rows() -> list[ParityResult]:
    def row(aid, target, status, reason="", cosine=None):
        fmt, precision = aid.rsplit("-", 1)
        metrics = parity_metrics(cosine, 3e-6, 1e-6) if cosine is not None else None
        return ParityResult(aid, target, fmt, precision, status=status, reason=reason, metrics=metrics,
                            effective_precision=precision)

    return [row("onnx-fp32", "onnxruntime:cpu", Status.PASS, cosine=0.9999999),
            row("onnx-int8", "onnxruntime:cpu", Status.FAIL, "feature cosine 0.91 < 0.98", cosine=0.91),
            row("openvino-fp32", "openvino:CPU", Status.ERROR, CRASH),
            row("openvino-fp16", "openvino:CPU", Status.PASS, cosine=0.9995),  # parity only: never benched
            row("coreml-fp16", "coreml:reference", Status.PASS, cosine=0.9996),
            row("coreml-fp16", "coreml:cpu_only", Status.UNAVAILABLE, MACOS)]


def _stats(p50_ms: float, batch: int = 1) -> LatencyStats:
    samples = [int(p50_ms * 1e6 * f) for f in (0.98, 0.99, 1.0, 1.0, 1.01, 1.02, 1.05)]
    return LatencyStats.from_samples(samples, batch=batch, artifact_size_bytes=None)


def _bench_rows(scale: float) -> list[BenchRow]:
    torch_knobs = {"torch_variant": "eager", "torch_dtype": "fp32"}
    return [BenchRow("torch-fp32", "torch:cpu", 1, "eager", knobs=torch_knobs, stats=_stats(40.0)),
            BenchRow("onnx-fp32", "onnxruntime:cpu", 1, "", stats=_stats(20.0 * scale), roofline=ROOFLINE),
            BenchRow("onnx-fp32", "onnxruntime:cpu", 4, "", stats=_stats(60.0 * scale, batch=4)),
            BenchRow("onnx-int8", "onnxruntime:cpu", 1, "", stats=_stats(10.0 * scale)),  # faster, but fails parity
            BenchRow("onnx-fp16", "onnxruntime:cpu", 1, "", stats=_stats(30.0 * scale)),  # bench only: no parity row
            BenchRow("openvino-fp32", "openvino:CPU", 1, "", status=Status.ERROR, reason=CRASH),
            BenchRow("coreml-fp16", "coreml:reference", 1, "", stats=_stats(400.0), roofline=REFERENCE_ROOFLINE),
            BenchRow("coreml-fp16", "coreml:cpu_only", None, "", status=Status.UNAVAILABLE, reason=MACOS)]


@pytest.fixture(scope="module")
def measured_environment() -> dict:
    return environment()


def write_model_dir(folder: Path, env: dict, parity: bool = True, bench: bool = True, scale: float = 1.0) -> Path:
    """A model folder as export, parity and bench leave it, each file written by its producer's own writer."""
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(folder, {"schema_version": MANIFEST_SCHEMA_VERSION, "weights": WEIGHTS,
                            "artifacts": {a.id: a.to_dict() for a in ARTIFACTS}})
    if parity:
        write_parity_report(folder, ParityReport(env, WEIGHTS, SPEC.to_dict(), {"batch_sizes": [1, 2]},
                                                 {"names": ["photo-0"], "photos": 1}, {}, rows=_parity_rows()))
    if bench:
        report = BenchReport(model=SPEC.name, environment=env, weights=WEIGHTS, config={"threads": 1, "batches": [1, 4]},
                             rows=_bench_rows(scale))
        write_bench(report, folder / "bench", plots=False)
    return folder


def cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run vitship's own entry point in process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["vitship", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exited:
        main()
        sys.exit(0)
    out, err = capsys.readouterr()
    return exited.value.code or 0, out, err


def report_folder(monkeypatch, capsys, *args) -> Path:
    code, out, err = cli(monkeypatch, capsys, "report", *args)
    assert code == 0, out + err
    return Path(out.strip().splitlines()[-1])


def _line(markdown: str, start: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(start))


def test_every_kind_of_row_reaches_the_report(tmp_path, monkeypatch, capsys, measured_environment):
    env = {**measured_environment, "key": "box-a", "hostname": "box-a"}
    model_dir = write_model_dir(tmp_path / "artifacts" / SPEC.name, env)
    folder = report_folder(monkeypatch, capsys, "--artifacts", tmp_path / "artifacts", "--arch", "tiny",
                           "--reports", tmp_path / "reports")
    document = read_report(folder)
    assert isinstance(document, Report) and document.schema_version == REPORT_SCHEMA_VERSION
    assert json.loads((folder / "report.json").read_text())["schema_version"] == REPORT_SCHEMA_VERSION
    assert str(model_dir / "parity.json") == document.sources["parity"].path
    assert document.sources["eval"].status is Status.NOT_RUN and document.sources["bench"].status is Status.OK

    reference = document.row(RowKey("coreml-fp16", "coreml:reference"))
    assert reference.reference_executor and reference.p50() == pytest.approx(400.0, rel=0.02)
    assert reference.latency_at(1).roofline.gflops == 2.5 and reference.latency_at(1).roofline.percent_of_peak is None
    assert document.row(RowKey("openvino-fp32", "openvino:CPU")).latency_at(1).status is Status.ERROR
    assert document.row(RowKey("openvino-fp16", "openvino:CPU")).latency == []  # parity only
    assert document.row(RowKey("onnx-fp16", "onnxruntime:cpu")).parity.status is Status.NOT_RUN  # bench only
    assert document.unavailable_targets == {"coreml:cpu_only": MACOS}

    decisions = {d.slug: d for d in document.decisions}
    intel = decisions["intel-cpu"]
    assert intel.pick.artifact == "onnx-fp32" and intel.pick.p50_ms == pytest.approx(20.0, rel=0.02)
    assert intel.sentence.startswith("Ship onnx-fp32 on onnxruntime:cpu: p50 20 ms at batch 1, 2.00x faster than PyTorch")
    avoided = {a.artifact: a.reason for a in intel.avoid}
    assert avoided == {"onnx-int8": "parity fail on onnxruntime:cpu: feature cosine 0.91 < 0.98",
                       "openvino-fp32": f"parity error on openvino:CPU: {CRASH}"}  # not run (onnx-fp16) is not 'avoid'
    ios = decisions["ios"]
    assert ios.pick.artifact == "coreml-fp16" and ios.pick.p50_ms is None and "400" not in ios.sentence
    assert "latency not measured on an Apple device" in ios.sentence

    markdown = (folder / "report.md").read_text()
    assert "**Ship onnx-fp32 on onnxruntime:cpu: p50 20 ms" in markdown
    assert "| 20 | 2.00x |" in _line(markdown, "| onnx-fp32 | onnxruntime:cpu |")
    assert "| 50 | 25% of 200 fp32 |" in _line(markdown, "| onnx-fp32 | onnxruntime:cpu |")
    assert "| 400† | - |" in _line(markdown, "| coreml-fp16 | coreml:reference")  # marked, no speed-up
    assert "| 2.5 | - |" in _line(markdown, "| coreml-fp16 | coreml:reference")  # GFLOP/s, no % of peak
    assert f"| error: {CRASH} | error |" in _line(markdown, "| openvino-fp32 | openvino:CPU |")
    assert "| fail (min_cosine 0.91): feature cosine 0.91 < 0.98 | 10 |" in _line(markdown, "| onnx-int8 |")
    assert "| not run | 30 |" in _line(markdown, "| onnx-fp16 | onnxruntime:cpu |")
    assert "| pass (min_cosine 0.9995) | not run |" in _line(markdown, "| openvino-fp16 | openvino:CPU |")
    assert "- coreml:cpu_only: the CoreML runtime needs macOS" in markdown
    assert not any(line.startswith("| coreml-fp16 | coreml:cpu_only") for line in markdown.splitlines())
    assert "- eval: not run" in markdown and "- accuracy: not run (vitship eval --data DIR)" in markdown
    page = (folder / "report.html").read_text()
    assert '<td class="error">error</td>' in page and "400†" in page and "reference executor time, not a device time" in page
    records = (folder / "report.csv").read_text().splitlines()
    assert len(records) == 1 + 9  # header; torch, onnx-fp32 x2, int8, fp16, openvino x2, reference, unavailable
    assert any(r.startswith("openvino-fp16,openvino:CPU,,,") and ",not run," in r for r in records)


def test_one_file_missing_renders_the_other(tmp_path, monkeypatch, capsys, measured_environment):
    env = {**measured_environment, "key": "box-a", "hostname": "box-a"}
    parity_only = write_model_dir(tmp_path / "p" / SPEC.name, env, bench=False)
    bench_only = write_model_dir(tmp_path / "b" / SPEC.name, env, parity=False)

    folder = report_folder(monkeypatch, capsys, "--artifacts", tmp_path / "p", "--arch", "tiny", "--reports", tmp_path / "r")
    document, markdown = read_report(folder), (folder / "report.md").read_text()
    assert document.sources["bench"].status is Status.NOT_RUN and f"- bench: not run ({parity_only}" in markdown
    assert all(not row.latency for row in document.rows)
    assert "| pass (max_abs_logit 3e-06) | not run |" in _line(markdown, "| onnx-fp32 | onnxruntime:cpu |")
    decisions = {d.slug: d for d in document.decisions}
    assert decisions["intel-cpu"].pick is None and decisions["ios"].pick.artifact == "coreml-fp16"
    assert "onnx-int8" in {a.artifact for a in decisions["intel-cpu"].avoid}

    folder = report_folder(monkeypatch, capsys, "--artifacts", tmp_path / "b", "--arch", "tiny", "--reports", tmp_path / "r")
    document, markdown = read_report(folder), (folder / "report.md").read_text()
    assert document.sources["parity"].status is Status.NOT_RUN and f"- parity: not run ({bench_only}" in markdown
    assert {row.parity.status for row in document.rows} <= {Status.NOT_RUN, Status.REFERENCE}
    assert "| not run | 20 | 2.00x |" in _line(markdown, "| onnx-fp32 | onnxruntime:cpu |")
    assert all(d.pick is None for d in document.decisions)  # nothing passed parity: nothing is shipped
    assert all(not d.avoid for d in document.decisions)  # and nothing is 'to avoid' for want of a parity run


def test_two_environments_merge_into_one_table(tmp_path, monkeypatch, capsys, measured_environment):
    hosts = {"a": "box-a", "b": "<b onmouseover=alert(1)>box-b</b>"}
    paths = []
    for name, scale in (("a", 1.0), ("b", 0.5)):
        env = {**measured_environment, "key": f"key-{name}", "hostname": hosts[name]}
        write_model_dir(tmp_path / name / SPEC.name, env, scale=scale)
        paths.append(report_folder(monkeypatch, capsys, "--artifacts", tmp_path / name, "--arch", "tiny",
                                   "--reports", tmp_path / "reports") / "report.json")
    folder = report_folder(monkeypatch, capsys, "--merge", *paths, "--reports", tmp_path / "reports")
    merged = read_report(folder)
    assert isinstance(merged, MergedReport) and [m.key for m in merged.machines] == ["key-a", "key-b"]
    first, second = (m.label for m in merged.machines)
    onnx = next(r for r in merged.rows if r.key == RowKey("onnx-fp32", "onnxruntime:cpu"))
    assert onnx.cells[first].p50_ms == pytest.approx(20.0, rel=0.02) and onnx.cells[second].p50_ms == pytest.approx(10, rel=0.02)
    assert {m.machine for m in merged.machine_rows} == {first, second}
    intel = next(d for d in merged.decisions if d.slug == "intel-cpu")
    assert intel.pick.artifact == "onnx-fp32" and intel.pick.machine == second  # the faster machine's row
    markdown = (folder / "report.md").read_text()
    assert "| 20 ms (2.00x), pass | 10 ms (4.00x), pass |" in _line(markdown, "| onnx-fp32 | onnxruntime:cpu |")
    assert "| 400 ms†, pass | 400 ms†, pass |" in _line(markdown, "| coreml-fp16 | coreml:reference")
    assert "| error, error | error, error |" in _line(markdown, "| openvino-fp32 | openvino:CPU |")
    assert "| unavailable, unavailable |" in _line(markdown, "| coreml-fp16 | coreml:cpu_only |")
    assert "| not run, pass | not run, pass |" in _line(markdown, "| openvino-fp16 | openvino:CPU |")
    page = (folder / "report.html").read_text()
    assert "<b onmouseover" not in page and "&lt;b onmouseover=alert(1)&gt;box-b&lt;/b&gt;" in page


@pytest.mark.parametrize("content, found", [("[1, 2]", "a JSON list"), ('{"schema_version": 2, "kind": "vitship-report"}',
                                                                            "kind 'vitship-report', schema 2"),
                                             ('{"kind": "vitship-report", "schema_version": 3, "run_id": 7}', "malformed")])
def test_merge_and_compare_refuse_what_is_not_a_current_report(tmp_path, monkeypatch, capsys, measured_environment, content,
                                                               found):
    env = {**measured_environment, "key": "box-a", "hostname": "box-a"}
    write_model_dir(tmp_path / "a" / SPEC.name, env)
    good = report_folder(monkeypatch, capsys, "--artifacts", tmp_path / "a", "--arch", "tiny", "--reports", tmp_path / "r")
    bad = tmp_path / "other.json"
    bad.write_text(content)
    for args in (("report", "--merge", good / "report.json", bad, "--reports", tmp_path / "r"), ("compare", good, bad)):
        code, out, err = cli(monkeypatch, capsys, *args)
        assert code == 2, out + err
        assert "internal error" not in err and len(err.strip().splitlines()) == 1, err
        assert str(bad) in err and found in err


def _drop_manifest_path(model_dir: Path) -> Path:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    del manifest["artifacts"]["onnx-fp32"]["path"]
    (model_dir / "manifest.json").write_text(json.dumps(manifest))  # raw: write_manifest refuses an entry without path
    return model_dir / "manifest.json"


def _drop_parity_artifact(model_dir: Path) -> Path:
    parity = json.loads((model_dir / "parity.json").read_text())
    del parity["rows"][0]["artifact"]
    (model_dir / "parity.json").write_text(json.dumps(parity))
    return model_dir / "parity.json"


@pytest.mark.parametrize("break_file", [_drop_manifest_path, _drop_parity_artifact])
def test_a_malformed_source_is_a_one_line_error_naming_it(tmp_path, monkeypatch, capsys, measured_environment, break_file):
    """A manifest entry without its path, a parity row without its artifact: exit 2, one line, the file named."""
    broken = break_file(write_model_dir(tmp_path / "a" / SPEC.name, {**measured_environment, "key": "box-a"}))
    code, out, err = cli(monkeypatch, capsys, "report", "--artifacts", tmp_path / "a", "--arch", "tiny",
                         "--reports", tmp_path / "r")
    assert code == 2 and "internal error" not in err and len(err.strip().splitlines()) == 1, out + err
    assert str(broken) in err and ("malformed" in err or "has no 'path'" in err)
