"""Shared fixtures: the tiny ViT (loaded once per session), its preprocessed sample photos, and checks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vitship.models import LoadedModel, load_weights, preprocess, sample_images, tiny_spec
from vitship.models.judgement import Metrics


@pytest.fixture(scope="session")
def tiny_loaded() -> LoadedModel:
    """The seeded tiny ViT (64 px, 2 blocks, width 32). Shared: never train or modify it in a test."""
    return load_weights("seeded", tiny_spec())


@pytest.fixture(scope="session")
def tiny_photos(tiny_loaded) -> np.ndarray:
    """The bundled real photos, preprocessed for the tiny ViT (float32 NCHW)."""
    return preprocess(sample_images(), tiny_loaded.spec)


def torch_outputs(loaded: LoadedModel, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, features) of the PyTorch reference for a float32 NCHW batch."""
    with torch.no_grad():
        logits, features = loaded.model(torch.from_numpy(np.ascontiguousarray(batch)))
    return logits.numpy(), features.numpy()


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def parity_metrics(min_cosine: float | None = 0.999999, max_abs_logit: float = 1e-6, max_prob_err: float = 1e-6,
                   **fields) -> Metrics:
    """A parity row's Metrics with the figures a test cares about (the others: 18 photos that all agree)."""
    base = {"n_inputs": 23, "n_photos": 18, "mean_abs_logit": max_abs_logit / 2, "p99_abs_logit": max_abs_logit,
            "agreement": 1.0, "decisive_agreement": 1.0, "n_ambiguous": 0, "ambiguous_flips": 0}
    return Metrics(min_cosine=min_cosine, max_abs_logit=max_abs_logit, max_prob_err=max_prob_err, **{**base, **fields})


def assert_manifest_matches_files(model_dir: Path) -> dict:
    """Every manifest entry names an existing artifact whose sha256 and size match; returns the manifest."""
    from vitship.exporters.base import path_sha256, path_size, read_manifest

    manifest = read_manifest(model_dir)
    for aid, entry in manifest["artifacts"].items():
        path = Path(model_dir) / entry["path"]
        assert path.exists(), f"{aid}: {path} is missing"
        assert path_sha256(path) == entry["sha256"], f"{aid}: sha256 of {path} does not match the manifest"
        assert path_size(path) == entry["size_bytes"], f"{aid}: size of {path} does not match the manifest"
    return manifest


# The image-input artifacts every frame test shares (one export per test worker: tests/test_frames.py and friends)
FRAME_EXPORTS = [("onnx-image", "fp32"), ("openvino-image", "fp32"), ("onnx", "fp32")]


@pytest.fixture(scope="session")
def tiny_exports(tiny_loaded, tmp_path_factory):
    """``tiny_exports(requests)``: an artifacts root holding just those (format, precision) artifacts of the tiny ViT.

    Each artifact is exported once per test session by the shipped pipeline (export_all skips what is already
    there; int8 with the gate off, so their records say "not checked"), into one shared folder; every call returns a fresh copy, so a test may tamper with its own.
    """
    import json
    import shutil

    from vitship.exporters.pipeline import export_all, model_dir_for

    shared = tmp_path_factory.mktemp("tiny-exports")

    def exported(requests: list[tuple[str, str]]) -> Path:
        results = export_all(tiny_loaded, shared, requests, gate=False)  # the gate has its own tests (test_int8_*)
        assert all(r.status in ("ok", "skipped") for r in results), [(r.id, r.status, r.reason) for r in results]
        source, dest = model_dir_for(shared, tiny_loaded), tmp_path_factory.mktemp("artifacts")
        manifest = json.loads((source / "manifest.json").read_text())
        manifest["artifacts"] = {r.id: manifest["artifacts"][r.id] for r in results}  # in request order, as a fresh export
        target = dest / source.name
        target.mkdir()
        for aid, entry in manifest["artifacts"].items():
            folder = Path(entry["path"]).parts[0]
            shutil.copytree(source / folder, target / folder, symlinks=True)
        (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return dest

    return exported


@pytest.fixture(scope="session")
def tiny_dynamic_executorch(tiny_loaded, tmp_path_factory):
    """(model folder, artifact): an executorch-fp32 of the tiny ViT with a dynamic batch 1..8, whose reshapes of the
    symbolic batch run outside XNNPACK (the shipped default is a fully delegated batch-1 program)."""
    from vitship.exporters import executorch
    from vitship.exporters.executorch import ExecutorchOptions

    root = tmp_path_factory.mktemp("executorch-dynamic")
    (root / "executorch-fp32").mkdir()
    artifact = executorch.export(tiny_loaded, root / "executorch-fp32", ExecutorchOptions(max_batch=8))
    artifact.path = "executorch-fp32/model.pte"
    return root, artifact


@pytest.fixture
def vitship_main(monkeypatch, capsys):
    """``vitship_main(*argv)`` runs the installed entry point (vitship.bench.cli:main) in this process.

    Returns (exit code, stdout, stderr). The backend quieting that the entry point applies (logger filters, rich's
    global console, env vars) is undone afterwards, so other tests see the libraries as they were.
    """
    import logging

    import rich

    from vitship.bench import cli
    from vitship.bench.commands import common
    from vitship.bench.commands.common import state

    environ = {name: os.environ.get(name) for name in ("ET_COREML_LOG_LEVEL", "VITSHIP_DEBUG", "TQDM_DISABLE")}
    monkeypatch.setitem(state, "debug", False)
    monkeypatch.setenv("COLUMNS", "200")
    for shared in (common.console, common.err_console):  # made at import, with whatever width the process had then
        monkeypatch.setattr(shared, "width", 200)
    filters = {name: list(logging.getLogger(name).filters) for name in cli.NOISY_LOGGERS}
    quiet = rich.get_console().quiet

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["vitship", *argv])
        try:
            cli.main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    for name, kept in filters.items():
        logging.getLogger(name).filters[:] = kept
    rich.get_console().quiet = quiet
    for name, value in environ.items():
        os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
