"""Runtimes: the registry, target availability, and each adapter on the tiny ViT (artifacts made by the exporters)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import vitship.runtimes as runtimes
from vitship.exporters import get_exporter, options_class
from vitship.models import UnknownNameError, load_weights, preprocess, sample_images, tiny_spec
from vitship.runtimes import (RUNTIMES, RuntimeAdapter, RuntimeFailure, RuntimeUnavailable, SessionOptions, available_targets,
                      open_session, register, target_status, torch_artifact)


@pytest.fixture(scope="module")
def loaded():
    return load_weights("seeded", tiny_spec())


@pytest.fixture(scope="module")
def pixels(loaded):
    return preprocess(sample_images(limit=3), loaded.spec)


@pytest.fixture(scope="module")
def expected(loaded, pixels):
    with torch.no_grad():
        logits, features = loaded.model(torch.from_numpy(pixels))
    return logits.numpy(), features.numpy()


def _export(loaded, model_dir, fmt, precision):
    out = model_dir / f"{fmt}-{precision}"
    out.mkdir(parents=True)
    return get_exporter(fmt)(loaded, out, options_class(fmt)(precision=precision))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-runtimes")


@pytest.fixture(scope="module")
def onnx_fp32(loaded, model_dir):
    return _export(loaded, model_dir, "onnx", "fp32")


def test_registry_refuses_a_second_registration_and_names_the_valid_runtimes():
    with pytest.raises(ValueError, match="already registered"):
        register(RuntimeAdapter("onnxruntime", "vitship.runtimes.onnxruntime_rt", ("onnx",)))
    with pytest.raises(UnknownNameError, match="onnxruntime") as err:
        runtimes.get_runtime("onnxruntim")
    assert "Did you mean 'onnxruntime'" in str(err.value)
    with pytest.raises(UnknownNameError, match="openvino:CPU"):
        target_status("openvino:TPU")


def test_every_target_is_listed_with_a_reason_when_unavailable():
    statuses = {s.target: s for s in available_targets()}
    for name in ("torch:cpu", "torch:cuda", "onnxruntime:cpu", "onnxruntime:cuda", "onnxruntime:tensorrt",
                 "onnxruntime:openvino", "onnxruntime:coreml", "onnxruntime:dml", "openvino:CPU", "openvino:GPU",
                 "openvino:NPU", "openvino:AUTO", "coreml:cpu_only", "coreml:cpu_and_gpu", "coreml:cpu_and_ne",
                 "coreml:all", "coreml:reference"):
        assert name in statuses, name
    for status in statuses.values():
        assert status.available or status.reason, status
        assert status.runtime in RUNTIMES
    assert statuses["torch:cpu"].available and statuses["onnxruntime:cpu"].available
    if sys.platform != "darwin":
        assert statuses["coreml:all"].reason == "CoreML runtime needs macOS"
    if not torch.cuda.is_available():
        assert "CUDA" in statuses["torch:cuda"].reason


def test_wrong_format_or_unavailable_target_raises_runtime_unavailable(loaded, model_dir):
    with pytest.raises(RuntimeUnavailable, match="cannot run torch artifacts"):
        open_session(torch_artifact(loaded), model_dir, "onnxruntime:cpu")
    from vitship.exporters.base import Artifact

    onnx = Artifact(id="onnx-fp32", format="onnx", precision="fp32", path="onnx-fp32/model.onnx")
    unavailable = next(s for s in available_targets(["onnxruntime"]) if not s.available)
    with pytest.raises(RuntimeUnavailable) as err:
        open_session(onnx, model_dir, unavailable.target)
    assert unavailable.reason in str(err.value)


def test_torch_session_is_the_model_and_half_precisions_stay_close(loaded, pixels, expected, model_dir):
    session = open_session(torch_artifact(loaded), model_dir, "torch:cpu", SessionOptions(loaded=loaded))
    out = session.run_outputs(pixels)
    np.testing.assert_array_equal(out["logits"], expected[0])
    np.testing.assert_array_equal(out["features"], expected[1])
    assert session.info.precision == "fp32" and session.info.threads >= 1
    bf16 = open_session(torch_artifact(loaded, "bf16"), model_dir, "torch:cpu", SessionOptions(loaded=loaded))
    assert bf16.info.precision == "bf16"
    np.testing.assert_allclose(bf16.run(pixels), expected[0], atol=2e-2)
    assert next(loaded.model.parameters()).dtype == torch.float32  # the reference model was not cast in place


def test_torch_session_reloads_the_recorded_weights_and_verifies_their_sha(loaded, pixels, expected, model_dir):
    artifact = torch_artifact(loaded)
    session = open_session(artifact, model_dir, "torch:cpu")  # no LoadedModel: reloaded from "seeded:0"
    np.testing.assert_array_equal(session.run(pixels), expected[0])
    artifact.weights = {**artifact.weights, "sha256": "0" * 64}
    with pytest.raises(RuntimeFailure, match="weights sha256"):
        open_session(artifact, model_dir, "torch:cpu")


def test_onnxruntime_cpu_runs_batches_and_records_provider(onnx_fp32, pixels, expected, model_dir):
    artifact = onnx_fp32
    session = open_session(artifact, model_dir, "onnxruntime:cpu", SessionOptions(threads=1, ort_optimization="basic"))
    out = session.run_outputs(pixels)
    np.testing.assert_allclose(out["logits"], expected[0], atol=1e-5)
    np.testing.assert_allclose(out["features"], expected[1], atol=1e-4)
    assert session.run(pixels[:1]).shape == (1, 1)
    info = session.info
    assert info.provider == "CPUExecutionProvider" and info.threads == 1
    assert info.extra["optimization_level"] == "basic"


def test_onnxruntime_provider_that_falls_back_to_cpu_is_an_error(onnx_fp32, model_dir, monkeypatch):
    import onnxruntime

    offered = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in offered:
        pytest.skip("this onnxruntime build really has CUDA; the fallback cannot be provoked")
    # The build claims CUDA (as a GPU wheel does on a machine whose driver fails to load it): ORT then
    # silently runs on CPU, which must be an error, not a pass.
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [*offered, "CUDAExecutionProvider"])
    assert target_status("onnxruntime:cuda").available
    with pytest.raises(RuntimeFailure, match="fell back"):
        open_session(onnx_fp32, model_dir, "onnxruntime:cuda")


def test_openvino_records_the_precision_it_actually_used(loaded, pixels, expected, model_dir):
    from vitship.runtimes.openvino_rt import default_precision

    artifact = _export(loaded, model_dir, "openvino", "fp32")
    default = open_session(artifact, model_dir, "openvino:CPU")
    assert default.info.precision == default_precision("CPU")
    assert default.info.extra["precision_source"] == "runtime default"
    assert default.info.extra["performance_hint"] == "LATENCY"
    f32 = open_session(artifact, model_dir, "openvino:CPU", SessionOptions(openvino_precision="f32", openvino_hint="throughput"))
    assert f32.info.precision == "fp32" and f32.info.extra["precision_source"] == "requested"
    out = f32.run_outputs(pixels)
    np.testing.assert_allclose(out["logits"], expected[0], atol=1e-5)
    np.testing.assert_allclose(out["features"], expected[1], atol=1e-4)
    np.testing.assert_allclose(default.run(pixels), expected[0], atol=2e-2)
    auto = open_session(artifact, model_dir, "openvino:AUTO")
    assert auto.run(pixels).shape == (3, 1) and auto.info.precision != ""
    assert f32.info.extra["input_shape"] == "dynamic batch (as exported)"


def test_openvino_static_batch_compiles_the_fixed_shape_a_fixed_batch_app_uses(loaded, pixels, expected, model_dir):
    artifact = _export(loaded, model_dir, "openvino", "fp16")
    static = open_session(artifact, model_dir, "openvino:CPU", SessionOptions(openvino_precision="f32", static_batch=3))
    assert static.info.extra["input_shape"] == "static [3, 3, 64, 64]"
    np.testing.assert_allclose(static.run(pixels), expected[0], atol=1e-2)
    # the compiled shape is fixed: another batch size is refused, not resized
    with pytest.raises(RuntimeError, match=r"got \[1,3,64,64\] expecting \[3,3,64,64\]"):
        static.run(pixels[:1])


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS the CoreML runtime is available")
def test_coreml_compute_units_need_macos(loaded, model_dir):
    from vitship.exporters.base import Artifact

    artifact = Artifact(id="coreml-fp16", format="coreml", precision="fp16", path="coreml-fp16/model.mlpackage")
    with pytest.raises(RuntimeUnavailable, match="CoreML runtime needs macOS"):
        open_session(artifact, model_dir, "coreml:cpu_and_ne")


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="CoreML predict needs macOS")
def test_coreml_runs_on_macos(loaded, pixels, expected, model_dir):
    artifact = _export(loaded, model_dir, "coreml", "fp32")
    session = open_session(artifact, model_dir, "coreml:cpu_only")
    np.testing.assert_allclose(session.run(pixels), expected[0], atol=1e-3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_torch_cuda_half_precision(loaded, pixels, expected, model_dir):
    session = open_session(torch_artifact(loaded, "fp16"), model_dir, "torch:cuda", SessionOptions(loaded=loaded))
    np.testing.assert_allclose(session.run(pixels), expected[0], atol=2e-2)
    assert session.info.device == "cuda"
