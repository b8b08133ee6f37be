"""The typed manifest (exporters/manifest.py) and the sha256 check every session passes through (verify_artifact)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import pytest

import vitship
from tests.conftest import assert_manifest_matches_files
from vitship.bench import cli
from vitship.exporters import EXPORTERS, base, pipeline
from vitship.exporters.base import Artifact, ArtifactIntegrityError, manifest_artifacts, verify_artifact
from vitship.exporters.coreml_apple import NeuralEngine
from vitship.exporters.details import (
    DETAILS_CLASSES,
    CoremlDetails,
    ExecutorchDetails,
    LitertDetails,
    OnnxDetails,
    OpenvinoDetails,
)
from vitship.exporters.manifest import ARTIFACT_FIELD_TYPES, Manifest, ManifestError
from vitship.exporters.schema import MANIFEST_SCHEMA_VERSION
from vitship.runtimes import open_session


@pytest.fixture(scope="module")
def exported(tiny_loaded, tmp_path_factory) -> Path:
    """A model folder with the tiny ViT's onnx-fp32, exported once for the module (copy it before changing it)."""
    root = tmp_path_factory.mktemp("artifacts")
    results = pipeline.export_all(tiny_loaded, root, [("onnx", "fp32")])
    assert [r.status for r in results] == ["ok"], [r.reason for r in results]
    return pipeline.model_dir_for(root, tiny_loaded)


