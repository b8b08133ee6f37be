"""Every door gates int8 (CLI, Python API, export_all), and a "not checked" int8 says so in parity, the report and compare."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import vitship
from tests.test_report import write_sources
from vitship.bench.int8_gate import run_artifact
from vitship.bench.report.compare import compare_reports
from vitship.bench.report.document import build_report
from vitship.exporters.base import read_manifest
from vitship.exporters.int8.capabilities import markdown_table
from vitship.exporters.int8.record import Int8Recipe, Int8Record, Int8Step
from vitship.exporters.manifest import Manifest
from vitship.models import sample_images
from vitship.models.atomic import atomic_write_json
from vitship.models.status import Status
from vitship.models.typed import to_json


@pytest.fixture(scope="module")
def api_exports(tmp_path_factory):
    """The acceptance call, with the gate (the default) and without it, into two folders."""
    gated, unchecked = tmp_path_factory.mktemp("gated"), tmp_path_factory.mktemp("unchecked")
    on = vitship.export("seeded-outliers", ["onnx"], ["int8"], arch="tiny", out=gated)
    off = vitship.export("seeded-outliers", ["onnx"], ["int8"], arch="tiny", out=unchecked, gate=False)
    return (gated, on), (unchecked, off)


def test_the_python_api_gates_by_default_and_records_the_verdict_with_its_steps(api_exports):
    (gated, (result,)), _ = api_exports
    record = read_manifest(gated / "tiny-vit")["artifacts"]["onnx-int8"]["details"]["int8_gate"]
    assert result.int8.verdict is Status.PASS and record["verdict"] == "pass"
    assert record["steps"] and record["steps"][0]["why"] == "requested recipe" and record["steps"][-1]["passed"]
    assert {role: len(p["files"]) for role, p in record["photos"].items()} == {"select": 3, "confirm": 3, "calibrate": 12}
    assert record["photos"]["confirm"]["as_is"] == record["photos"]["calibrate"]["files"]
    assert {step["target"] for step in record["steps"]} == {"onnxruntime:cpu"} and record["batches"] == [1, 8]
    assert Manifest.read(gated / "tiny-vit").artifacts["onnx-int8"].details.int8_gate == result.int8  # typed, both ways


def test_an_image_input_int8_goes_through_the_same_gate_and_passes_parity(tmp_path):
    (result,) = vitship.export("seeded-outliers", ["onnx-image"], ["int8"], arch="tiny", out=tmp_path)
    record = result.int8
    assert result.status is Status.OK and record.verdict is Status.PASS, result.reason
    assert record.steps and {step.target for step in record.steps} == {"onnxruntime:cpu"} and record.steps[-1].passed
    artifact = Manifest.read(tmp_path / "tiny-vit").artifacts["onnx-image-int8"]
    assert artifact.input_spec["input_type"] == "frame" and artifact.details.int8_gate == record
    report = vitship.parity(tmp_path, arch="tiny", targets=["onnxruntime:cpu"], with_torch=False)
    (row,) = report.rows  # judged end to end on decoded photos: a gate pass is a parity pass
    assert row.export_gate is Status.PASS and row.status is Status.PASS, (row.notes, row.metrics)


def test_gate_off_is_not_checked_in_the_manifest_and_in_parity(api_exports):
    _, (unchecked, (result,)) = api_exports
    assert result.int8.verdict is Status.NOT_CHECKED and result.int8.gate_was_off and not result.int8.steps
    entry = read_manifest(unchecked / "tiny-vit")["artifacts"]["onnx-int8"]
    assert entry["details"]["int8_gate"]["verdict"] == "not checked"
    report = vitship.parity(unchecked, arch="tiny", targets=["onnxruntime:cpu"], with_torch=False)
    (row,) = report.rows
    assert row.export_gate is Status.NOT_CHECKED and any("not checked" in note for note in row.notes)
    assert json.loads((unchecked / "tiny-vit" / "parity.json").read_text())["rows"][0]["export_gate"] == "not checked"


def test_the_cli_shows_not_checked_in_export_and_parity(api_exports, vitship_main):
    _, (unchecked, _) = api_exports
    code, out, _ = vitship_main("export", "--arch", "tiny", "-w", "seeded-outliers", "-f", "onnx", "-p", "int8",
                                "--no-int8-gate", "--out", str(unchecked))
    assert code == 0 and "not checked" in out and "skipped" in out, out
    code, out, _ = vitship_main("parity", "--artifacts", str(unchecked), "--arch", "tiny", "--no-torch", "--target",
                                "onnxruntime:cpu")
    assert code == 0 and "export's int8 gate: not checked" in out, out


def _with_record(model_dir: Path, artifact: str, record: Int8Record) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["artifacts"][artifact]["details"] = {**manifest["artifacts"][artifact].get("details", {}),
                                                  "int8_gate": to_json(record)}
    atomic_write_json(model_dir / "manifest.json", manifest)


def test_the_report_and_compare_show_an_unchecked_int8(tmp_path):
    step = Int8Step(1, "requested recipe", Int8Recipe("static", 0.5), "select", "openvino:CPU", True, 0.999, 0.01, 1.0)
    passed = Int8Record(Status.PASS, "the requested recipe passed", Int8Recipe("static", 0.5), (step,))
    old, new = tmp_path / "old", tmp_path / "new"
    for folder, record in ((old, passed), (new, Int8Record(Status.NOT_CHECKED, "the int8 gate was turned off"))):
        folder.mkdir()
        write_sources(folder)
        _with_record(folder, "openvino-int8", record)
    before, after = build_report(old), build_report(new)
    intel = next(d for d in after.decisions if d.slug == "intel-cpu")
    assert intel.pick.artifact == "openvino-int8" and "int8 not checked by the export's int8 gate" in intel.sentence
    assert "not checked" not in next(d for d in before.decisions if d.slug == "intel-cpu").sentence
    regressions = {r.artifact: r.reasons for r in compare_reports(before, after).regressions}
    assert regressions == {"openvino-int8": ["int8 export gate pass -> not checked"]}


def test_litert_takes_calibration_and_gates_on_its_held_back_photos(tmp_path, vitship_main):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sample_images()[:9]:
        shutil.copy(path, photos / path.name)
    out = tmp_path / "out"
    code, text, _ = vitship_main("export", "--arch", "tiny", "-f", "litert", "-p", "int8", "--calibration", str(photos),
                                 "--out", str(out))
    assert code == 0, text
    record = Manifest.read(out / "tiny-vit").artifacts["litert-int8"].details.int8_gate
    names = [p.name for p in sample_images()[:9]]
    assert record.photos["select"].files == (names[2], names[8]) and record.photos["confirm"].files == (names[5],)
    assert record.photos["calibrate"].files == tuple(n for i, n in enumerate(names) if i % 3 != 2)
    assert record.verdict is Status.PASS and record.steps[0].target == "litert:cpu"


def test_a_litert_int8_that_fails_every_step_exits_1_with_every_steps_figures(tmp_path, vitship_main, monkeypatch):
    from vitship.bench import int8_gate
    from vitship.exporters.int8.verdict import ArtifactRun

    def spoiled(artifact, model_dir, pixels, batch=1):
        run = run_artifact(artifact, model_dir, pixels, batch)
        return ArtifactRun(run.target, {**run.outputs, "features": -run.outputs["features"]})

    monkeypatch.setattr(int8_gate, "run_artifact", spoiled)
    code, text, _ = vitship_main("export", "--arch", "tiny", "-f", "litert", "-p", "int8", "--out", str(tmp_path))
    assert code == 1, text
    for step in ("1: requested recipe", "2: 2 most sensitive", "3: 4 most sensitive", "4: 8 most sensitive"):
        assert step in text, text  # the ladder table: every step with its figures
    assert "int8 ladder" in text and text.count("fail (photos: feature cosine") == 4
    manifest = read_manifest(tmp_path / "tiny-vit")  # nothing shipped, and the report's Android block says why
    assert "litert-int8" not in manifest["artifacts"] and manifest["int8_rejected"]["litert-int8"]["verdict"] == "fail"
    android = next(d for d in build_report(tmp_path / "tiny-vit").decisions if d.slug == "android")
    (why,) = [a.reason for a in android.avoid if a.artifact == "litert-int8"]
    assert why.startswith("not shipped: none of 4 int8 recipes passed the export's int8 gate; best: "), why


@pytest.mark.parametrize("args, message", [
    (["-f", "litert", "--int8-mode", "static"], "litert: dynamic, weight-only"),
    (["-f", "litert", "--int8-smooth", "0.5"], "takes no SmoothQuant fold"),
    (["-f", "onnx", "--int8-mode", "onnx=weights"], "onnx offers dynamic, static"),
])
def test_an_int8_flag_a_named_format_cannot_use_is_refused_before_any_work(args, message, tmp_path, vitship_main):
    code, out, err = vitship_main("export", "--arch", "tiny", "-p", "int8", "--out", str(tmp_path / "out"), *args)
    assert code == 2 and message in out + err and not (tmp_path / "out").exists(), out + err


def test_under_all_a_flag_is_explained_for_the_formats_it_cannot_reach():
    from vitship.bench.commands.int8_options import apply_int8_flags
    from vitship.exporters.pipeline import resolve_requests

    options = apply_int8_flags({}, resolve_requests(None, ["int8"]), False, ["static"], "0.8", Path("photos"))
    assert options["onnx"].int8_mode == "static" and options["executorch"].int8_mode == "static"
    assert options["litert"].int8_mode == "dynamic" and options["litert"].smooth_alpha is None
    assert options["openvino"].smooth_alpha == 0.8 and all(o.calibration_dir == Path("photos") for o in options.values())


def test_the_design_doc_holds_the_registry_capability_table():
    design = (Path(__file__).parents[1] / "docs" / "DESIGN.md").read_text()
    assert markdown_table() in design
