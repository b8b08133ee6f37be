"""vitship.exporters.openvino: the IR of the tiny ViT reads back with a dynamic batch, names, metadata and real int8."""

from __future__ import annotations

import json
import shutil
import sys

import nncf  # noqa: E402,F401
import numpy as np
import openvino as ov  # noqa: E402  (hard dependencies: a broken install fails, never skips)
import pytest

from tests.conftest import cosine_rows, torch_outputs  # noqa: E402
from vitship.exporters import openvino as openvino_exporter  # noqa: E402  (after the imports above)
from vitship.exporters.base import HOLD_BACK_EVERY, ExportError, ExportOptions, TraceCache, calibration_images, path_sha256
from vitship.exporters.openvino import OpenvinoOptions  # noqa: E402
from vitship.models import MissingDependencyError, load_weights, preprocess, sample_images

PRECISIONS = ("fp32", "fp16", "int8")


@pytest.fixture(scope="module")
def exported(tiny_loaded, tmp_path_factory):
    """{precision: (artifact, model_dir)} for the tiny ViT, each exported once for the whole module."""
    model_dir = tmp_path_factory.mktemp("artifacts")
    result, cache = {}, TraceCache()  # one cache, as export_all passes one per run
    for precision in ("fp16", "int8", "fp32"):  # fp32 last: the reused trace must come out unchanged
        out_dir = model_dir / f"openvino-{precision}"
        out_dir.mkdir()
        result[precision] = openvino_exporter.export(tiny_loaded, out_dir, OpenvinoOptions(precision=precision), cache)
    return result, model_dir


def read(exported, precision):
    artifacts, model_dir = exported
    return ov.Core().read_model(str(model_dir / artifacts[precision].path))


