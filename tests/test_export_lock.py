"""One export per model folder at a time (exporters/lock.py), tried with real concurrent processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import assert_manifest_matches_files
from tests.test_export_pipeline import fake_formats  # noqa: F401  (fixture)
from vitship.exporters import pipeline
from vitship.exporters.lock import LOCK_NAME, FolderLockedError, export_lock

REPO = Path(__file__).parents[1]

# Holds the lock of argv[1] with a temporary folder of its own inside, until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from vitship.exporters.lock import export_lock
folder = Path(sys.argv[1])
with export_lock(folder):
    (folder / ".fake-fp32.holder.tmp").mkdir()
    print("locked", flush=True)
    sys.stdin.read()
"""

# `vitship export` (the real entry point) with a "slow" format whose exporter waits for the file argv[1] to exist.
SLOW_EXPORT = """
import sys, time
from pathlib import Path
from vitship.exporters import EXPORTERS, pipeline
from vitship.exporters.base import Artifact, ExportOptions
release = Path(sys.argv[1])

def slow_export(loaded, out_dir, options, cache=None):
    (Path(out_dir) / "model.bin").write_text("slow")
    while not release.exists():
        time.sleep(0.05)
    return Artifact(id="slow-fp32", format="slow", precision="fp32", path="slow-fp32/model.bin",
                    weights=loaded.info.to_dict(), options=options.cache_key())

EXPORTERS["slow"] = ("tests.slow", ("fp32",))
get_exporter, options_class = pipeline.get_exporter, pipeline.options_class
pipeline.get_exporter = lambda fmt: slow_export if fmt == "slow" else get_exporter(fmt)
pipeline.options_class = lambda fmt: ExportOptions if fmt == "slow" else options_class(fmt)
sys.argv = ["vitship", *sys.argv[2:]]
from vitship.bench.cli import main
main()
"""


def _python(code: str, *args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=REPO, text=True, **kwargs)


@pytest.fixture
def holder(tiny_loaded, tmp_path):
    """A separate process that holds the tiny model folder's export lock (and has a temporary folder in it)."""
    model_dir = pipeline.model_dir_for(tmp_path, tiny_loaded)
    model_dir.mkdir(parents=True)
    process = _python(HOLDER, model_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().strip() == "locked", process.stderr.read()
    yield process, model_dir
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def test_a_second_export_refuses_naming_the_holders_pid_and_keeps_its_temporaries(holder, tiny_loaded, tmp_path,
                                                                                    fake_formats):  # noqa: F811
    process, model_dir = holder
    with pytest.raises(FolderLockedError) as caught:
        pipeline.export_all(tiny_loaded, tmp_path, [("fake", "fp32")], gate=False)
    message = str(caught.value)
    assert f"pid {process.pid} on " in message and str(model_dir) in message and "\n" not in message
    assert (model_dir / ".fake-fp32.holder.tmp").is_dir()  # the holder's temporary folder was not touched
    assert not (model_dir / "manifest.json").exists()


def test_a_dead_holders_lock_is_taken_over_and_its_temporaries_cleared(holder, tiny_loaded, tmp_path,
                                                                        fake_formats):  # noqa: F811
    process, model_dir = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert str(process.pid) in (model_dir / LOCK_NAME).read_text()  # SIGKILL left its lock file behind
    results = pipeline.export_all(tiny_loaded, tmp_path, [("fake", "fp32")], gate=False)
    assert [r.status for r in results] == ["ok"]
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".")]  # lock and dead temporaries gone
    assert_manifest_matches_files(model_dir)


def test_wait_s_waits_for_the_holder_to_finish(holder, tiny_loaded, tmp_path, fake_formats):  # noqa: F811
    process, _ = holder
    threading.Timer(1.0, process.stdin.close).start()
    start = time.monotonic()
    results = pipeline.export_all(tiny_loaded, tmp_path, [("fake", "fp32")], gate=False, wait_s=60)
    assert [r.status for r in results] == ["ok"] and time.monotonic() - start >= 0.9


@pytest.mark.slow  # 30+ s on 2 cores: CI runs it after make export-all (.ci/run), outside make test's budget
def test_two_cli_exports_into_one_folder_at_once(tiny_loaded, tmp_path):
    """`vitship export --force` twice at once: the second refuses in one line naming the first's pid; nothing is lost."""
    model_dir, release = pipeline.model_dir_for(tmp_path, tiny_loaded), tmp_path / "release"
    first = _python(SLOW_EXPORT, release, "export", "--arch", "tiny", "-f", "slow", "--force", "--out", tmp_path,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(model_dir.glob(".slow-fp32.*.tmp")) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        (temporary,) = model_dir.glob(".slow-fp32.*.tmp")
        second = subprocess.run([sys.executable, "-m", "vitship.bench.cli", "export", "--arch", "tiny", "-f", "onnx", "-p",
                                 "fp32", "--force", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 2, second.stdout + second.stderr
        errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]  # (torch warns on import)
        assert len(errors) == 1 and f"another export (pid {first.pid} on " in errors[0], second.stderr
        assert "Traceback" not in second.stderr
        assert "internal error" not in second.stdout + second.stderr
        assert temporary.is_dir()  # the first run's work in progress survived
        release.touch()
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, out + err
    finally:
        release.touch()
        if first.poll() is None:
            first.kill()
    assert list(assert_manifest_matches_files(model_dir)["artifacts"]) == ["slow-fp32"]
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".")]


def test_the_lock_refuses_a_second_holder_even_in_the_same_process_and_is_released(tmp_path):
    with export_lock(tmp_path) as me:
        assert me.pid == os.getpid() and str(os.getpid()) in (tmp_path / LOCK_NAME).read_text()
        with pytest.raises(FolderLockedError, match=f"pid {os.getpid()}"):  # a second open file: refused, even here
            with export_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK_NAME).exists()
    with export_lock(tmp_path):  # released: taken again
        pass
