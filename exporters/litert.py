"""LiteRT export: a ``.tflite`` flatbuffer (fp32, fp16 weights, int8) converted by litert-torch, quantized by ai-edge-quantizer.

LiteRT (formerly TensorFlow Lite) is what Android apps ship beside ExecuTorch. Its XNNPACK CPU kernels run
here through ai-edge-litert (``runtimes.litert_rt``), the x86 builds of the same operators a phone runs.

Every precision starts from one fp32 conversion (``litert_torch.convert``, shared by a run's precisions
through the TraceCache). fp16 casts the weights to float16 (weight-only ``FLOAT_CASTING``; XNNPACK computes in
fp32 on a CPU, a GPU delegate in fp16). int8 is chosen by measurement (``INT8_CHOICE``).

The program takes a fixed batch of 1 (litert-torch specialises the batch, and XNNPACK cannot reshape its
graph afterwards), as an app classifies one camera frame at a time: ``input_spec["batch_shapes"] == [1]``,
so parity and bench feed a larger batch one image at a time, as for executorch-coreml-fp16.

The signature is ``serving_default``: input ``pixel_values`` (NCHW float32, normalised) or, with
``input="image"``, ``image`` (NHWC uint8 RGB, normalisation inside the graph, what an Android camera
pipeline hands over); outputs ``logits`` and ``features``. Labels and preprocessing travel inside the file
as TFLite model metadata (``Model.metadata`` entry ``METADATA_NAME``, a JSON object; ``read_metadata``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from vitship.exporters.base import (
    INT8_ONLY,
    Artifact,
    ExportError,
    TraceCache,
    artifact_id,
    model_metadata,
    package_versions,
    path_sha256,
    path_size,
)
from vitship.exporters.details import LitertDetails
from vitship.exporters.int8.litert_recipe import INT8_MODES, quantize, quantize_int8
from vitship.exporters.int8.options import Int8Options, check_int8_options, linear_modules, model_to_quantize
from vitship.models import MissingDependencyError, UnknownNameError
from vitship.models.export_form import ExportForm
from vitship.models.quiet import quiet_output

if TYPE_CHECKING:
    from vitship.models import LoadedModel

MODEL_FILE = "model.tflite"
SIGNATURE = "serving_default"
METADATA_NAME = "vitship"  # the Model.metadata entry that holds model_metadata() as JSON
INPUT_KINDS = ("tensor", "image")
PIP_NAME = "'litert-torch==0.10.0' 'ai-edge-litert>=2.3,<2.4' 'ai-edge-quantizer==0.10.*'"


@dataclass(frozen=True)
class LitertOptions(Int8Options):
    """litert-* options (each artifact's rebuild key).

    ``smooth_alpha`` stays None: litert-torch folds each LayerNorm's affine into the next Linear, which undoes the
    SmoothQuant fold (``exporters.int8.litert_recipe``), so the int8 capabilities declare no smoothing and the
    ladder goes from the requested recipe to the Linears kept in float (``keep_float``, by per-op recipe).

    Attributes:
        input: tensor (``pixel_values``, NCHW float32, normalised, as the other formats) or image (``image``,
            NHWC uint8 RGB; the normalisation runs inside the graph). On the ViT-S both ran at the same speed
            on XNNPACK (fp32, batch 1: p50 500 vs 519 ms in one interleaved run), so tensor is the default and
            image is offered for camera pipelines that hand over RGB bytes.
        int8_mode: dynamic (int8 weights, activations quantized to int8 per inference) or weight-only (int8
            weights dequantized to fp32 at load; fp32 compute).
    """

    name: ClassVar[str] = "litert"
    format: ClassVar[str] = "litert"
    input: Literal["tensor", "image"] = "tensor"
    int8_mode: Literal["dynamic", "weight-only"] = field(default="dynamic", metadata=INT8_ONLY)
    smooth_alpha: float | None = field(default=None, metadata=INT8_ONLY)
    # the last block for the class token only (models.export_form): off for LiteRT. On, dynamic int8's feature cosine
    # fell from 0.9999 to 0.902 on the tiny seeded-outliers model without the SmoothQuant fold; one form for every
    # precision keeps int8 converting from fp32's graph (one conversion, not two) and lets `vitship diagnose` match
    # an int8's tensors to its fp32 sibling's by name
    class_token_tail: bool = False
    attention: Literal["fused", "explicit"] = "fused"  # the export form's attention (models.export_form)

    def export_form(self) -> ExportForm:
        return ExportForm(attention=self.attention, class_token_tail=self.class_token_tail)


Options = LitertOptions


def export(loaded: LoadedModel, out_dir: Path, options: LitertOptions, cache: TraceCache | None = None) -> Artifact:
    """Convert ``loaded.model`` to ``out_dir/model.tflite`` at ``options.precision``."""
    check_options(options)
    _import_backends()
    start = time.perf_counter()
    source, run_cache, smoothing = model_to_quantize(loaded, options, cache or TraceCache())
    fp32, reused = _fp32_flatbuffer(source, options, run_cache)
    details = LitertDetails(converter="litert_torch.convert", signature=SIGNATURE, batch_shapes=[1],
                            source="fp32 flatbuffer" + (" (reused from this run)" if reused else ""),
                            metadata=f"TFLite Model.metadata entry {METADATA_NAME!r} (JSON)", export_form=options.export_form())
    model = fp32
    if options.precision == "fp16":
        model = quantize(fp32, _fp16_recipe())
        details.fp16 = "weights cast to float16 (ai-edge-quantizer FLOAT_CASTING, weight-only); compute stays fp32 on XNNPACK CPU"
    elif options.precision == "int8":
        model, details.quantization = quantize_int8(fp32, options.int8_mode, tuple(linear_modules(loaded, options.keep_float)))
        details.smoothing = smoothing  # always None: litert takes no fold (Int8Capabilities.smoothing)
    path = Path(out_dir) / MODEL_FILE
    path.write_bytes(_with_metadata(model, _metadata(loaded, options)))
    aid = artifact_id(options.name, options.precision)
    return Artifact(
        id=aid, format=options.format, precision=options.precision, path=f"{aid}/{MODEL_FILE}", sha256=path_sha256(path),
        size_bytes=path_size(path), export_seconds=round(time.perf_counter() - start, 3),
        versions=package_versions("litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torch"),
        input_spec=_input_spec(loaded, options), weights=loaded.info.to_dict(), calibration=None,
        options=options.cache_key(), details=details, min_runtime_versions={"ai-edge-litert": "2.3"},
    )


def check_options(options: LitertOptions) -> None:
    """Refuse options that cannot make this artifact, before any work (the CLI calls it too)."""
    if options.precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"litert: unsupported precision {options.precision!r}; use fp32, fp16 or int8")
    if options.int8_mode not in INT8_MODES:
        raise UnknownNameError("LiteRT int8 mode", options.int8_mode, list(INT8_MODES))
    if options.input not in INPUT_KINDS:
        raise UnknownNameError("LiteRT input", options.input, list(INPUT_KINDS))
    check_int8_options("litert", options)


def _import_backends() -> None:
    try:
        with quiet_output():  # absl's and oneDNN's lines at import
            import ai_edge_quantizer  # noqa: F401
            import litert_torch  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError("litert-torch", "LiteRT export", PIP_NAME) from err


def _fp32_flatbuffer(loaded: LoadedModel, options: LitertOptions, cache: TraceCache) -> tuple[bytes, bool]:
    """The fp32 ``.tflite`` bytes, converted once per (weights, input kind) and shared by a run's precisions."""
    key = ("litert", loaded.info.sha256, loaded.spec, options.input, options.export_form())
    return cache.get(key, lambda: convert_fp32(loaded, options.input, loaded.model.with_form(options.export_form())))


def convert_fp32(loaded: LoadedModel, input_kind: str = "tensor", model=None) -> bytes:
    """litert_torch.convert of the (optionally substituted) ``model`` at batch 1; returns the flatbuffer bytes."""
    import tempfile

    import torch

    with quiet_output():  # absl/oneDNN lines on import and the converter's own step-by-step progress
        import litert_torch

    wrapped, name, example = named_module(model or loaded.model, loaded.spec, input_kind)
    try:
        with quiet_output():
            edge = litert_torch.convert(wrapped.eval(), sample_kwargs={name: example})
    except Exception as err:  # the converter raises many types for unconvertible graphs; all mean "cannot export"
        raise ExportError(f"litert: litert_torch.convert failed ({type(err).__name__}: {str(err).splitlines()[0][:300]})") from err
    with tempfile.TemporaryDirectory(prefix="vitship-litert-") as tmp:
        path = Path(tmp) / MODEL_FILE
        with torch.no_grad(), quiet_output():
            edge.export(str(path))
        return path.read_bytes()


def named_module(model, spec, input_kind: str):
    """(module with named I/O, its input name, a batch-1 example): outputs ``logits`` and ``features`` by name.

    litert-torch names the signature's inputs after ``forward``'s parameters and its outputs after the
    returned dict's keys, hence one small class per input kind.
    """
    import torch

    from vitship.models import FEATURES_NAME, LOGITS_NAME

    channels, height, width = spec.input_shape

    class TensorInput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            logits, features = self.model(pixel_values)
            return {LOGITS_NAME: logits, FEATURES_NAME: features}

    class ImageInput(TensorInput):
        """NHWC uint8 RGB in; (pixel * rescale - mean) / std per channel inside the graph."""

        def __init__(self):
            super().__init__()
            self.register_buffer("scale", torch.tensor([spec.rescale_factor / s for s in spec.std]).view(1, -1, 1, 1))
            self.register_buffer("shift", torch.tensor([m / s for m, s in zip(spec.mean, spec.std)]).view(1, -1, 1, 1))

        def forward(self, image):
            return super().forward(image.permute(0, 3, 1, 2).to(torch.float32) * self.scale - self.shift)

    if input_kind == "image":
        return ImageInput(), "image", torch.zeros(1, height, width, channels, dtype=torch.uint8)
    example = torch.randn(1, channels, height, width, generator=torch.Generator().manual_seed(0))
    return TensorInput(), "pixel_values", example


def _fp16_recipe():
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.recipe_manager import RecipeManager

    manager = RecipeManager()
    manager.add_weight_only_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, 16, algorithm_key=AlgorithmName.FLOAT_CASTING)
    return manager.get_quantization_recipe()


