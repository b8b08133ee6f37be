"""vitship.exporters.litert and litert:cpu: .tflite fp32 / fp16 / int8 of the tiny ViT, under parity and bench.

One module-scoped export run makes the three precisions (litert-torch converts once; fp16 and int8 reuse it).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import assert_manifest_matches_files, cosine_rows, torch_outputs
from vitship.bench.cli import app
from vitship.bench.latency.roofline import apply_roofline
from vitship.bench.latency.sweep import BenchConfig, plan_sweep, run_sweep
from vitship.bench.latency.timing import TimingOptions
from vitship.bench.parity.results import PARITY_NAME, read_parity
from vitship.exporters import litert as litert_exporter
from vitship.exporters import options_class
from vitship.exporters.base import ExportError, manifest_artifacts
from vitship.exporters.litert import LitertOptions, read_metadata
from vitship.exporters.pipeline import export_all, model_dir_for
from vitship.models import MissingDependencyError, UnknownNameError, load_weights
from vitship.runtimes import RuntimeUnavailable, SessionOptions, available_targets, open_session

PRECISIONS = ("fp32", "fp16", "int8")
QUICK_TIMING = TimingOptions(min_time_s=0.05, warmup_s=0.01, min_iterations=2)


@pytest.fixture(scope="module")
def model_dir(tiny_loaded, tmp_path_factory):
    """litert-fp32, -fp16 and -int8 of the tiny ViT, exported by the shipped pipeline in one run."""
    root = tmp_path_factory.mktemp("litert")
    results = export_all(tiny_loaded, root, [("litert", p) for p in PRECISIONS], gate=False)
    assert [r.status for r in results] == ["ok"] * 3, [r.reason for r in results]
    return model_dir_for(root, tiny_loaded)


def by_id(model_dir):
    assert_manifest_matches_files(model_dir)
    return {a.id: a for a in manifest_artifacts(model_dir)}


def test_three_precisions_share_one_conversion_and_shrink(model_dir):
    found = by_id(model_dir)
    assert options_class("litert") is LitertOptions
    assert {aid: a.path for aid, a in found.items()} == {f"litert-{p}": f"litert-{p}/model.tflite" for p in PRECISIONS}
    # fp16 and int8 reuse fp32's conversion: one form for every precision (no class-token tail: LitertOptions)
    assert "reused from this run" in found["litert-fp16"].details.source
    assert not any(found[f"litert-{p}"].details.form().class_token_tail for p in ("fp32", "fp16", "int8"))
    assert found["litert-int8"].size_bytes < found["litert-fp16"].size_bytes < found["litert-fp32"].size_bytes
    assert found["litert-int8"].details.quantization.mode == "dynamic"
    assert all(a.input_spec["batch_shapes"] == [1] and a.input_spec["layout"] == "NCHW" for a in found.values())


def test_labels_and_normalisation_travel_inside_the_file(model_dir, tiny_loaded):
    for artifact in by_id(model_dir).values():
        metadata = read_metadata(model_dir / artifact.path)
        assert metadata["labels"] == f'{list(tiny_loaded.spec.labels)}'.replace("'", '"')
        assert metadata["mean"] == "[0.5, 0.5, 0.5]" and metadata["precision"] == artifact.precision
        assert metadata["weights_sha256"] == tiny_loaded.info.sha256 and metadata["layout"] == "NCHW"


def test_fp32_matches_torch_on_litert_cpu_and_splits_a_larger_batch(model_dir, tiny_loaded, tiny_photos):
    session = open_session(by_id(model_dir)["litert-fp32"], model_dir, "litert:cpu", SessionOptions(threads=1))
    try:
        assert session.info.threads == 1 and session.info.extra["accelerator"] == "XNNPACK"
        out = session.run_outputs(tiny_photos[:1])
        logits, features = torch_outputs(tiny_loaded, tiny_photos[:1])
        np.testing.assert_allclose(out["logits"], logits, atol=1e-4)
        np.testing.assert_allclose(out["features"], features, atol=1e-4)
        split = session.run_outputs(tiny_photos[:3])  # the session splits into the fixed batch of 1
        np.testing.assert_allclose(split["logits"], torch_outputs(tiny_loaded, tiny_photos[:3])[0], atol=1e-4)
    finally:
        session.close()
    fixed = open_session(by_id(model_dir)["litert-fp32"], model_dir, "litert:cpu", SessionOptions(threads=1, split_batches=False))
    try:
        with pytest.raises(RuntimeUnavailable, match="batch"):
            fixed.run_outputs(tiny_photos[:2])  # bench's sessions do not split: a batch of 2 is not a litert row
    finally:
        fixed.close()


def test_gpu_and_npu_targets_say_what_they_need():
    statuses = {s.target: s for s in available_targets(["litert"])}
    assert statuses["litert:cpu"].available
    assert not statuses["litert:gpu"].available and "GPU" in statuses["litert:gpu"].reason
    assert not statuses["litert:npu"].available and "vendor" in statuses["litert:npu"].reason
    assert all("vitship bench --target" in statuses[t].reason for t in ("litert:gpu", "litert:npu"))


def test_gpu_and_npu_targets_are_offered_on_an_arm_linux_host(monkeypatch):
    import platform

    from vitship.runtimes import litert_rt

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    assert all(s.available for s in litert_rt.targets())
    monkeypatch.setattr(platform, "system", lambda: "Darwin")  # an Apple-silicon Mac is no phone
    assert [s.target for s in litert_rt.targets() if s.available] == ["litert:cpu"]


def test_parity_passes_every_precision_on_litert_cpu(model_dir):
    result = CliRunner().invoke(app, ["parity", "--artifacts", str(model_dir), "--no-torch", "--target", "litert:cpu"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {r.artifact: r for r in read_parity(model_dir / PARITY_NAME).rows if r.target == "litert:cpu"}
    assert {aid: str(r.status) for aid, r in rows.items()} == {f"litert-{p}": "pass" for p in PRECISIONS}


def test_bench_times_litert_rows_at_batch_1_and_quick_includes_them(model_dir, tiny_loaded):
    artifacts = list(by_id(model_dir).values())
    config = BenchConfig(batches=(1,), targets=("litert:cpu",), timing=QUICK_TIMING, threads=1, row_timeout_s=300)
    rows = {r.artifact: r for r in run_sweep(plan_sweep(artifacts, model_dir, tiny_loaded.spec.to_dict(), config), config)}
    assert rows["litert-fp32"].ok and rows["litert-fp32"].stats.p50_ms > 0
    apply_roofline(list(rows.values()), tiny_loaded.spec, {})  # the roofline column, as `vitship bench` fills it
    assert rows["litert-fp32"].roofline["gflops"] > 0 and rows["litert-fp16"].roofline["peak_precision"] == "fp32"
    assert rows["litert-int8"].roofline["peak_precision"] == "int8"
    assert rows["litert-int8"].session["extra"]["accelerator"] == "XNNPACK"
    quick = plan_sweep(artifacts, model_dir, tiny_loaded.spec.to_dict(), BenchConfig.quick())
    assert {j.artifact_id for j in quick.jobs if j.target == "litert:cpu"} == {f"litert-{p}" for p in PRECISIONS}


def test_image_input_takes_nhwc_uint8_and_matches_the_tensor_program(tiny_loaded, tiny_photos, tmp_path):
    artifact = litert_exporter.export(tiny_loaded, tmp_path, LitertOptions(input="image"))
    assert artifact.input_spec["layout"] == "NHWC" and artifact.input_spec["dtype"] == "uint8"
    artifact.path = "model.tflite"  # exported straight into tmp_path, not through the pipeline's folder
    session = open_session(artifact, tmp_path, "litert:cpu", SessionOptions(threads=1))
    try:
        features = session.run_outputs(tiny_photos[:1])["features"]
    finally:
        session.close()
    assert cosine_rows(features, torch_outputs(tiny_loaded, tiny_photos[:1])[1]).min() >= 0.9999


def test_int8_meets_the_int8_gate_on_the_tiny_stress_model(tiny_loaded, tiny_photos, tmp_path):
    from vitship.models.judgement import ToleranceTable, compare

    stressed = load_weights("seeded-outliers", tiny_loaded.spec)
    artifact = litert_exporter.export(stressed, tmp_path, LitertOptions(precision="int8"))
    assert artifact.details.smoothing is None and artifact.details.quantization.mode == "dynamic"
    artifact.path = "model.tflite"
    session = open_session(artifact, tmp_path, "litert:cpu", SessionOptions(threads=1))
    try:
        outputs = [session.run_outputs(photo[None]) for photo in tiny_photos]
    finally:
        session.close()
    candidate = {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}
    logits, features = torch_outputs(stressed, tiny_photos)
    names = [f"photo{i}" for i in range(len(tiny_photos))]
    metrics = compare(candidate, {"logits": logits, "features": features}, stressed.spec, names, np.ones(len(names), bool))
    tolerance, _ = ToleranceTable().lookup("litert", "int8", "int8")
    assert tolerance.judge(metrics) == [] and metrics.min_cosine >= 0.98, metrics


def test_bad_options_are_refused_before_any_work(tiny_loaded, tmp_path, monkeypatch):
    with pytest.raises(ExportError, match="unsupported precision 'bf16'"):
        litert_exporter.export(tiny_loaded, tmp_path, LitertOptions(precision="bf16"))
    with pytest.raises(UnknownNameError, match="dynamic"):
        litert_exporter.export(tiny_loaded, tmp_path, LitertOptions(precision="int8", int8_mode="static"))
    with pytest.raises(ExportError, match="keep_float"):
        litert_exporter.export(tiny_loaded, tmp_path, LitertOptions(precision="int8", keep_float=("blocks.9.mlp.fc1",)))
    with pytest.raises(ExportError, match="SmoothQuant fold does not reach"):  # the converter folds it back
        litert_exporter.export(tiny_loaded, tmp_path, LitertOptions(precision="int8", smooth_alpha=0.5))
    monkeypatch.setitem(sys.modules, "litert_torch", None)
    with pytest.raises(MissingDependencyError, match="pip install"):
        litert_exporter.export(tiny_loaded, tmp_path, LitertOptions())
    assert not list(tmp_path.iterdir())


def test_keep_float_leaves_the_named_linears_in_float_by_their_module_path(tiny_loaded, tmp_path):
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    from vitship.exporters.int8.litert_recipe import module_pattern

    kept = ("blocks.0.attn.qkv", "blocks.1.mlp.fc2")
    artifact = litert_exporter.export(tiny_loaded, tmp_path, LitertOptions(precision="int8", keep_float=kept))
    assert artifact.details.quantization.keep_float_ops == dict.fromkeys(kept, 1) and artifact.option("keep_float") == list(kept)
    tree = flatbuffer_utils.read_model_from_bytearray(bytearray((tmp_path / "model.tflite").read_bytes()))
    graph = tree.subgraphs[0]
    fully_connected = [op for op in graph.operators
                       if tree.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.FULLY_CONNECTED]
    weights = [graph.tensors[op.inputs[1]] for op in fully_connected]
    for module in ("blocks.0.attn.qkv", "blocks.1.attn.qkv", "blocks.0.mlp.fc2", "blocks.1.mlp.fc2"):
        (weight,) = [w for w in weights if module_pattern(module).search(w.name.decode())]
        assert weight.type == (schema.TensorType.FLOAT32 if module in kept else schema.TensorType.INT8), module


def test_the_file_alone_says_its_labels_threshold_and_preprocessing(model_dir, tiny_loaded):
    from vitship.exporters.embedded import read_embedded, summary

    facts = read_embedded(model_dir / "litert-int8" / "model.tflite")
    assert facts.value("labels") == list(tiny_loaded.spec.labels) and facts.value("decision_threshold") == 0.5
    assert facts.value("precision") == "int8" and facts.value("input_type") == "tensor"
    assert facts.inputs[0]["dtype"] == "float32" and facts.inputs[0]["shape"] == [1, *tiny_loaded.spec.input_shape]
    assert "the app's: resize shortest_edge [64, 64] bicubic" in summary(facts)["preprocessing"]
