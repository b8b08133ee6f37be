"""Parity: metrics, tolerance gates and overrides, and `vitship parity` on tiny-ViT artifacts made by the exporters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vitship.bench.cli import app
from vitship.bench.parity.plan import RowPlan, plan_rows
from vitship.bench.parity.results import PARITY_NAME, SCHEMA_VERSION, ParityReport, ParityResult, read_parity
from vitship.bench.parity.run import ArtifactRefused, check_row, prepare, verify_artifact
from vitship.bench.rows import ResultsFileError
from vitship.exporters import get_exporter, options_class
from vitship.exporters.base import MANIFEST_SCHEMA_VERSION, manifest_artifacts, path_sha256, read_manifest, write_manifest
from vitship.models import LoadedModel, load_weights, tiny_spec
from vitship.models.judgement import (
    DEFAULT_TOLERANCES,
    Metrics,
    Tolerance,
    ToleranceError,
    ToleranceTable,
    compare,
    effective_precision,
)
from vitship.models.status import Status
from vitship.runtimes import target_status

ARTIFACTS = ("onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-int8")


def _build(model_dir: Path, loaded: LoadedModel, ids) -> Path:
    artifacts = {}
    for aid in ids:
        fmt, precision = aid.rsplit("-", 1)
        out = model_dir / aid
        out.mkdir(parents=True)
        artifacts[aid] = get_exporter(fmt)(loaded, out, options_class(fmt)(precision=precision)).to_dict()
    write_manifest(model_dir, {"schema_version": MANIFEST_SCHEMA_VERSION, "weights": loaded.info.to_dict(), "artifacts": artifacts})
    return model_dir


def _copy(model_dir: Path, dest: Path, keep: set[str]) -> Path:
    """A copy of the model folder with only the artifacts in `keep`."""
    shutil.copytree(model_dir, dest, ignore=lambda d, names: [n for n in names if d == str(model_dir)
                                                              and n.endswith(("fp32", "fp16", "int8")) and n not in keep])
    manifest = read_manifest(dest)
    manifest["artifacts"] = {k: v for k, v in manifest["artifacts"].items() if k in keep}
    write_manifest(dest, manifest)
    return dest


def _fix_sha(model_dir: Path, aid: str) -> None:
    manifest = read_manifest(model_dir)
    entry = manifest["artifacts"][aid]
    entry["sha256"] = path_sha256(model_dir / entry["path"])
    write_manifest(model_dir, manifest)


def _parity(model_dir: Path, *args: str):
    return CliRunner().invoke(app, ["parity", "--artifacts", str(model_dir), "--no-torch", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def loaded():
    return load_weights("seeded", tiny_spec())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, loaded):
    return _build(tmp_path_factory.mktemp("parity") / "tiny-vit", loaded, ARTIFACTS)


@pytest.fixture(scope="module")
def clean_run(model_dir):
    result = _parity(model_dir)
    return result, read_parity(model_dir / PARITY_NAME)


def _rows(report: ParityReport, artifact: str, target: str) -> list[ParityResult]:
    return [r for r in report.rows if r.artifact == artifact and r.target == target]


# --- metrics and gates ----------------------------------------------------------------------------------------


def test_compare_computes_every_metric_by_hand():
    spec = tiny_spec()
    reference = {"logits": np.array([[2.0], [-2.0], [0.01], [0.0]]), "features": np.eye(4)}
    candidate = {"logits": np.array([[2.5], [-2.0], [-0.01], [0.0]]),
                 "features": np.eye(4) + np.array([[0, 1, 0, 0], [0] * 4, [0] * 4, [0] * 4])}
    m = compare(candidate, reference, spec, ["a", "b", "c", "noise"], np.array([1, 1, 1, 0], bool), band=0.05)
    assert m.max_abs_logit == pytest.approx(0.5)
    assert m.mean_abs_logit == pytest.approx((0.5 + 0.02) / 4)
    assert m.p99_abs_logit == pytest.approx(np.percentile([0.5, 0, 0.02, 0], 99))
    assert m.min_cosine == pytest.approx(1 / np.sqrt(2))
    assert m.max_prob_err == pytest.approx(1 / (1 + np.exp(-2.5)) - 1 / (1 + np.exp(-2.0)))
    # "c" flips, but its reference probability (0.5025) is inside the 0.05 band: ambiguous, counted apart
    assert m.agreement == pytest.approx(2 / 3) and m.decisive_agreement == 1.0
    assert (m.n_ambiguous, m.ambiguous_flips) == (1, 1) and m.flipped[0].startswith("c (ref p=0.5025")
    fp16 = DEFAULT_TOLERANCES["fp16"].judge(m)
    assert any("feature cosine" in f for f in fp16) and any("probability" in f for f in fp16)
    assert not any("agreement" in f for f in fp16)


def test_softmax_head_probabilities_and_decisions():
    spec = tiny_spec(num_labels=2)
    reference = {"logits": np.array([[0.0, 3.0], [3.0, 0.0]]), "features": np.ones((2, 4))}
    candidate = {"logits": np.array([[3.0, 0.0], [3.0, 0.0]]), "features": np.ones((2, 4))}
    m = compare(candidate, reference, spec, ["x", "y"], np.array([True, True]))
    assert m.decisive_agreement == 0.5 and m.max_prob_err == pytest.approx(np.tanh(1.5))


def test_tolerance_lookup_and_overrides(tmp_path):
    assert effective_precision("fp32", "bf16") == "bf16" and effective_precision("int8", "bf16") == "int8"
    assert effective_precision("fp16", "fp32") == "fp16" and effective_precision("fp32", "unknown") == "fp32"
    table = ToleranceTable()
    assert table.lookup("onnx", "fp32", "fp32")[0] == DEFAULT_TOLERANCES["fp32"]
    (tmp_path / "t.json").write_text(json.dumps({"int8": {"max_prob": 0.06}, "onnx-int8": {"min_agreement": None}}))
    table = ToleranceTable.from_file(tmp_path / "t.json")
    table.apply_cli(["openvino-fp32@bf16.min_cosine=0.99"])
    tolerance, keys = table.lookup("onnx", "int8", "int8")
    assert (tolerance.max_prob, tolerance.min_agreement, tolerance.min_cosine) == (0.06, None, 0.98)
    assert keys == ["default:int8", "int8", "onnx-int8"]
    assert table.lookup("openvino", "fp32", "bf16")[0].min_cosine == 0.99
    assert table.lookup("openvino", "fp32", "fp32")[0].min_cosine == 0.99999
    (tmp_path / "t.toml").write_text('[fp16]\nmax_prob = 0.02\n')
    assert ToleranceTable.from_file(tmp_path / "t.toml").lookup("onnx", "fp16", "fp16")[0].max_prob == 0.02
    with pytest.raises(ToleranceError, match="unknown tolerance field 'max_pro'"):
        table.apply_cli(["int8.max_pro=1"])
    with pytest.raises(ToleranceError, match="KEY.FIELD=VALUE"):
        table.apply_cli(["int8=1"])


# --- vitship parity on real exports ---------------------------------------------------------------------------


def test_clean_run_passes_and_writes_parity_json(clean_run, model_dir):
    result, report = clean_run
    assert result.exit_code == 0, result.output
    data = json.loads((model_dir / PARITY_NAME).read_text())
    assert data["schema_version"] == SCHEMA_VERSION == 3 and report.weights["source"] == "seeded:0" and report.environment["cpu"]
    onnx = _rows(report, "onnx-fp32", "onnxruntime:cpu")[0]
    assert onnx.status is Status.PASS and isinstance(onnx.metrics, Metrics) and onnx.metrics.max_abs_logit <= 1e-4
    assert onnx.session["provider"] == "CPUExecutionProvider" and onnx.batch_consistency.batch_sizes == [1, 8]
    assert onnx.batch_consistency.status is Status.PASS and onnx.batch_consistency.metrics.max_abs_logit <= 1e-4
    for aid, target in (("onnx-int8", "onnxruntime:cpu"), ("openvino-int8", "openvino:CPU")):
        row = _rows(report, aid, target)[0]  # a faithful quantization passes the int8 gate
        assert row.status is Status.PASS and row.tolerance_keys == ["default:int8"], row
        assert row.tolerance == DEFAULT_TOLERANCES["int8"] and row.metrics.min_cosine >= row.tolerance.min_cosine
    assert {row.status for row in report.rows} <= {Status.PASS, Status.UNAVAILABLE}, report.rows
    unavailable = [row for row in report.rows if row.status is Status.UNAVAILABLE]
    assert all(row.reason and row.metrics is None for row in unavailable), unavailable
    assert report.summary()["pass"] == len(report.rows) - len(unavailable) > 0
    ran = [row for row in report.rows if row.status is Status.PASS]
    assert all(row.worker["exit_code"] == 0 and row.worker["pid"] for row in ran)  # each row in its own worker
    assert len({row.worker["pid"] for row in ran}) == len(ran)
    assert report.to_dict() == data and report.rows == [ParityResult.from_dict(r) for r in data["rows"]]  # round trip
    assert report.rows[0].key.artifact == report.rows[0].artifact and report.rows[0].key.batch is None


def test_openvino_fp32_ir_gets_a_bf16_default_row_and_an_f32_row(clean_run):
    from vitship.runtimes.openvino_rt import default_precision

    if default_precision("CPU") == "fp32":
        pytest.skip("this CPU runs OpenVINO in f32 by default: there is no lower-precision default row")
    rows = {r.variant: r for r in _rows(clean_run[1], "openvino-fp32", "openvino:CPU")}
    default, f32 = rows[""], rows["f32 inference"]
    assert default.runtime_precision == default.effective_precision == default_precision("CPU")
    assert default.precision_label.endswith("(runtime default)")
    assert default.tolerance == DEFAULT_TOLERANCES[default.effective_precision]
    assert f32.precision_label == "fp32" and f32.tolerance == DEFAULT_TOLERANCES["fp32"]
    assert f32.metrics.max_abs_logit <= 1e-4


def test_perturbed_onnx_weight_fails_with_exit_code_1(model_dir, tmp_path):
    import onnx
    from onnx import numpy_helper

    work = _copy(model_dir, tmp_path / "tiny-vit", {"onnx-fp32"})
    path = work / "onnx-fp32" / "model.onnx"
    model = onnx.load(str(path))
    weight = max((i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT), key=lambda i: np.prod(i.dims))
    values = numpy_helper.to_array(weight)
    noisy = values + np.random.default_rng(0).normal(0, 0.01, values.shape).astype(np.float32)
    weight.CopyFrom(numpy_helper.from_array(noisy, weight.name))
    onnx.save(model, str(path))
    _fix_sha(work, "onnx-fp32")  # the manifest is consistent: only the computation is wrong
    result = _parity(work, "--target", "onnxruntime:cpu")
    assert result.exit_code == 1, result.output
    row = read_parity(work / PARITY_NAME).rows[0]
    assert row.status is Status.FAIL and "max abs logit error" in row.reason


def test_broken_int8_scale_fails_the_int8_gate(model_dir, tmp_path, loaded):
    import onnx
    from onnx import numpy_helper

    work = _copy(model_dir, tmp_path / "tiny-vit", {"onnx-int8"})
    path = work / "onnx-int8" / "model.onnx"
    model = onnx.load(str(path))
    # The weight scales of the int8 MatMuls (dynamic MatMulInteger, the default: "<weight>_scale" initializers
    # multiplied into the output; static QDQ: the DequantizeLinear scale of a weight).
    scales = [i for i in model.graph.initializer if i.name.endswith("_scale") and i.data_type == onnx.TensorProto.FLOAT]
    assert len(scales) >= 4, [i.name for i in model.graph.initializer]
    scale = scales[len(scales) // 2]  # a weight scale in the middle of the network
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 3.0, scale.name))
    onnx.save(model, str(path))
    _fix_sha(work, "onnx-int8")
    ctx = prepare(work, loaded)
    row = check_row(RowPlan(manifest_artifacts(work)[0], target_status("onnxruntime:cpu"), ctx.options), ctx)
    assert row.status is Status.FAIL and row.tolerance_keys == ["default:int8"]
    assert "feature cosine" in row.reason


def test_tampered_artifact_is_refused_with_a_clear_message(model_dir, tmp_path, loaded):
    work = _copy(model_dir, tmp_path / "tiny-vit", {"openvino-fp32"})
    weights = work / "openvino-fp32" / "model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    artifact = manifest_artifacts(work)[0]
    with pytest.raises(ArtifactRefused, match="modified since export"):
        verify_artifact(artifact, work, loaded.info.sha256)
    result = _parity(work, "--target", "openvino:CPU")
    assert result.exit_code == 1
    assert "refused: openvino-fp32" in " ".join(result.output.split())
    assert {r.status for r in read_parity(work / PARITY_NAME).rows} == {Status.ERROR}
    artifact.weights = {**artifact.weights, "sha256": "f" * 64}
    with pytest.raises(ArtifactRefused, match="exported from weights ffff"):
        verify_artifact(artifact, work, loaded.info.sha256)


class _BatchDependent(torch.nn.Module):
    """Exact at batch 1; at larger batches each output leans towards the batch mean (a batch-norm-like bug)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, pixel_values):
        logits, features = self.inner(pixel_values)
        return logits + (logits.mean(0, keepdim=True) - logits), features + (features.mean(0, keepdim=True) - features)

    def with_form(self, form):  # exporters trace DetectorModel.with_form(...): this bug has one form, its own
        return self


