"""executorch:cpu (runtimes.executorch_rt): ExecuTorch's own runtime under parity and bench, on the tiny ViT.

A Core ML-delegated program is `unavailable` on executorch:cpu here, naming Apple's runtime, and its
embedded ML Program passes parity on coreml:reference.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import executorch.runtime  # noqa: E402,F401  (a hard dependency: a broken install fails, never skips)
import coremltools  # noqa: E402,F401

from vitship.bench.cli import app
from vitship.bench.latency.sweep import BenchConfig, plan_sweep, run_sweep
from vitship.bench.latency.timing import TimingOptions
from vitship.bench.parity.results import PARITY_NAME, read_parity
from vitship.exporters.base import manifest_artifacts
from vitship.exporters.pipeline import model_dir_for
from vitship.runtimes import RuntimeUnavailable, SessionOptions, available_targets, open_session

QUICK_TIMING = TimingOptions(min_time_s=0.05, warmup_s=0.01, min_iterations=2)


@pytest.fixture(scope="module")
def model_dir(tiny_loaded, tiny_exports):
    return model_dir_for(tiny_exports([("executorch", "fp32"), ("executorch-coreml", "fp16")]), tiny_loaded)


def by_id(model_dir):
    return {a.id: a for a in manifest_artifacts(model_dir)}


def test_the_target_is_listed_and_available():
    (status,) = [s for s in available_targets() if s.target == "executorch:cpu"]
    assert status.available, status.reason


def test_session_info_records_threads_and_the_delegate(model_dir, tiny_photos):
    session = open_session(by_id(model_dir)["executorch-fp32"], model_dir, "executorch:cpu", SessionOptions(threads=1))
    try:
        assert session.info.threads == 1 and session.info.extra["delegate"] == "XnnpackBackend"
        assert session.info.extra["batch_range"] == [1, 8] and session.info.precision == "fp32"
        assert session.run(tiny_photos[:2]).shape == (2, 1)
    finally:
        session.close()


def test_the_core_ml_delegated_program_is_unavailable_naming_apples_runtime(model_dir):
    with pytest.raises(RuntimeUnavailable, match="Core ML runtime") as caught:
        open_session(by_id(model_dir)["executorch-coreml-fp16"], model_dir, "executorch:cpu")
    assert "coreml:reference" in str(caught.value)


def test_parity_passes_xnnpack_on_executorch_and_the_embedded_program_on_the_reference(model_dir, tmp_path):
    result = CliRunner().invoke(app, ["parity", "--artifacts", str(model_dir), "--no-torch", "--target", "executorch:cpu",
                                      "--target", "coreml:reference"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {(r.artifact, r.target): r for r in read_parity(model_dir / PARITY_NAME).rows}
    assert rows[("executorch-fp32", "executorch:cpu")].status == "pass"
    assert rows[("executorch-coreml-fp16", "coreml:reference")].status == "pass"
    unavailable = rows[("executorch-coreml-fp16", "executorch:cpu")]
    assert unavailable.status == "unavailable" and "Core ML runtime" in unavailable.reason


def test_bench_measures_executorch_rows_and_marks_what_it_cannot_run(model_dir, tiny_loaded):
    config = BenchConfig(batches=(1, 16), targets=("executorch:cpu",), timing=QUICK_TIMING, threads=1, row_timeout_s=300)
    plan = plan_sweep(list(by_id(model_dir).values()), model_dir, tiny_loaded.spec.to_dict(), config)
    rows = {(r.artifact, r.batch): r for r in run_sweep(plan, config)}
    ok = rows[("executorch-fp32", 1)]
    assert ok.ok and ok.stats.p50_ms > 0 and ok.session["extra"]["delegate"] == "XnnpackBackend"
    too_big = rows[("executorch-fp32", 16)]  # beyond the exported 1..8: the artifact's limit, not a crash
    assert str(too_big.status) == "unavailable" and "1..8" in too_big.reason
    delegated = rows[("executorch-coreml-fp16", 1)]
    assert str(delegated.status) == "unavailable" and "Core ML runtime" in delegated.reason


def test_quick_bench_plans_executorch_rows(model_dir, tiny_loaded):
    plan = plan_sweep(list(by_id(model_dir).values()), model_dir, tiny_loaded.spec.to_dict(), BenchConfig.quick())
    assert [(j.artifact_id, j.target, j.batch) for j in plan.jobs if j.target == "executorch:cpu"] == [
        ("executorch-fp32", "executorch:cpu", 1)]
