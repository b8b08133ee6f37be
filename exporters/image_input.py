"""Image-input ("frame") artifacts: a decoded camera frame in, the spec's preprocessing and the model inside.

An app hands the model what its camera or decoder gives: one RGB frame, uint8, NHWC ``[1, height, width, 3]``,
of any size within the limits below. Inside the artifact runs what ``models/preprocess.py`` does with Pillow:
the resize (shortest edge to ``resize_size``, the spec's interpolation, antialiased as Pillow does), the center
crop, the scale and the normalisation, then the model. Each format builds it with its own operators:
``onnx_image`` (Resize-18 with ``antialias``), ``openvino_image`` (PrePostProcessor around Interpolate-11's
``bicubic_pillow``), ``torch_image`` (LiteRT and ExecuTorch: Pillow's own filter taps, at a frame size fixed at
export). The resize runs as Pillow runs it: the horizontal pass, rounded to 8 bits, then the vertical pass,
rounded again, so that the artifact sees the pixels vitship's Pillow preprocessing makes (parity measures how far
each runtime is from it: docs/DESIGN.md "Parity").

The limits bound what the in-graph resize allocates (a 1 x 8000 strip would resize to 384 x 3 M pixels) and are
written into every image artifact (metadata and the manifest's ``input_spec``); vitship's sessions refuse a frame
outside them with a one-line error (``runtimes/frames.py``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from vitship.exporters.base import Artifact, ExportError, artifact_id, path_sha256, path_size
from vitship.models import ModelSpec

INPUT_TYPE = "frame"  # input_spec["input_type"] of these artifacts (tensor: NCHW float; image: CoreML's 384x384 image)
FRAME_INPUT_NAME = "image"
MAX_FRAME_SIDE = 8192  # pixels per side: an 8K frame (7680 x 4320) fits
MAX_ASPECT_RATIO = 16.0  # long side / short side: the resized frame stays within 384 x 6144
RESIZE_FILTERS = ("bicubic", "bilinear")  # Pillow filters every image runtime reproduces (antialiased)


def check_spec(spec: ModelSpec, name: str) -> None:
    """Refuse a spec whose preprocessing the in-graph resize cannot reproduce, before any work."""
    if spec.channels != 3:
        raise ExportError(f"{name}: an RGB frame input needs a 3-channel model; this one has {spec.channels}")
    if spec.interpolation not in RESIZE_FILTERS:
        raise ExportError(f"{name}: the in-graph resize reproduces Pillow's {' and '.join(RESIZE_FILTERS)} filters, "
                          f"not {spec.interpolation!r}; export the tensor-input artifact and resize in the app")
    if spec.do_center_crop and spec.resize_mode == "shortest_edge" and spec.crop_size[0] > spec.resize_size[0]:
        raise ExportError(f"{name}: a crop {spec.crop_size} larger than the resized short side {spec.resize_size[0]} "
                          "would pad; the frame input supports crops inside the resized frame")


def preprocessing_facts(spec: ModelSpec) -> dict:
    """What the artifact does to a frame, in order (the same words for every format's metadata)."""
    height, width = spec.input_shape[1:]
    resize = (f"shortest edge to {spec.resize_size[0]} (long edge truncated)" if spec.resize_mode == "shortest_edge"
              else f"to {spec.resize_size[0]}x{spec.resize_size[1]} (height x width)")
    return {
        "resize": f"{resize}, {spec.interpolation}, antialiased, Pillow-compatible: horizontal then vertical pass, "
                  "each rounded to 8 bits",
        "center_crop": f"{height}x{width}" if spec.do_center_crop else None,
        "scale": spec.rescale_factor, "mean": list(spec.mean), "std": list(spec.std),
        "then": f"the model: float32 NCHW [1, 3, {height}, {width}]",
    }


def frame_input_spec(spec: ModelSpec, frame_size: tuple[int, int] | None = None) -> dict:
    """The manifest's ``input_spec`` of a frame artifact: the input, its limits and the preprocessing inside.

    Args:
        frame_size: (height, width) of the only frame size the artifact takes (LiteRT, ExecuTorch); None: any
            size within ``MAX_FRAME_SIDE`` and ``MAX_ASPECT_RATIO``.
    """
    shape = [1, *(frame_size or ("height", "width")), spec.channels]
    return {**spec.to_dict(), "input_type": INPUT_TYPE, "input_name": FRAME_INPUT_NAME, "input_shape": shape,
            "dtype": "uint8", "layout": "NHWC", "color_layout": "RGB", "batch_shapes": [1],
            "frame_size": list(frame_size) if frame_size else "any", "max_frame_side": MAX_FRAME_SIDE,
            "max_aspect_ratio": MAX_ASPECT_RATIO, "preprocessing": preprocessing_facts(spec)}


def frame_metadata(spec: ModelSpec, frame_size: tuple[int, int] | None = None) -> dict[str, str]:
    """The input facts every frame artifact carries in its own metadata (strings; lists and dicts as JSON)."""
    facts = frame_input_spec(spec, frame_size)
    return {"input_type": INPUT_TYPE, "input_name": FRAME_INPUT_NAME, "input_layout": "NHWC", "input_dtype": "uint8",
            "color_layout": "RGB", "input_shape": json.dumps(facts["input_shape"]),
            "frame_size": json.dumps(facts["frame_size"]), "max_frame_side": str(MAX_FRAME_SIDE),
            "max_aspect_ratio": repr(MAX_ASPECT_RATIO), "preprocessing_inside": json.dumps(facts["preprocessing"])}


def describe(spec: ModelSpec, frame_size: tuple[int, int] | None = None) -> str:
    """One line for ``details``: the input and the preprocessing inside."""
    size = f"{frame_size[0]}x{frame_size[1]}" if frame_size else f"any size up to {MAX_FRAME_SIDE} px a side"
    return (f"uint8 RGB frame, NHWC [1, H, W, 3], {size}; inside: {preprocessing_facts(spec)['resize']}, center crop, "
            f"x * {spec.rescale_factor:.6g}, (x - {list(spec.mean)}) / {list(spec.std)}")


def frame_artifact(tensor: Artifact, options, spec: ModelSpec, path: Path, started: float, details: dict,
                   min_runtime_versions: dict[str, str]) -> Artifact:
    """The image variant's Artifact: the tensor artifact's record (versions, weights, calibration, details) at its own
    id and path, with the frame input spec; ``started`` is the export's ``time.perf_counter()`` at its start.

    Args:
        details: fields of the format's details class (exporters/details.py) that the image variant sets or replaces.
    """
    aid = artifact_id(options.name, options.precision)
    return Artifact(
        id=aid, format=tensor.format, precision=options.precision, path=f"{aid}/{Path(path).name}", sha256=path_sha256(path),
        size_bytes=path_size(path), export_seconds=round(time.perf_counter() - started, 3), versions=tensor.versions,
        input_spec=frame_input_spec(spec), weights=tensor.weights, calibration=tensor.calibration,
        options=options.cache_key(), details=dataclasses.replace(tensor.details, input=describe(spec), **details),
        min_runtime_versions=min_runtime_versions,
    )