@pytest.fixture
def model_dir(exported, tmp_path) -> Path:
    copy = tmp_path / "artifacts" / exported.name
    shutil.copytree(exported, copy)
    return copy


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``vitship ARGS`` through the real entry point (cli.main): (exit code, stdout + stderr)."""
    monkeypatch.setattr(sys, "argv", ["vitship", *map(str, args)])
    with pytest.raises(SystemExit) as done:
        cli.main()
    captured = capsys.readouterr()
    return done.value.code, captured.out + captured.err


def test_every_artifact_field_has_a_json_type():
    assert set(ARTIFACT_FIELD_TYPES) == {f.name for f in dataclasses.fields(Artifact)}


def test_an_exported_manifest_reads_as_typed_artifacts_and_round_trips(exported, tiny_loaded):
    manifest = Manifest.read(exported)
    assert list(manifest.artifacts) == ["onnx-fp32"] and isinstance(manifest.artifacts["onnx-fp32"], Artifact)
    assert manifest.weights["sha256"] == tiny_loaded.info.sha256 == manifest.reference_weights()["sha256"]
    assert manifest.model == tiny_loaded.spec.name and manifest.spec_dict()["name"] == tiny_loaded.spec.name
    assert manifest.to_dict() == json.loads((exported / "manifest.json").read_text())
    assert Manifest.read(exported / "nothing-here") == Manifest()  # no manifest yet: an empty one


# The manifest `make export-all` wrote before typed details (main at d6f9a91; spec and input specs emptied, the
# MIL op counts cut to two): schema 1, each format's quantizer facts inside details["int8"].
V1_MANIFEST = Path(__file__).parent / "data" / "manifest-v1.json"


def test_every_format_has_its_details_class():
    # coreml-tensor writes coreml artifacts; an image-input variant (onnx-image, ...) its tensor format's
    assert {name.removesuffix("-tensor").removesuffix("-image") for name in EXPORTERS} == set(DETAILS_CLASSES)


def test_a_version_1_manifest_loads_typed():
    data = json.loads(V1_MANIFEST.read_text())
    assert data["schema_version"] == 1 and MANIFEST_SCHEMA_VERSION == 2
    manifest = Manifest.from_dict(data)
    found = manifest.artifacts
    onnx, openvino, coreml = found["onnx-int8"].details, found["openvino-int8"].details, found["coreml-int8"].details
    assert isinstance(onnx, OnnxDetails) and onnx.quantization.quantized_weights == 97 and onnx.quantization.mode == "dynamic"
    assert onnx.onnxslim.kept and onnx.compatibility.ir_version == 9 and found["onnx-int8"].calibration.count == 0
    assert onnx.int8["gate"] == "passed" and "quantized_weights" not in onnx.int8  # the int8 slot keeps the gate's record
    assert isinstance(openvino, OpenvinoDetails) and openvino.quantization.ignored_scope == [".*head.*"]
    assert found["openvino-int8"].calibration.count == 12 and found["openvino-int8"].calibration.held_back == 6
    assert isinstance(coreml, CoremlDetails) and coreml.quantization.granularity == "per_channel"
    assert coreml.apple.neural_engine is NeuralEngine.ELIGIBLE and coreml.apple.batch_shapes == [1]
    executorch, delegated = found["executorch-int8"].details, found["executorch-coreml-fp16"].details
    assert isinstance(executorch, ExecutorchDetails) and executorch.quantization.scheme.startswith("XNNPACKQuantizer")
    assert delegated.delegate == "CoreMLBackend" and delegated.embedded_outputs.logits and delegated.apple.input == "tensor"
    litert = found["litert-int8"].details
    assert isinstance(litert, LitertDetails) and litert.quantization.quantizer_recipe.endswith("dynamic_wi8_afp32")
    assert found["onnx-int8"].option("smooth_alpha") == 0.5 and found["litert-int8"].option("smooth_alpha") is None
    assert all(not a.details.extra for a in found.values())  # every v1 key has its typed home
    written = manifest.to_dict()
    assert written["schema_version"] == 2 and Manifest.from_dict(written) == manifest  # v2 reads back the same


def test_the_next_export_writes_a_version_1_manifest_as_version_2(model_dir, tiny_loaded):
    old = json.loads(V1_MANIFEST.read_text())
    data = json.loads((model_dir / "manifest.json").read_text())
    for entry in old["artifacts"].values():
        entry["weights"] = tiny_loaded.info.to_dict()  # the same weights: the export keeps these entries
    data = {**data, "schema_version": 1, "artifacts": {**data["artifacts"], **old["artifacts"]}}
    (model_dir / "manifest.json").write_text(json.dumps(data))
    (result,) = pipeline.export_all(tiny_loaded, model_dir.parent, [("onnx", "fp32")], force=True)
    assert result.status == "ok", result.reason
    written = json.loads((model_dir / "manifest.json").read_text())
    assert written["schema_version"] == 2 and set(written["artifacts"]) == set(data["artifacts"])
    details = written["artifacts"]["onnx-int8"]["details"]  # migrated: the quantizer's facts out of the int8 record
    assert details["quantization"]["quantized_weights"] == 97 and "quantized_weights" not in details["int8"]


def test_keys_from_a_newer_writer_are_kept_and_written_back(model_dir):
    data = json.loads((model_dir / "manifest.json").read_text())
    entry = data["artifacts"]["onnx-fp32"]
    entry["details"]["attention_form"] = {"kind": "sdpa"}  # what a newer vitship (or another branch) may add
    entry["calibration"] = {"source": None, "count": 0, "confirm_files": ["a.png"]}
    manifest = Manifest.from_dict(data)
    artifact = manifest.artifacts["onnx-fp32"]
    assert artifact.details.extra == {"attention_form": {"kind": "sdpa"}} and artifact.details.exporter
    assert artifact.calibration.extra == {"confirm_files": ["a.png"]}
    written = manifest.to_dict()["artifacts"]["onnx-fp32"]
    assert written["details"]["attention_form"] == {"kind": "sdpa"} and written["calibration"]["confirm_files"] == ["a.png"]


def test_a_newer_schema_or_a_mistyped_detail_is_refused_in_one_line(model_dir):
    data = json.loads((model_dir / "manifest.json").read_text())
    with pytest.raises(ManifestError, match="manifest schema 3, this vitship reads 2 .*upgrade vitship"):
        Manifest.from_dict({**data, "schema_version": 3})
    data["artifacts"]["onnx-fp32"]["details"]["nodes"] = "many"
    with pytest.raises(ManifestError, match="artifact 'onnx-fp32': expected int, got str") as caught:
        Manifest.from_dict(data)
    assert "\n" not in str(caught.value) and "vitship export --force" in str(caught.value)


def _drop_path(data):
    del data["artifacts"]["onnx-fp32"]["path"]


MALFORMED = {
    "not JSON": (lambda data: "{not json", "not JSON"),
    "JSON array": (lambda data: [data], "a JSON array, not a manifest object"),
    "unknown schema": (lambda data: {**data, "schema_version": 7}, "manifest schema 7"),
    "no artifacts": (lambda data: {k: v for k, v in data.items() if k != "artifacts"}, "no 'artifacts'"),
    "artifacts list": (lambda data: {**data, "artifacts": list(data["artifacts"].values())}, "'artifacts' as a JSON array"),
    "entry without path": (lambda data: _drop_path(data) or data, "artifact 'onnx-fp32' has no 'path'"),
    "entry a string": (lambda data: {**data, "artifacts": {"onnx-fp32": "model.onnx"}}, "'onnx-fp32' is a JSON string"),
    "size a string": (lambda data: data["artifacts"]["onnx-fp32"].update(size_bytes="big") or data,
                      "field 'size_bytes' is a JSON string, not a number"),
    "details a list": (lambda data: data["artifacts"]["onnx-fp32"].update(details=[]) or data, "field 'details' is a JSON array"),
    "id mismatch": (lambda data: data["artifacts"]["onnx-fp32"].update(id="onnx-fp16") or data, "records id 'onnx-fp16'"),
    "weights a string": (lambda data: {**data, "weights": "seeded"}, "'weights' is a JSON string"),
}


def _break(model_dir: Path, case: str) -> str:
    make, expected = MALFORMED[case]
    data = make(json.loads((model_dir / "manifest.json").read_text()))
    (model_dir / "manifest.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return expected


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_manifest_is_one_line_naming_the_file_and_the_fix(model_dir, case):
    expected = _break(model_dir, case)
    for read in (Manifest.read, manifest_artifacts, base.read_manifest):
        with pytest.raises(ManifestError) as caught:
            read(model_dir)
        message = str(caught.value)
        assert message.startswith(f"{model_dir / 'manifest.json'}: ") and expected in message, message
        assert "\n" not in message and "vitship export --force" in message


def test_write_manifest_refuses_a_malformed_dict(tmp_path):
    with pytest.raises(ManifestError, match="has no 'path'"):
        entry = {"id": "a", "format": "onnx", "precision": "fp32"}
        base.write_manifest(tmp_path, {"schema_version": 1, "artifacts": {"a": entry}})
    assert not (tmp_path / "manifest.json").exists()


def test_every_command_refuses_a_manifest_entry_without_path_in_one_line(model_dir, monkeypatch, capsys):
    """A manifest entry without path (issue 16): parity, bench, report, predict, eval, compat-check, export."""
    from vitship.models import sample_images

    _break(model_dir, "entry without path")
    before = (model_dir / "manifest.json").read_text()
    photo = sample_images(limit=1)[0]
    (labelled := model_dir.parent / "data" / "real").mkdir(parents=True)
    shutil.copy(photo, labelled / photo.name)
    folder = ["--artifacts", model_dir.parent, "--arch", "tiny"]
    commands = {"parity": ["parity", *folder, "--no-torch"], "bench": ["bench", *folder, "--quick"],
                "report": ["report", *folder, "--reports", model_dir.parent / "reports"],
                "predict": ["predict", photo, *folder], "eval": ["eval", "--data", labelled.parent, *folder],
                "compat-check": ["compat-check", *folder],
                "export": ["export", "--arch", "tiny", "-f", "onnx", "-p", "fp32", "--out", model_dir.parent]}
    for name, args in commands.items():
        code, output = run_cli(monkeypatch, capsys, *args)
        lines = [line for line in output.splitlines() if line.strip()]
        assert code == 2 and "internal error" not in output, (name, output)
        assert any("has no 'path'" in line and str(model_dir / "manifest.json") in line for line in lines), (name, output)
    assert (model_dir / "manifest.json").read_text() == before  # nothing rewrote it
    results = pipeline.export_all(vitship.load_weights("seeded", arch="tiny"), model_dir.parent, [("onnx", "fp32")], force=True)
    assert [r.status for r in results] == ["ok"]  # --force replaces the malformed manifest
    assert_manifest_matches_files(model_dir)


def _tamper(model_dir: Path) -> Path:
    path = model_dir / "onnx-fp32" / "model.onnx"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # same size, one bit: still a loadable file for some runtimes, never the exported one
    path.write_bytes(bytes(data))
    return path


def test_every_session_refuses_a_tampered_artifact(model_dir, monkeypatch, capsys):
    artifact = manifest_artifacts(model_dir)[0]
    open_session(artifact, model_dir, "onnxruntime:cpu").close()  # untouched: it opens
    _tamper(model_dir)
    with pytest.raises(ArtifactIntegrityError, match="modified since export; refused") as caught:
        open_session(artifact, model_dir, "onnxruntime:cpu")
    assert "\n" not in str(caught.value) and str(model_dir / "manifest.json") in str(caught.value)
    with pytest.raises(ArtifactIntegrityError):
        vitship.open_session("onnx-fp32", "onnxruntime:cpu", artifacts=model_dir.parent, arch="tiny")
    from vitship.models import sample_images

    code, output = run_cli(monkeypatch, capsys, "predict", sample_images(limit=1)[0], "--artifacts", model_dir.parent,
                           "--arch", "tiny", "--artifact", "onnx-fp32")
    words = " ".join(output.replace("│", " ").split())  # the table folds a long message across lines
    assert "modified since export" in words and "internal error" not in words, output


def test_a_tampered_artifact_is_an_error_row_in_bench(model_dir):
    from vitship.bench.latency.sweep import BenchConfig
    from vitship.bench.latency.timing import TimingOptions
    from vitship.models.status import Status

    _tamper(model_dir)
    config = BenchConfig(batches=(1,), artifacts=("onnx-fp32",), targets=("onnxruntime:cpu",),
                         timing=TimingOptions(min_time_s=0.05, warmup_s=0.01, min_iterations=2))
    report = vitship.benchmark(model_dir.parent, arch="tiny", config=config, write=False)
    (row,) = [r for r in report.rows if r.artifact == "onnx-fp32"]
    assert row.status is not Status.OK and "modified since export" in row.reason, row


def test_the_sha256_is_cached_per_file_identity_and_rechecked_after_a_change(model_dir, monkeypatch):
    artifact = manifest_artifacts(model_dir)[0]
    hashed = []
    real = base.path_sha256
    monkeypatch.setattr(base, "path_sha256", lambda path: hashed.append(path) or real(path))
    for _ in range(3):
        assert verify_artifact(model_dir, artifact) == model_dir / artifact.path
    assert len(hashed) <= 1  # at most once (another test of this process may have verified these bytes already)
    hashed.clear()
    path = _tamper(model_dir)
    with pytest.raises(ArtifactIntegrityError):
        verify_artifact(model_dir, artifact)
    assert hashed == [path]
    with pytest.raises(ArtifactIntegrityError, match="records no sha256"):
        verify_artifact(model_dir, dataclasses.replace(artifact, sha256=""))
