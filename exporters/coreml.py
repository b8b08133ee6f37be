"""CoreML export: ML Program .mlpackage (fp32, fp16, int8 weights) from a torch.export program.

Two registered names share this module: ``coreml`` (fp16/int8 take an RGB image at batch 1, what the
Neural Engine and Vision run; fp32 is the exact reference, not for the Neural Engine) and ``coreml-tensor``
(the float tensor with enumerated batches 1, 2, 4, 8). A RangeDim batch stays behind ``batch="range"``:
the Neural Engine runs it only at its default shape. Every artifact records ``details.apple``.
The input side (Core ML input types, the input spec, the descriptions and metadata in the package) lives in
``exporters/coreml_io.py``, what it promises an iPhone in ``exporters/coreml_apple.py``.

torch.export, not torch.jit.trace: coremltools' TorchScript frontend fails on this two-output ViT.

Labels: ct.ClassifierConfig would replace the outputs with classLabel + a probability dictionary and
drop ``features``, and a one-logit sigmoid head is not a classifier Core ML understands. So the
model keeps its two tensor outputs and the labels travel in the user-defined metadata (``labels``,
JSON) and in the ``logits`` output description.
"""

from __future__ import annotations

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
    package_versions,
    path_sha256,
    path_size,
)
from vitship.exporters.coreml_apple import NOT_FOR_NEURAL_ENGINE, apple_details, batch_shapes_label, mil_op_counts
from vitship.exporters.coreml_io import PixelNormalize, describe, image_scale_bias, input_spec, input_type
from vitship.exporters.details import CoremlDetails, CoremlQuantization
from vitship.exporters.int8.options import Int8Options, check_int8_options, linear_modules, model_to_quantize
from vitship.models import LoadedModel, MissingDependencyError, UnknownNameError

FORMAT = "coreml"
PACKAGE_NAME = "model.mlpackage"
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
        program, inputs=[input_type(ct, loaded.spec, options)],
        outputs=[ct.TensorType(name=name, dtype=np.float32) for name in loaded.spec.output_names],  # fp32 out at any precision
        convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, options.min_target),
        compute_precision=ct.precision.FLOAT32 if options.precision == "fp32" else ct.precision.FLOAT16,
    )
    if options.precision == "int8":
        mlmodel = _quantize_weights(mlmodel, tuple(linear_modules(source, options.keep_float)))
    describe(mlmodel, loaded, options)
    package = Path(out_dir) / PACKAGE_NAME
    mlmodel.save(str(package))
    aid = artifact_id(options.name, options.precision)
    details = _details(mlmodel, options, normalisation, reused)
    details.export_form = options.export_form()
    if options.precision == "int8":
        details.smoothing = smoothing
    return Artifact(
        id=aid, format=FORMAT, precision=options.precision, path=f"{aid}/{PACKAGE_NAME}", sha256=path_sha256(package),
        size_bytes=path_size(package), export_seconds=round(time.perf_counter() - start, 3),
        versions=package_versions("coremltools", "torch"), input_spec=input_spec(loaded.spec, options),
        weights=loaded.info.to_dict(), calibration=None, options=options.cache_key(), details=details,
    )


def _details(mlmodel, options: CoremlOptions, normalisation: str | None, reused: bool) -> CoremlDetails:
    ops = mil_op_counts(mlmodel.get_spec())
    compute = "fp32" if options.precision == "fp32" else "fp16"
    kind = options.batch_kind()
    apple = apple_details(compute_precision=compute, input_kind=options.input_kind(), batch_kind=kind,
                          batch_shapes=batch_shapes_label(kind, options.batch_shapes, options.max_batch),
                          min_target=options.min_target, op_counts=ops)
    quantization = CoremlQuantization(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                      op_types=list(INT8_OP_TYPES), min_elements=INT8_MIN_ELEMENTS, base_program="fp16")
    return CoremlDetails(
        source="torch.export ExportedProgram (ATEN dialect)", minimum_deployment_target=options.min_target,
        compute_precision=compute, mil_ops=ops, apple=apple,
        labels_in="user_defined_metadata['labels'] and the logits output description (no ClassifierConfig)",
        label=f"exact reference, {NOT_FOR_NEURAL_ENGINE}" if compute == "fp32" else None,
        image_normalisation=normalisation, quantization=quantization if options.precision == "int8" else None,
        torch_export="reused from this run" if reused else None)


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
