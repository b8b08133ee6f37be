"""LiteRT intermediates: every float tensor an op writes, made a subgraph output, on ai-edge-litert's XNNPACK CPU.

litert-torch names each tensor by the torch module path that computes it (``...Block_11/...Mlp_mlp/...Linear_fc2;1``),
and ai-edge-quantizer keeps the float tensor names when it quantizes weights, so the int8 program's tensors
pair with the fp32 program's by name. The .tflite is rewritten in memory with every float op output listed as a
subgraph output (as the ONNX capture adds graph outputs): XNNPACK then writes each of them, still running the
ops it runs on a phone (dynamic-range int8 included). A LayerNorm's scale and shift are folded into the next
Linear by the converter, so a LayerNorm's own output is its normalisation only and matches no torch module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitship.exporters.base import Artifact
from vitship.models import MissingDependencyError
from vitship.models.quiet import quiet_stderr

TARGET = "litert:cpu"
SIGNATURE = "serving_default"


class LitertCapture:
    """One .tflite on ai-edge-litert's Interpreter (XNNPACK) with every float op output exposed."""

    target = TARGET

    def __init__(self, artifact: Artifact, path: Path, threads: int | None = None, loaded=None):
        try:
            with quiet_stderr():
                from ai_edge_litert import schema_py_generated as schema
                from ai_edge_litert.interpreter import Interpreter
                from ai_edge_litert.tools import flatbuffer_utils
        except ImportError as err:
            raise MissingDependencyError("ai-edge-litert", "vitship diagnose on LiteRT artifacts",
                                         "'ai-edge-litert>=2.3,<2.4'") from err
        tree = flatbuffer_utils.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
        graph = tree.subgraphs[0]
        produced = [index for op in graph.operators for index in op.outputs
                    if index >= 0 and graph.tensors[index].type == schema.TensorType.FLOAT32]
        produced = list(dict.fromkeys(produced))  # graph order: TFLite operators are topologically sorted
        self._outputs = {_name(graph.tensors[i]): i for i in graph.outputs}
        graph.outputs = produced
        with quiet_stderr():  # the XNNPACK delegate announces itself on fd 2
            self._interpreter = Interpreter(model_content=bytes(flatbuffer_utils.convert_object_to_bytearray(tree)),
                                            num_threads=threads)
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        if self._input["dtype"] != np.float32:
            from vitship.bench.diagnose.result import DiagnoseError

            raise DiagnoseError(f"{artifact.id}: vitship diagnose compares tensor-input LiteRT programs; export it with "
                                "LitertOptions(input='tensor') (the default)")
        self._index = {_name(graph.tensors[i]): i for i in produced}
        self.tensor_names = list(self._index)
        self._signature = self._interpreter.get_signature_runner(SIGNATURE).get_output_details()
        note = (f"{artifact.id}: intermediates of the .tflite on ai-edge-litert's Interpreter with XNNPACK (the kernels "
                "litert:cpu runs); the converter folds each LayerNorm's scale and shift into the next Linear, so the "
                "SmoothQuant fold does not reach LiteRT's weights")
        self.notes = [note]

    def run(self, image: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """The float tensors ``names`` (default: every op output) for one preprocessed image (C, H, W)."""
        self._interpreter.set_tensor(self._input["index"], np.ascontiguousarray(image[None], dtype=np.float32))
        self._interpreter.invoke()
        return {name: self._interpreter.get_tensor(self._index[name]).copy()
                for name in (self.tensor_names if names is None else names) if name in self._index}

    def output_tensor(self, name: str) -> str:
        """The tensor name behind the signature output ``name`` (``serving_default_logits_output`` ...)."""
        index = self._signature[name]["index"]
        return next(tensor for tensor, i in self._index.items() if i == index)


def _name(tensor) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
