"""vitship.exporters.coreml: iOS shapes (image at batch 1, enumerated tensor batches), labels and metadata,
ImageType scale/bias, real int8 weights and details.apple (tiny ViT).

Core ML cannot run predictions off macOS, so these tests read the saved spec and ML Program back;
the one prediction test runs on macOS only.
"""

from __future__ import annotations

import json
import shutil
import sys

import coremltools as ct  # noqa: E402  (a hard dependency: a broken install fails, never skips)
import numpy as np
import pytest

from tests.conftest import torch_outputs
from vitship.exporters import coreml as coreml_exporter
from vitship.exporters.base import ExportError, TraceCache, path_sha256
from vitship.exporters.coreml import CoremlOptions, CoremlTensorOptions
from vitship.exporters.coreml_apple import AppleDetails, NeuralEngine
from vitship.models import MissingDependencyError, UnknownNameError, load_weights, preprocess, sample_images, tiny_spec
from vitship.models.status import Status

VARIANTS = {  # name -> options
    "fp32": CoremlOptions(precision="fp32"),  # the exact reference: tensor input, enumerated batches
    "int8": CoremlOptions(precision="int8"),  # the default: RGB image at batch 1
    "fp16-image": CoremlOptions(precision="fp16", input="image", min_target="iOS16"),
    "tensor-fp16": CoremlTensorOptions(precision="fp16"),
}


@pytest.fixture(scope="module")
def exported(tiny_loaded, tmp_path_factory):
    """{variant: (artifact, package path)} for the tiny ViT, each converted once for the whole module."""
    root = tmp_path_factory.mktemp("artifacts")
    result, cache = {}, TraceCache()
    for name, options in VARIANTS.items():
        out_dir = root / name
        out_dir.mkdir()
        artifact = coreml_exporter.export(tiny_loaded, out_dir, options, cache)
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


@pytest.mark.parametrize("variant", ["fp32", "tensor-fp16"])
def test_tensor_input_has_the_enumerated_batches(exported, tiny_loaded, variant):
    artifact, package = exported[variant]
    (inp,) = load_spec(package).description.input
    assert inp.name == "pixel_values"
    array = inp.type.multiArrayType
    assert array.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert array.WhichOneof("ShapeFlexibility") == "enumeratedShapes"  # no RangeDim: the Neural Engine runs each one
    shapes = [tuple(s.shape) for s in array.enumeratedShapes.shapes]
    assert shapes == [(n, *tiny_loaded.spec.input_shape) for n in (1, 2, 4, 8)]
    assert artifact.input_spec["batch_shapes"] == [1, 2, 4, 8] and artifact.input_spec["input_name"] == "pixel_values"
    assert artifact.details.apple.batch_shapes == [1, 2, 4, 8] and artifact.details.apple.input == "tensor"


def test_default_ios_artifacts_take_an_image_at_batch_one_and_are_neural_engine_eligible(exported, tiny_loaded):
    artifact, package = exported["int8"]
    (inp,) = load_spec(package).description.input
    assert inp.type.WhichOneof("Type") == "imageType"
    assert inp.type.imageType.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    apple = artifact.details.apple
    assert apple == AppleDetails(NeuralEngine.ELIGIBLE, apple.neural_engine_reason, "image", [1], "iOS17", "fp16", [])
    assert artifact.id == "coreml-int8" and artifact.input_spec["batch_shapes"] == [1]


def test_fp32_is_the_exact_reference_not_for_the_neural_engine(exported):
    artifact, _ = exported["fp32"]
    assert artifact.details.apple.neural_engine == "not eligible"
    assert artifact.details.apple.compute_precision == "fp32" and "fp16" in artifact.details.apple.neural_engine_reason
    assert "not for the Neural Engine" in artifact.details.label


def test_tensor_variant_has_its_own_id_and_shares_the_torch_export(exported):
    artifact, _package = exported["tensor-fp16"]
    assert (artifact.id, artifact.format) == ("coreml-tensor-fp16", "coreml")
    assert artifact.path == "coreml-tensor-fp16/model.mlpackage" and artifact.options["batch_shapes"] == [1, 2, 4, 8]
    assert artifact.details.apple.neural_engine == "eligible"
    assert artifact.details.torch_export == "reused from this run"  # one torch.export for every coreml artifact
    assert exported["fp32"][0].details.torch_export is None


def test_a_known_fallback_op_makes_it_into_the_apple_details():
    from vitship.exporters.coreml_apple import apple_details

    apple = apple_details(compute_precision="fp16", input_kind="tensor", batch_kind="fixed", batch_shapes=[1],
                          min_target="iOS17", op_counts={"linear": 4, "scatter_nd": 1})
    assert apple.fallback_ops == ["scatter_nd"] and "scatter_nd fall back" in apple.neural_engine_reason


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
    assert artifact.sha256 == path_sha256(package) and artifact.path == f"{artifact.id}/model.mlpackage"


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
    assert artifact.input_spec["image_scale"] == pytest.approx(scale) and artifact.details.image_normalisation.startswith("folded")


