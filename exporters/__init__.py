"""vitship.exporters: one module per format, each with export(loaded, out_dir, options) -> Artifact.

The registry maps a format name to its module path; modules are imported on first use so that a
missing backend (coremltools, openvino, ...) only affects its own format.
"""

from __future__ import annotations

import importlib

from vitship.exporters.base import PRECISIONS, Artifact, ExportError, ExportFn, ExportOptions, TraceCache, artifact_id
from vitship.models import UnknownNameError

# name -> (module, precisions it produces). The name is the artifact id's prefix (<name>-<precision>); a module
# may serve several names (coreml, coreml-tensor), each with its own options class (OPTIONS_CLASSES).
EXPORTERS: dict[str, tuple[str, tuple[str, ...]]] = {}
OPTIONS_CLASSES: dict[str, str] = {}  # name -> the module's options class for it ("Options" by default)
IN_ALL: dict[str, tuple[str, ...]] = {}  # name -> the precisions `export --all` builds (default: all it produces)


def register(fmt: str, module: str, precisions: tuple[str, ...] = PRECISIONS, options: str = "Options",
             in_all: tuple[str, ...] | None = None) -> None:
    if fmt in EXPORTERS:
        raise ValueError(f"exporter {fmt!r} is already registered")
    if in_all is not None and not set(in_all) <= set(precisions):
        raise ValueError(f"exporter {fmt!r}: in_all {in_all} is not among its precisions {precisions}")
    EXPORTERS[fmt] = (module, precisions)
    OPTIONS_CLASSES[fmt] = options
    IN_ALL[fmt] = precisions if in_all is None else in_all


register("onnx", "vitship.exporters.onnx")
register("openvino", "vitship.exporters.openvino")
register("coreml", "vitship.exporters.coreml")
register("coreml-tensor", "vitship.exporters.coreml", ("fp16", "int8"), options="CoremlTensorOptions")
register("executorch", "vitship.exporters.executorch", ("fp32", "int8"))
register("executorch-coreml", "vitship.exporters.executorch", ("fp16",), options="ExecutorchCoremlOptions")
register("litert", "vitship.exporters.litert")
# Image-input variants (a uint8 RGB frame of any size in, the preprocessing inside: exporters/image_input.py).
# `export --all` builds two, within make export-all's time budget (docs/DESIGN.md "Image-input artifacts"):
# onnx-image-fp32 measures the in-graph resize alone, openvino-image-int8 is the Intel CPU pick's image form;
# --format builds every precision.
register("onnx-image", "vitship.exporters.onnx_image", in_all=("fp32",), options="OnnxImageOptions")
register("openvino-image", "vitship.exporters.openvino_image", in_all=("int8",), options="OpenvinoImageOptions")
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


__all__ = ["EXPORTERS", "IN_ALL", "OPTIONS_CLASSES", "Artifact", "ExportError", "ExportOptions", "TraceCache", "all_artifact_ids",
           "artifact_id", "get_exporter",
           "options_class", "register"]
