"""The one real CLI chain: every command, as a user types it, from a project folder with its own models/ package.

Most ML repositories have a ``models/`` package. Neither the vitship command nor its worker
subprocesses may import from the current folder (issue 10): each foreign package here raises
ImportError the moment anything imports it. The chain runs the installed ``vitship`` script
(doctor, export, parity, eval, bench, report, compare) on the tiny ViT and checks what each step wrote,
so one subprocess chain covers the command line end to end (the real ViT-S runs through
``make export-all`` in CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vitship.bench.report.document import read_report
from vitship.models import sample_images
from vitship.models.status import Status

FOREIGN = ("models", "exporters", "runtimes", "bench")
VITSHIP = Path(sys.executable).with_name("vitship")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder with foreign models/exporters/runtimes/bench packages and a labelled data/ folder."""
    folder = tmp_path_factory.mktemp("someone-elses-project")
    for name in FOREIGN:
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(f'raise ImportError("the project\'s own {name} package was imported")\n')
    for index, photo in enumerate(sample_images(limit=8)):
        label = folder / "data" / ("fake" if index % 2 else "real")
        label.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, label / photo.name)
    return folder


def vitship(project: Path, *args: str) -> str:
    """Run the installed script in ``project``; asserts exit 0 and no foreign import; returns stdout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"COLUMNS": "200"}
    done = subprocess.run([str(VITSHIP), *args], cwd=project, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
    assert "ImportError" not in done.stdout + done.stderr, (args, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout


@pytest.mark.slow  # about 60 s on 2 cores (8 subprocesses): CI runs it after make export-all (.ci/run)
@pytest.mark.skipif(not VITSHIP.exists(), reason="the vitship console script is not installed next to this python")
def test_every_command_runs_from_a_folder_with_its_own_models_exporters_runtimes_and_bench(project):
    """doctor -> export onnx-fp32 -> parity -> eval -> bench -> report -> compare, on the tiny ViT."""
    vitship(project, "doctor", "--arch", "tiny")
    vitship(project, "export", "--format", "onnx", "--precision", "fp32", "--arch", "tiny", "--out", "artifacts")
    vitship(project, "parity", "--artifacts", "artifacts", "--target", "onnxruntime:cpu")
    vitship(project, "eval", "--data", "data", "--artifacts", "artifacts")
    vitship(project, "bench", "--artifacts", "artifacts", "--arch", "tiny", "--quick", "--target", "onnxruntime:cpu",
            "--min-time", "0.2", "--warmup", "0.1", "--no-plots")
    model_dir = project / "artifacts" / "tiny-vit"
    assert {"manifest.json", "parity.json"} <= {p.name for p in model_dir.iterdir()}
    assert (model_dir / "bench" / "bench.json").is_file()

    folder = project / vitship(project, "report", "--artifacts", "artifacts").strip().splitlines()[-1]
    assert (project / "reports" / "latest").exists()
    document = read_report(folder)
    (row,) = [r for r in document.rows if r.target == "onnxruntime:cpu"]
    assert row.artifact == "onnx-fp32" and row.parity.status is Status.PASS and row.parity.value <= 1e-4
    assert row.latency_at(1).status is Status.OK and row.latency_at(1).p50_ms > 0
    assert row.accuracy.agreement == 1.0 and row.accuracy.status is Status.OK
    assert "**Ship onnx-fp32 on onnxruntime:cpu" in (folder / "report.md").read_text()
    assert "untrained weights" in (folder / "report.html").read_text()
    vitship(project, "compare", str(folder), str(project / "reports" / "latest"))