def test_batch_dependent_model_is_caught_by_batch_consistency(loaded, tmp_path):
    import dataclasses

    # Its own weights id keeps exporter caches (keyed by weights sha256) from reusing the clean model's trace;
    # the manifest then claims the reference weights, as for any artifact whose graph is subtly wrong.
    buggy = LoadedModel(_BatchDependent(loaded.model).eval(), loaded.spec, dataclasses.replace(loaded.info, sha256="b" * 64))
    work = _build(tmp_path / "tiny-vit", buggy, ["openvino-fp32"])
    manifest = read_manifest(work)
    manifest["weights"] = manifest["artifacts"]["openvino-fp32"]["weights"] = loaded.info.to_dict()
    write_manifest(work, manifest)
    ctx = prepare(work, loaded)
    plan = RowPlan(manifest_artifacts(work)[0], target_status("openvino:CPU"), ctx.options.replace(openvino_precision="f32"))
    row = check_row(plan, ctx)
    assert row.status is Status.FAIL
    assert any(f.startswith("batch 8 vs batch 1:") for f in row.failures), row.failures
    assert row.batch_consistency.status is Status.FAIL and row.batch_consistency.metrics.max_abs_logit > 1e-3


def test_a_one_image_program_is_checked_at_batch_1_alone_and_says_so(model_dir, loaded):
    """Batch 8 on a program that takes one image per call repeats batch 1's calls: parity runs it once, noted."""
    import dataclasses

    ctx = prepare(model_dir, loaded)
    onnx = next(a for a in manifest_artifacts(model_dir) if a.id == "onnx-fp32")
    one_image = dataclasses.replace(onnx, input_spec={**onnx.input_spec, "batch_shapes": [1]})
    row = check_row(RowPlan(one_image, target_status("onnxruntime:cpu"), ctx.options), ctx)
    assert row.status is Status.PASS and row.batch_consistency is None, row
    assert "batch 8 not run: onnx-fp32 takes one image per call, so it would repeat batch 1's calls" in row.notes
    assert row.metrics.n_inputs == len(ctx.inputs.names)  # each input judged once
    row = check_row(RowPlan(onnx, target_status("onnxruntime:cpu"), ctx.options), ctx)
    assert row.batch_consistency.batch_sizes == [1, 8] and not any("not run" in note for note in row.notes)


