"""Shared fixtures: the tiny ViT (loaded once per session), its preprocessed sample photos, and checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vitship.models import LoadedModel, load_weights, preprocess, sample_images, tiny_spec


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
