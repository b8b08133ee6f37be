"""`vitship predict IMAGE...` on two bundled photos with the tiny ViT: the table, the JSON, unreadable images."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from vitship.bench.predict import PredictError, PredictOptions, plan_runs, predict
from vitship.models import fake_probability, preprocess, sample_images
from vitship.runtimes import TargetStatus


@pytest.fixture(scope="module")
def model_dir(tiny_loaded, tiny_exports):
    return tiny_exports([("onnx", "fp32"), ("coreml", "fp16")]) / tiny_loaded.spec.name


@pytest.fixture()
def photos(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    return sample_images()[:2], broken


def test_predict_runs_every_artifact_and_agrees_with_the_reference(model_dir, tiny_loaded, photos):
    images, broken = photos
    result = predict(model_dir, [*images, broken, broken.with_name("missing.png")], loaded=tiny_loaded)
    assert [u["path"] for u in result.unreadable] == [str(broken), str(broken.with_name("missing.png"))]
    by_run = {(r.image, r.artifact, r.target): r for r in result.rows}
    assert len(by_run) == 2 * 3  # two photos x (reference, onnx-fp32, coreml-fp16)
    for image in images:
        logits = tiny_loaded.model(torch.from_numpy(preprocess(image, tiny_loaded.spec)))[0].detach().numpy()
        expected = float(fake_probability(logits, tiny_loaded.spec)[0])
        reference = by_run[(str(image), "torch-fp32", "torch:cpu")]
        assert reference.fake_probability == pytest.approx(expected, abs=1e-6) and reference.agrees is None
        onnx = by_run[(str(image), "onnx-fp32", "onnxruntime:cpu")]
        assert onnx.agrees and abs(onnx.probability_delta) < 1e-5 and onnx.label == reference.label
        coreml = by_run[(str(image), "coreml-fp16", "coreml:reference")]  # CoreML on Linux: the labelled reference executor
        assert coreml.note == "reference executor, not the Apple runtime"
        assert coreml.agrees and abs(coreml.probability_delta) < 1e-2
        assert reference.label == ("fake" if expected >= 0.5 else "real")
    assert result.notes and "every artifact ran" in result.notes[0]  # no parity/bench yet: nothing to recommend


def test_the_default_follows_each_available_targets_pick(model_dir):
    statuses = [TargetStatus("onnxruntime:cpu", True), TargetStatus("coreml:reference", True),
                TargetStatus("coreml:all", False, "CoreML runtime needs macOS"), TargetStatus("torch:cpu", True)]
    picks = {"onnxruntime:cpu": "onnx-fp32", "coreml:reference": "coreml-fp16", "coreml:all": "coreml-fp16"}
    runs, notes = plan_runs(model_dir, PredictOptions(), statuses, picks)
    assert [(a.id, t) for a, t in runs] == [("coreml-fp16", "coreml:reference"), ("onnx-fp32", "onnxruntime:cpu")]
    assert notes == []
    runs, _ = plan_runs(model_dir, PredictOptions(target="onnxruntime:cpu"), statuses, picks)
    assert [(a.id, t) for a, t in runs] == [("onnx-fp32", "onnxruntime:cpu")]
    with pytest.raises(PredictError, match="coreml:all is not available here: CoreML runtime needs macOS"):
        plan_runs(model_dir, PredictOptions(target="coreml:all"), statuses, picks)


def test_nothing_readable_is_a_clear_error(model_dir, tiny_loaded, tmp_path):
    with pytest.raises(PredictError, match="none of the 1 images could be read"):
        predict(model_dir, [tmp_path / "missing.jpg"], loaded=tiny_loaded)


def test_cli_prints_the_table_and_writes_json(model_dir, photos, tmp_path):
    images, broken = photos
    out = tmp_path / "predict.json"
    result = subprocess.run([sys.executable, "-m", "vitship.bench.cli", "predict", *map(str, images), str(broken),
                             "--artifacts", str(model_dir), "--artifact", "onnx-fp32", "--json", str(out)],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    for text in ("image", "artifact", "target", "label", "fake probability", "agrees with PyTorch", images[0].name,
                 images[1].name, "onnx-fp32", "onnxruntime:cpu", "reference", "yes (Δp", f"unreadable: {broken}"):
        assert text in result.stdout, text
    document = json.loads(out.read_text())
    assert document["schema_version"] == 1 and [u["path"] for u in document["unreadable"]] == [str(broken)]
    rows = document["rows"]
    assert {(os.path.basename(r["image"]), r["artifact"]) for r in rows} == {
        (image.name, artifact) for image in images for artifact in ("torch-fp32", "onnx-fp32")}
    assert all(r["status"] == "ok" and r["label"] in ("real", "fake") and 0 <= r["fake_probability"] <= 1 for r in rows)
    assert np.all([r["agrees"] for r in rows if r["artifact"] == "onnx-fp32"])
