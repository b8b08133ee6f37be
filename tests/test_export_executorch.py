"""vitship.exporters.executorch: XNNPACK fp32/int8 and Core ML-delegated fp16 .pte programs (tiny ViT).

The XNNPACK programs run here with ExecuTorch's own runtime; the Core ML-delegated one cannot, so its
embedded ML Program is read back and run on the reference executor.
"""

from __future__ import annotations

import sys

import coremltools as ct  # noqa: E402  (a hard dependency: a broken install fails, never skips)
import executorch.runtime  # noqa: E402,F401  (a hard dependency: a broken install fails, never skips)
import numpy as np
import pytest

from tests.conftest import assert_manifest_matches_files, cosine_rows, torch_outputs
from vitship.bench.parity.run import run_batched
from vitship.exporters import executorch as et_exporter
from vitship.exporters import options_class
from vitship.exporters.base import Artifact, ExportError, manifest_artifacts
from vitship.exporters.executorch import ExecutorchCoremlOptions, ExecutorchOptions
from vitship.exporters.int8.calibration import HOLD_BACK_EVERY
from vitship.exporters.pipeline import model_dir_for
from vitship.models import MissingDependencyError, UnknownNameError
from vitship.models.export_form import ExportForm
from vitship.runtimes import RuntimeUnavailable, SessionOptions, open_session

REQUESTS = [("executorch", "fp32"), ("executorch", "int8"), ("executorch-coreml", "fp16")]


@pytest.fixture(scope="module")
def model_dir(tiny_loaded, tiny_exports):
    """The three ExecuTorch artifacts of the tiny ViT, exported by the shipped pipeline in one run."""
    return model_dir_for(tiny_exports(REQUESTS), tiny_loaded)  # exported once per session (tests/conftest.py)


def artifacts(model_dir) -> dict[str, Artifact]:
    assert_manifest_matches_files(model_dir)
    return {a.id: a for a in manifest_artifacts(model_dir)}


def test_registry_names_map_to_their_options_and_formats(model_dir):
    assert options_class("executorch") is ExecutorchOptions and options_class("executorch-coreml") is ExecutorchCoremlOptions
    found = artifacts(model_dir)
    assert {aid: (a.format, a.path) for aid, a in found.items()} == {
        "executorch-fp32": ("executorch", "executorch-fp32/model.pte"),
        "executorch-int8": ("executorch", "executorch-int8/model.pte"),
        "executorch-coreml-fp16": ("executorch-coreml", "executorch-coreml-fp16/model.pte")}


# what scaled_dot_product_attention's and layer_norm's decompositions leave outside XNNPACK in timm's own form
ATTENTION_AND_NORM_OPS = {"native_layer_norm", "any.dim", "eq.Scalar", "logical_not", "where.self", "full_like", "expand_copy"}


def test_fp32_xnnpack_program_is_fully_delegated_at_batch_1_and_matches_torch(model_dir, tiny_loaded, tiny_photos):
    artifact = artifacts(model_dir)["executorch-fp32"]
    details = artifact.details
    assert details.delegate == "XnnpackBackend" and artifact.input_spec["batch_shapes"] == [1]
    assert details.ops_outside_delegate == [] and details.delegated_calls == 1  # nothing on the portable kernels
    assert details.form() == ExportForm(attention="explicit", layer_norm="decomposed", class_token_tail=True)
    session = open_session(artifact, model_dir, "executorch:cpu", SessionOptions(threads=1))
    try:
        out = session.run_outputs(tiny_photos[:3])  # the session feeds a fixed batch-1 program one image at a time
        logits, features = torch_outputs(tiny_loaded, tiny_photos[:3])
        np.testing.assert_allclose(out["logits"], logits, atol=1e-4)
        np.testing.assert_allclose(out["features"], features, atol=1e-4)
    finally:
        session.close()
    fixed = open_session(artifact, model_dir, "executorch:cpu", SessionOptions(threads=1, split_batches=False))
    try:
        with pytest.raises(RuntimeUnavailable, match="accepts batch 1"):
            fixed.run_outputs(tiny_photos[:2])  # bench's sessions do not split: batch 2 is not an executorch row
    finally:
        fixed.close()


def test_a_dynamic_batch_program_keeps_attention_and_norms_in_the_delegate(tiny_dynamic_executorch, tiny_loaded, tiny_photos):
    """max_batch 8: reshapes of the symbolic batch stay outside XNNPACK, but no attention or layer-norm op does."""
    model_dir, artifact = tiny_dynamic_executorch
    outside = set(artifact.details.ops_outside_delegate)
    assert artifact.input_spec["batch_range"] == [1, 8] and outside and not ATTENTION_AND_NORM_OPS & outside
    session = open_session(artifact, model_dir, "executorch:cpu", SessionOptions(threads=1))
    try:
        for batch in (1, 3, 8):  # a dynamic batch: the example batch was 2, so batch 1 is not specialised away
            out = session.run_outputs(tiny_photos[:batch])
            logits, features = torch_outputs(tiny_loaded, tiny_photos[:batch])
            np.testing.assert_allclose(out["logits"], logits, atol=1e-4)
            np.testing.assert_allclose(out["features"], features, atol=1e-4)
        split = session.run_outputs(tiny_photos[:9])  # the session splits 9 into 8 + 1, inside the range
        np.testing.assert_allclose(split["logits"], torch_outputs(tiny_loaded, tiny_photos[:9])[0], atol=1e-4)
    finally:
        session.close()


