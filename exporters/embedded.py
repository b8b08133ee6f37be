"""What an artifact file says about itself, read from the file alone (no manifest): ``vitship inspect`` and ``doctor``.

Every exporter writes ``base.model_metadata`` (labels, head, decision threshold, input, preprocessing, weights) plus
its own facts into the place its format has for them: ONNX ``metadata_props``, OpenVINO ``rt_info["model_info"]``,
CoreML ``user_defined_metadata``, the LiteRT ``Model.metadata`` entry ``vitship`` (JSON), and the ExecuTorch constant
method ``vitship_metadata`` (JSON). ``read_embedded`` reads them back with each format's own library, lazily imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from vitship.exporters.base import ExportError
from vitship.models import MissingDependencyError

SUFFIXES = {".onnx": "onnx", ".xml": "openvino", ".mlpackage": "coreml", ".mlmodel": "coreml", ".tflite": "litert",
            ".pte": "executorch"}


@dataclass
class EmbeddedFacts:
    """An artifact's own metadata (string values; JSON where a value is a list or a dict) and its declared I/O."""

    path: str
    format: str
    metadata: dict[str, str] = field(default_factory=dict)
    inputs: list[dict] = field(default_factory=list)  # {"name", "dtype", "shape"}
    outputs: list[dict] = field(default_factory=list)

    def value(self, key: str, default=None):
        """A metadata value, JSON-decoded where it is JSON (lists, dicts, numbers)."""
        if key not in self.metadata:
            return default
        try:
            return json.loads(self.metadata[key])
        except ValueError:
            return self.metadata[key]

    def to_dict(self) -> dict:
        return {"path": self.path, "format": self.format, "metadata": self.metadata, "inputs": self.inputs,
                "outputs": self.outputs}


def artifact_file(path: Path) -> Path:
    """The artifact file a path names: the file itself, or the one model file inside an artifact folder."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such file or folder; give an artifact file (.onnx, .xml, .mlpackage, .tflite, .pte)")
    if path.is_dir() and path.suffix not in SUFFIXES:
        found = [p for p in sorted(path.iterdir()) if p.suffix in SUFFIXES]
        if len(found) != 1:
            raise ExportError(f"{path}: a folder holding {len(found)} artifact files; name one of "
                              f"{', '.join(sorted(SUFFIXES))} directly")
        path = found[0]
    if path.suffix not in SUFFIXES:
        raise ExportError(f"{path}: not an artifact vitship reads ({', '.join(sorted(SUFFIXES))})")
    return path


def read_embedded(path: Path) -> EmbeddedFacts:
    """The metadata and I/O an artifact file carries, read with its format's own library."""
    path = artifact_file(path)
    fmt = SUFFIXES[path.suffix]
    reader = {"onnx": _onnx, "openvino": _openvino, "coreml": _coreml, "litert": _litert, "executorch": _executorch}[fmt]
    try:
        facts = reader(path)
    except (ImportError, ModuleNotFoundError) as err:
        raise MissingDependencyError(err.name or fmt, f"reading {fmt} artifacts") from err
    except ExportError:
        raise
    except Exception as err:  # each library raises its own types for a corrupt file
        raise ExportError(f"{path}: cannot read it as {fmt} ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from err
    facts.path, facts.format = str(path), fmt
    return facts


def _onnx(path: Path) -> EmbeddedFacts:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}

    def port(value) -> dict:
        tensor = value.type.tensor_type
        return {"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                "shape": [d.dim_value or d.dim_param or "?" for d in tensor.shape.dim]}

    inputs = [port(i) for i in model.graph.input if i.name not in initializers]
    return EmbeddedFacts(str(path), "onnx", {p.key: p.value for p in model.metadata_props}, inputs,
                         [port(o) for o in model.graph.output])


def _openvino(path: Path) -> EmbeddedFacts:
    import openvino as ov

    model = ov.Core().read_model(str(path))
    info = model.get_rt_info()
    section = info["model_info"] if "model_info" in info else {}  # noqa: SIM401 (an RTMap of OVAny values: no .get)

    def port(value) -> dict:
        return {"name": value.get_any_name(), "dtype": value.get_element_type().get_type_name(),
                "shape": str(value.get_partial_shape())}

    return EmbeddedFacts(str(path), "openvino", {k: v.astype(str) for k, v in section.items()},
                         [port(i) for i in model.inputs], [port(o) for o in model.outputs])


def _coreml(path: Path) -> EmbeddedFacts:
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    description = spec.description

    def port(feature) -> dict:
        kind = feature.type.WhichOneof("Type")
        shape = list(feature.type.multiArrayType.shape) if kind == "multiArrayType" else (
            [feature.type.imageType.height, feature.type.imageType.width] if kind == "imageType" else [])
        return {"name": feature.name, "dtype": kind, "shape": shape}

    return EmbeddedFacts(str(path), "coreml", dict(description.metadata.userDefined),
                         [port(f) for f in description.input], [port(f) for f in description.output])


def _litert(path: Path) -> EmbeddedFacts:
    """The ``vitship`` Model.metadata entry, read without unpacking the weights (flatbuffer accessors, not the object API)."""
    from ai_edge_litert import schema_py_generated as schema

    data = Path(path).read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    metadata: dict[str, str] = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == "vitship":
            raw = model.Buffers(entry.Buffer()).DataAsNumpy()
            metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in json.loads(bytes(raw).decode()).items()}
    graph = model.Subgraphs(0)

    def port(index: int) -> dict:
        tensor = graph.Tensors(index)
        dtype = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}.get(tensor.Type(), "?")
        return {"name": tensor.Name().decode(), "dtype": dtype.lower(), "shape": tensor.ShapeAsNumpy().tolist()}

    return EmbeddedFacts(str(path), "litert", metadata, [port(graph.Inputs(i)) for i in range(graph.InputsLength())],
                         [port(graph.Outputs(i)) for i in range(graph.OutputsLength())])


