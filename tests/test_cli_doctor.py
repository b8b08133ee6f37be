"""`vitship doctor`: versions, CPU facts, weights with their sha256; errors are one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vitship.bench.environment import CPU_FLAGS_OF_INTEREST
from vitship.models import file_sha256
from tests.test_models_weights import TINY, save_hf_vit


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitship.bench.cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200", **env})


def cpuinfo_flags() -> set[str]:
    """The CPU flags as the kernel lists them (read here independently of vitship.bench.environment)."""
    if not Path("/proc/cpuinfo").exists():
        pytest.skip("no /proc/cpuinfo: CPU flags are only read on Linux")
    line = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    return set(line.partition(":")[2].split())


def test_doctor_prints_versions_cpu_and_weights():
    result = run_cli("doctor", "--arch", "tiny")
    assert result.returncode == 0, result.stderr
    for package in ("torch", "timm", "onnx", "onnxruntime", "openvino", "nncf", "coremltools"):
        assert package in result.stdout
    flags_row = result.stdout[result.stdout.index("CPU flags"):result.stdout.index("GPU")].replace("│", " ").split()
    for flag in CPU_FLAGS_OF_INTEREST:  # each flag shown as present or absent (-flag), as /proc/cpuinfo says
        assert (flag if flag in cpuinfo_flags() else f"-{flag}") in flags_row, (flag, flags_row)
    assert "GPU" in result.stdout and "seeded:0" in result.stdout and "untrained" in result.stdout


def test_doctor_loads_a_transformers_directory_and_prints_its_sha256(tmp_path):
    save_hf_vit(tmp_path, 2, **TINY)
    result = run_cli("doctor", "--weights", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert file_sha256(tmp_path / "model.safetensors") in result.stdout
    assert "softmax" in result.stdout


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    result = run_cli("doctor", "--weights", str(tmp_path / "missing.pt"))
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    debug = run_cli("--debug", "doctor", "--weights", str(tmp_path / "missing.pt"))
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_bad_option_values_are_usage_errors_from_the_installed_command(tmp_path):
    """Through the real entry point (not CliRunner): typer's usage errors are exit 2 with click's message."""
    bad_value = run_cli("bench", "--arch", "tiny", "--artifacts", str(tmp_path), "--hint", "fast")
    assert bad_value.returncode == 2 and "internal error" not in bad_value.stderr, bad_value.stderr
    assert "Invalid value for --hint: 'fast' is not one of latency, throughput" in bad_value.stderr
    unknown = run_cli("parity", "--nonsense")
    assert unknown.returncode == 2 and "No such option: --nonsense" in unknown.stderr, unknown.stderr
    assert list(tmp_path.iterdir()) == []  # nothing ran
