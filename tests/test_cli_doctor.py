"""`vitship doctor`: versions, CPU facts, weights with their sha256; errors are one line, not a traceback.

Each test runs the installed entry point (vitship.bench.cli:main) in this process (the vitship_main fixture):
the same code path as the console script, without importing torch again per call. The console script itself
runs in tests/test_foreign_folder.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_models_weights import TINY, save_hf_vit
from vitship.bench.environment import CPU_FLAGS_OF_INTEREST
from vitship.models import file_sha256


def cpuinfo_flags() -> set[str]:
    """The CPU flags as the kernel lists them (read here independently of vitship.bench.environment)."""
    if not Path("/proc/cpuinfo").exists():
        pytest.skip("no /proc/cpuinfo: CPU flags are only read on Linux")
    line = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    return set(line.partition(":")[2].split())


def test_doctor_prints_versions_cpu_and_weights(vitship_main):
    code, out, err = vitship_main("doctor", "--arch", "tiny")
    assert code == 0, err
    for package in ("torch", "timm", "onnx", "onnxruntime", "openvino", "nncf", "coremltools"):
        assert package in out
    flags_row = out[out.index("CPU flags"):out.index("GPU")].replace("│", " ").split()
    for flag in CPU_FLAGS_OF_INTEREST:  # each flag shown as present or absent (-flag), as /proc/cpuinfo says
        assert (flag if flag in cpuinfo_flags() else f"-{flag}") in flags_row, (flag, flags_row)
    assert "GPU" in out and "seeded:0" in out and "untrained" in out


def test_doctor_loads_a_transformers_directory_and_prints_its_sha256(vitship_main, tmp_path):
    save_hf_vit(tmp_path, 2, **TINY)
    code, out, err = vitship_main("doctor", "--weights", str(tmp_path))
    assert code == 0, err
    assert file_sha256(tmp_path / "model.safetensors") in "".join(out.replace("│", " ").split()), out  # folded cells
    assert "softmax" in out


@pytest.mark.parametrize("where", ["before the command", "after the command"])
def test_errors_are_one_line_and_debug_shows_the_traceback(vitship_main, tmp_path, where):
    missing = ["--weights", str(tmp_path / "missing.pt")]
    code, _out, err = vitship_main("doctor", *missing)
    assert code == 2
    assert "error:" in err and "Traceback" not in err
    assert os.environ.get("VITSHIP_DEBUG") != "1"
    argv = ["--debug", "doctor", *missing] if where == "before the command" else ["doctor", *missing, "--debug"]
    code, _out, err = vitship_main(*argv)
    assert code == 2 and "Traceback" in err
    assert os.environ.get("VITSHIP_DEBUG") == "1"  # the runtimes layer and worker subprocesses keep backend logs


@pytest.mark.parametrize("argv", [["export", "--debug", "--help"], ["--debug", "export", "--help"]])
def test_debug_goes_before_or_after_the_command_name(vitship_main, argv):
    code, out, err = vitship_main(*argv)
    assert code == 0, err
    assert "vitship export [OPTIONS]" in out and "--debug" in out and "--precision" in out


def test_an_internal_error_says_how_to_rerun_it_with_debug(vitship_main, monkeypatch):
    from vitship.bench.commands import doctor

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(doctor, "load_weights", broken)
    code, _out, err = vitship_main("doctor", "--arch", "tiny")
    assert code == 3 and "Traceback" not in err, err
    assert "RuntimeError: simulated bug" in err
    assert "rerun: vitship --debug doctor --arch tiny" in " ".join(err.split()), err
    code, _out, err = vitship_main("doctor", "--arch", "tiny", "--debug")
    assert code == 3 and "Traceback" in err and "simulated bug" in err


def test_bad_option_values_are_usage_errors_from_the_installed_command(vitship_main, tmp_path):
    """Through the real entry point (not CliRunner): typer's usage errors are exit 2 with click's message."""
    code, out, err = vitship_main("bench", "--arch", "tiny", "--artifacts", str(tmp_path), "--hint", "fast")
    assert code == 2 and "internal error" not in err, err
    assert "Invalid value for --hint: 'fast' is not one of latency, throughput" in err
    code, out, err = vitship_main("parity", "--nonsense")
    assert code == 2 and "No such option: --nonsense" in err, err
    assert list(tmp_path.iterdir()) == []  # nothing ran
