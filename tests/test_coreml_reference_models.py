"""The shipped CoreML exports (exporters.coreml) through the reference executor, judged by the parity gates.

Tiny ViT for mechanics (fp32, fp16, int8 weights, image input, corrupted weight blob); the real
ViT-S/16-384 once per precision, marked slow. Reference: the PyTorch fp32 model, same weights.
"""

from __future__ import annotations

import shutil
import struct

import coremltools as ct  # noqa: F401  (a hard dependency: a broken install fails, never skips)
import numpy as np
import pytest
import torch  # noqa: E402
from typer.testing import CliRunner

from vitship.bench.cli import app
from vitship.bench.parity.results import PARITY_NAME, read_parity
from vitship.bench.parity.run import ParityConfig, ParityInputs, run_batched
from vitship.exporters import coreml as coreml_exporter
from vitship.exporters.base import manifest_artifacts, path_sha256, read_manifest, write_manifest
from vitship.exporters.coreml import CoremlOptions
from vitship.exporters.pipeline import model_dir_for
from vitship.models import load_weights, tiny_spec
from vitship.models.judgement import DEFAULT_TOLERANCES, Tolerance, compare
from vitship.runtimes import (
    SessionOptions,
    coreml_reference,
    open_session,
)
from vitship.runtimes.batching import honour_batch_shapes
from vitship.runtimes.coreml_reference import (
    REFERENCE_LABEL,
    TARGET,
    ReferenceExecutorError,
    load_package,
    open_reference_session,
)

PRECISIONS = ("fp32", "fp16", "int8")
BATCHES = (1, 8)


