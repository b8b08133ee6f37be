"""What a format's capture offers, and which capture runs an artifact (one registry, imported lazily).

A capture runs one artifact on one image (C, H, W) with intermediate tensors exposed::

    capture.tensor_names               # every float tensor it can expose, in graph order
    capture.run(image, names)          # {name: values} for those names (float tensors only)
    capture.output_tensor("features")  # the format's tensor name of a model output
    capture.target, capture.notes      # where it ran; what the caller should know about the substitute used
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

import numpy as np

from vitship.bench.diagnose.result import DiagnoseError
from vitship.exporters.base import Artifact, resolve_artifact_path

SIBLING_PRECISION = "fp32"
# A format without an fp32 of its own is compared with the one that has the same graph: coreml-tensor (fp16/int8,
# tensor input) with coreml-fp32 (the same ML Program, ImageType input, whose scaling is its first two ops).
SIBLING_FORMAT = {"coreml-tensor": "coreml"}

# artifact format -> "module:class"
CAPTURES: dict[str, str] = {
    "onnx": "vitship.bench.diagnose.capture_onnx:OnnxCapture",
    "openvino": "vitship.bench.diagnose.capture_openvino:OpenvinoCapture",
    "coreml": "vitship.bench.diagnose.capture_coreml:CoremlCapture",
    "coreml-tensor": "vitship.bench.diagnose.capture_coreml:CoremlCapture",
    "executorch": "vitship.bench.diagnose.capture_executorch:ExecutorchCapture",
    "litert": "vitship.bench.diagnose.capture_litert:LitertCapture",
}


class Capture(Protocol):
    target: str
    tensor_names: list[str]
    notes: list[str]

    def run(self, image: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]: ...

    def output_tensor(self, name: str) -> str: ...


class UnsupportedFormatError(DiagnoseError):
    """vitship diagnose has no intermediate-output capture for this format."""


def open_capture(artifact: Artifact, model_dir: Path, threads: int | None = None, loaded=None) -> Capture:
    """The capture for ``artifact`` (``loaded``: the PyTorch model, for captures that rebuild a graph from it)."""
    if artifact.format not in CAPTURES:
        raise UnsupportedFormatError(f"{artifact.id}: vitship diagnose supports {', '.join(CAPTURES)} artifacts, "
                                     f"not {artifact.format}")
    module, _, name = CAPTURES[artifact.format].partition(":")
    return getattr(importlib.import_module(module), name)(artifact, resolve_artifact_path(model_dir, artifact), threads, loaded)
