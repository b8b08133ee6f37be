"""onnx-image-*: the ONNX artifact with the spec's preprocessing in front, taking a uint8 RGB frame of any size.

The tensor artifact is exported as ``exporters.onnx`` makes it (same options, fp16 and int8 included), then the
preprocessing (``exporters.frame_graph``: Cast, Pillow's resize taps for the cropped output, two passes each rounded
to 8 bits, ``x * scale / std - mean / std``, NHWC -> NCHW) is prepended as standard nodes, so the file stays IR 9 and
opset 18 (``onnx_compat``). onnxruntime's own antialiased Resize-18 (cubic, a = -0.5, two passes rounded to 8 bits)
reproduces Pillow as closely, but it resizes the whole frame before the crop, older runtimes differ in whether
they implement ``antialias``, and OpenVINO shares these nodes (its own Pillow modes stall at every new frame size).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from vitship.exporters import frame_graph, image_input
from vitship.exporters import onnx as onnx_exporter
from vitship.exporters.base import Artifact, TraceCache
from vitship.models import LoadedModel, ModelSpec


@dataclass(frozen=True)
class OnnxImageOptions(onnx_exporter.OnnxOptions):
    """onnx-image-* options: the tensor artifact's (``OnnxOptions``), its own rebuild key under its own name."""

    name: ClassVar[str] = "onnx-image"


Options = OnnxImageOptions


def export(loaded: LoadedModel, out_dir: Path, options: OnnxImageOptions, cache: TraceCache | None = None) -> Artifact:
    """The tensor ONNX artifact of ``options`` with the frame preprocessing prepended, in ``out_dir/model.onnx``."""
    import onnx

    image_input.check_spec(loaded.spec, options.name)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vitship-onnx-image-") as tmp:
        tensor = onnx_exporter.export(loaded, Path(tmp), options, cache)
        model = onnx.load(str(Path(tmp) / onnx_exporter.MODEL_FILE))
    prepend_preprocessing(model, loaded.spec)
    for key, value in image_input.frame_metadata(loaded.spec).items():
        _set_prop(model, key, value)
    path = Path(out_dir) / onnx_exporter.MODEL_FILE
    onnx.save_model(model, str(path), save_as_external_data=False)  # the tensor export checked its size
    onnx.checker.check_model(str(path), full_check=True)
    details = {"nodes": len(model.graph.node), "ort_smoke_run": _smoke_run(path, loaded.spec)}
    return image_input.frame_artifact(tensor, options, loaded.spec, path, start, details, tensor.min_runtime_versions)


def _set_prop(model, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)


def prepend_preprocessing(model, spec: ModelSpec) -> None:
    """Replace the graph's float NCHW input with a uint8 NHWC frame input and the nodes that preprocess it."""
    from onnx import TensorProto, helper

    graph = model.graph
    tensor_input = graph.input[0].name
    nodes, initializers = frame_graph.preprocessing_nodes(spec, image_input.FRAME_INPUT_NAME, tensor_input)
    frame = helper.make_tensor_value_info(image_input.FRAME_INPUT_NAME, TensorProto.UINT8, [1, "height", "width", spec.channels])
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *existing])
    graph.initializer.extend(initializers)
    del graph.input[0]
    graph.input.insert(0, frame)


def _smoke_run(path: Path, spec: ModelSpec) -> str:
    """One 480x640 frame through onnxruntime CPU: a broken file fails the export, not a later check."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    frame = np.random.default_rng(0).integers(0, 256, (1, 480, 640, spec.channels), dtype=np.uint8)
    outputs = session.run(None, {image_input.FRAME_INPUT_NAME: frame})
    expected = [(1, spec.num_classes), (1, spec.embed_dim)]
    if [tuple(o.shape) for o in outputs] != expected or not all(np.isfinite(o).all() for o in outputs):
        raise onnx_exporter.ExportError(f"onnx-image: {path.name} gives shapes {[o.shape for o in outputs]} "
                                        f"(expected {expected}) or non-finite values on a 480x640 frame")
    return "ok (onnxruntime CPU, one 480x640 frame)"
