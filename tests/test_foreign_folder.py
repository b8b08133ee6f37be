"""Acceptance: vitship runs from a project folder that has its own models/, exporters/, runtimes/ and bench/ packages.

Most ML repositories have a ``models/`` package. Neither the vitship command nor its worker
subprocesses may import from the current folder (issue 10): each foreign package here raises
ImportError the moment anything imports it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FOREIGN = ("models", "exporters", "runtimes", "bench")
VITSHIP = Path(sys.executable).with_name("vitship")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("someone-elses-project")
    for name in FOREIGN:
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(f'raise ImportError("the project\'s own {name} package was imported")\n')
    return folder


def vitship(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"COLUMNS": "200"}
    return subprocess.run([str(VITSHIP), *args], cwd=project, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.skipif(not VITSHIP.exists(), reason="the vitship console script is not installed next to this python")
def test_every_command_runs_from_a_folder_with_its_own_models_exporters_runtimes_and_bench(project):
    steps = [
        ("doctor", "--arch", "tiny"),
        ("export", "--arch", "tiny", "-f", "onnx", "-p", "fp32"),
        ("parity", "--arch", "tiny", "--no-torch", "--target", "onnxruntime:cpu"),
        ("bench", "--arch", "tiny", "--quick", "--artifact", "onnx-fp32", "--target", "onnxruntime:cpu",
         "--min-time", "0.2", "--warmup", "0.1", "--no-plots"),
        ("report", "--arch", "tiny"),
    ]
    for args in steps:
        done = vitship(project, *args)
        assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
        assert "ImportError" not in done.stdout + done.stderr, (args, done.stdout[-3000:], done.stderr[-3000:])
    model_dir = project / "artifacts" / "tiny-vit"
    assert {"manifest.json", "parity.json"} <= {p.name for p in model_dir.iterdir()}
    assert (model_dir / "bench" / "bench.json").is_file() and (project / "reports" / "latest").exists()
