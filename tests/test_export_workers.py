"""export_all(..., jobs=2): formats built in worker processes give what a serial run gives, gate included."""

from __future__ import annotations

import functools
import logging

import pytest

from tests.conftest import assert_manifest_matches_files
from vitship.exporters.pipeline import export_all, model_dir_for
from vitship.exporters.workers import ExportWorker, ExportWorkerError
from vitship.models.status import Status

REQUESTS = [("onnx", "fp32"), ("onnx", "int8"), ("litert", "fp32")]


def test_two_workers_build_the_serial_runs_bytes_and_gate_the_int8(tiny_loaded, tiny_exports, tmp_path):
    """The CLI's path: the gate (with diagnose's locator) pickles into the workers; the manifest and the results
    keep request order; the int8 is gated in its worker."""
    from vitship.bench.int8_gate import int8_gate

    events = []
    results = export_all(tiny_loaded, tmp_path, REQUESTS, gate=int8_gate(tiny_loaded), jobs=2,
                         progress=lambda aid, event: events.append((aid, event)))
    assert [(r.id, r.status) for r in results] == [("onnx-fp32", Status.OK), ("onnx-int8", Status.OK), ("litert-fp32", Status.OK)]
    assert results[1].int8.verdict is Status.PASS and results[1].int8.steps  # judged by the gate, not "not checked"
    assert sorted(events) == sorted([(aid, "start") for aid, _ in events if _ == "start"] + [(r.id, r.status) for r in results])
    model_dir = model_dir_for(tmp_path, tiny_loaded)
    manifest = assert_manifest_matches_files(model_dir)
    assert list(manifest["artifacts"]) == ["onnx-fp32", "onnx-int8", "litert-fp32"]
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".")]  # no temporaries, no lock left
    serial = assert_manifest_matches_files(model_dir_for(tiny_exports(REQUESTS), tiny_loaded))
    for aid in ("onnx-fp32", "litert-fp32", "onnx-int8"):  # the int8 passed at its requested recipe: the same bytes
        assert manifest["artifacts"][aid]["sha256"] == serial["artifacts"][aid]["sha256"], aid
    rerun = export_all(tiny_loaded, tmp_path, REQUESTS, gate=int8_gate(tiny_loaded), jobs=2)
    assert [r.status for r in rerun] == [Status.SKIPPED] * 3  # nothing to build: no worker is started


def test_a_stop_at_an_artifacts_start_lets_the_other_lane_finish_then_is_raised(tiny_loaded, tmp_path):
    """The CLI's first Ctrl-C makes its progress callback raise KeyboardInterrupt at the next artifact's start: that
    lane stops, the other finishes its current artifact, both workers close, and the interrupt reaches the caller."""
    starts = []

    def progress(aid: str, event: str) -> None:
        if event == "start":
            starts.append(aid)
            if len(starts) == 3:  # onnx-int8: onnx-fp32 and litert-fp32 (one lane each) have started
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_all(tiny_loaded, tmp_path, REQUESTS, gate=False, jobs=2, progress=progress)
    assert starts[2] == "onnx-int8"
    model_dir = model_dir_for(tmp_path, tiny_loaded)
    assert list(assert_manifest_matches_files(model_dir)["artifacts"]) == ["onnx-fp32", "litert-fp32"]
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".")]  # no temporaries, the lock released


def test_a_workers_log_records_reach_this_process(tiny_loaded, caplog):
    with caplog.at_level(logging.WARNING, logger="vitship"):
        say = functools.partial(logging.getLogger("vitship.exporters.onnx").warning, "said in the worker")  # pickles
        worker = ExportWorker(tiny_loaded, False, say)
        worker.close()  # reads what the worker sent until its pipe closes
    said = [r for r in caplog.records if r.getMessage() == "said in the worker"]
    assert said and said[0].name == "vitship.exporters.onnx" and said[0].processName != "MainProcess"


def test_a_worker_that_dies_fails_its_artifact_with_its_exit_code(tiny_loaded, tmp_path):
    from vitship.exporters.onnx import OnnxOptions

    worker = ExportWorker(tiny_loaded, False)
    worker.kill()
    assert not worker.alive
    with pytest.raises(ExportWorkerError, match=r"onnx-fp32: the export worker stopped before it answered \(exit code -9"):
        worker.build("onnx", OnnxOptions(), tmp_path)
    worker.close()
    assert not list(tmp_path.iterdir())
