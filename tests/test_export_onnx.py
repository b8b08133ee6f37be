"""vitship.exporters.onnx on the tiny ViT: symbolic batch, self-contained file, metadata, fp16 I/O, real int8 weights."""

from __future__ import annotations

import json

import numpy as np
import onnx  # noqa: E402  (hard dependencies: a broken install fails, never skips)
import onnxruntime as ort  # noqa: E402
import pytest

from tests.conftest import cosine_rows, torch_outputs  # noqa: E402
from vitship.exporters import onnx as onnx_exporter  # noqa: E402  (after the imports above)
from vitship.exporters.base import ExportError, model_metadata, path_sha256
from vitship.exporters.int8.calibration import HOLD_BACK_EVERY
from vitship.exporters.onnx import OnnxOptions  # noqa: E402
from vitship.models import ImageError
from vitship.models.export_form import ExportForm

# Every artifact variant the module exports once: the default int8 is dynamic, "int8-static" the QDQ option.
VARIANTS = {"fp32": OnnxOptions(precision="fp32"), "fp16": OnnxOptions(precision="fp16"),
            "int8": OnnxOptions(precision="int8"), "int8-static": OnnxOptions(precision="int8", int8_mode="static"),
            "fp32-timm-form": OnnxOptions(precision="fp32", contrib_ops="none", class_token_tail=False)}
PRECISIONS = tuple(VARIANTS)
# Feature cosine the tiny ViT must keep per precision (the real ViT-S gates are in docs/DESIGN.md).
MIN_COSINE = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.98, "int8-static": 0.98, "fp32-timm-form": 0.99999}
CONTRIB_OPS = {"fp32": {"Attention", "Gelu"}, "int8": {"QAttention", "Gelu"}}  # onnxruntime's (exporters.onnx_graph)


@pytest.fixture(scope="module")
def exported(tiny_loaded, tmp_path_factory):
    """{variant: (artifact, path to model.onnx)}, each exported once for the module."""
    result = {}
    for variant, options in VARIANTS.items():
        root = tmp_path_factory.mktemp(variant)
        out_dir = root / f"onnx-{options.precision}"
        out_dir.mkdir()
        artifact = onnx_exporter.export(tiny_loaded, out_dir, options)
        result[variant] = (artifact, root / artifact.path)
    return result


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def value_dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_batch_axis_is_symbolic_and_names_are_declared(exported, tiny_loaded, precision):
    model = onnx.load(str(exported[precision][1]), load_external_data=False)
    spec = tiny_loaded.spec
    assert [i.name for i in model.graph.input] == ["pixel_values"]
    assert [o.name for o in model.graph.output] == ["logits", "features"]
    assert value_dims(model.graph.input[0]) == ["batch", *spec.input_shape]
    assert [value_dims(o)[0] for o in model.graph.output] == ["batch", "batch"]
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 18


@pytest.mark.parametrize("precision", PRECISIONS)
def test_onnxruntime_runs_batches_1_and_3_like_torch(exported, tiny_loaded, tiny_photos, precision):
    run = session(exported[precision][1])
    want_logits, want_features = torch_outputs(tiny_loaded, tiny_photos[:3])
    single = [run.run(None, {"pixel_values": tiny_photos[i:i + 1]}) for i in range(3)]
    logits, features = run.run(None, {"pixel_values": tiny_photos[:3]})
    assert logits.shape == (3, tiny_loaded.spec.num_classes) and features.shape == (3, tiny_loaded.spec.embed_dim)
    assert logits.dtype == np.float32 and features.dtype == np.float32
    alone = np.concatenate([s[1] for s in single])
    if precision == "int8":  # dynamic int8 picks its activation scales per call, i.e. over the whole batch
        assert cosine_rows(alone, features).min() >= MIN_COSINE[precision]
    else:
        np.testing.assert_allclose(alone, features, atol=1e-4)
    assert cosine_rows(features, want_features).min() >= MIN_COSINE[precision]
    if precision.startswith("fp32"):
        np.testing.assert_allclose(logits, want_logits, atol=1e-4)


def test_fp32_is_one_self_contained_file_exported_by_dynamo(exported):
    artifact, path = exported["fp32"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]
    model = onnx.load(str(path), load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)
    assert artifact.details.exporter.startswith("torch.onnx.export(dynamo=True)")
    assert artifact.details.dynamo_fallback_reason is None
    onnx.checker.check_model(str(path), full_check=True)


