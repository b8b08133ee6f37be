"""Parity's frame inputs: image-input artifacts judged end to end, from the decoded photo to the probability.

An image-input artifact (``runtimes.frames.takes_frames``) is fed what an app feeds it: each photo decoded to 8-bit
RGB at its own size (``models.load_image``), plus seeded random frames of odd sizes (1080x1920, a 1-pixel strip,
smaller than the crop, odd excesses) that exercise the in-graph size arithmetic. The reference is the PyTorch fp32
model fed vitship's Pillow preprocessing of the same frames, so a row measures the in-graph resize, crop and
normalisation and the model's precision together, judged by the end-to-end tolerance (``models.judgement``
``FRAME_TOLERANCES``, docs/DESIGN.md "Parity"). One frame per call, as an app runs it: no batch consistency.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitship.models import IMAGE_SUFFIXES, ModelSpec, VitshipError, image_files, load_image, preprocess, sample_images

# (height, width) of the seeded random frames: a camera frame both ways, a strip (1x10: aspect 10), one smaller
# than the crop (upscaled), odd excesses (half-to-even crop offsets)
RANDOM_FRAME_SIZES = ((1080, 1920), (1920, 1080), (1, 10), (97, 64), (385, 384), (767, 1535))
INPUT_KIND = "frames"


@dataclass
class FrameInputs:
    """The decoded frames (photos first, then seeded random frames) and the reference's outputs on each."""

    frames: list[np.ndarray]
    names: list[str]
    is_photo: np.ndarray
    reference: dict[str, np.ndarray]

    @classmethod
    def build(cls, photos: list[Path], spec: ModelSpec, random_frames: int, seed: int, reference_fn,
              photo_reference: dict[str, np.ndarray] | None = None) -> FrameInputs:
        """The frames and the reference's outputs on them.

        Args:
            reference_fn: ``(float NCHW batch) -> {"logits", "features"}``, the PyTorch reference on Pillow's pixels.
            photo_reference: its outputs on ``photos`` already (the tensor inputs' photos are the same pixels), so that
                only the random frames run; None: every frame runs.
        """
        rng = np.random.default_rng(seed)
        sizes = [RANDOM_FRAME_SIZES[i % len(RANDOM_FRAME_SIZES)] for i in range(random_frames)]
        frames = [np.asarray(load_image(p)) for p in photos]
        frames += [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in sizes]
        names = [Path(p).name for p in photos] + [f"random-frame-{h}x{w}" for h, w in sizes]
        done = len(photos) if photo_reference is not None else 0
        fresh = reference_fn(np.concatenate([preprocess(frame, spec) for frame in frames[done:]])) if frames[done:] else {}
        reference = fresh
        if done:
            reference = {k: np.concatenate([v[:done], *([fresh[k]] if fresh else [])]) for k, v in photo_reference.items()}
        return cls(frames, names, np.arange(len(names)) < len(photos), reference)

    def arrays(self) -> dict[str, np.ndarray]:
        """What ``save`` writes into the parity data file (frames keep their own shapes)."""
        return {**{f"frame.{i}": frame for i, frame in enumerate(self.frames)}, "frame_names": np.array(self.names),
                "frame_is_photo": self.is_photo, **{f"frame_reference.{k}": v for k, v in self.reference.items()}}

    @classmethod
    def from_arrays(cls, data) -> FrameInputs | None:
        if "frame_names" not in data.files:
            return None
        names = [str(n) for n in data["frame_names"]]
        reference = {k.split(".", 1)[1]: data[k] for k in data.files if k.startswith("frame_reference.")}
        return cls([data[f"frame.{i}"] for i in range(len(names))], names, data["frame_is_photo"], reference)

    def sizes(self) -> list[str]:
        return [f"{frame.shape[1]}x{frame.shape[0]}" for frame in self.frames]


def parity_photos(limit: int | None = None, data_dir: str | Path | None = None) -> list[Path]:
    """The bundled photos (the first ``limit``), then every image in ``data_dir`` (parity's --data)."""
    extra = image_files(Path(data_dir).expanduser()) if data_dir else []
    if data_dir and not extra:
        raise VitshipError(f"--data {data_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) found there")
    return sample_images(limit) + extra
