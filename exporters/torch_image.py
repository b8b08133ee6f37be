"""litert-image-* and executorch-image-*: the Android programs with the frame preprocessing inside, at a fixed frame size.

LiteRT and ExecuTorch programs fix their shapes at export (litert-torch specialises them; ExecuTorch plans memory
for them), and an Android camera pipeline delivers one resolution (CameraX's ImageAnalysis, for one), so these
take one frame size, chosen at export (``frame_size``, default 1920x1080 landscape): a uint8 NHWC RGB frame
``[1, height, width, 3]``. Inside, ``FrameProgram`` runs the taps ``exporters.frame_graph`` computes for that size
(constants here: gathers and two batched matmuls, each pass rounded to 8 bits as Pillow rounds), then the scale and
normalisation, then the model. A frame of another size is refused by the session (``runtimes.frames``) and by the
app's own shape check.

fp32 (and fp16 weights for LiteRT) only: the export's int8 gate feeds preprocessed tensors, which a fixed frame
size cannot take, so an int8 image program could only ship unchecked; ship litert-int8 / executorch-int8 with the
app's preprocessing, or onnx-image-int8, instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from vitship.exporters import frame_graph, image_input
from vitship.exporters import litert as litert_exporter
from vitship.exporters.base import Artifact, ExportError, TraceCache, artifact_id, package_versions, path_sha256, path_size
from vitship.exporters.details import ExecutorchDetails, LitertDetails
from vitship.exporters.executorch import ExecutorchOptions
from vitship.models import FEATURES_NAME, LOGITS_NAME, LoadedModel, ModelSpec

DEFAULT_FRAME = (1080, 1920)  # (height, width): a full-HD landscape camera frame


class FrameProgram(torch.nn.Module):
    """A uint8 NHWC frame of one size in; the spec's resize, crop and normalisation (constant taps); the model."""

    def __init__(self, model: torch.nn.Module, spec: ModelSpec, frame_size: tuple[int, int]):
        super().__init__()
        self.model, self.frame_size, self.channels = model, tuple(frame_size), spec.channels
        self.out_h, self.out_w = frame_graph.output_size(spec)
        for name, value in frame_graph.fixed_taps(spec, *frame_size).items():
            self.register_buffer(name, torch.from_numpy(value))
        self.register_buffer("scale", torch.tensor([spec.rescale_factor / s for s in spec.std]).view(1, 1, 1, -1))
        self.register_buffer("shift", torch.tensor([m / s for m, s in zip(spec.mean, spec.std)]).view(1, 1, 1, -1))
        self.spans = (tuple(int(v) for v in self.span_w), tuple(int(v) for v in self.span_h))  # python ints: static slices

    @staticmethod
    def _pass(rows: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """frame_graph's pass: Q15 integer weights, exact in float32 (every partial sum < 2 ** 24), Pillow's rounding."""
        summed = torch.matmul(weights.to(torch.float32), rows[index])
        return torch.clamp(torch.floor((summed + frame_graph.WEIGHT_ONE // 2) / frame_graph.WEIGHT_ONE), 0.0, 255.0)

    def forward(self, image: torch.Tensor):
        (w0, w1), (h0, h1) = self.spans
        height = self.frame_size[0]
        columns = image[0, :, w0:w1, :].permute(1, 0, 2).reshape(w1 - w0, height * self.channels).to(torch.float32)
        horizontal = self._pass(columns, self.index_w, self.weights_w).reshape(self.out_w, height, self.channels)
        rows = horizontal.permute(1, 0, 2).reshape(height, self.out_w * self.channels)[h0:h1]
        resized = self._pass(rows, self.index_h, self.weights_h).reshape(1, self.out_h, self.out_w, self.channels)
        return self.model((resized * self.scale - self.shift).permute(0, 3, 1, 2))

    def example(self) -> torch.Tensor:
        return torch.zeros(1, *self.frame_size, self.channels, dtype=torch.uint8)


class _NamedFrame(torch.nn.Module):
    """litert-torch names the signature after forward's parameter and the returned dict's keys."""

    def __init__(self, program: FrameProgram):
        super().__init__()
        self.program = program

    def forward(self, image):
        logits, features = self.program(image)
        return {LOGITS_NAME: logits, FEATURES_NAME: features}


def _check_frame_size(name: str, frame_size: tuple[int, int], spec: ModelSpec) -> None:
    height, width = frame_size
    if not (1 <= height <= image_input.MAX_FRAME_SIDE and 1 <= width <= image_input.MAX_FRAME_SIDE):
        raise ExportError(f"{name}: frame_size {frame_size} must be 1..{image_input.MAX_FRAME_SIDE} a side (height, width)")
    if max(frame_size) > image_input.MAX_ASPECT_RATIO * min(frame_size):
        raise ExportError(f"{name}: frame_size {frame_size} has an aspect ratio over {image_input.MAX_ASPECT_RATIO:g}:1")
    image_input.check_spec(spec, name)


@dataclass(frozen=True)
class LitertImageOptions(litert_exporter.LitertOptions):
    """litert-image-*: ``frame_size`` (height, width) is the one frame size the program takes."""

    name: ClassVar[str] = "litert-image"
    frame_size: tuple[int, int] = DEFAULT_FRAME

    def cache_key(self) -> dict:
        return {**super().cache_key(), "frame_size": list(self.frame_size)}


@dataclass(frozen=True)
class ExecutorchImageOptions(ExecutorchOptions):
    """executorch-image-*: XNNPACK at batch 1; ``frame_size`` (height, width) is the one frame size the program takes."""

    name: ClassVar[str] = "executorch-image"
    frame_size: tuple[int, int] = DEFAULT_FRAME

    def cache_key(self) -> dict:
        return {**super().cache_key(), "frame_size": list(self.frame_size)}


def export(loaded: LoadedModel, out_dir: Path, options, cache: TraceCache | None = None) -> Artifact:
    """The LiteRT or ExecuTorch frame program of ``options`` in ``out_dir``."""
    allowed = ("fp32", "fp16") if isinstance(options, LitertImageOptions) else ("fp32",)
    if options.precision not in allowed:
        raise ExportError(f"{options.name}: {options.precision} is not offered (the int8 gate feeds tensors, which a fixed "
                          f"frame size cannot take); use {' or '.join(allowed)}, or ship the tensor int8 or onnx-image-int8")
    _check_frame_size(options.name, options.frame_size, loaded.spec)
    start = time.perf_counter()
    form = options.export_form()  # the tensor artifact's form (models.export_form): the frame steps, then that model
    program = FrameProgram(loaded.model.with_form(form), loaded.spec, options.frame_size).eval()
    if isinstance(options, LitertImageOptions):
        path, details, versions = _litert(program, loaded, Path(out_dir), options)
    else:
        path, details, versions = _executorch(program, loaded, Path(out_dir), options)
    aid = artifact_id(options.name, options.precision)
    details.input, details.export_form = image_input.describe(loaded.spec, options.frame_size), form
    return Artifact(
        id=aid, format=options.format, precision=options.precision, path=f"{aid}/{path.name}", sha256=path_sha256(path),
        size_bytes=path_size(path), export_seconds=round(time.perf_counter() - start, 3), versions=versions,
        input_spec=image_input.frame_input_spec(loaded.spec, options.frame_size), weights=loaded.info.to_dict(),
        calibration=None, options=options.cache_key(), details=details,
        min_runtime_versions={"ai-edge-litert": "2.3"} if options.format == "litert" else {},
    )


def _metadata(loaded: LoadedModel, options) -> dict[str, str]:
    from vitship.exporters.base import model_metadata

    frame = image_input.frame_metadata(loaded.spec, options.frame_size)
    return {**model_metadata(loaded), "precision": options.precision, **frame}


def _litert(program: FrameProgram, loaded: LoadedModel, out_dir: Path, options: LitertImageOptions):
    """litert-torch's conversion of the frame program, then the tensor exporter's own fp16 step and metadata."""
    import tempfile

    litert_exporter.check_options(options.replace(input="tensor"))
    litert_exporter._import_backends()
    from vitship.models.quiet import quiet_output

    with quiet_output():
        import litert_torch

        try:
            edge = litert_torch.convert(_NamedFrame(program).eval(), sample_kwargs={"image": program.example()})
        except Exception as err:  # the converter raises many types for unconvertible graphs; all mean "cannot export"
            why = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
            raise ExportError(f"{options.name}: litert_torch.convert failed ({why})") from err
        with tempfile.TemporaryDirectory(prefix="vitship-litert-image-") as tmp, torch.no_grad():
            edge.export(str(Path(tmp) / litert_exporter.MODEL_FILE))
            flatbuffer = (Path(tmp) / litert_exporter.MODEL_FILE).read_bytes()
    details = LitertDetails(converter="litert_torch.convert", signature=litert_exporter.SIGNATURE, batch_shapes=[1])
    if options.precision == "fp16":
        flatbuffer = litert_exporter._quantize(flatbuffer, litert_exporter._fp16_recipe())
        details.fp16 = "weights cast to float16 (ai-edge-quantizer FLOAT_CASTING, weight-only)"
    path = out_dir / litert_exporter.MODEL_FILE
    metadata = {**_metadata(loaded, options), "signature": litert_exporter.SIGNATURE}
    path.write_bytes(litert_exporter._with_metadata(flatbuffer, metadata))
    return path, details, package_versions("litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torch")


def _executorch(program: FrameProgram, loaded: LoadedModel, out_dir: Path, options: ExecutorchImageOptions):
    """torch.export of the frame program at its one shape, lowered to XNNPACK with the model's facts as a constant method."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    from vitship.exporters import executorch as executorch_exporter

    exported = executorch_exporter._torch_export(program, program.example(), None, loaded.spec.batch_axis)
    details = ExecutorchDetails(delegate=options.backend, batch_range=[1, 1])
    methods = {executorch_exporter.METADATA_METHOD: executorch_exporter.metadata_methods(
        loaded, options, **image_input.frame_metadata(loaded.spec, options.frame_size))[executorch_exporter.METADATA_METHOD]}
    path = out_dir / executorch_exporter.PROGRAM_NAME
    path.write_bytes(executorch_exporter._to_pte(exported, [XnnpackPartitioner()], details, methods))
    return path, details, package_versions("executorch", "torch")