def test_openvino_auto_is_checked_only_when_named(model_dir, loaded):
    """AUTO compiles for a device whose own row parity checks; named with --target, it is checked like any."""
    from vitship.bench.parity.plan import select_rows
    from vitship.runtimes import SessionOptions

    default = select_rows(model_dir, loaded, ["openvino-fp32"], [], True, SessionOptions())
    assert "openvino:CPU" in {p.status.target for p in default} and "openvino:AUTO" not in {p.status.target for p in default}
    named = select_rows(model_dir, loaded, ["openvino-fp32"], ["openvino:AUTO"], True, SessionOptions())
    assert {p.status.target for p in named} == {"openvino:AUTO"}


def test_reference_executor_rows_run_two_at_a_time_on_one_blas_thread_and_keep_their_order(monkeypatch, tmp_path):
    """numpy's reference executor is mostly one core: its rows share the two cores; every other row runs alone."""
    import threading
    import time
    from types import SimpleNamespace

    from vitship.bench.parity import sweep

    targets = ["onnxruntime:cpu", "coreml:reference", "openvino:CPU", "coreml:reference", "coreml:reference"]
    plans = [SimpleNamespace(status=SimpleNamespace(target=t, available=True), index=i) for i, t in enumerate(targets)]
    spans, lock = {}, threading.Lock()

    def fake_check(plan, saved, timeout_s, env=None):
        start = time.perf_counter()
        time.sleep(0.3)
        with lock:
            spans[plan.index] = (start, time.perf_counter(), env)
        return f"row {plan.index}"

    monkeypatch.setattr(sweep, "check_row_isolated", fake_check)
    ctx = SimpleNamespace(save=lambda folder: {}, config=SimpleNamespace(row_timeout_s=10.0))
    assert sweep.run_rows(plans, ctx) == [f"row {i}" for i in range(5)]
    assert [spans[i][2] for i in range(5)] == [None, sweep.ONE_BLAS_THREAD, None, sweep.ONE_BLAS_THREAD, sweep.ONE_BLAS_THREAD]
    overlaps = {(a, b) for a in spans for b in spans if a < b and spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]}
    assert overlaps and all(targets[a] == targets[b] == "coreml:reference" for a, b in overlaps)  # never 3 at once
    assert len(overlaps) < 3


