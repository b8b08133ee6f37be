"""vitship.exporters: one module per format, each with export(loaded, out_dir, options) -> Artifact.

The registry maps a format name to its module path; modules are imported on first use so that a
missing backend (coremltools, openvino, ...) only affects its own format.
"""

from __future__ import annotations

import importlib

from vitship.exporters.base import PRECISIONS, Artifact, ExportError, ExportFn, ExportOptions, TraceCache, artifact_id
from vitship.exporters.int8.capabilities import Int8Capabilities
from vitship.models import UnknownNameError

# name -> (module, precisions it produces). The name is the artifact id's prefix (<name>-<precision>); a module
# may serve several names (coreml, coreml-tensor), each with its own options class (OPTIONS_CLASSES).
EXPORTERS: dict[str, tuple[str, tuple[str, ...]]] = {}
OPTIONS_CLASSES: dict[str, str] = {}  # name -> the module's options class for it ("Options" by default)
INT8_CAPABILITIES: dict[str, Int8Capabilities] = {}  # name -> what its int8 can do (exporters/int8/capabilities.py)
IN_ALL: dict[str, tuple[str, ...]] = {}  # name -> the precisions `export --all` builds (default: all it produces)


def register(fmt: str, module: str, precisions: tuple[str, ...] = PRECISIONS, options: str = "Options",
             int8: Int8Capabilities | None = None, in_all: tuple[str, ...] | None = None) -> None:
    if fmt in EXPORTERS:
        raise ValueError(f"exporter {fmt!r} is already registered")
    if ("int8" in precisions) != (int8 is not None):
        raise ValueError(f"exporter {fmt!r}: declare int8 capabilities exactly when it produces int8")
    if in_all is not None and not set(in_all) <= set(precisions):
        raise ValueError(f"exporter {fmt!r}: in_all {in_all} is not among its precisions {precisions}")
    EXPORTERS[fmt] = (module, precisions)
    OPTIONS_CLASSES[fmt] = options
    IN_ALL[fmt] = precisions if in_all is None else in_all
    if int8 is not None:
        INT8_CAPABILITIES[fmt] = int8


# LiteRT's converter folds each LayerNorm's scale and shift into the Linear after it (measured: the .tflite weights
# of a smoothed and an unsmoothed model differ by 1e-8), so the SmoothQuant fold cannot reach its int8 weights.
_LITERT_REFOLDS = "litert-torch folds the LayerNorm affine back into the next Linear, undoing it"
_COREML = Int8Capabilities(("weight-only",), gate_targets=("coreml:cpu_only", "coreml:reference"), mode_field=None)
_ONNX = Int8Capabilities(("dynamic", "static"), ("static",), gate_targets=("onnxruntime:cpu",))
_OPENVINO = Int8Capabilities(("static",), ("static",), gate_targets=("openvino:CPU",), mode_field=None)

register("onnx", "vitship.exporters.onnx", int8=_ONNX)
register("openvino", "vitship.exporters.openvino", int8=_OPENVINO)
register("coreml", "vitship.exporters.coreml", int8=_COREML)
register("coreml-tensor", "vitship.exporters.coreml", ("fp16", "int8"), options="CoremlTensorOptions", int8=_COREML)
register("executorch", "vitship.exporters.executorch", ("fp32", "int8"),
         int8=Int8Capabilities(("dynamic", "static"), ("static",), gate_targets=("executorch:cpu",)))
register("executorch-coreml", "vitship.exporters.executorch", ("fp16",), options="ExecutorchCoremlOptions")
register("litert", "vitship.exporters.litert",
         int8=Int8Capabilities(("dynamic", "weight-only"), smoothing=False, gate_targets=("litert:cpu",), why=_LITERT_REFOLDS))
# Image-input variants (a uint8 RGB frame of any size in, the preprocessing inside: exporters/image_input.py).
# `export --all` builds two, within make export-all's time budget (docs/DESIGN.md "Image-input artifacts"):
# onnx-image-fp32 measures the in-graph resize alone, openvino-image-int8 is the Intel CPU pick's image form;
# --format builds every precision. Their int8 is their tensor format's, gated on the image artifact itself (the
# same ladder and record: its session runs the gate's photos as 8-bit frames, exactly).
register("onnx-image", "vitship.exporters.onnx_image", in_all=("fp32",), options="OnnxImageOptions", int8=_ONNX)
register("openvino-image", "vitship.exporters.openvino_image", in_all=("int8",), options="OpenvinoImageOptions", int8=_OPENVINO)
# LiteRT and ExecuTorch fix their shapes at export: one frame size each (exporters/torch_image.py), not in --all.
register("litert-image", "vitship.exporters.torch_image", ("fp32", "fp16"), options="LitertImageOptions", in_all=())
register("executorch-image", "vitship.exporters.torch_image", ("fp32",), options="ExecutorchImageOptions", in_all=())


def _module(fmt: str):
    if fmt not in EXPORTERS:
        raise UnknownNameError("format", fmt, list(EXPORTERS))
    return importlib.import_module(EXPORTERS[fmt][0])


def get_exporter(fmt: str) -> ExportFn:
    """The export function of a registered format (its backend is imported here, lazily)."""
    return _module(fmt).export


def options_class(fmt: str) -> type[ExportOptions]:
    """The format's own options dataclass (``onnx.OnnxOptions``, ...): its fields are the format's rebuild key."""
    return getattr(_module(fmt), OPTIONS_CLASSES[fmt])


def all_artifact_ids() -> list[str]:
    return [artifact_id(fmt, p) for fmt, (_, precisions) in EXPORTERS.items() for p in precisions]


__all__ = ["EXPORTERS", "IN_ALL", "INT8_CAPABILITIES", "OPTIONS_CLASSES", "Artifact", "ExportError", "ExportOptions",
           "TraceCache",
           "all_artifact_ids", "artifact_id", "get_exporter",
           "options_class", "register"]
