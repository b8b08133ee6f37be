"""The export's int8 ladder in every int8 format: forced failures at every rung, escalation, confirmation, the record."""

from __future__ import annotations

import numpy as np
import pytest

from vitship.bench.int8_gate import int8_gate, run_artifact
from vitship.exporters import INT8_CAPABILITIES
from vitship.exporters.int8 import ladder
from vitship.exporters.int8.record import Int8Record
from vitship.exporters.int8.verdict import ArtifactRun
from vitship.exporters.onnx import OnnxOptions
from vitship.exporters.pipeline import export_all
from vitship.models import load_weights, tiny_spec
from vitship.models.status import Status

PLANTED = {f"blocks.{i}.{name}" for i in range(2) for name in ("attn.qkv", "mlp.fc1")}


class FailingRuns:
    """The real runner (a runtime session on the format's gate target), its outputs spoiled on chosen calls.

    Each select step is checked once and each confirmation once, in ladder order, each check at batch 1 first (then
    at parity's batch 8 where the artifact takes it); ``fail`` names the checks (1-based) whose features get noise
    far above the gate's cosine, less at each check (so the latest failed step scores best and the ladder keeps
    layers in float from it without rebuilding an earlier one).
    """

    def __init__(self, fail=lambda call: True):
        self.fail, self.calls = fail, 0

    def __call__(self, artifact, model_dir, pixels, batch=1) -> ArtifactRun | None:
        run = run_artifact(artifact, model_dir, pixels, batch)
        self.calls += batch == 1
        if run is None or run.outputs is None or not self.fail(self.calls):
            return run
        features = run.outputs["features"]
        noise = np.random.default_rng(self.calls).standard_normal(features.shape).astype(np.float32)
        return ArtifactRun(run.target, {**run.outputs, "features": features + noise * 4 * features.std() / self.calls})


@pytest.fixture(scope="module")
def stressed():
    return load_weights("seeded-outliers", tiny_spec())


@pytest.fixture
def short_ladder(monkeypatch):
    """Every kind of rung once: one other smoothing strength, one keep-in-float count (the full ladder is 2 + 3)."""
    monkeypatch.setattr(ladder, "LADDER_ALPHAS", (0.8,))
    monkeypatch.setattr(ladder, "KEEP_FLOAT_COUNTS", (2,))


@pytest.fixture
def format_rungs(monkeypatch):
    """The rungs every format builds itself: its requested recipe and its Linears kept in float.

    The smoothing rungs fold in PyTorch whatever the format (each format's smoothed export is tested in
    test_int8_smoothing.py, the smoothing rungs on ONNX below), so here they are left out to keep make test cheap.
    """
    monkeypatch.setattr(ladder, "LADDER_ALPHAS", ())
    monkeypatch.setattr(ladder, "KEEP_FLOAT_COUNTS", (2,))


def gated(loaded, root, fmt, runs, options=None):
    gate = int8_gate(loaded)
    gate = type(gate)(run=runs, locate=gate.locate, margin=gate.margin, views=gate.views)
    (result,) = export_all(loaded, root, [(fmt, "int8")], options or {}, gate=gate)
    return result


def test_outlier_ranking_puts_the_planted_pairs_first(stressed):
    from vitship.exporters.int8.ranking import outlier_ranking
    from vitship.models import preprocess, sample_images

    assert set(outlier_ranking(stressed, preprocess(sample_images(), stressed.spec))[:4]) == PLANTED


def test_the_ladder_keeps_the_layers_the_locator_ranks_first_in_float(stressed, tmp_path, monkeypatch):
    monkeypatch.setattr(ladder, "LADDER_ALPHAS", ())  # no smoothing rung: straight to the locator's rungs
    # timm's form: the planted pairs are what the locator must find first. In the contrib form each qkv runs inside
    # onnxruntime's attention kernel (ranked through its output), and a class-token tail measures the last block on
    # one token, so the ranking there mixes in other Linears and the ladder keeps more of them in float
    options = OnnxOptions(smooth_alpha=None, contrib_ops="none", class_token_tail=False)
    export_all(stressed, tmp_path, [("onnx", "fp32")], {"onnx": options}, gate=False)  # the fp32 sibling diagnose compares with
    result = gated(stressed, tmp_path, "onnx", run_artifact, {"onnx": options})
    record = result.int8
    assert result.status is Status.OK and record.verdict is Status.PASS, result.reason
    assert record.steps[0].why == "requested recipe" and not record.steps[0].passed
    assert "in float" in record.steps[-2].why and record.steps[-1].passed and record.steps[-1].photos == "confirm"
    kept = record.recipe.keep_float
    assert kept and set(kept) <= PLANTED and record.layers_ranked_by.startswith("per-layer locator")
    assert set(result.artifact.details.quantization.keep_float_nodes) == set(kept)
    assert result.artifact.option("keep_float") == []  # the rebuild key: as requested


