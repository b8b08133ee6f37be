"""What the export's int8 gate runs an artifact on: the held-back photos (optionally several views of each), plus noise.

Six held-back photos were too few to predict parity on the 18 bundled ones (issue 22: a gate pass at 0.041,
then 0.064 in parity). The gate now checks many more photos: the select photos, then at confirmation the
confirm photos and every calibration photo (``ladder.export_gated``). Deterministic views of each photo
(mirrored, cropped, brighter, darker, less contrast, grey: ``VIEWS``) were measured as the other way to see
more (docs/MEASUREMENTS.md "int8 verdicts"): they cost up to 8 runs per photo and, for statically
calibrated int8 (OpenVINO), judged views outside the calibrated ranges worse than any real photo, failing
artifacts that parity passes. So the gate runs the photos as they are (``DEFAULT_VIEWS``); ``Int8Gate.views``
takes more. Two random tensors ride along for the noise floor that parity checks too
(models.judgement.NOISE_FLOORS), so that a gate pass predicts every part of parity's verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from vitship.exporters.int8.record import PhotoSet
from vitship.models import ModelSpec, load_image, preprocess

CROP = 0.8  # the crops keep 80% of each side


def _crop(img: Image.Image, corner: str) -> Image.Image:
    width, height = int(img.width * CROP), int(img.height * CROP)
    left, top = (0, 0) if corner == "top-left" else (img.width - width, img.height - height)
    return img.crop((left, top, left + width, top + height))


VIEWS = {
    "photo": lambda img: img,
    "mirrored": ImageOps.mirror,
    "crop top-left": lambda img: _crop(img, "top-left"),
    "crop bottom-right": lambda img: _crop(img, "bottom-right"),
    "brighter": lambda img: ImageEnhance.Brightness(img).enhance(1.3),
    "darker": lambda img: ImageEnhance.Brightness(img).enhance(0.7),
    "low contrast": lambda img: ImageEnhance.Contrast(img).enhance(0.6),
    "grey": lambda img: ImageOps.grayscale(img).convert("RGB"),
}
DEFAULT_VIEWS = ("photo",)
RANDOM_TENSORS = 2
RANDOM_SEED = 22


@dataclass(frozen=True)
class GateInputs:
    """One part's inputs, preprocessed: every view of every photo, then the random tensors."""

    pixels: np.ndarray  # (N, C, H, W) float32
    names: list[str]
    is_photo: np.ndarray
    photos: PhotoSet

    def __len__(self) -> int:
        return len(self.names)


def gate_inputs(spec: ModelSpec, paths: list[Path], names: list[str], role: str, views: tuple[str, ...] = DEFAULT_VIEWS,
                random_tensors: int = RANDOM_TENSORS, as_is: tuple[list[Path], list[str]] = ([], [])) -> GateInputs:
    """Every view in ``views`` of each photo (in that order), the ``as_is`` photos once each, then the noise.

    Args:
        paths, names: the part's photos and the names the record gives them (relative to --calibration).
        role: "select" or "confirm" (the PhotoSet's role).
        as_is: (paths, names) of photos checked once, without views (the calibration photos, at confirm).
    """
    images, labels = [], []
    for path, name in zip(paths, names):
        image = load_image(path)
        for view in views:
            images.append(VIEWS[view](image))
            labels.append(name if view == "photo" else f"{name} ({view})")
    images += [load_image(path) for path in as_is[0]]
    labels += list(as_is[1])
    pixels = preprocess(images, spec) if images else np.zeros((0, *spec.input_shape), np.float32)
    rng = np.random.default_rng(RANDOM_SEED)
    noise = rng.uniform(-1.0, 1.0, size=(random_tensors, *spec.input_shape)).astype(np.float32)
    labels += [f"random-{i}" for i in range(random_tensors)]
    is_photo = np.arange(len(labels)) < len(images)
    record = PhotoSet(role, tuple(names), len(views), random_tensors, tuple(as_is[1]))
    return GateInputs(np.ascontiguousarray(np.concatenate([pixels, noise])), labels, is_photo, record)
