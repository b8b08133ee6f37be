"""executorch:cpu (runtimes.executorch_rt): ExecuTorch's own runtime under parity and bench, on the tiny ViT.

A Core ML-delegated program is `unavailable` on executorch:cpu here, naming Apple's runtime, and its
embedded ML Program passes parity on coreml:reference. The module's export holds one artifact of every
batch kind (any batch, Core ML enumerated sizes, a fixed batch of 1, an ExecuTorch range), so eval and
predict are checked here on a number of images no batch size divides.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import coremltools  # noqa: F401  (hard dependencies: a broken install fails, never skips)
import executorch.runtime  # noqa: F401
import numpy as np
import pytest
from typer.testing import CliRunner

from vitship.bench.accuracy import EvalOptions, evaluate
from vitship.bench.cli import app
from vitship.bench.latency.sweep import BenchConfig, plan_sweep, run_sweep
from vitship.bench.latency.timing import TimingOptions
from vitship.bench.parity.results import PARITY_NAME, read_parity
from vitship.bench.predict import PredictOptions, predict
from vitship.exporters.base import manifest_artifacts
from vitship.exporters.pipeline import model_dir_for
from vitship.models import sample_images
from vitship.models.status import Status
from vitship.runtimes import RuntimeUnavailable, SessionOptions, available_targets, open_session

QUICK_TIMING = TimingOptions(min_time_s=0.05, warmup_s=0.01, min_iterations=2)
EXECUTORCH = ["executorch-fp32", "executorch-coreml-fp16"]
# One artifact per format and batch kind: any batch (onnx, openvino), enumerated 1, 2, 4, 8 (coreml-fp32,
# coreml-tensor-fp16), a fixed batch of 1 (coreml-fp16 image input, executorch-coreml-fp16, executorch: fully delegated).
EVERY_KIND = [("onnx", "fp32"), ("openvino", "fp32"), ("coreml", "fp32"), ("coreml", "fp16"), ("coreml-tensor", "fp16"),
              ("executorch", "fp32"), ("executorch-coreml", "fp16")]


@pytest.fixture(scope="module")
def model_dir(tiny_loaded, tiny_exports):
    return model_dir_for(tiny_exports(EVERY_KIND), tiny_loaded)


def by_id(model_dir):
    return {a.id: a for a in manifest_artifacts(model_dir)}


def test_the_target_is_listed_and_available():
    (status,) = [s for s in available_targets() if s.target == "executorch:cpu"]
    assert status.available, status.reason


def test_without_the_runtime_module_the_target_says_how_to_install_it(monkeypatch):
    from vitship.runtimes import executorch_rt

    found = executorch_rt.importlib.util.find_spec
    monkeypatch.setattr(executorch_rt.importlib.util, "find_spec",
                        lambda name: None if name == "executorch.extension.pybindings._C" else found(name))
    (status,) = executorch_rt.targets()
    assert not status.available and status.reason == executorch_rt.INSTALL_HINT


def test_session_info_records_threads_and_the_delegate(model_dir, tiny_photos):
    session = open_session(by_id(model_dir)["executorch-fp32"], model_dir, "executorch:cpu", SessionOptions(threads=1))
    try:
        assert session.info.threads == 1 and session.info.extra["delegate"] == "XnnpackBackend"
        assert session.info.extra["batch_range"] == [1, 1] and session.info.precision == "fp32"
        assert session.run(tiny_photos[:2]).shape == (2, 1)
    finally:
        session.close()


def test_the_core_ml_delegated_program_is_unavailable_naming_apples_runtime(model_dir):
    with pytest.raises(RuntimeUnavailable, match="Core ML runtime") as caught:
        open_session(by_id(model_dir)["executorch-coreml-fp16"], model_dir, "executorch:cpu")
    assert "coreml:reference" in str(caught.value)


@pytest.mark.slow  # about 20 s: in the slow pass, for make test's 8 minutes
def test_parity_passes_xnnpack_on_executorch_and_the_embedded_program_on_the_reference(model_dir, tmp_path):
    only = [flag for aid in EXECUTORCH for flag in ("--artifact", aid)]
    result = CliRunner().invoke(app, ["parity", "--artifacts", str(model_dir), "--no-torch", "--target", "executorch:cpu",
                                      "--target", "coreml:reference", *only], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {(r.artifact, r.target): r for r in read_parity(model_dir / PARITY_NAME).rows}
    assert rows[("executorch-fp32", "executorch:cpu")].status == "pass"
    assert rows[("executorch-coreml-fp16", "coreml:reference")].status == "pass"
    unavailable = rows[("executorch-coreml-fp16", "executorch:cpu")]
    assert unavailable.status == "unavailable" and "Core ML runtime" in unavailable.reason


@pytest.mark.slow  # about 30 s on 2 cores (a worker process per row): CI runs it after make export-all (.ci/run)
def test_bench_measures_executorch_rows_and_marks_what_it_cannot_run(model_dir, tiny_loaded):
    config = BenchConfig(batches=(1, 16), targets=("executorch:cpu",), timing=QUICK_TIMING, threads=1, row_timeout_s=300)
    artifacts = [a for a in by_id(model_dir).values() if a.id in EXECUTORCH]
    plan = plan_sweep(artifacts, model_dir, tiny_loaded.spec.to_dict(), config)
    rows = {(r.artifact, r.batch): r for r in run_sweep(plan, config)}
    ok = rows[("executorch-fp32", 1)]
    assert ok.ok and ok.stats.p50_ms > 0 and ok.session["extra"]["delegate"] == "XnnpackBackend"
    too_big = rows[("executorch-fp32", 16)]  # beyond the exported batch 1: the artifact's limit, not a crash
    assert str(too_big.status) == "unavailable" and "accepts batch 1" in too_big.reason
    delegated = rows[("executorch-coreml-fp16", 1)]
    assert str(delegated.status) == "unavailable" and "Core ML runtime" in delegated.reason


def test_quick_bench_plans_executorch_rows(model_dir, tiny_loaded):
    plan = plan_sweep(list(by_id(model_dir).values()), model_dir, tiny_loaded.spec.to_dict(), BenchConfig.quick())
    assert [(j.artifact_id, j.target, j.batch) for j in plan.jobs if j.target == "executorch:cpu"] == [
        ("executorch-fp32", "executorch:cpu", 1)]


@pytest.fixture(scope="module")
def fifteen_photos(tmp_path_factory):
    """15 labelled photos in real/ and fake/ (copies of the bundled ones): no batch of 2, 4 or 8 divides 15."""
    root = tmp_path_factory.mktemp("fifteen")
    photos = sample_images()
    for index in range(15):
        photo = photos[index % len(photos)]
        folder = root / ("fake" if index % 3 == 0 else "real")
        folder.mkdir(exist_ok=True)
        shutil.copy(photo, folder / f"{index:02d}-{photo.name}")
    return root


def test_eval_scores_15_images_on_every_artifact_kind(model_dir, tiny_loaded, fifteen_photos):
    report = evaluate(model_dir, fifteen_photos, tiny_loaded, EvalOptions(batch_size=8))  # batches of 8, then 7
    rows = {r.artifact: r for r in report.rows}
    assert set(rows) == {"torch-fp32", *by_id(model_dir)}
    for row in rows.values():
        assert (row.status, row.n_images) == (Status.OK, 15), (row.artifact, row.target, row.reason)
        np.testing.assert_allclose(row.probabilities, rows["torch-fp32"].probabilities, atol=2e-2, err_msg=row.artifact)
    assert {rows[a].target for a in ("coreml-fp32", "coreml-tensor-fp16", "executorch-coreml-fp16")} == {"coreml:reference"}
    assert rows["executorch-fp32"].target == "executorch:cpu"


def test_predict_runs_15_images_on_every_artifact_kind(model_dir, tiny_loaded, fifteen_photos):
    images = sorted(p for p in fifteen_photos.rglob("*") if p.is_file())
    result = predict(model_dir, images, PredictOptions(artifacts=tuple(by_id(model_dir))), loaded=tiny_loaded)
    assert result.unreadable == [] and result.failed == [], [(r.artifact, r.reason) for r in result.failed]
    per_artifact = {}
    for row in result.rows:
        per_artifact[row.artifact] = per_artifact.get(row.artifact, 0) + 1
        assert row.artifact == "torch-fp32" or abs(row.probability_delta) < 2e-2, (row.artifact, row.image)
    assert per_artifact == {aid: 15 for aid in ("torch-fp32", *by_id(model_dir))}


OPEN_AND_RUN = """
import sys, numpy as np
from pathlib import Path
from vitship.exporters.base import manifest_artifacts
from vitship.runtimes import open_session
model_dir = Path(sys.argv[1])
artifact = next(a for a in manifest_artifacts(model_dir) if a.id == "executorch-fp32")
print(open_session(artifact, model_dir, "executorch:cpu").run(np.zeros((1, 3, 64, 64), np.float32)).shape)
"""


def test_executorch_runtime_logs_stay_hidden(model_dir, monkeypatch):
    """ExecuTorch's threadpool prints five [cpuinfo_utils.cpp:...] lines on its first start, and importing its runtime
    logs a torch pytree warning; opening a session shows neither (with VITSHIP_DEBUG=1 both come through: checked by
    hand, and quiet_stderr's own test in test_runtimes.py covers the switch)."""
    monkeypatch.delenv("VITSHIP_DEBUG", raising=False)
    done = subprocess.run([sys.executable, "-P", "-c", OPEN_AND_RUN, str(model_dir)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "(1, 1)", done.stderr
    assert "cpuinfo_utils" not in done.stderr and "_pytree" not in done.stderr, done.stderr


def test_every_artifact_carries_its_labels_threshold_and_preprocessing_in_its_own_file(model_dir, tiny_loaded):
    """exporters.embedded reads them back from the file alone (vitship inspect): no manifest involved."""
    from vitship.exporters.embedded import read_embedded, summary

    spec = tiny_loaded.spec
    for artifact in manifest_artifacts(model_dir):
        facts = read_embedded(model_dir / artifact.path)
        assert facts.format == artifact.format.split("-")[0], artifact.id
        assert facts.value("labels") == list(spec.labels) and facts.value("decision_threshold") == 0.5, artifact.id
        assert facts.value("resize") == {"mode": spec.resize_mode, "size": list(spec.resize_size)}, artifact.id
        assert facts.value("mean") == list(spec.mean) and facts.value("weights_sha256") == tiny_loaded.info.sha256, artifact.id
        assert facts.value("precision") == artifact.precision, artifact.id
        assert facts.value("input_type") == artifact.input_spec["input_type"], artifact.id
        assert summary(facts)["labels"].startswith("['fake'] (sigmoid head"), artifact.id
    coreml_image = read_embedded(model_dir / by_id(model_dir)["coreml-fp16"].path)
    assert "centerCrop" in coreml_image.value("vision_crop_and_scale")