def _metadata(loaded: LoadedModel, options: LitertOptions) -> dict:
    image = options.input == "image"
    return {**model_metadata(loaded), "precision": options.precision, "input_type": options.input,
            "layout": "NHWC" if image else "NCHW", "input_layout": "NHWC" if image else "NCHW",
            "input_dtype": "uint8" if image else "float32", "signature": SIGNATURE}


def _with_metadata(model: bytes, metadata: dict) -> bytes:
    """The flatbuffer with ``metadata`` (JSON) stored as the Model.metadata entry ``METADATA_NAME``."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(metadata, sort_keys=True).encode())
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(tree.buffers) - 1
    tree.metadata = [m for m in (tree.metadata or []) if m.name != METADATA_NAME.encode() and m.name != METADATA_NAME] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def read_metadata(path: Path) -> dict:
    """The vitship metadata a ``.tflite`` carries ({} when it has none)."""
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    for entry in tree.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_NAME:
            return json.loads(bytes(tree.buffers[entry.buffer].data).decode())
    return {}


def _input_spec(loaded: LoadedModel, options: LitertOptions) -> dict:
    spec = loaded.spec
    channels, height, width = spec.input_shape
    if options.input == "image":
        return {**spec.to_dict(), "input_type": "image", "signature_input": "image", "input_shape": [1, height, width, channels],
                "dtype": "uint8", "layout": "NHWC", "color_layout": "RGB", "batch_shapes": [1]}
    return {**spec.to_dict(), "input_type": "tensor", "input_shape": [1, channels, height, width], "dtype": "float32",
            "layout": "NCHW", "batch_shapes": [1]}