@pytest.mark.parametrize("fmt", list(INT8_CAPABILITIES))
def test_a_failure_at_every_rung_ends_the_export_with_every_steps_figures(fmt, stressed, tmp_path, format_rungs):
    caps = INT8_CAPABILITIES[fmt]
    result = gated(stressed, tmp_path, fmt, FailingRuns())
    assert result.status is Status.FAIL and result.artifact is None, result.reason
    record = result.int8
    assert record.verdict is Status.FAIL and all(not step.passed for step in record.steps)
    whys = [step.why for step in record.steps]
    assert whys == ["requested recipe"] + (["2 most sensitive layers in float"] if caps.keep_float else []), whys
    assert all(step.photos == "select" and step.target in caps.gate_targets for step in record.steps)
    assert all(step.figures() in result.reason for step in record.steps)  # every step's figures in the message
    assert len(record.steps[-1].recipe.keep_float) == 2 and record.layers_ranked_by
    assert not (tmp_path / stressed.spec.name / f"{fmt}-int8").exists()  # nothing shipped


def test_a_step_that_passes_is_confirmed_on_photos_that_did_not_pick_it(stressed, tmp_path, short_ladder):
    runs = FailingRuns(fail=lambda call: call in (1, 3))  # select 1 fails; select 2 passes, its confirmation fails
    result = gated(stressed, tmp_path, "onnx", runs)
    record = result.int8
    assert result.status is Status.OK and record.verdict is Status.PASS, result.reason
    assert [(s.why, s.photos, s.passed) for s in record.steps] == [
        ("requested recipe", "select", False), ("smoothing alpha 0.8", "select", True),
        ("confirming step 2", "confirm", False), ("2 most sensitive layers in float", "select", True),
        ("confirming step 4", "confirm", True)]
    assert record.recipe.keep_float and record.split.startswith("calibrate / select / confirm")
    select, confirm = record.photos["select"].files, record.photos["confirm"].files
    assert len(select) == len(confirm) == 3 and not set(select) & set(confirm)
    assert not set(select + confirm) & set(record.photos["calibrate"].files)
    assert record.photos["confirm"].as_is == record.photos["calibrate"].files  # checked once each at confirmation
    entry = Int8Record.of(result.artifact)
    assert entry == record and result.artifact.option("keep_float") == []  # the rebuild key: as requested


def test_the_stress_model_escalates_to_stronger_smoothing_and_the_rerun_is_up_to_date(stressed, tmp_path):
    options = {"onnx": OnnxOptions(smooth_alpha=None)}
    (off,) = export_all(stressed, tmp_path, [("onnx", "int8")], options, gate=False)
    assert off.status is Status.OK and off.int8.verdict is Status.NOT_CHECKED and off.int8.gate_was_off
    result = gated(stressed, tmp_path, "onnx", run_artifact, options)
    assert result.reason == "the int8 gate has not checked it"  # a gate-off artifact is rebuilt by the gate
    record = result.int8
    first, last = record.steps[0], record.steps[-1]
    assert first.recipe.smooth_alpha is None and not first.passed and first.min_cosine < 0.98
    assert last.passed and last.photos == "confirm" and record.recipe.smooth_alpha == 0.5
    assert result.status is Status.OK and record.verdict is Status.PASS
    again = gated(stressed, tmp_path, "onnx", run_artifact, options)
    assert again.status is Status.SKIPPED and again.int8 == record


def test_the_gate_is_a_required_argument_of_export_all(stressed, tmp_path):
    with pytest.raises(TypeError, match="gate"):
        export_all(stressed, tmp_path, [("onnx", "int8")])