def test_unknown_artifact_or_target_lists_valid_names(model_dir):
    from vitship.models import UnknownNameError

    with pytest.raises(UnknownNameError, match="onnx-fp32"):
        _parity(model_dir, "--artifact", "onnx-fp33")
    with pytest.raises(UnknownNameError, match="openvino:CPU"):
        _parity(model_dir, "--target", "openvino:CPUU")


def test_tolerance_is_frozen_and_serialisable():
    tolerance = Tolerance(min_cosine=0.9)
    assert Tolerance(**tolerance.to_dict()) == tolerance


def test_coreml_rows_are_unavailable_off_macos_and_the_reference_executor_is_labelled(loaded, tmp_path):
    import sys

    from vitship.runtimes import REFERENCE_LABEL, available_targets

    work = _build(tmp_path / "tiny-vit", loaded, ["coreml-fp32"])
    ctx = prepare(work, loaded)
    rows = {r.target: r for r in (check_row(p, ctx) for p in plan_rows(manifest_artifacts(work), available_targets(), ctx.options))}
    assert set(rows) == {"coreml:cpu_only", "coreml:cpu_and_gpu", "coreml:cpu_and_ne", "coreml:all", "coreml:reference"}
    apple = [rows[t] for t in rows if t != "coreml:reference"]
    on_macos = sys.platform == "darwin"  # the Apple runtime runs there, and nowhere else
    assert all(r.status.ran == on_macos for r in apple), [(r.status, r.reason) for r in apple]
    assert on_macos or {r.reason for r in apple} == {"CoreML runtime needs macOS"}
    reference = rows["coreml:reference"]
    assert reference.note == REFERENCE_LABEL
    assert reference.status is Status.PASS, reference.reason  # the numpy executor runs everywhere coremltools does
    assert reference.metrics.max_abs_logit <= 1e-4


