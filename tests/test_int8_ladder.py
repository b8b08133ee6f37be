"""The export's int8 gate and ladder on the tiny stress model (smoothing off by option, so int8 fails first)."""

from __future__ import annotations

import json

import pytest

from vitship.bench.int8_gate import int8_gate
from vitship.exporters import int8_ladder
from vitship.exporters.onnx import OnnxOptions
from vitship.exporters.pipeline import export_all
from vitship.models import load_weights, tiny_spec

PLANTED = {f"blocks.{i}.{name}" for i in range(2) for name in ("attn.qkv", "mlp.fc1")}


@pytest.fixture(scope="module")
def stressed():
    return load_weights("seeded-outliers", tiny_spec())


def export_int8(stressed, root, **options):
    (result,) = export_all(stressed, root, [("onnx", "int8")], {"onnx": OnnxOptions(**options)}, gate=int8_gate(stressed))
    path = root / stressed.spec.name / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {"artifacts": {}}
    return result, manifest["artifacts"].get("onnx-int8")


def test_gate_catches_the_failing_int8_and_stronger_smoothing_fixes_it(stressed, tmp_path):
    result, entry = export_int8(stressed, tmp_path, smooth_alpha=None)
    assert result.status == "ok"
    record = entry["details"]["int8"]
    first, last = record["steps"][0], record["steps"][-1]
    assert first["smooth_alpha"] is None and not first["passed"] and first["min_cosine"] < 0.98
    assert last["passed"] and last["min_cosine"] >= 0.98 and last["smooth_alpha"] == 0.5
    assert record["gate"] == "passed" and record["recipe"] == {"smooth_alpha": 0.5, "keep_float": []}
    assert entry["options"]["smooth_alpha"] is None and len(record["held_back_photos"]) == 6  # the rebuild key: as requested
    (again,) = export_all(stressed, tmp_path, [("onnx", "int8")], {"onnx": OnnxOptions(smooth_alpha=None)}, gate=int8_gate(stressed))
    assert again.status == "skipped"  # the escalated artifact is up to date for the options that asked for it
    assert first["target"] == "onnxruntime:cpu"


@pytest.mark.parametrize("with_fp32", [True, False], ids=["diagnose-locator", "outlier-ranking"])
def test_ladder_keeps_the_most_sensitive_layers_in_float(stressed, tmp_path, monkeypatch, with_fp32):
    monkeypatch.setattr(int8_ladder, "LADDER_ALPHAS", (None,))  # no smoothing rung: straight to the locator rung
    if with_fp32:  # the fp32 sibling lets vitship diagnose's locator rank the layers
        export_all(stressed, tmp_path, [("onnx", "fp32")], {"onnx": OnnxOptions(smooth_alpha=None)})
    result, entry = export_int8(stressed, tmp_path, smooth_alpha=None)
    assert result.status == "ok", result.reason
    record = entry["details"]["int8"]
    assert [s["why"] for s in record["steps"]][0] == "requested recipe" and not record["steps"][0]["passed"]
    assert "in float" in record["steps"][-1]["why"] and record["steps"][-1]["passed"]
    assert record["kept_in_float"] and set(record["kept_in_float"]) <= PLANTED
    assert record["recipe"]["keep_float"] == record["kept_in_float"] and entry["options"]["keep_float"] == []
    assert set(entry["details"]["quantization"]["keep_float_nodes"]) == set(record["kept_in_float"])
    assert record["layers_ranked_by"].startswith("per-layer locator" if with_fp32 else "input outlier ranking")


def test_ladder_that_ends_without_a_pass_fails_the_export_with_figures(stressed, tmp_path, monkeypatch):
    monkeypatch.setattr(int8_ladder, "LADDER_ALPHAS", (None,))
    monkeypatch.setattr(int8_ladder, "KEEP_FLOAT_COUNTS", ())
    result, entry = export_int8(stressed, tmp_path, smooth_alpha=None)
    assert result.failed and entry is None  # nothing shipped, nothing in the manifest
    assert "no int8 recipe passed the int8 gate on 6 held-back photos" in result.reason
    assert "step 1 (requested recipe): cosine 0.6" in result.reason


def test_outlier_ranking_puts_the_planted_pairs_first(stressed):
    from vitship.models import preprocess, sample_images

    ranked = int8_ladder.outlier_ranking(stressed, preprocess(sample_images(), stressed.spec))
    assert set(ranked[:4]) == PLANTED