def test_int8_is_dynamic_and_smoothed_by_default_and_meets_the_int8_gate(model_dir, tiny_loaded, tiny_photos):
    found = artifacts(model_dir)
    artifact = found["executorch-int8"]
    assert artifact.details.quantization.mode == "dynamic" and "cosine" in artifact.details.quantization.why_default
    # smoothed by default (SmoothQuant fold): exported from the smoothed weights, not the run's cached fp32 program
    assert "reused from this run" not in artifact.details.source and artifact.calibration is None
    assert artifact.details.smoothing.alpha == 0.5
    assert artifact.size_bytes < found["executorch-fp32"].size_bytes
    session = open_session(artifact, model_dir, "executorch:cpu")
    features = run_batched(session, tiny_photos, 8)["features"]
    session.close()
    assert cosine_rows(features, torch_outputs(tiny_loaded, tiny_photos)[1]).min() >= 0.98


@pytest.mark.slow  # 30+ s on 2 cores: CI runs it after make export-all (.ci/run), outside make test's budget
def test_static_int8_is_calibrated_on_the_bundled_photos(tiny_loaded, tiny_photos, tmp_path):
    artifact = et_exporter.export(tiny_loaded, tmp_path, ExecutorchOptions(precision="int8", int8_mode="static"))
    assert artifact.details.quantization.mode == "static"
    calibrated = len(tiny_photos) - len(tiny_photos) // HOLD_BACK_EVERY  # every 3rd photo is held back for the int8 gate
    assert artifact.calibration.count == calibrated and artifact.option("int8_mode") == "static"


def test_coreml_delegate_takes_the_whole_graph_and_its_embedded_program_reads_back(model_dir, tmp_path):
    artifact = artifacts(model_dir)["executorch-coreml-fp16"]
    details = artifact.details
    assert details.delegate == "CoreMLBackend" and details.delegated_calls == 1 and details.ops_outside_delegate == []
    assert details.apple.neural_engine == "eligible" and details.apple.batch_shapes == [1]
    assert details.apple.compute_precision == "fp16" and artifact.input_spec["batch_shapes"] == [1]
    package = et_exporter.embedded_coreml_package(model_dir / artifact.path, tmp_path)
    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    assert sorted(o.name for o in spec.description.output) == sorted(details.embedded_outputs.by_program_name())
    assert spec.specificationVersion == ct.target.iOS17.value


def test_bad_options_are_refused_before_any_work(tiny_loaded, tmp_path):
    with pytest.raises(ExportError, match="unsupported precision 'fp16'"):
        et_exporter.export(tiny_loaded, tmp_path, ExecutorchOptions(precision="fp16"))
    with pytest.raises(ExportError, match="unsupported precision 'fp32'"):
        et_exporter.export(tiny_loaded, tmp_path, ExecutorchCoremlOptions(precision="fp32"))
    with pytest.raises(UnknownNameError, match="dynamic"):
        et_exporter.export(tiny_loaded, tmp_path, ExecutorchOptions(precision="int8", int8_mode="weights"))
    with pytest.raises(ExportError, match="max-batch"):
        et_exporter.export(tiny_loaded, tmp_path, ExecutorchOptions(max_batch=0))
    assert not list(tmp_path.iterdir())


def test_missing_executorch_names_the_pip_command(tiny_loaded, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "executorch.exir", None)
    with pytest.raises(MissingDependencyError, match="pip install"):
        et_exporter.export(tiny_loaded, tmp_path, ExecutorchOptions())


@pytest.mark.parametrize("args, message", [
    (["--executorch-int8-mode", "weights"], "dynamic"),
    (["--coreml-batch-shapes", "2,4"], "must include 1"),
    (["--coreml-batch-shapes", "1,x"], "comma list"),
    (["--coreml-batch", "flexible"], "enumerated"),
    (["--coreml-min-target", "iOS99"], "iOS17"),
])
def test_export_cli_refuses_bad_apple_options_before_any_work(args, message, tmp_path):
    from typer.testing import CliRunner

    from vitship.bench.cli import app

    result = CliRunner().invoke(app, ["export", "--arch", "tiny", "--out", str(tmp_path / "out"), "-f", "executorch", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and not (tmp_path / "out").exists()
