"""vitship.models: the reference model, its weights, preprocessing and sample photos. Imports nothing else of vitship."""

from vitship.models.errors import ImageError, MissingDependencyError, UnknownNameError, VitshipError, WeightsError
from vitship.models.preprocess import load_image, preprocess
from vitship.models.samples import sample_images
from vitship.models.spec import DEFAULT_SPEC, FEATURES_NAME, INPUT_NAME, LOGITS_NAME, ModelSpec, tiny_spec
from vitship.models.vit import DetectorModel
from vitship.models.weights import LoadedModel, WeightsInfo, file_sha256, load_weights

ARCHITECTURES = {"vit_small_patch16_384": DEFAULT_SPEC, "tiny": tiny_spec()}


def spec_for(arch: str) -> ModelSpec:
    """The ModelSpec registered under ``arch`` (the CLI's --arch)."""
    if arch not in ARCHITECTURES:
        raise UnknownNameError("architecture", arch, list(ARCHITECTURES))
    return ARCHITECTURES[arch]


__all__ = [
    "ARCHITECTURES", "DEFAULT_SPEC", "FEATURES_NAME", "INPUT_NAME", "LOGITS_NAME", "DetectorModel", "ImageError",
    "LoadedModel", "MissingDependencyError", "ModelSpec", "UnknownNameError", "VitshipError", "WeightsError",
    "WeightsInfo", "file_sha256", "load_image", "load_weights", "preprocess", "sample_images", "spec_for", "tiny_spec",
]