def _executorch(path: Path) -> EmbeddedFacts:
    from vitship.exporters.executorch import METADATA_METHOD
    from vitship.models.quiet import quiet_stderr

    with quiet_stderr():
        from executorch.runtime import Runtime

        program = Runtime.get().load_program(Path(path))
        metadata: dict[str, str] = {}
        if METADATA_METHOD in program.method_names:
            values = json.loads(program.load_method(METADATA_METHOD).execute([])[0])
            metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
        forward = program.metadata("forward")
    inputs = [{"name": f"input {i}", "dtype": str(forward.input_tensor_meta(i).dtype()),
               "shape": list(forward.input_tensor_meta(i).sizes())} for i in range(forward.num_inputs())]
    outputs = [{"name": f"output {i}", "dtype": str(forward.output_tensor_meta(i).dtype()),
                "shape": list(forward.output_tensor_meta(i).sizes())} for i in range(forward.num_outputs())]
    return EmbeddedFacts(str(path), "executorch", metadata, inputs, outputs)


def summary(facts: EmbeddedFacts) -> dict[str, str]:
    """The facts an app needs, one line each: labels, threshold, input, preprocessing (inside or the app's), weights."""
    meta = facts.value
    if not facts.metadata:
        return {}
    port = facts.inputs[0] if facts.inputs else {}
    kind = meta("input_type", "tensor")
    inside = meta("preprocessing_inside")
    if kind == "frame" and isinstance(inside, dict):
        preprocessing = (f"inside the artifact: {inside.get('resize')}; center crop {inside.get('center_crop')}; "
                         f"x * {inside.get('scale'):.6g}, (x - {inside.get('mean')}) / {inside.get('std')}")
    else:
        resize = meta("resize") or {}
        steps = (f"the app's: resize {resize.get('mode', '?')} {resize.get('size', '?')} {meta('interpolation', '?')}, "
                 f"center crop {meta('center_crop')}")
        if kind == "image":
            steps += f" (Vision: {meta('vision_crop_and_scale', 'centerCrop')}); scale and normalisation inside the model"
        else:
            steps += f", x * {float(meta('rescale_factor', 0)):.6g}, (x - {meta('mean')}) / {meta('std')}"
        preprocessing = steps
    limits = ""
    if kind == "frame":
        limits = f", frames up to {meta('max_frame_side')} px a side, aspect up to {meta('max_aspect_ratio')}:1"
    return {
        "model": f"{meta('model_name', '?')} ({meta('architecture', '?')}), {meta('precision', '?')}",
        "labels": f"{meta('labels')} ({meta('head_kind', '?')} head; fake index {meta('fake_index', '?')})",
        "decision threshold": f"fake probability >= {meta('decision_threshold', '?')}",
        "input": (f"{kind}: {port.get('name', meta('input_name', '?'))} {port.get('dtype', '')} {port.get('shape', '')}, "
                  f"{meta('input_layout', meta('layout', '?'))}{limits}"),
        "preprocessing": preprocessing,
        "outputs": ", ".join(f"{o['name']} {o['shape']}" for o in facts.outputs),
        "weights": (f"{str(meta('weights_sha256', '?'))[:16]} from {meta('weights_source', '?')}"
                    + ("" if meta("weights_trained") is True else " (untrained: not for decisions)")),
        "exported by": f"vitship {meta('vitship_version', '?')}",
    }