def test_image_input_with_per_channel_std_normalises_in_the_program(tiny_loaded, tmp_path):
    imagenet = tiny_loaded.spec.replace(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    loaded = tiny_loaded._replace(spec=imagenet)
    scale, bias, folded = coreml_exporter.image_scale_bias(imagenet)
    assert not folded and scale == pytest.approx(1 / 255) and bias == [0.0, 0.0, 0.0]
    artifact = coreml_exporter.export(loaded, tmp_path, CoremlOptions(precision="fp32", input="image"))
    assert "in the program" in artifact.details.image_normalisation
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
    assert artifact.details.mil_ops.get("constexpr_affine_dequantize") == len(dequantize)
    assert artifact.size_bytes < exported["fp32"][0].size_bytes


def test_int8_survives_deduplicated_zero_biases(tmp_path):
    """Width 128: the converter merges the equal zero biases of layer_norm and linear (as in the real ViT-S)."""
    wide = load_weights("seeded", tiny_spec().replace(embed_dim=128, mlp_dim=256, depth=1))
    artifact = coreml_exporter.export(wide, tmp_path, CoremlOptions(precision="int8"))
    assert artifact.details.mil_ops["constexpr_affine_dequantize"] == 5  # patch conv, qkv, proj, fc1, fc2


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
        coreml_exporter.export(tiny_loaded, tmp_path, CoremlOptions(precision="fp32", batch="range", max_batch=1))
    with pytest.raises(ExportError, match="must include 1"):
        coreml_exporter.export(tiny_loaded, tmp_path, CoremlOptions(precision="fp32", batch_shapes=(2, 4)))
    with pytest.raises(ExportError, match="distinct positive"):
        coreml_exporter.export(tiny_loaded, tmp_path, CoremlOptions(precision="fp32", batch_shapes=(1, 1, 0)))
    with pytest.raises(ExportError, match="tensor input"):
        coreml_exporter.export(tiny_loaded, tmp_path, CoremlTensorOptions(precision="fp16", input="image"))
    with pytest.raises(UnknownNameError, match="enumerated"):
        coreml_exporter.export(tiny_loaded, tmp_path, CoremlOptions(batch="ranged"))
    assert not list(tmp_path.iterdir())  # refused before anything was written


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


def test_compute_plan_summary_counts_ops_per_preferred_device():
    """The MLComputePlan walk (runtimes.coreml_plan) over stand-ins shaped like coremltools' documented classes."""
    from types import SimpleNamespace as NS

    from vitship.runtimes.coreml_plan import summarise

    class MLNeuralEngineComputeDevice: ...

    class MLCPUComputeDevice: ...

    ops = [NS(operator_name="const"), NS(operator_name="linear"), NS(operator_name="linear"), NS(operator_name="gather")]
    devices = {id(ops[1]): MLNeuralEngineComputeDevice(), id(ops[2]): MLNeuralEngineComputeDevice(), id(ops[3]): MLCPUComputeDevice()}
    plan = NS(model_structure=NS(program=NS(functions={"main": NS(block=NS(operations=ops))})),
              get_compute_device_usage_for_mlprogram_operation=lambda op: NS(preferred_compute_device=devices[id(op)]),
              get_estimated_cost_for_mlprogram_operation=lambda op: NS(weight=0.4 if op.operator_name == "linear" else 0.2))
    summary = summarise(plan)
    assert summary.status is Status.OK and summary.ops_by_device == {"neural_engine": 2, "cpu": 1}
    assert summary.cost_by_device == {"neural_engine": 0.8, "cpu": 0.2} and summary.off_neural_engine == {"gather": 1}


@pytest.mark.skipif(sys.platform == "darwin", reason="off macOS only: the placement note says why it is missing")
def test_compute_plan_off_macos_says_why():
    from vitship.runtimes.coreml_plan import ComputePlan, compute_plan

    assert compute_plan(None, None) == ComputePlan(Status.UNAVAILABLE, "MLComputePlan needs macOS 14.4+")


@pytest.mark.skipif(sys.platform != "darwin", reason="MLComputePlan and Core ML predictions need macOS 14.4+")
@pytest.mark.macos
def test_neural_engine_session_records_where_each_op_runs(exported, tiny_loaded, tmp_path):
    from vitship.runtimes import open_session

    artifact, package = exported["fp16-image"]
    shutil.copytree(package, tmp_path / artifact.path)  # the manifest layout: <model dir>/<id>/model.mlpackage
    session = open_session(artifact, tmp_path, "coreml:cpu_and_ne")
    plan = session.info.extra["compute_plan"]
    assert plan.status is Status.UNAVAILABLE or sum(plan.ops_by_device.values()) > 0
    batch = preprocess(sample_images(limit=2), tiny_loaded.spec)
    assert session.run_outputs(batch)["features"].shape == (2, tiny_loaded.spec.embed_dim)