def test_metadata_and_artifact_record_the_model(exported, tiny_loaded):
    artifact, path = exported["fp32"]
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    spec, info = tiny_loaded.spec, tiny_loaded.info
    assert props["model_name"] == spec.name and props["weights_sha256"] == info.sha256
    assert json.loads(props["labels"]) == list(spec.labels) and props["head_kind"] == spec.head_kind
    assert json.loads(props["mean"]) == list(spec.mean) and json.loads(props["std"]) == list(spec.std)
    assert json.loads(props["input_size"]) == list(spec.input_shape) and props["vitship_version"]
    assert props == {**model_metadata(tiny_loaded), "precision": "fp32"}
    assert artifact.id == "onnx-fp32" and artifact.path == "onnx-fp32/model.onnx"
    assert artifact.sha256 == path_sha256(path) and artifact.size_bytes == path.stat().st_size
    assert artifact.weights == info.to_dict() and artifact.input_spec["input_shape"][0] == "batch"
    assert {"torch", "onnx", "onnxruntime", "onnxslim", "vitship"} <= set(artifact.versions)


def test_onnxslim_decision_is_recorded(exported):
    slim = exported["fp32"][0].details.onnxslim
    assert slim.nodes_before > 0 and slim.reason
    if slim.kept:
        assert slim.nodes_after < slim.nodes_before and slim.max_output_difference <= 1e-4


def test_fp16_has_fp16_weights_and_fp32_inputs_outputs(exported):
    model = onnx.load(str(exported["fp16"][1]))
    float_types = {t.data_type for t in model.graph.initializer} & {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    assert onnx.TensorProto.FLOAT16 in float_types
    big_weights = [t for t in model.graph.initializer if np.prod(t.dims) >= 1024]
    assert big_weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big_weights)
    io = [*model.graph.input, *model.graph.output]
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in io)


def test_static_int8_holds_quantized_weights_in_qdq_form(exported):
    artifact, path = exported["int8-static"]
    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8 = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and np.prod(t.dims) > 1]
    assert len(int8) >= 6  # per block: qkv, proj, fc1, fc2 (+ patch embedding)
    (head,) = [n for n in model.graph.node if "logits" in n.output]
    weights = {t.name: t for t in model.graph.initializer}
    assert weights[head.input[1]].data_type == onnx.TensorProto.FLOAT  # the head stays fp32 (not dequantized)
    assert artifact.calibration.count == 18 - 18 // HOLD_BACK_EVERY and "sample_images" in artifact.calibration.source
    assert "QDQ" in artifact.calibration.scheme and artifact.details.quantization.quantized_weights == len(int8)


def test_default_int8_is_dynamic_matmulinteger(exported):
    artifact, path = exported["int8"]
    assert artifact.option("int8_mode") == "dynamic"
    model = onnx.load(str(path))
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= {n.op_type for n in model.graph.node}
    assert "QuantizeLinear" not in {n.op_type for n in model.graph.node}
    assert artifact.calibration.scheme.startswith("dynamic") and artifact.calibration.count == 0


