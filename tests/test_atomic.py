"""Atomic writes keep the old content on failure and create entries with ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from vitship.models.atomic import atomic_directory, atomic_write_text, recover_directory


def test_atomic_write_replaces_and_uses_umask_modes(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_directory_keeps_old_content_when_interrupted(tmp_path):
    final = tmp_path / "onnx-fp32"
    with atomic_directory(final) as tmp:
        (tmp / "model.onnx").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(final) as tmp:
            (tmp / "model.onnx").write_text("half")
            raise KeyboardInterrupt
    assert (final / "model.onnx").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx-fp32"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(final.stat().st_mode) == 0o777 & ~umask


def test_recover_directory_restores_a_half_done_swap(tmp_path):
    final = tmp_path / "coreml-fp16"
    old = tmp_path / ".coreml-fp16.old"
    old.mkdir()
    (old / "x").write_text("kept")
    (tmp_path / ".coreml-fp16.abc.tmp").mkdir()
    recover_directory(final)
    assert (final / "x").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coreml-fp16"]
