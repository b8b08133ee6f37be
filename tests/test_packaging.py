"""The wheel holds the vitship package and nothing else: every module of the source tree under vitship/.

Built offline from a copy of the working tree (so the build's scratch folders never land in the repo).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("models", "exporters", "runtimes", "bench")


def source_files(pattern: str = "*") -> set[str]:
    """The package's files in the source tree (root __init__.py and its folders) as their paths inside the wheel."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", pattern], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    return {f"vitship/{path}" for path in listed if path == "__init__.py" or path.split("/")[0] in SUBPACKAGES}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the source tree")
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for path in listed:
        if (REPO / path).is_file():
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / path, source / path)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = out.glob("vitship-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_every_module_under_vitship_and_nothing_else(wheel):
    names = set(wheel.namelist())
    expected = source_files("*.py")
    assert len(expected) > 50 and "vitship/bench/parity/worker.py" in expected
    assert expected - names == set(), "modules missing from the wheel (add their package to pyproject.toml)"
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"vitship"}, top
    assert not any(name.startswith("vitship/tests/") for name in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "vitship = vitship.bench.cli:main" in wheel.read(entry_points).decode()


def test_wheel_holds_the_data_files_the_package_reads(wheel):
    """Non-Python files in the package folders (the report's HTML template) must ship too."""
    data = source_files() - source_files("*.py")
    assert data, "expected at least the report template"
    missing = data - set(wheel.namelist())
    assert missing == set(), f"missing from the wheel: {sorted(missing)}; list them in [tool.setuptools.package-data]"


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_generic_names_are_not_importable_from_outside_the_repo(tmp_path, name):
    done = subprocess.run([sys.executable, "-P", "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and f"No module named '{name}'" in done.stderr, done.stderr
    ok = subprocess.run([sys.executable, "-P", "-c", f"import vitship.{name}"], cwd=tmp_path, capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