def test_bad_calibration_image_is_named(tiny_loaded, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    options = OnnxOptions(precision="int8", int8_mode="static", calibration_dir=photos)  # dynamic reads no photos
    with pytest.raises(ImageError, match="broken.jpg"):
        onnx_exporter.export(tiny_loaded, tmp_path, options)


def test_bad_options_are_domain_errors(tiny_loaded, tmp_path):
    with pytest.raises(ExportError, match="precision"):
        onnx_exporter.export(tiny_loaded, tmp_path, OnnxOptions(precision="int4"))
    with pytest.raises(ExportError, match="opset"):
        onnx_exporter.export(tiny_loaded, tmp_path, OnnxOptions(opset=13))
    with pytest.raises(ExportError, match="int8 mode"):
        onnx_exporter.export(tiny_loaded, tmp_path, OnnxOptions(precision="int8", int8_mode="weights"))


def test_dynamo_failure_falls_back_to_torchscript_and_says_why(tiny_loaded, tmp_path, monkeypatch, tiny_photos):
    import torch

    real_export = torch.onnx.export

    def dynamo_breaks(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("simulated dynamo failure")
        return real_export(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_breaks)
    artifact = onnx_exporter.export(tiny_loaded, tmp_path, OnnxOptions(slim=False))
    assert "simulated dynamo failure" in artifact.details.dynamo_fallback_reason
    assert "TorchScript" in artifact.details.exporter
    logits, _ = session(tmp_path / "model.onnx").run(None, {"pixel_values": tiny_photos[:3]})
    np.testing.assert_allclose(logits, torch_outputs(tiny_loaded, tiny_photos[:3])[0], atol=1e-4)


@pytest.mark.parametrize("variant", PRECISIONS)
def test_default_files_load_in_older_runtimes(exported, variant):
    """IR version <= 9 and opset <= 18 (onnxruntime 1.16+, OpenVINO 2024.0+), recorded in the artifact."""
    artifact, path = exported[variant]
    model = onnx.load(str(path))
    assert model.ir_version <= 9
    assert {(o.domain or "ai.onnx") for o in model.opset_import} <= {"ai.onnx", "com.microsoft"}
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= 18
    onnx.checker.check_model(model, full_check=True)  # valid as an IR 9 file
    # OpenVINO 2024.0 ignores Shape's start/end (opset 15+); they are rewritten as Shape + Slice
    assert not [n.name for n in model.graph.node if n.op_type == "Shape" and len(n.attribute)]
    if variant == "fp16":  # onnxruntime 1.16 has no fp16 LayerNormalization and cannot expand it at opset 18
        values = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
        norms = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
        assert norms and all(values.get(n.output[0], onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT for n in norms)
    readers = {"onnxruntime": "1.16"} if variant == "int8" else {"onnxruntime": "1.16", "openvino": "2024.0"}  # QAttention
    assert artifact.min_runtime_versions == readers
    assert artifact.details.compatibility.ir_version == model.ir_version
    assert artifact.to_dict()["min_runtime_versions"] == artifact.min_runtime_versions  # goes into the manifest


def test_latest_keeps_the_exporters_ir_version(exported, tiny_loaded, tmp_path):
    artifact = onnx_exporter.export(tiny_loaded, tmp_path, OnnxOptions(runtimes="latest"))
    model = onnx.load(str(tmp_path / "model.onnx"))
    exported_ir = exported["fp32"][0].details.compatibility.exported_ir_version
    assert model.ir_version == exported_ir == artifact.details.compatibility.ir_version
    if exported_ir >= 10:  # the dynamo exporter writes IR 10 since torch 2.5
        assert artifact.min_runtime_versions["onnxruntime"] == "1.18"


def test_compatible_target_refuses_an_unverified_opset(tiny_loaded, tmp_path):
    with pytest.raises(ExportError, match="--onnx-runtimes latest"):
        onnx_exporter.export(tiny_loaded, tmp_path, OnnxOptions(opset=21))


def contrib_ops(path) -> dict[str, int]:
    ops: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.domain == "com.microsoft":
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_fp32_and_dynamic_int8_run_attention_and_gelu_as_onnxruntime_ops(exported, tiny_loaded, precision):
    """timm's qkv projection and attention as one Attention per block (the class token's tail: standard ops)."""
    artifact, path = exported[precision]
    ops = contrib_ops(path)
    assert set(ops) == CONTRIB_OPS[precision] and ops["Gelu"] == tiny_loaded.spec.depth
    assert sum(ops.values()) - ops["Gelu"] == tiny_loaded.spec.depth - 1
    assert artifact.details.form() == ExportForm(attention="qkv-op", layer_norm="native", class_token_tail=True)
    assert artifact.details.gelu_fusion.kept and artifact.details.gelu_fusion.max_output_difference <= 1e-4


def test_fp16_static_int8_and_the_timm_form_keep_standard_onnx_ops(exported):
    """fp16 and QDQ int8 are for other execution providers; contrib_ops="none" gives timm's graph as exported."""
    for variant in ("fp16", "int8-static", "fp32-timm-form"):
        assert contrib_ops(exported[variant][1]) == {}, variant
    assert exported["fp16"][0].details.form().attention == "fused"
    assert exported["fp32-timm-form"][0].details.form().class_token_tail is False