def reference_outputs(loaded, pixels: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        logits, features = loaded.model.eval()(torch.from_numpy(pixels))
    return {"logits": logits.numpy(), "features": features.numpy()}


def judge(session, loaded, inputs: ParityInputs, reference: dict, tolerance: Tolerance, batches=BATCHES):
    """(failures, metrics) of the session at every batch size, plus batch consistency, under `tolerance`.

    Pass a session that honours the artifact's batch shapes (runtimes.batching), as runtimes.open_session's do."""
    runs = {b: run_batched(session, inputs.pixels, b) for b in batches}
    failures, metrics = [], {}
    for b, out in runs.items():
        m = compare(out, reference, loaded.spec, inputs.names, inputs.is_photo, band=tolerance.max_prob or 0.0)
        metrics[b] = m
        failures += tolerance.judge(m, f"batch {b}")
    consistency = compare(runs[batches[-1]], runs[batches[0]], loaded.spec, inputs.names, inputs.is_photo)
    return failures + tolerance.judge(consistency, "batch consistency"), metrics


def export(loaded, out_dir, **options):
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = coreml_exporter.export(loaded, out_dir, CoremlOptions(**options))
    return artifact, out_dir / coreml_exporter.PACKAGE_NAME


@pytest.fixture(scope="module")
def tiny():
    return load_weights("seeded", tiny_spec())


@pytest.fixture(scope="module")
def tiny_inputs(tiny):
    inputs = ParityInputs.build(tiny.spec, ParityConfig(random_inputs=3))
    return inputs, reference_outputs(tiny, inputs.pixels)


@pytest.fixture(scope="module")
def tiny_model_dir(tiny, tiny_exports):
    """tiny ViT coreml-fp32/fp16/int8 exported by the shipped pipeline, with its manifest (once per session)."""
    return model_dir_for(tiny_exports([("coreml", p) for p in PRECISIONS]), tiny)


@pytest.fixture(scope="module")
def tiny_packages(tiny_model_dir):
    artifacts = {a.precision: a for a in manifest_artifacts(tiny_model_dir)}
    return {p: (artifacts[p], tiny_model_dir / artifacts[p].path) for p in PRECISIONS}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_tiny_export_passes_its_gate_on_the_reference_executor(precision, tiny, tiny_inputs, tiny_packages, tiny_model_dir):
    inputs, reference = tiny_inputs
    artifact = tiny_packages[precision][0]
    session = coreml_reference.open_session(artifact, tiny_model_dir)  # an image input needs the spec's normalisation
    assert session.info.extra["image_input"] == (None if precision == "fp32" else "RGB")  # fp16/int8: RGB at batch 1
    assert session.info.target == TARGET and session.info.extra["note"] == REFERENCE_LABEL
    assert "not the Apple runtime" in session.info.provider
    assert session.info.precision == ("fp32" if precision == "fp32" else "fp16-emulated")
    if precision == "int8":  # the int8 weights are really decoded, not skipped
        assert session.executor.op_counts["constexpr_affine_dequantize"] + \
            session.executor.op_counts["constexpr_blockwise_shift_scale"] > 0
    failures, metrics = judge(honour_batch_shapes(session, artifact), tiny, inputs, reference, DEFAULT_TOLERANCES[precision])
    assert failures == []
    assert metrics[1].n_photos > 0


def test_registered_target_opens_the_reference_session(tiny_packages, tiny_model_dir):
    artifact, _ = tiny_packages["fp16"]
    session = open_session(artifact, tiny_model_dir, "coreml:reference", SessionOptions(threads=1))
    try:
        assert session.info.target == "coreml:reference" and session.info.threads == 1
        assert session.info.extra["note"] == REFERENCE_LABEL
        assert session.run(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 1)
    finally:
        session.close()


def test_a_batch_outside_the_enumerated_shapes_is_refused_as_core_ml_does(tiny_packages):
    session = open_reference_session(tiny_packages["fp32"][1])  # enumerated batches 1, 2, 4, 8
    assert session.run(np.zeros((4, 3, 64, 64), np.float32)).shape == (4, 1)
    for batch in (3, 16):
        with pytest.raises(ReferenceExecutorError, match="not one of the enumerated shapes"):
            session.run(np.zeros((batch, 3, 64, 64), np.float32))


def test_the_session_splits_a_batch_into_enumerated_sizes(tiny_packages, tiny, tiny_inputs):
    inputs, reference = tiny_inputs  # 18 photos + 3 random: batch 8 leaves a remainder of 5 = 4 + 1
    artifact, package = tiny_packages["fp32"]
    session = open_reference_session(package)
    fed = []
    real = session.run_outputs
    session.run_outputs = lambda batch: fed.append(len(batch)) or real(batch)
    out = run_batched(honour_batch_shapes(session, artifact), inputs.pixels, 8)
    assert fed == [8, 8, 4, 1] and len(out["logits"]) == len(inputs.pixels)
    np.testing.assert_allclose(out["logits"], reference["logits"], atol=1e-4)


def test_a_range_batch_stays_available_and_is_checked_against_its_range(tiny, tmp_path):
    artifact, package = export(tiny, tmp_path / "coreml-fp16", precision="fp16", input="tensor", batch="range", max_batch=16)
    assert artifact.details.apple.neural_engine == "not eligible"
    assert "default shape" in artifact.details.apple.neural_engine_reason
    assert artifact.details.apple.batch_shapes == "1..16"
    session = open_reference_session(package)
    assert session.run(np.zeros((3, 3, 64, 64), np.float32)).shape == (3, 1)
    with pytest.raises(ReferenceExecutorError, match="outside the declared shape range"):
        session.run(np.zeros((17, 3, 64, 64), np.float32))


def _largest_fp32_blob(package) -> tuple[int, int]:
    """(data offset, size in bytes) of the largest fp32 weight in weights/weight.bin, from the spec's
    blob offsets and the blob metadata (sentinel u32, dtype u32, size u64, data offset u64)."""
    loaded = load_package(package)
    blob = loaded.weights_dir / "weight.bin"
    block = next(iter(loaded.spec.mlProgram.functions["main"].block_specializations.values()))
    offsets = [op.attributes["val"].blobFileValue.offset for op in block.operations
               if op.type == "const" and op.attributes["val"].WhichOneof("value") == "blobFileValue"]
    data = blob.read_bytes()
    spans = [struct.unpack_from("<QQ", data, o + 8) for o in offsets]  # (size, data offset)
    size, offset = max(spans)
    return offset, size


def _flip_largest_weight(package) -> None:
    """Flip the sign bit of every value of the largest fp32 weight in weights/weight.bin."""
    offset, size = _largest_fp32_blob(package)
    blob = package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    data = bytearray(blob.read_bytes())
    for i in range(offset + 3, offset + size, 4):
        data[i] ^= 0x80
    blob.write_bytes(bytes(data))


def test_corrupted_weight_blob_fails_the_gate(tiny, tiny_inputs, tiny_packages, tmp_path):
    inputs, reference = tiny_inputs
    package = tmp_path / "corrupt.mlpackage"
    shutil.copytree(tiny_packages["fp32"][1], package)
    _flip_largest_weight(package)
    failures, metrics = judge(open_reference_session(package), tiny, inputs, reference, DEFAULT_TOLERANCES["fp32"],
                              batches=(1, 4))
    assert any("max abs logit error" in f for f in failures) and metrics[1].max_abs_logit > 1e-2


def _parity(model_dir, *args):
    return CliRunner().invoke(app, ["parity", "--artifacts", str(model_dir), "--no-torch", "--target", "coreml:reference",
                                    *args], catch_exceptions=False)


@pytest.mark.slow  # 30+ s on 2 cores: CI runs it after make export-all (.ci/run), outside make test's budget
def test_vitship_parity_checks_every_coreml_artifact_on_the_reference_executor(tiny_model_dir, tmp_path):
    work = shutil.copytree(tiny_model_dir, tmp_path / tiny_model_dir.name)
    result = _parity(work)
    assert result.exit_code == 0, result.output
    rows = {r.artifact: r for r in read_parity(work / PARITY_NAME).rows}
    assert sorted(rows) == [f"coreml-{p}" for p in sorted(PRECISIONS)]
    for row in rows.values():
        assert (row.target, row.status, row.note) == ("coreml:reference", "pass", REFERENCE_LABEL)


def test_corrupted_weight_blob_makes_its_parity_row_fail(tiny_model_dir, tmp_path):
    work = shutil.copytree(tiny_model_dir, tmp_path / tiny_model_dir.name)
    entry = read_manifest(work)["artifacts"]["coreml-fp32"]
    _flip_largest_weight(work / entry["path"])
    manifest = read_manifest(work)  # the manifest is made consistent: only the computation is wrong
    manifest["artifacts"]["coreml-fp32"]["sha256"] = path_sha256(work / entry["path"])
    write_manifest(work, manifest)
    result = _parity(work, "--artifact", "coreml-fp32")
    assert result.exit_code == 1, result.output
    (row,) = read_parity(work / PARITY_NAME).rows
    assert row.status == "fail" and "max abs logit error" in row.reason and row.note == REFERENCE_LABEL


def test_corrupted_blob_header_is_a_clear_error(tiny_packages, tmp_path):
    package = tmp_path / "header.mlpackage"
    shutil.copytree(tiny_packages["fp32"][1], package)
    offset, _ = _largest_fp32_blob(package)
    blob = package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    data = bytearray(blob.read_bytes())
    data[offset - 64:offset - 60] = b"\0\0\0\0"  # the metadata sentinel in front of that weight
    blob.write_bytes(bytes(data))
    with pytest.raises(ReferenceExecutorError, match="could not load the ML Program"):
        open_reference_session(package)


def test_image_input_export_runs_from_normalised_batches(tiny, tiny_inputs, tmp_path):
    """ImageType: the program takes 0..255 RGB pixels and applies scale/bias itself; the session maps
    the normalised batch back to 8-bit pixels (exact for photos) and runs one image per prediction."""
    inputs, reference = tiny_inputs
    artifact, package = export(tiny, tmp_path / "coreml-fp32", precision="fp32", input="image")
    session = open_session(artifact, tmp_path, "coreml:reference")
    assert artifact.input_spec["batch_shapes"] == [1] and artifact.details.apple.input == "image"
    assert session.info.extra["image_input"] == "RGB"
    photos = inputs.pixels[inputs.is_photo]
    out = run_batched(session, photos, 4)
    ref = {k: v[inputs.is_photo] for k, v in reference.items()}
    names = [n for n, p in zip(inputs.names, inputs.is_photo) if p]
    metrics = compare(out, ref, tiny.spec, names, np.ones(len(names), bool))
    assert DEFAULT_TOLERANCES["fp32"].judge(metrics) == []
    with pytest.raises(ReferenceExecutorError, match="image height 32 outside"):
        session.run(np.zeros((1, 3, 32, 64), np.float32))
    with pytest.raises(ReferenceExecutorError, match="ImageType"):
        open_reference_session(package).run(photos[:1])


@pytest.fixture(scope="module")
def vit_s():
    return load_weights("seeded")


@pytest.mark.slow
@pytest.mark.parametrize("precision", PRECISIONS)
def test_real_vit_s_export_passes_its_gate(precision, vit_s, tmp_path):
    inputs = ParityInputs.build(vit_s.spec, ParityConfig(random_inputs=1, photo_limit=3))
    reference = reference_outputs(vit_s, inputs.pixels)
    artifact, _ = export(vit_s, tmp_path / f"coreml-{precision}", precision=precision)
    session = honour_batch_shapes(coreml_reference.open_session(artifact, tmp_path), artifact)
    failures, _ = judge(session, vit_s, inputs, reference, DEFAULT_TOLERANCES[precision], batches=(1, 4))
    assert failures == []


def test_eval_scores_core_ml_programs_on_the_reference_where_core_ml_cannot_run():
    from vitship.bench.accuracy import default_target
    from vitship.runtimes import TargetStatus

    linux = [TargetStatus(f"coreml:{d}", False, "CoreML runtime needs macOS") for d in ("cpu_only", "cpu_and_gpu", "cpu_and_ne", "all")]
    linux += [TargetStatus("coreml:reference", True), TargetStatus("executorch:cpu", True), TargetStatus("onnxruntime:cpu", True)]
    assert default_target("coreml", linux) == "coreml:reference"
    assert default_target("executorch-coreml", linux) == "coreml:reference"  # not executorch:cpu: no Core ML delegate here
    assert default_target("executorch", linux) == "executorch:cpu" and default_target("onnx", linux) == "onnxruntime:cpu"
    mac = [TargetStatus("coreml:cpu_only", True)] + linux[1:]
    assert default_target("coreml", mac) == "coreml:cpu_only" and default_target("executorch-coreml", mac) == "coreml:cpu_only"