def test_a_crashing_runtime_is_an_error_row_and_parity_json_is_still_written(model_dir, tmp_path, monkeypatch):
    import vitship.bench.parity.run as parity_run

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    monkeypatch.setattr(parity_run, "WORKER_MODULE", "parity_fakes")
    work = _copy(model_dir, tmp_path / "tiny-vit", {"onnx-fp32", "openvino-int8"})
    result = _parity(work, "--target", "onnxruntime:cpu", "--target", "openvino:CPU")
    assert result.exit_code == 1, result.output
    rows = {r.artifact: r for r in read_parity(work / PARITY_NAME).rows}
    crashed = rows["onnx-fp32"]
    assert crashed.status is Status.ERROR and crashed.reason.startswith("worker killed by SIGSEGV"), crashed.reason
    assert crashed.worker["exit_code"] == -11 and crashed.metrics is None
    assert rows["openvino-int8"].status is Status.PASS  # the row after the crash still ran
    assert "worker killed by SIGSEGV" in " ".join(result.output.split())


def test_parity_json_of_another_schema_is_refused_with_the_command_to_rerun(model_dir, tmp_path):
    data = json.loads((model_dir / PARITY_NAME).read_text())
    older = {**data, "schema_version": 2, "rows": [{**row, "metrics": {"min_cosine": 1.0}} for row in data["rows"]]}
    (tmp_path / PARITY_NAME).write_text(json.dumps(older))  # schema 2: metrics and tolerance were free-form dicts
    with pytest.raises(ResultsFileError, match="schema_version 2, this vitship reads 3; rerun vitship parity"):
        read_parity(tmp_path / PARITY_NAME)
    malformed = {**data, "rows": [{**row, "metrics": {"min_cosine": 1.0}} for row in data["rows"]]}
    (tmp_path / PARITY_NAME).write_text(json.dumps(malformed))
    with pytest.raises(ResultsFileError, match="malformed parity results .*; rerun vitship parity"):
        read_parity(tmp_path / PARITY_NAME)


@pytest.mark.parametrize("batch", ["1,eight", "0,8", ","])
def test_bad_parity_batch_is_a_usage_error_before_any_work_starts(model_dir, batch):
    before = (model_dir / PARITY_NAME).stat().st_mtime_ns if (model_dir / PARITY_NAME).exists() else None
    result = CliRunner().invoke(app, ["parity", "--artifacts", str(model_dir), "--batch", batch])
    assert result.exit_code == 2, result.output
    assert "Invalid value for --batch" in result.output and "(e.g. 1,8)" in " ".join(result.output.split())
    after = (model_dir / PARITY_NAME).stat().st_mtime_ns if (model_dir / PARITY_NAME).exists() else None
    assert after == before  # nothing ran, nothing was written
