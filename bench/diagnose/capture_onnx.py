"""ONNX intermediates: every float tensor a node writes, exposed as an extra graph output, on onnxruntime CPU.

onnxruntime's quantizers keep the float tensor names: dynamic int8 writes a MatMul's result under the
fp32 graph's name (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul -> ``linear_4``), and static QDQ
keeps the producer's output name and adds ``*_QuantizeLinear_Output``/``*_DequantizeLinear_Output``. So
the int8 tensor that replaces an fp32 one has the same name; the integer and quantization-parameter
tensors (``*_quantized``, ``*_scale``, ``*_zero_point``) have no fp32 counterpart and drop out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitship.exporters.base import Artifact
from vitship.models import MissingDependencyError

TARGET = "onnxruntime:cpu"
_SKIPPED_OPS = {"Constant", "Shape", "Size", "ConstantOfShape", "DynamicQuantizeLinear", "QuantizeLinear", "Cast"}


class OnnxCapture:
    """One ONNX file run on onnxruntime CPU with its node outputs exposed (all of them, or the ``names`` given)."""

    target = TARGET

    def __init__(self, artifact: Artifact, path: Path, threads: int | None = None, loaded=None):
        try:
            import onnx
            import onnxruntime  # noqa: F401  (fail here, with the install hint, not at the first run)
        except ImportError as err:
            raise MissingDependencyError("onnxruntime", "vitship diagnose on ONNX artifacts") from err
        self._model = onnx.load(str(path))
        self._threads = threads
        self.notes: list[str] = []
        self._sessions: dict[tuple[str, ...], object] = {}
        graph = self._model.graph
        self.input_name = graph.input[0].name
        self.output_names = [o.name for o in graph.output]
        produced = [name for node in graph.node if node.op_type not in _SKIPPED_OPS for name in node.output if name]
        self.tensor_names = list(dict.fromkeys(produced))  # graph order: onnx nodes are topologically sorted

    def run(self, image: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """The float tensors ``names`` (default: every node output) for one preprocessed image (C, H, W)."""
        names = tuple(self.tensor_names if names is None else names)
        session = self._sessions.get(names) or self._open(names)
        values = session.run(list(names), {self.input_name: image[None].astype(np.float32)})
        return {name: value for name, value in zip(names, values)
                if isinstance(value, np.ndarray) and value.dtype.kind == "f"}

    def output_tensor(self, name: str) -> str:
        return name  # vitship's exporters name the graph outputs as the spec does

    def _open(self, names: tuple[str, ...]):
        import onnx
        import onnxruntime as ort

        model = onnx.ModelProto()
        model.CopyFrom(self._model)
        present = {o.name for o in model.graph.output}
        model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names if name not in present)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self._threads:
            options.intra_op_num_threads = self._threads
        # Basic optimisations only: fusions would remove the intermediate tensors this is here to read.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self._sessions = {names: session}  # one exposed set at a time: each session holds its own weights
        return session
