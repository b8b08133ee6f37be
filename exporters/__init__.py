"""vitship.exporters: one module per format, each with export(loaded, out_dir, options) -> Artifact.

The registry maps a format name to its module path; modules are imported on first use so that a
missing backend (coremltools, openvino, ...) only affects its own format.
"""

from __future__ import annotations

import importlib

from vitship.exporters.base import PRECISIONS, Artifact, ExportError, ExportFn, ExportOptions, TraceCache, artifact_id
from vitship.models import UnknownNameError

# format -> (module, precisions it produces)
EXPORTERS: dict[str, tuple[str, tuple[str, ...]]] = {}


def register(fmt: str, module: str, precisions: tuple[str, ...] = PRECISIONS) -> None:
    if fmt in EXPORTERS:
        raise ValueError(f"exporter {fmt!r} is already registered")
    EXPORTERS[fmt] = (module, precisions)


register("onnx", "vitship.exporters.onnx")
register("openvino", "vitship.exporters.openvino")
register("coreml", "vitship.exporters.coreml")


def _module(fmt: str):
    if fmt not in EXPORTERS:
        raise UnknownNameError("format", fmt, list(EXPORTERS))
    return importlib.import_module(EXPORTERS[fmt][0])


def get_exporter(fmt: str) -> ExportFn:
    """The export function of a registered format (its backend is imported here, lazily)."""
    return _module(fmt).export


def options_class(fmt: str) -> type[ExportOptions]:
    """The format's own options dataclass (``onnx.OnnxOptions``, ...): its fields are the format's rebuild key."""
    return _module(fmt).Options


def all_artifact_ids() -> list[str]:
    return [artifact_id(fmt, p) for fmt, (_, precisions) in EXPORTERS.items() for p in precisions]


__all__ = ["EXPORTERS", "Artifact", "ExportError", "ExportOptions", "TraceCache", "all_artifact_ids", "artifact_id", "get_exporter",
           "options_class", "register"]
