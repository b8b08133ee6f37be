"""The Python API (the vitship package itself): light to import, and the same result objects the CLI prints."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import vitship
from tests.conftest import torch_outputs
from vitship.bench.latency.results import BenchReport
from vitship.bench.latency.sweep import BenchConfig
from vitship.bench.latency.timing import TimingOptions
from vitship.bench.parity.results import ParityReport, read_parity
from vitship.bench.rows import RowKey
from vitship.exporters.pipeline import ExportResult
from vitship.models import UnknownNameError
from vitship.models.status import Status

HEAVY = ("torch", "onnx", "onnxruntime", "openvino", "coremltools", "executorch", "timm", "vitship.bench", "vitship.runtimes")


def test_import_vitship_stays_light():
    code = f"import sys, json, vitship; print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert set(vitship.__all__) == {"benchmark", "evaluate", "export", "load_weights", "model_dir", "open_session", "parity"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    loaded = vitship.load_weights("seeded", arch="tiny")
    return out, loaded, vitship.export(loaded, formats=["onnx"], precisions=["fp32"], arch="tiny", out=out)


def test_export_returns_the_export_results(exported):
    out, loaded, results = exported
    assert [(type(r), r.id, r.status) for r in results] == [(ExportResult, "onnx-fp32", "ok")], results
    assert vitship.model_dir(out, arch="tiny") == out / loaded.spec.name
    again = vitship.export(loaded, formats=["onnx"], precisions=["fp32"], arch="tiny", out=out)
    assert [r.status for r in again] == ["skipped"]


def test_parity_returns_the_report_and_writes_parity_json(exported):
    out, _, _ = exported
    report = vitship.parity(out, arch="tiny", targets=["onnxruntime:cpu"], with_torch=False)
    assert isinstance(report, ParityReport)
    assert [(r.key, r.status) for r in report.rows] == [(RowKey("onnx-fp32", "onnxruntime:cpu"), Status.PASS)]
    assert read_parity(vitship.model_dir(out, arch="tiny") / "parity.json").rows == report.rows


def test_benchmark_returns_the_report(exported, tmp_path):
    out, _, _ = exported
    config = BenchConfig(batches=(2,), artifacts=("onnx-fp32",), targets=("onnxruntime:cpu",),
                         timing=TimingOptions(min_time_s=0.1, warmup_s=0.05, min_iterations=3))
    report = vitship.benchmark(out, arch="tiny", config=config, out=tmp_path / "bench")
    assert isinstance(report, BenchReport) and BenchReport.load(tmp_path / "bench" / "bench.json").rows == report.rows
    (row,) = report.rows
    assert row.key == RowKey("onnx-fp32", "onnxruntime:cpu", "opt=all", 2) and row.ok and row.stats.p50_ms > 0


def test_open_session_by_artifact_id_runs_the_artifact(exported, tiny_photos):
    out, loaded, _ = exported
    session = vitship.open_session("onnx-fp32", "onnxruntime:cpu", artifacts=out, arch="tiny")
    try:
        outputs = session.run_outputs(tiny_photos[:3])
    finally:
        session.close()
    logits, features = torch_outputs(loaded, tiny_photos[:3])
    np.testing.assert_allclose(outputs["logits"], logits, atol=1e-4)
    np.testing.assert_allclose(outputs["features"], features, atol=1e-4)
    with pytest.raises(UnknownNameError, match="unknown artifact 'onnx-fp33'.*Did you mean 'onnx-fp32'"):
        vitship.open_session("onnx-fp33", "onnxruntime:cpu", artifacts=out, arch="tiny")
