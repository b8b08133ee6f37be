"""Which runtimes load an ONNX file: cap its IR version for older runtimes and name the oldest that load it.

torch's dynamo exporter writes IR version 10 (onnx 1.16), which onnxruntime before 1.18 refuses with
"Unsupported model IR version: 10, max supported IR version: 9", so an edge box on onnxruntime 1.16/1.17
cannot load it. Nothing in vitship's graphs needs IR 10 (no int4/uint4 tensors, no function overloads),
so by default the IR version is set to 9 and ``onnx.checker`` re-validates the file against IR 9.
OpenVINO 2024.0's ONNX frontend ignores the ``start``/``end`` attributes of Shape (opset 15+), which the
dynamo exporter uses for the class token's batch size, and fails ("Argument shapes are inconsistent" at
the cls-token Concat); those nodes become Shape + Slice, which every runtime reads the same way.
``make compat-check`` loads every artifact in the oldest supported runtimes and compares outputs.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from vitship.exporters.base import ExportError
from vitship.exporters.details import OnnxCompatibility

RuntimeTarget = Literal["compatible", "latest"]
RUNTIME_TARGETS = ("compatible", "latest")
COMPATIBLE_IR_VERSION = 9
COMPATIBLE_MAX_OPSET = 18  # the newest opset `make compat-check` verifies in the oldest supported runtimes
# The oldest releases vitship supports and `make compat-check` verifies (docs/DESIGN.md, Compatibility).
SUPPORTED_FLOOR = {"onnxruntime": "1.16", "openvino": "2024.0"}
# First onnxruntime release that reads each ONNX IR version / default-domain opset (its bundled onnx version).
ORT_FOR_IR_VERSION = {7: "1.6", 8: "1.14", 9: "1.15", 10: "1.18", 11: "1.22"}
ORT_FOR_OPSET = {13: "1.7", 14: "1.10", 15: "1.11", 16: "1.12", 17: "1.13", 18: "1.14", 19: "1.15", 20: "1.17",
                 21: "1.18", 22: "1.20", 23: "1.22"}


def check_opset(opset: int, target: str) -> None:
    """A clear error for an opset the ``compatible`` target cannot promise (before minutes of export)."""
    if target not in RUNTIME_TARGETS:
        raise ExportError(f"onnx: unknown runtime target {target!r}; use {' or '.join(RUNTIME_TARGETS)}")
    if target == "compatible" and opset > COMPATIBLE_MAX_OPSET:
        raise ExportError(f"onnx: opset {opset} is newer than the {COMPATIBLE_MAX_OPSET} that onnxruntime "
                          f"{SUPPORTED_FLOOR['onnxruntime']} and OpenVINO {SUPPORTED_FLOOR['openvino']} are verified "
                          "with; lower --opset, or pass --onnx-runtimes latest for newer runtimes only")


def make_compatible(model, target: str) -> OnnxCompatibility:
    """For the ``compatible`` target (in place): IR version 9, no sliced Shape nodes; returns what was done."""
    exported = int(model.ir_version)
    if target == "latest":
        return OnnxCompatibility(ir_version=exported, exported_ir_version=exported, target=target)
    if exported > COMPATIBLE_IR_VERSION and _uses_ir10_features(model):
        raise ExportError("onnx: the graph uses IR 10 features (4-bit tensors or function overloads) that older "
                          "runtimes cannot read; export with --onnx-runtimes latest")
    model.ir_version = min(exported, COMPATIBLE_IR_VERSION)
    return OnnxCompatibility(ir_version=int(model.ir_version), exported_ir_version=exported, target=target,
                             shape_slices_rewritten=_split_shape_slices(model.graph))


def _split_shape_slices(graph) -> int:
    """Rewrite Shape(x, start, end) as Slice(Shape(x), start, end); returns how many were rewritten."""
    from onnx import helper, numpy_helper

    nodes, rewritten = [], 0
    for node in graph.node:
        bounds = {a.name: a.i for a in node.attribute if a.name in ("start", "end")}
        if node.op_type != "Shape" or node.domain not in ("", "ai.onnx") or not bounds:
            nodes.append(node)
            continue
        rewritten += 1
        whole, prefix = f"{node.output[0]}__whole", f"{node.output[0]}__slice"
        for suffix, value in (("starts", bounds.get("start", 0)), ("ends", bounds.get("end", 2**63 - 1)), ("axes", 0)):
            graph.initializer.append(numpy_helper.from_array(np.array([value], dtype=np.int64), f"{prefix}_{suffix}"))
        nodes.append(helper.make_node("Shape", [node.input[0]], [whole], name=node.name))
        nodes.append(helper.make_node("Slice", [whole, f"{prefix}_starts", f"{prefix}_ends", f"{prefix}_axes"],
                                      [node.output[0]], name=f"{node.name}_slice"))
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def _uses_ir10_features(model) -> bool:
    import onnx

    four_bit = {getattr(onnx.TensorProto, name) for name in ("INT4", "UINT4") if hasattr(onnx.TensorProto, name)}
    if any(t.data_type in four_bit for t in model.graph.initializer):
        return True
    return any(getattr(f, "overload", "") for f in model.functions) or any(
        getattr(n, "overload", "") for n in model.graph.node)


def min_runtime_versions(model) -> dict[str, str]:
    """The oldest onnxruntime (and OpenVINO, for graphs of standard ops and ``OPENVINO_CONTRIB_OPS``) that load ``model``.

    Never older than ``SUPPORTED_FLOOR``: vitship promises only what ``make compat-check`` verifies.
    """
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    ort = max(ORT_FOR_IR_VERSION.get(int(model.ir_version), "99"), ORT_FOR_OPSET.get(opset, "99"),
              SUPPORTED_FLOOR["onnxruntime"], key=_version_key)
    versions = {"onnxruntime": ort if ort != "99" else "unknown"}
    contrib = {node.op_type for node in model.graph.node if node.domain not in ("", "ai.onnx")}
    openvino_reads = all(o.domain in ("", "ai.onnx", "com.microsoft") for o in model.opset_import) and contrib <= OPENVINO_CONTRIB_OPS
    if openvino_reads:  # OpenVINO's ONNX frontend reads IR 10 too; the opset is what it checks
        versions["openvino"] = SUPPORTED_FLOOR["openvino"] if opset <= COMPATIBLE_MAX_OPSET else _installed("openvino")
    return versions


# onnxruntime contrib ops (com.microsoft) that OpenVINO's ONNX reader takes from the floor release on, checked with
# OpenVINO 2024.0.0 (exporters.onnx_graph: it reads neither QAttention, MultiHeadAttention nor a four-output SkipLayerNormalization)
OPENVINO_CONTRIB_OPS = frozenset({"Attention", "Gelu"})


def _installed(package: str) -> str:
    """The installed release (the only one known to load a graph newer than the verified floor)."""
    from vitship.exporters.base import package_versions

    return package_versions(package)[package].split("-")[0]


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())
