"""vitship.exporters.coreml: flexible batch, labels and metadata, ImageType scale/bias and real int8 weights (tiny ViT).

Core ML cannot run predictions off macOS, so these tests read the saved spec and ML Program back;
the one prediction test runs on macOS only.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from vitship.exporters.base import ExportError, path_sha256
from vitship.models import MissingDependencyError, UnknownNameError, load_weights, preprocess, sample_images, tiny_spec

ct = pytest.importorskip("coremltools")

from vitship.exporters import coreml as coreml_exporter  # noqa: E402  (after the importorskip above)
from vitship.exporters.coreml import CoremlOptions  # noqa: E402
from tests.conftest import torch_outputs  # noqa: E402

VARIANTS = {  # name -> options
    "fp32": CoremlOptions(precision="fp32"),
    "int8": CoremlOptions(precision="int8"),
    "fp16-image": CoremlOptions(precision="fp16", input="image", min_target="iOS16"),
}


@pytest.fixture(scope="module")
def exported(tiny_loaded, tmp_path_factory):
    """{variant: (artifact, package path)} for the tiny ViT, each converted once for the whole module."""
    root = tmp_path_factory.mktemp("artifacts")
    result = {}
    for name, options in VARIANTS.items():
        out_dir = root / name
        out_dir.mkdir()
        artifact = coreml_exporter.export(tiny_loaded, out_dir, options)
        result[name] = (artifact, out_dir / "model.mlpackage")
    return result


def load_spec(package):
    return ct.models.MLModel(str(package), skip_model_load=True).get_spec()


def load_program(package):
    """The saved ML Program read back into MIL (what a reference executor would walk)."""
    from coremltools.converters.mil.frontend.milproto.load import load

    model = ct.models.MLModel(str(package), skip_model_load=True)
    spec = model.get_spec()
    return load(spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir)


def operations(package):
    return list(load_program(package).functions["main"].operations)


def test_tensor_input_has_the_flexible_batch(exported, tiny_loaded):
    artifact, package = exported["fp32"]
    (inp,) = load_spec(package).description.input
    assert inp.name == "pixel_values"
    array = inp.type.multiArrayType
    assert array.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    ranges = [(r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges]
    channels, height, width = tiny_loaded.spec.input_shape
    assert ranges == [(1, 64), (channels, channels), (height, height), (width, width)]
    assert artifact.input_spec["batch_range"] == [1, 64] and artifact.input_spec["input_name"] == "pixel_values"


@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_labels_and_metadata(exported, tiny_loaded, variant):
    artifact, package = exported[variant]
    spec = load_spec(package)
    assert [o.name for o in spec.description.output] == ["logits", "features"]
    assert "fake" in spec.description.output[0].shortDescription
    meta = spec.description.metadata
    assert meta.license == "MIT" and meta.author and meta.versionString.endswith(tiny_loaded.info.sha256[:12])
    assert "UNTRAINED" in meta.shortDescription  # seeded weights say so
    user = dict(meta.userDefined)
    assert json.loads(user["labels"]) == list(tiny_loaded.spec.labels)
    assert user["weights_sha256"] == tiny_loaded.info.sha256 and user["head_kind"] == tiny_loaded.spec.head_kind
    preprocessing = json.loads(user["preprocessing"])
    assert preprocessing["mean"] == list(tiny_loaded.spec.mean) and preprocessing["std"] == list(tiny_loaded.spec.std)
    assert preprocessing["size"] == list(tiny_loaded.spec.input_shape[1:]) and preprocessing["interpolation"] == "bicubic"
    assert user["precision"] == artifact.precision
    assert artifact.sha256 == path_sha256(package) and artifact.path == f"coreml-{artifact.precision}/model.mlpackage"


def test_deployment_target_is_applied(exported):
    assert load_spec(exported["fp32"][1]).specificationVersion == ct.target.iOS17.value  # the default
    assert load_spec(exported["fp16-image"][1]).specificationVersion == ct.target.iOS16.value


def test_image_input_folds_mean_and_std_into_scale_and_bias(exported, tiny_loaded):
    artifact, package = exported["fp16-image"]
    (inp,) = load_spec(package).description.input
    assert inp.type.imageType.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    assert (inp.type.imageType.height, inp.type.imageType.width) == tiny_loaded.spec.input_shape[1:]
    # Core ML applies an ImageType's scale and bias as the program's first mul and add.
    ops = [op for op in operations(package) if op.op_type != "const"]
    scale = float(ops[0].y.val)
    bias = np.asarray(ops[1].y.val).reshape(-1)
    assert (ops[0].op_type, ops[1].op_type) == ("mul", "add")
    np.testing.assert_allclose(scale, 1 / (255 * 0.5), rtol=1e-6)  # tiny_loaded spec: mean = std = 0.5
    np.testing.assert_allclose(bias, [-1.0, -1.0, -1.0], rtol=1e-6)
    assert artifact.input_spec["image_scale"] == pytest.approx(scale) and artifact.details["image_normalisation"].startswith("folded")


def test_image_input_with_per_channel_std_normalises_in_the_program(tiny_loaded, tmp_path):
    imagenet = tiny_loaded.spec.replace(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    loaded = tiny_loaded._replace(spec=imagenet)
    scale, bias, folded = coreml_exporter.image_scale_bias(imagenet)
    assert not folded and scale == pytest.approx(1 / 255) and bias == [0.0, 0.0, 0.0]
    artifact = coreml_exporter.export(loaded, tmp_path, CoremlOptions(precision="fp32", input="image"))
    assert "in the program" in artifact.details["image_normalisation"]
    ops = [op for op in operations(tmp_path / "model.mlpackage") if op.op_type != "const"]
    assert float(ops[0].y.val) == pytest.approx(1 / 255)
    # the scale, then (x - mean) / std; coremltools emits no add for an all-zero ImageType bias
    assert [op.op_type for op in ops[:3]] == ["mul", "sub", "mul"]
    np.testing.assert_allclose(np.asarray(ops[1].y.val).reshape(-1), imagenet.mean, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ops[2].y.val).reshape(-1), [1 / s for s in imagenet.std], rtol=1e-6)


def test_int8_package_holds_int8_weights(exported):
    artifact, package = exported["int8"]
    ops = operations(package)
    dequantize = [op for op in ops if op.op_type.startswith("constexpr_")]
    assert dequantize and all(op.quantized_data.val.dtype == np.int8 for op in dequantize)
    # every linear weight above coremltools' 2048-element threshold (qkv, fc1, fc2 of each block) is int8
    big_linear = [op for op in ops if op.op_type == "linear" and op.weight.shape[0] * op.weight.shape[1] > 2048]
    assert big_linear and all(op.weight.op.op_type.startswith("constexpr_") for op in big_linear)
    assert artifact.details["mil_ops"].get("constexpr_affine_dequantize") == len(dequantize)
    assert artifact.size_bytes < exported["fp32"][0].size_bytes


def test_int8_survives_deduplicated_zero_biases(tmp_path):
    """Width 128: the converter merges the equal zero biases of layer_norm and linear (as in the real ViT-S)."""
    wide = load_weights("seeded", tiny_spec().replace(embed_dim=128, mlp_dim=256, depth=1))
    artifact = coreml_exporter.export(wide, tmp_path, CoremlOptions(precision="int8"))
    assert artifact.details["mil_ops"]["constexpr_affine_dequantize"] == 5  # patch conv, qkv, proj, fc1, fc2


def test_directory_sha256_is_deterministic_and_location_free(exported, tmp_path):
    artifact, package = exported["fp32"]
    copy = shutil.copytree(package, tmp_path / "elsewhere.mlpackage")
    assert path_sha256(copy) == artifact.sha256
    weights = next(copy.rglob("weight.bin"))
    weights.write_bytes(weights.read_bytes() + b"\0")
    assert path_sha256(copy) != artifact.sha256


def test_bad_options_are_domain_errors_before_converting(tiny_loaded, tmp_path):
    with pytest.raises(UnknownNameError, match="iOS17"):
        coreml_exporter.export(tiny_loaded, tmp_path, CoremlOptions(min_target="iOS99"))
    with pytest.raises(ExportError, match="max-batch"):
        coreml_exporter.export(tiny_loaded, tmp_path, CoremlOptions(max_batch=1))


def test_missing_coremltools_names_the_pip_command(tiny_loaded, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)
    with pytest.raises(MissingDependencyError, match="pip install coremltools"):
        coreml_exporter.export(tiny_loaded, tmp_path, CoremlOptions())


@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML predictions need macOS (coremltools cannot run them elsewhere)")
@pytest.mark.macos
def test_fp32_predictions_match_torch_on_macos(exported, tiny_loaded):
    _, package = exported["fp32"]
    batch = preprocess(sample_images(limit=3), tiny_loaded.spec)
    result = ct.models.MLModel(str(package), compute_units=ct.ComputeUnit.CPU_ONLY).predict({"pixel_values": batch})
    logits, features = torch_outputs(tiny_loaded, batch)
    np.testing.assert_allclose(result["logits"], logits, atol=1e-3)
    np.testing.assert_allclose(result["features"], features, atol=1e-3)
