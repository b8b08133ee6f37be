"""Sessions of image-input artifacts: ``run_frames(frames)``, one decoded RGB frame per call, each of its own size.

An image-input artifact (``input_spec["input_type"] == "frame"``: exporters/image_input.py) takes what an app's
camera or decoder gives, a uint8 RGB array ``(height, width, 3)``, and preprocesses it inside. Its session is the
runtime's own session wrapped in a ``FrameSession``:

- ``run_frames(frames)`` checks every frame first (dtype, channels, size limits, the artifact's fixed size where it
  has one) and refuses a bad one with a one-line ``FrameError`` saying what to pass instead, then runs them one per
  call and stacks the outputs. Nothing is converted silently: a grayscale, RGBA or 16-bit frame is what the app
  must convert, and ``vitship.models.load_image`` shows how (vitship's predict, eval and parity decode files with it).
- ``run_outputs(batch)`` / ``run(batch)`` take a preprocessed float NCHW batch, as every session does, and run the
  8-bit frames it was made from (the crop size, so the in-graph resize and crop are the identity): exact for
  photos, which are 8-bit, so the export's int8 gate and any tensor caller still work. A batch of more than one is
  run one frame at a time, or refused (``RuntimeUnavailable``) where the caller asked not to split.

Tensor sessions are unchanged and have no ``run_frames``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vitship.models import LOGITS_NAME, VitshipError
from vitship.runtimes.base import RuntimeUnavailable, SessionWrapper

FRAME_INPUT = "frame"
CONVERT_HINT = "vitship.models.load_image(array) converts any PIL mode or array to 8-bit RGB"


class FrameError(VitshipError):
    """A frame an image-input artifact cannot take (wrong type, channels, dtype or size)."""


def takes_frames(input_spec: dict | None) -> bool:
    """Whether an artifact with this manifest ``input_spec`` takes decoded frames (preprocessing inside)."""
    return (input_spec or {}).get("input_type") == FRAME_INPUT


def tensor_frames(batch: np.ndarray, spec: dict) -> np.ndarray:
    """The 8-bit NHWC RGB frames a normalised NCHW batch came from (``spec``: a manifest input spec)."""
    mean = np.asarray(spec["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec["std"], np.float32).reshape(1, -1, 1, 1)
    pixels = np.clip(np.rint((np.asarray(batch, np.float32) * std + mean) / spec["rescale_factor"]), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


def check_frame(frame, input_spec: dict, index: int = 0) -> np.ndarray:
    """``frame`` as a C-contiguous uint8 (H, W, 3) array, or a FrameError saying what is wrong and what to pass."""
    where = f"frame {index}"
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"{where}: a {type(frame).__name__} is not a frame; pass a numpy uint8 array (height, width, 3), RGB")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 2)):
        raise FrameError(f"{where}: shape {frame.shape} is grayscale; image-input artifacts take RGB (height, width, 3). "
                         + CONVERT_HINT)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise FrameError(f"{where}: shape {frame.shape}; image-input artifacts take one frame (height, width, 3), RGB")
    if frame.shape[2] == 4:
        raise FrameError(f"{where}: 4 channels (RGBA or BGRA); image-input artifacts take RGB: drop or composite the alpha "
                         "channel first. " + CONVERT_HINT)
    if frame.dtype != np.uint8:
        raise FrameError(f"{where}: dtype {frame.dtype}; image-input artifacts take 8-bit RGB (uint8), so a 16-bit or "
                         "float frame must be scaled to 0-255 first. " + CONVERT_HINT)
    check_frame_size(frame.shape[0], frame.shape[1], input_spec, where)
    return np.ascontiguousarray(frame)


def check_frame_size(height: int, width: int, input_spec: dict, where: str = "frame") -> None:
    """Refuse a frame size outside the artifact's limits (``input_spec``'s frame_size, max_frame_side, max_aspect_ratio)."""
    if height < 1 or width < 1:
        raise FrameError(f"{where}: {width}x{height} has no pixels")
    fixed = input_spec.get("frame_size")
    if isinstance(fixed, list) and [height, width] != list(fixed):
        raise FrameError(f"{where}: {width}x{height}; this artifact takes {fixed[1]}x{fixed[0]} frames only (width x height, "
                         "the frame size it was exported for); resize the frame in the app or export for this size")
    largest = int(input_spec.get("max_frame_side") or 0)
    if largest and max(height, width) > largest:
        raise FrameError(f"{where}: {width}x{height} exceeds this artifact's {largest} px per side; downscale it first")
    ratio = float(input_spec.get("max_aspect_ratio") or 0)
    if ratio and max(height, width) > ratio * min(height, width):
        raise FrameError(f"{where}: {width}x{height} has an aspect ratio over {ratio:g}:1 (the resized frame would not fit "
                         "the limits); crop it first")


class FrameSession(SessionWrapper):
    """An image-input artifact's session: ``run_frames`` for frames; ``run_outputs`` for tensors (their own frames).

    Anything else (``info``) is the wrapped runtime session's.
    """

    def __init__(self, session, input_spec: dict, artifact_id: str, split: bool = True):
        super().__init__(session)
        self.input_spec = input_spec
        self._artifact_id = artifact_id
        self._split = split

    def run_frames(self, frames: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Every output by name, one row per frame; every frame is checked before any runs."""
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            raise FrameError("run_frames takes a list of frames; wrap a single frame as [frame]")
        checked = [check_frame(frame, self.input_spec, index) for index, frame in enumerate(frames)]
        if not checked:
            raise FrameError("run_frames: no frames given")
        outputs = [self.session.run_outputs(frame[None]) for frame in checked]
        return {name: np.concatenate([output[name] for output in outputs]) for name in outputs[0]}

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if len(batch) != 1 and not self._split:
            raise RuntimeUnavailable(f"batch {len(batch)}: {self._artifact_id} takes one frame per call (an image-input "
                                     "artifact); time it at batch 1")
        return self.run_frames(list(tensor_frames(batch, self.input_spec)))

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_outputs(batch)[LOGITS_NAME]
