"""ModelSpec: the model's I/O facts, declared once and read by every exporter, runtime and preprocessor."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

HeadKind = Literal["sigmoid", "softmax"]
ResizeMode = Literal["shortest_edge", "exact"]

INPUT_NAME = "pixel_values"
LOGITS_NAME = "logits"
FEATURES_NAME = "features"
OUTPUT_NAMES = (LOGITS_NAME, FEATURES_NAME)
BATCH_AXIS = "batch"


@dataclass(frozen=True)
class ModelSpec:
    """Everything downstream code needs to know about the model's inputs and outputs.

    Preprocessing: resize (``resize_mode`` "shortest_edge" scales the short side to
    ``resize_size[0]``; "exact" resizes to ``resize_size`` as (height, width)), then center-crop
    to ``crop_size`` if ``do_center_crop``, scale by ``rescale_factor``, normalise with
    ``mean``/``std`` and lay out as NCHW float32.
    """

    name: str = "communityforensics-deepfakedet-vit"
    architecture: str = "vit_small_patch16_384"
    image_size: int = 384
    patch_size: int = 16
    channels: int = 3
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_dim: int = 1536
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    act: str = "gelu"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    resize_mode: ResizeMode = "shortest_edge"
    resize_size: tuple[int, int] = (384, 384)
    do_center_crop: bool = True
    crop_size: tuple[int, int] = (384, 384)
    rescale_factor: float = 1 / 255
    labels: tuple[str, ...] = ("fake",)
    head_kind: HeadKind = "sigmoid"
    input_name: str = INPUT_NAME
    output_names: tuple[str, ...] = OUTPUT_NAMES
    batch_axis: str = BATCH_AXIS

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one preprocessed image."""
        return (self.channels, self.crop_size[0], self.crop_size[1]) if self.do_center_crop else (
            self.channels, self.resize_size[0], self.resize_size[1])

    @property
    def fake_index(self) -> int:
        """Index of the 'fake' class in the logits (for sigmoid heads, the single logit)."""
        for i, label in enumerate(self.labels):
            if "fake" in label.lower() or "synthetic" in label.lower() or "generated" in label.lower():
                return i
        return self.num_classes - 1

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
        return cls(**kwargs)


DEFAULT_SPEC = ModelSpec()


def tiny_spec(image_size: int = 64, patch_size: int = 16, num_labels: int = 1) -> ModelSpec:
    """A tiny ViT with the default model's shape conventions, for fast mechanics tests."""
    labels = ("fake",) if num_labels == 1 else ("real", "fake")
    return ModelSpec(
        name="tiny-vit",
        architecture="vit_tiny_test",
        image_size=image_size,
        patch_size=patch_size,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_dim=64,
        resize_size=(image_size, image_size),
        crop_size=(image_size, image_size),
        labels=labels,
        head_kind="sigmoid" if num_labels == 1 else "softmax",
    )