def constants(model):
    return [op for op in model.get_ops() if op.get_type_name() == "Constant"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_ir_reads_back_with_dynamic_batch_and_names(exported, tiny_loaded, precision):
    model = read(exported, precision)
    assert [i.get_any_name() for i in model.inputs] == ["pixel_values"]
    shape = model.inputs[0].get_partial_shape()
    assert shape[0].is_dynamic
    assert [d.get_length() for d in list(shape)[1:]] == list(tiny_loaded.spec.input_shape)
    assert model.inputs[0].get_element_type() == ov.Type.f32
    assert [o.get_any_name() for o in model.outputs] == ["logits", "features"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_rt_info_and_record_carry_the_metadata(exported, tiny_loaded, precision):
    artifacts, model_dir = exported
    artifact, model = artifacts[precision], read(exported, precision)

    def info(key):
        return model.get_rt_info(["model_info", key]).astype(str)

    assert info("weights_sha256") == tiny_loaded.info.sha256
    assert info("model_name") == tiny_loaded.spec.name
    assert json.loads(info("labels")) == list(tiny_loaded.spec.labels)
    assert json.loads(info("mean")) == list(tiny_loaded.spec.mean) and json.loads(info("std")) == list(tiny_loaded.spec.std)
    assert json.loads(info("input_size")) == list(tiny_loaded.spec.input_shape)
    assert info("head_kind") == tiny_loaded.spec.head_kind and info("precision") == precision
    assert info("vitship_version")
    assert artifact.id == f"openvino-{precision}" and artifact.path == f"openvino-{precision}/model.xml"
    xml = model_dir / artifact.path
    assert artifact.sha256 == path_sha256(xml)
    assert artifact.details.files == {"model.xml": xml.stat().st_size, "model.bin": xml.with_suffix(".bin").stat().st_size}
    assert artifact.size_bytes == sum(artifact.details.files.values())
    assert artifact.weights["sha256"] == tiny_loaded.info.sha256 and "openvino" in artifact.versions


def test_ir_sha256_covers_the_weights_file(exported, tmp_path):
    artifacts, model_dir = exported
    copy = shutil.copytree(model_dir / "openvino-fp32", tmp_path / "copy")
    assert path_sha256(copy / "model.xml") == artifacts["fp32"].sha256
    data = bytearray((copy / "model.bin").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.bin").write_bytes(bytes(data))
    assert path_sha256(copy / "model.xml") != artifacts["fp32"].sha256


def test_fp16_ir_stores_weights_as_fp16(exported):
    big = [op for op in constants(read(exported, "fp16")) if op.get_output_size() and np.prod(op.get_output_shape(0)) >= 1024]
    assert big and all(op.get_element_type() == ov.Type.f16 for op in big)
    assert not any(op.get_element_type() == ov.Type.f16 for op in constants(read(exported, "fp32")))
    artifacts, _ = exported
    assert artifacts["fp32"].details.reused_trace
    # int8 smooths by default: traced from the smoothed weights, never from the run's cached fp32 trace
    assert not artifacts["int8"].details.reused_trace and artifacts["int8"].details.int8["smoothing"]["alpha"] == 0.5
    assert not artifacts["fp16"].details.reused_trace  # a fresh cache: nothing carried over from earlier tests


@pytest.mark.parametrize("count", [1, 3])
def test_fp32_ir_on_openvino_cpu_matches_torch(exported, tiny_loaded, count):
    batch = preprocess(sample_images(limit=count), tiny_loaded.spec)
    compiled = ov.Core().compile_model(read(exported, "fp32"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(batch)
    logits, features = torch_outputs(tiny_loaded, batch)
    assert result["logits"].shape == logits.shape and result["features"].shape == features.shape
    np.testing.assert_allclose(result["logits"], logits, atol=1e-4)
    np.testing.assert_allclose(result["features"], features, atol=1e-4)


def test_int8_ir_holds_quantized_weights_calibrated_on_the_photos(exported):
    artifacts, _ = exported
    model = read(exported, "int8")
    kinds = [op.get_type_name() for op in model.get_ops()]
    assert kinds.count("FakeQuantize") >= 4
    int8_weights = [op for op in constants(model) if op.get_element_type() in (ov.Type.i8, ov.Type.u8)]
    assert len(int8_weights) >= 8  # qkv, proj, fc1, fc2 of both blocks (the patch conv too)
    calibration = artifacts["int8"].calibration
    calibrated = len(sample_images()) - len(sample_images()) // HOLD_BACK_EVERY  # the rest is held back for the int8 gate
    assert calibration.count == calibrated == calibration.subset_size
    assert calibration.source.startswith("sample_images") and "TRANSFORMER" in calibration.scheme
    assert artifacts["int8"].size_bytes < artifacts["fp32"].size_bytes


@pytest.mark.parametrize("precision", ("fp32", "fp16", "int8"))
def test_ir_records_the_oldest_openvino_that_reads_it(exported, precision):
    artifacts, _ = exported
    newest = max(int(op.get_type_info().version_id.removeprefix("opset")) for op in read(exported, precision).get_ops()
                 if op.get_type_info().version_id.startswith("opset"))
    assert newest <= 14  # every op exists in OpenVINO 2024.0 (opset14); `make compat-check` loads it there
    assert artifacts[precision].min_runtime_versions == {"openvino": "2024.0"}


def test_smooth_quant_is_off_by_default_and_an_alpha_is_recorded(exported, tiny_loaded, tmp_path):
    artifacts, _ = exported
    assert artifacts["int8"].calibration.smooth_quant_alpha is None
    assert "SmoothQuant off" in artifacts["int8"].calibration.scheme
    with pytest.raises(ExportError, match="alpha"):
        openvino_exporter.export(tiny_loaded, tmp_path, OpenvinoOptions(precision="int8", smooth_quant_alpha=1.5))
    artifact = openvino_exporter.export(tiny_loaded, tmp_path, OpenvinoOptions(precision="int8", smooth_quant_alpha=0.15))
    assert artifact.calibration.smooth_quant_alpha == 0.15 and "alpha 0.15" in artifact.calibration.scheme


def test_int8_ir_keeps_features_close_on_real_photos(exported, tiny_loaded, tiny_photos):
    compiled = ov.Core().compile_model(read(exported, "int8"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    features = compiled(tiny_photos)["features"]
    assert cosine_rows(features, torch_outputs(tiny_loaded, tiny_photos)[1]).min() >= 0.98


def test_calibration_images_from_a_folder(tiny_loaded, tmp_path):
    for path in sample_images(limit=2):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "notes.txt").write_text("not an image")
    batch, info = calibration_images(tiny_loaded.spec, ExportOptions(calibration_dir=tmp_path))
    assert batch.shape == (2, *tiny_loaded.spec.input_shape) and info.count == 2 and info.source == str(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no images"):
        calibration_images(tiny_loaded.spec, ExportOptions(calibration_dir=tmp_path / "empty"))
    with pytest.raises(ExportError, match="not a directory"):
        calibration_images(tiny_loaded.spec, ExportOptions(calibration_dir=tmp_path / "missing"))


def test_missing_openvino_names_the_pip_command(tiny_loaded, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingDependencyError, match="pip install openvino"):
        openvino_exporter.export(tiny_loaded, tmp_path, OpenvinoOptions())


@pytest.mark.slow
def test_real_vit_int8_passes_the_parity_gate_and_size(tmp_path):
    """docs/DESIGN.md int8 gate on the real ViT-S/16-384 (seeded), OpenVINO CPU at f32 vs torch fp32."""
    loaded = load_weights("seeded")
    artifact = openvino_exporter.export(loaded, tmp_path, OpenvinoOptions(precision="int8"))
    assert artifact.size_bytes < 30e6
    batch = preprocess(sample_images(), loaded.spec)
    compiled = ov.Core().compile_model(str(tmp_path / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(batch)
    logits, features = torch_outputs(loaded, batch)
    cosine = cosine_rows(result["features"], features)
    prob, reference = 1 / (1 + np.exp(-result["logits"])), 1 / (1 + np.exp(-logits))  # the sigmoid head
    assert cosine.min() >= 0.98
    assert ((prob > 0.5) == (reference > 0.5)).mean() >= 0.99
    assert np.abs(prob - reference).max() <= 0.05
