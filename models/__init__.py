"""vitship.models: the reference model, its weights, preprocessing and sample photos. Imports nothing else of vitship.

The torch-backed names (DetectorModel, LoadedModel, WeightsInfo, load_weights) are
imported on first use, so that ``import vitship`` and the error classes stay light (no torch).
"""

import importlib

from vitship.models.digest import file_sha256
from vitship.models.errors import ImageError, MissingDependencyError, UnknownNameError, VitshipError, WeightsError
from vitship.models.head import fake_probability, probabilities
from vitship.models.preprocess import IMAGE_SUFFIXES, image_files, load_image, preprocess
from vitship.models.samples import sample_images
from vitship.models.spec import DEFAULT_SPEC, FEATURES_NAME, INPUT_NAME, LOGITS_NAME, ModelSpec, tiny_spec

ARCHITECTURES = {"vit_small_patch16_384": DEFAULT_SPEC, "tiny": tiny_spec()}
_LAZY = {"DetectorModel": "vitship.models.vit", "LoadedModel": "vitship.models.weights",
         "WeightsInfo": "vitship.models.weights",
         "load_weights": "vitship.models.weights"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vitship.models' has no attribute {name!r}")


def spec_for(arch: str) -> ModelSpec:
    """The ModelSpec registered under ``arch`` (the CLI's --arch)."""
    if arch not in ARCHITECTURES:
        raise UnknownNameError("architecture", arch, list(ARCHITECTURES))
    return ARCHITECTURES[arch]


__all__ = [
    "ARCHITECTURES", "DEFAULT_SPEC", "FEATURES_NAME", "IMAGE_SUFFIXES", "fake_probability", "image_files", "probabilities", "INPUT_NAME", "LOGITS_NAME", "DetectorModel", "ImageError",
    "LoadedModel", "MissingDependencyError", "ModelSpec", "UnknownNameError", "VitshipError", "WeightsError",
    "WeightsInfo", "file_sha256", "load_weights", "load_image", "preprocess", "sample_images", "spec_for", "tiny_spec",
]
