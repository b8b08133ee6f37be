"""Runtimes: the registry, target availability, and each adapter on the tiny ViT (artifacts made by the exporters)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import vitship.runtimes as runtimes
from vitship.exporters import get_exporter, options_class
from vitship.exporters.base import Artifact
from vitship.models import UnknownNameError, load_weights, preprocess, sample_images, tiny_spec
from vitship.runtimes import (
    RUNTIMES,
    RuntimeAdapter,
    RuntimeFailure,
    RuntimeUnavailable,
    SessionOptions,
    available_targets,
    open_session,
    register,
    target_status,
    torch_artifact,
)
from vitship.runtimes.batching import SplitBatchSession, honour_batch_shapes, split_batch


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


# --- batch shapes: every session splits a batch into the sizes its artifact accepts -----------------------------


class RecordingSession:
    """A runtime that accepts only ``accepted`` batch sizes and records what it was fed (rows: the input's first value)."""

    def __init__(self, accepted):
        self.accepted, self.fed, self.closed = set(accepted), [], False

    def run_outputs(self, batch):
        assert len(batch) in self.accepted, f"fed an unaccepted batch of {len(batch)}"
        self.fed.append(len(batch))
        return {"logits": batch[:, :1] * 2, "features": batch * 3}

    def run(self, batch):
        return self.run_outputs(batch)["logits"]

    def close(self):
        self.closed = True


@pytest.mark.parametrize(("input_spec", "batch", "parts"), [
    ({"batch_shapes": [8, 1, 4, 2]}, 7, [4, 2, 1]),  # Core ML enumerated shapes (coreml-fp32, coreml-tensor-*)
    ({"batch_shapes": [1, 2, 4, 8]}, 15, [8, 4, 2, 1]),
    ({"batch_shapes": [1, 2, 4, 8]}, 8, [8]),
    ({"batch_shapes": [1]}, 3, [1, 1, 1]),  # a fixed batch of 1 (ImageType coreml-fp16/int8, executorch-coreml)
    ({"batch_range": [1, 8]}, 15, [8, 7]),  # ExecuTorch XNNPACK, 1..--executorch-max-batch
    ({"batch_range": [1, 8]}, 16, [8, 8]),
    ({"batch_range": [1, 8]}, 5, [5]),
])
def test_batch_shapes_split_greedily_into_accepted_sizes(input_spec, batch, parts):
    shapes = runtimes.BatchShapes.from_input_spec(input_spec)
    assert split_batch(shapes, batch) == parts and not shapes.dynamic
    inner = RecordingSession(parts)
    session = SplitBatchSession(inner, shapes, "x")
    pixels = np.arange(batch * 2, dtype=np.float32).reshape(batch, 2)
    out = session.run_outputs(pixels)
    assert inner.fed == parts  # the runtime only ever saw accepted sizes, in order
    np.testing.assert_array_equal(out["features"], pixels * 3)
    np.testing.assert_array_equal(session.run(pixels), pixels[:, :1] * 2)
    session.close()
    assert inner.closed


@pytest.mark.parametrize("input_spec, distinct", [
    ({"batch_shapes": [1]}, (1,)),  # one image per call: batch 8 would repeat batch 1's calls
    ({"batch_range": [1, 1]}, (1,)),
    ({"batch_shapes": [1, 2, 4, 8]}, (1, 8)),  # an enumerated batch of 8 is a different program shape
    ({"batch_range": [1, 8]}, (1, 8)),
    ({}, (1, 8)),  # any batch
])
def test_only_batches_that_compute_differently_are_worth_checking(input_spec, distinct):
    """One rule, read off the artifact, for the export gate and parity (bench/parity/plan.py) alike."""
    from vitship.exporters.int8.verdict import GATE_BATCHES, batches

    artifact = Artifact(id="x-int8", format="coreml", precision="int8", path="x", input_spec=input_spec)
    assert artifact.batch_shapes.distinct((1, 8)) == distinct
    assert GATE_BATCHES == (1, 8) and batches(artifact) == distinct


def test_any_batch_artifacts_are_not_wrapped_and_unsplittable_batches_are_refused():
    inner = RecordingSession([5])
    onnx = Artifact(id="onnx-fp32", format="onnx", precision="fp32", path="m.onnx",
                             input_spec={"input_shape": ["batch", 3, 64, 64]})
    assert honour_batch_shapes(inner, onnx) is inner  # dynamic batch: the session as the runtime made it
    with pytest.raises(RuntimeUnavailable, match="cannot be split into this artifact's batches 2, 4"):
        split_batch(runtimes.BatchShapes(sizes=(2, 4)), 3)
    with pytest.raises(RuntimeUnavailable, match="cannot be split"):
        split_batch(runtimes.BatchShapes(lower=2, upper=4), 1)


def test_a_session_that_must_not_split_refuses_the_batch_as_unavailable():
    """The bench times one batch per row: a batch the artifact cannot take is an unavailable row, not split."""
    from vitship.bench.latency.worker import _session_options

    assert _session_options({"threads": 1}, 32).split_batches is False and SessionOptions().split_batches is True
    artifact = Artifact(id="coreml-fp32", format="coreml", precision="fp32", path="m.mlpackage",
                                 input_spec={"batch_shapes": [1, 2, 4, 8]})
    inner = RecordingSession([1, 2, 4, 8])
    session = honour_batch_shapes(inner, artifact, split=False)
    assert session.run(np.zeros((8, 2), np.float32)).shape == (8, 1)
    with pytest.raises(RuntimeUnavailable, match=r"batch 32: coreml-fp32 accepts batches 1, 2, 4, 8"):
        session.run(np.zeros((32, 2), np.float32))
    assert inner.fed == [8]


# --- backend logs stay hidden unless --debug (VITSHIP_DEBUG=1) ----------------------------------------------------


@pytest.mark.parametrize("debug", ["", "1"])
def test_quiet_stderr_hides_native_writes_to_fd_2_unless_debugging(debug, capfd, monkeypatch):
    import os

    from vitship.models.quiet import quiet_stderr

    monkeypatch.setenv("VITSHIP_DEBUG", debug)
    with quiet_stderr():
        os.write(2, b"[cpuinfo_utils.cpp:71] Reading file\n")  # as native code writes: straight to the descriptor
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert ("cpuinfo_utils" in err) == bool(debug)
    assert err.endswith("after\n")  # fd 2 is restored
