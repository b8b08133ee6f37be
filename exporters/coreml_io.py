"""What a CoreML artifact takes and says about itself: its Core ML input type, the input spec the manifest records,
and the descriptions and metadata inside the package.

An image input (a CVPixelBuffer) folds the normalisation into ImageType's scale and bias where it can; a tensor
input takes enumerated batch shapes or a RangeDim. ``exporters.coreml`` calls these; its options class
(``CoremlOptions``) decides which.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from vitship.exporters.base import model_metadata, vitship_version
from vitship.exporters.coreml_apple import VISION_CROP_AND_SCALE
from vitship.models import LoadedModel, ModelSpec

if TYPE_CHECKING:
    from vitship.exporters.coreml import CoremlOptions

LICENSE = "MIT"  # the CommunityForensics detector's licence (arXiv:2411.04125)


def image_scale_bias(spec: ModelSpec) -> tuple[float, list[float], bool]:
    """ImageType scale and per-channel bias for ``(pixel * rescale - mean) / std``, and whether that is all of it.

    ImageType has one scale for all channels. With equal stds the whole normalisation folds into
    scale/bias (returns True); otherwise scale/bias only rescale to [0, 1] and the per-channel
    (x - mean) / std stays in the program (returns False).
    """
    if all(math.isclose(s, spec.std[0], rel_tol=1e-6) for s in spec.std):
        return spec.rescale_factor / spec.std[0], [-m / s for m, s in zip(spec.mean, spec.std)], True
    return spec.rescale_factor, [0.0] * spec.channels, False


class PixelNormalize(torch.nn.Module):
    """Wraps the model so that it takes [0, 1] pixels and normalises them per channel inside the graph."""

    def __init__(self, model: torch.nn.Module, spec: ModelSpec):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("inv_std", 1 / torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model((pixel_values - self.mean) * self.inv_std)


def input_type(ct, spec: ModelSpec, options: CoremlOptions):
    channels, height, width = spec.input_shape
    if options.input_kind() == "image":
        # One CVPixelBuffer per prediction; apps batch images with MLArrayBatchProvider.
        scale, bias, _ = image_scale_bias(spec)
        return ct.ImageType(name=spec.input_name, shape=(1, channels, height, width), scale=scale, bias=bias,
                            color_layout=ct.colorlayout.RGB)
    if options.batch == "enumerated":
        shapes = [(n, channels, height, width) for n in sorted(options.batch_shapes)]
        return ct.TensorType(name=spec.input_name, shape=ct.EnumeratedShapes(shapes=shapes, default=shapes[0]),
                             dtype=np.float32)
    batch = ct.RangeDim(lower_bound=1, upper_bound=options.max_batch, default=1, symbol=spec.batch_axis)
    return ct.TensorType(name=spec.input_name, shape=(batch, channels, height, width), dtype=np.float32)


def describe(mlmodel, loaded: LoadedModel, options: CoremlOptions) -> None:
    """Author, licence, description, version, per-feature descriptions and the user-defined metadata."""
    spec, info = loaded.spec, loaded.info
    mlmodel.author = f"vitship {vitship_version()} export of {spec.name} (CommunityForensics, arXiv:2411.04125)"
    mlmodel.license = LICENSE
    mlmodel.version = f"{vitship_version()}+weights.{info.sha256[:12]}"
    trained = "" if info.trained else " UNTRAINED (seeded) weights: not for decisions."
    mlmodel.short_description = (f"{spec.architecture} real/fake image detector ({spec.head_kind} head over "
                                 f"{list(spec.labels)}); outputs logits and {spec.embed_dim}-d features.{trained}")
    channels, height, width = spec.input_shape
    mlmodel.input_description[spec.input_name] = (
        f"{width}x{height} RGB image" if options.input_kind() == "image"
        else f"float32 NCHW ({_batch_words(options)}; {channels}, {height}, {width}): RGB "
             f"{spec.interpolation}-resized, center-cropped, (pixel/255 - {list(spec.mean)}) / {list(spec.std)}")
    mlmodel.output_description[spec.output_names[0]] = (
        f"logits over labels {list(spec.labels)}; " + ("sigmoid gives P(fake)" if spec.head_kind == "sigmoid" else "softmax"))
    mlmodel.output_description[spec.output_names[1]] = f"pre-logits class-token embedding ({spec.embed_dim})"
    preprocessing = {"mean": list(spec.mean), "std": list(spec.std), "size": list(spec.input_shape[1:]),
                     "interpolation": spec.interpolation, "resize": {"mode": spec.resize_mode, "size": list(spec.resize_size)},
                     "crop": list(spec.crop_size) if spec.do_center_crop else None, "rescale_factor": spec.rescale_factor}
    extra = {"precision": options.precision, "compute_precision": "fp32" if options.precision == "fp32" else "fp16",
             "input_type": options.input_kind(), "preprocessing": json.dumps(preprocessing)}
    if options.input_kind() == "image":  # the resize and crop are the app's: Vision's centerCrop is the spec's rule
        extra.update(input_layout="image (CVPixelBuffer, RGB)", input_dtype="uint8", vision_crop_and_scale=VISION_CROP_AND_SCALE)
    for key, value in {**model_metadata(loaded), **extra}.items():
        mlmodel.user_defined_metadata[key] = value


def _batch_words(options: CoremlOptions) -> str:
    if options.batch_kind() == "enumerated":
        return f"batch one of {sorted(options.batch_shapes)}"
    return f"batch 1..{options.max_batch}, Neural Engine at batch 1 only"


def input_spec(spec: ModelSpec, options: CoremlOptions) -> dict:
    channels, height, width = spec.input_shape
    kind = options.input_kind()
    if kind == "image":
        scale, bias, _ = image_scale_bias(spec)
        shape, extra = [1, channels, height, width], {"color_layout": "RGB", "image_scale": scale, "image_bias": bias,
                                                      "batch_shapes": [1]}
    elif options.batch == "enumerated":
        shape, extra = [spec.batch_axis, channels, height, width], {"batch_shapes": sorted(options.batch_shapes)}
    else:
        shape, extra = [spec.batch_axis, channels, height, width], {"batch_range": [1, options.max_batch]}
    return {**spec.to_dict(), "input_type": kind, "input_shape": shape, "dtype": "float32", "layout": "NCHW", **extra}
