"""`vitship compare OLD NEW`: per-row deltas, exit 1 on a regression, exit 0 on identical reports."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest

from tests.test_report import write_sources
from vitship.bench.report.cells import ReportRow
from vitship.bench.report.compare import MISSING, NEW, NOT_COMPARED, CompareThresholds, compare_reports
from vitship.bench.report.document import Report, build_report, report_json, write_report
from vitship.models.status import Status


def run_compare(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitship.bench.cli", "compare", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "220"})


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("old")
    write_sources(model_dir)
    return build_report(model_dir)


def _save(document: Report, folder) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.json"
    path.write_text(json.dumps(report_json(document)))
    return str(path)


def _row(document: Report, artifact: str) -> ReportRow:
    return next(r for r in document.rows if r.artifact == artifact)


def test_identical_reports_pass_with_exit_0(baseline, tmp_path):
    folder = write_report(copy.deepcopy(baseline), tmp_path / "reports")
    result = run_compare(folder / "report.json", folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no regression" in result.stdout and "onnx-fp32" in result.stdout


def test_p50_up_20_percent_is_a_regression_with_exit_1(baseline, tmp_path):
    slower = copy.deepcopy(baseline)
    _row(slower, "openvino-int8").latency_at(1).p50_ms *= 1.2
    result = run_compare(_save(baseline, tmp_path / "a"), _save(slower, tmp_path / "b"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "+20.0%" in result.stdout and "regression" in result.stdout
    comparison = compare_reports(baseline, slower)
    assert [(r.artifact, r.status) for r in comparison.regressions] == [("openvino-int8", Status.FAIL)]
    assert {r.status for r in comparison.rows if r.artifact != "openvino-int8"} == {Status.PASS}
    assert not compare_reports(baseline, slower, CompareThresholds(max_latency_increase=0.25)).regressions


def test_parity_turning_to_fail_and_a_missing_artifact_are_regressions(baseline):
    changed = copy.deepcopy(baseline)
    _row(changed, "openvino-fp16").parity.status = Status.FAIL
    changed.rows = [r for r in changed.rows if r.artifact != "onnx-fp32"]
    statuses = {r.artifact: (r.status, r.reasons) for r in compare_reports(baseline, changed).regressions}
    assert statuses["openvino-fp16"][0] is Status.FAIL and "parity pass -> fail" in statuses["openvino-fp16"][1][0]
    assert statuses["onnx-fp32"] == (Status.FAIL, [MISSING])
    (new,) = [r for r in compare_reports(changed, baseline).rows if r.artifact == "onnx-fp32"]
    assert (new.status, new.reason) == (Status.OK, NEW) and not new.regressed  # a row only the new report has
    faster = copy.deepcopy(baseline)
    _row(faster, "onnx-fp32").latency_at(1).p50_ms *= 0.5  # getting faster is never a regression
    assert not compare_reports(baseline, faster).regressions


def test_accuracy_drop_is_judged_only_with_trained_weights(tmp_path):
    write_sources(tmp_path, trained=True)
    old = build_report(tmp_path)
    new = copy.deepcopy(old)
    _row(new, "onnx-fp32").accuracy.accuracy -= 0.006
    (regression,) = compare_reports(old, new).regressions
    assert regression.artifact == "onnx-fp32" and "accuracy -0.60 points" in regression.reasons[0]
    old.weights = new.weights = {**old.weights, "trained": False}  # the weights record says whether they are trained
    comparison = compare_reports(old, new)
    assert not comparison.regressions and any("accuracy not judged" in n for n in comparison.notes)


def test_different_environments_are_not_compared_without_force(baseline, tmp_path):
    other = copy.deepcopy(baseline)
    other.environment = {**other.environment, "key": "another-machine|8c|no-gpu"}
    _row(other, "onnx-fp32").latency_at(1).p50_ms *= 2
    old, new = _save(baseline, tmp_path / "a"), _save(other, tmp_path / "b")
    refused = run_compare(old, new)
    assert refused.returncode == 4 and "not compared" in refused.stdout and "--force" in refused.stdout
    assert "not run" in refused.stdout  # each row's status, with the reason beside it
    assert {(r.status, r.reason) for r in compare_reports(baseline, other).rows} == {(Status.NOT_RUN, NOT_COMPARED)}
    forced = run_compare(old, new, "--force")
    assert forced.returncode == 1 and "different environments" in forced.stdout
