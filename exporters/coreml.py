"""CoreML export: ML Program .mlpackage (fp32, fp16, int8 weights) from a torch.export program.

Two registered names share this module: ``coreml`` (fp16/int8 take an RGB image at batch 1, what the
Neural Engine and Vision run; fp32 is the exact reference, not for the Neural Engine) and ``coreml-tensor``
(the float tensor with enumerated batches 1, 2, 4, 8). A RangeDim batch stays behind ``batch="range"``:
the Neural Engine runs it only at its default shape. Every artifact records ``details["apple"]``.

torch.export, not torch.jit.trace: coremltools' TorchScript frontend fails on this two-output ViT.

Labels: ct.ClassifierConfig would replace the outputs with classLabel + a probability dictionary and
drop ``features``, and a one-logit sigmoid head is not a classifier Core ML understands. So the
model keeps its two tensor outputs and the labels travel in the user-defined metadata (``labels``,
JSON) and in the ``logits`` output description.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from vitship.exporters.base import (
    Artifact,
    ExportError,
    TraceCache,
    artifact_id,
    model_metadata,
    package_versions,
    path_sha256,
    path_size,
    vitship_version,
)
from vitship.exporters.coreml_apple import NOT_FOR_NEURAL_ENGINE, apple_details, batch_shapes_label, mil_op_counts
from vitship.exporters.int8 import Int8Options, check_int8_options, linear_modules, model_to_quantize
from vitship.models import LoadedModel, MissingDependencyError, ModelSpec, UnknownNameError

FORMAT = "coreml"
PACKAGE_NAME = "model.mlpackage"
LICENSE = "MIT"  # the CommunityForensics detector's licence (arXiv:2411.04125)
# int8 weights only where the model multiplies by them (linear, conv): the position embedding and class
# token feed an `add`, and quantizing them saves ~1% of the size for a systematic error on every token.
INT8_OP_TYPES = ("linear", "conv")
INT8_MIN_ELEMENTS = 2048  # coremltools' default: smaller consts (biases, norms) stay in float
INPUTS = ("auto", "image", "tensor")
BATCH_KINDS = ("enumerated", "range")


@dataclass(frozen=True)
class CoremlOptions(Int8Options):
    """coreml-* options (each artifact's rebuild key).

    By default fp16 and int8 take an RGB image (a CVPixelBuffer, normalisation folded into scale and bias) at
    a fixed batch of 1, what a Vision / Core ML app feeds the Neural Engine. fp32 is the exact reference and
    takes the normalised float tensor: an 8-bit image would round every random parity input.

    Attributes:
        input: auto (image for fp16/int8, tensor for fp32), image, or tensor.
        batch: a tensor input's batch: enumerated (``batch_shapes``, which the Neural Engine runs) or range
            (RangeDim 1..``max_batch``: the Neural Engine runs it only at its default shape, batch 1).
        batch_shapes: the enumerated batch sizes.
        max_batch: the RangeDim upper bound (batch="range" only).
        min_target: the minimum deployment target (iOS17: the oldest that runs int8-weight ML Programs well).
    """

    name: ClassVar[str] = "coreml"  # the registry name: artifact ids are <name>-<precision>
    input: Literal["auto", "image", "tensor"] = "auto"
    batch: Literal["enumerated", "range"] = "enumerated"
    batch_shapes: tuple[int, ...] = (1, 2, 4, 8)
    max_batch: int = 64
    min_target: str = "iOS17"

    def input_kind(self) -> str:
        if self.input == "auto":
            return "tensor" if self.precision == "fp32" else "image"
        return self.input

    def batch_kind(self) -> str:
        return "fixed" if self.input_kind() == "image" else self.batch

    def cache_key(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in super().cache_key().items()}


@dataclass(frozen=True)
class CoremlTensorOptions(CoremlOptions):
    """coreml-tensor-*: the float tensor input with enumerated batches (1, 2, 4, 8), for batched work on device."""

    name: ClassVar[str] = "coreml-tensor"
    input: Literal["auto", "image", "tensor"] = "tensor"


Options = CoremlOptions


def export(loaded: LoadedModel, out_dir: Path, options: CoremlOptions, cache: TraceCache | None = None) -> Artifact:
    """Convert ``loaded.model`` to an ML Program ``model.mlpackage`` in ``out_dir``.

    fp32/fp16 set the compute precision; int8 is linear symmetric int8 weight quantization of the fp16
    program (weights dequantize to fp16, so it still runs on the Neural Engine).
    """
    ct = _import_coremltools()
    check_options(ct, options)
    check_int8_options(options.name, options)
    start = time.perf_counter()
    source, trace_cache, smoothing = model_to_quantize(loaded, options, cache or TraceCache())
    program, normalisation, reused = _export_program(source, options, trace_cache)
    mlmodel = ct.convert(
        program, inputs=[_input_type(ct, loaded.spec, options)],
        outputs=[ct.TensorType(name=name, dtype=np.float32) for name in loaded.spec.output_names],  # fp32 out at any precision
        convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, options.min_target),
        compute_precision=ct.precision.FLOAT32 if options.precision == "fp32" else ct.precision.FLOAT16,
    )
    if options.precision == "int8":
        mlmodel = _quantize_weights(mlmodel, tuple(linear_modules(source, options.keep_float)))
    _describe(mlmodel, loaded, options)
    package = Path(out_dir) / PACKAGE_NAME
    mlmodel.save(str(package))
    aid = artifact_id(options.name, options.precision)
    details = _details(mlmodel, options, normalisation) | ({"torch_export": "reused from this run"} if reused else {})
    details["export_form"] = options.export_form().to_dict()
    if options.precision == "int8":
        details["int8"] = {"smoothing": smoothing or "off", "keep_float": list(options.keep_float)}
    return Artifact(
        id=aid, format=FORMAT, precision=options.precision, path=f"{aid}/{PACKAGE_NAME}", sha256=path_sha256(package),
        size_bytes=path_size(package), export_seconds=round(time.perf_counter() - start, 3),
        versions=package_versions("coremltools", "torch"), input_spec=_input_spec(loaded.spec, options),
        weights=loaded.info.to_dict(), calibration=None, options=options.cache_key(), details=details,
    )


def _details(mlmodel, options: CoremlOptions, normalisation: str | None) -> dict:
    ops = mil_op_counts(mlmodel.get_spec())
    compute = "fp32" if options.precision == "fp32" else "fp16"
    kind = options.batch_kind()
    apple = apple_details(compute_precision=compute, input_kind=options.input_kind(), batch_kind=kind,
                          batch_shapes=batch_shapes_label(kind, options.batch_shapes, options.max_batch),
                          min_target=options.min_target, op_counts=ops)
    details = {"source": "torch.export ExportedProgram (ATEN dialect)", "minimum_deployment_target": options.min_target,
               "compute_precision": compute, "mil_ops": ops, "apple": apple,
               "labels_in": "user_defined_metadata['labels'] and the logits output description (no ClassifierConfig)"}
    if compute == "fp32":
        details["label"] = f"exact reference, {NOT_FOR_NEURAL_ENGINE}"
    if normalisation:
        details["image_normalisation"] = normalisation
    if options.precision == "int8":
        details["weight_quantization"] = {"mode": "linear_symmetric", "dtype": "int8", "granularity": "per_channel",
                                          "op_types": list(INT8_OP_TYPES), "min_elements": INT8_MIN_ELEMENTS,
                                          "base_program": "fp16"}
    return details


def _import_coremltools():
    try:
        import coremltools
    except ImportError as err:
        raise MissingDependencyError("coremltools", "CoreML export") from err
    return coremltools


def deployment_targets(ct) -> list[str]:
    """The deployment targets this coremltools knows that can hold an ML Program (iOS15 / macOS12 and later)."""
    return [name for name, target in ct.target.__members__.items() if target.value >= ct.target.iOS15.value]


def check_options(ct, options: CoremlOptions) -> None:
    """Refuse options that cannot make this artifact, before any work (the CLI calls it too)."""
    if options.precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"coreml: unsupported precision {options.precision!r}; use fp32, fp16 or int8")
    if options.min_target not in deployment_targets(ct):
        raise UnknownNameError("CoreML deployment target", options.min_target, deployment_targets(ct))
    if options.input not in INPUTS:
        raise UnknownNameError("CoreML input type", options.input, list(INPUTS))
    if options.batch not in BATCH_KINDS:
        raise UnknownNameError("CoreML batch kind", options.batch, list(BATCH_KINDS))
    if options.name == CoremlTensorOptions.name and options.input_kind() != "tensor":
        raise ExportError(f"{options.name}: this variant takes a tensor input (the image variant is coreml-fp16/int8)")
    if options.batch == "range" and options.max_batch < 2:
        raise ExportError(f"coreml: --coreml-max-batch must be 2 or more (got {options.max_batch})")
    shapes = options.batch_shapes
    if not shapes or any(not isinstance(n, int) or n < 1 for n in shapes) or len(set(shapes)) != len(shapes):
        raise ExportError(f"coreml: --coreml-batch-shapes must be distinct positive batch sizes (got {list(shapes)})")
    if options.batch == "enumerated" and 1 not in shapes:
        raise ExportError(f"coreml: enumerated batch shapes {list(shapes)} must include 1, the shape an app predicts with")


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


def _export_program(loaded: LoadedModel, options: CoremlOptions, cache: TraceCache):
    """The torch.export program (dynamic batch), shared through ``cache`` by every coreml artifact of a run.

    The batch stays dynamic whatever the artifact's input (image at batch 1, enumerated, range): the Core ML
    input type given to ct.convert fixes the shapes, so one program serves them all. Example batch 2+: a
    size-1 dim would be specialised.
    """
    spec, model, normalisation = loaded.spec, loaded.model.with_form(options.export_form()), None
    if options.input_kind() == "image":
        if spec.channels != 3:
            raise ExportError(f"coreml: an image input needs 3 (RGB) channels, the model has {spec.channels}")
        if not image_scale_bias(spec)[2]:
            model = PixelNormalize(model, spec).eval()
            normalisation = "stds differ per channel: ImageType scale/bias give [0, 1]; (x - mean) / std runs in the program"
        else:
            normalisation = "folded into ImageType scale and bias"
    upper = max(options.max_batch, *options.batch_shapes, 2)

    def make():
        example = torch.randn(min(max(options.example_batch, 2), upper), *spec.input_shape,
                              generator=torch.Generator().manual_seed(0))
        batch = torch.export.Dim(spec.batch_axis, min=1, max=upper)
        try:
            program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        except Exception as err:  # torch.export raises many types for untraceable code; all mean "cannot export"
            raise ExportError(f"coreml: torch.export failed ({type(err).__name__}: {str(err).splitlines()[0][:300]})") from err
        return program.run_decompositions({})

    key = (FORMAT, loaded.info.sha256, spec, isinstance(model, PixelNormalize), upper, options.example_batch, options.export_form())
    program, reused = cache.get(key, make)
    return program, normalisation, reused


def _input_type(ct, spec: ModelSpec, options: CoremlOptions):
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


def _quantize_weights(mlmodel, keep_float: tuple[str, ...] = ()):
    """int8 per-channel symmetric weights for the consts that only feed linear/conv ops (``keep_float`` stay fp16).

    Selected by name (get_weights_metadata) rather than by op type: the converter de-duplicates equal
    constants, so one zero bias can feed both a layer_norm and a linear, and an op-type config then
    raises a "compression config conflict".
    """
    from coremltools.optimize.coreml import (
        OpLinearQuantizerConfig,
        OptimizationConfig,
        get_weights_metadata,
        linear_quantize_weights,
    )

    config = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                     weight_threshold=INT8_MIN_ELEMENTS)
    weights = get_weights_metadata(mlmodel, weight_threshold=INT8_MIN_ELEMENTS)
    kept = tuple(f"vit_{name.replace('.', '_')}_weight" for name in keep_float)  # MIL const names of those weights
    names = [name for name, meta in weights.items() if all(child.op_type in INT8_OP_TYPES for child in meta.child_ops)
             and not any(tag in name for tag in kept)]
    if not names:
        raise ExportError("coreml: no linear/conv weights large enough to quantize to int8")
    return linear_quantize_weights(mlmodel, OptimizationConfig(op_name_configs={name: config for name in names}))


def _describe(mlmodel, loaded: LoadedModel, options: CoremlOptions) -> None:
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
    for key, value in {**model_metadata(loaded), **extra}.items():
        mlmodel.user_defined_metadata[key] = value


def _batch_words(options: CoremlOptions) -> str:
    if options.batch_kind() == "enumerated":
        return f"batch one of {sorted(options.batch_shapes)}"
    return f"batch 1..{options.max_batch}, Neural Engine at batch 1 only"


def _input_spec(spec: ModelSpec, options: CoremlOptions) -> dict:
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
