"""OpenVINO intermediates: every float op output added as a model output (``Model.add_outputs``), on the CPU in f32.

NNCF keeps the friendly names of the ops it quantizes (``__module.vit.blocks.0.attn.qkv/aten::linear/MatMul``)
and adds its own (``.../fq_output_0``, ``.../fq_weights_1``), so an op of the int8 IR has the same friendly
name as the op it stands for in the fp32 IR; NNCF's FakeQuantize and weight-decompression ops have no fp32
counterpart and drop out. The CPU plugin runs with INFERENCE_PRECISION_HINT f32 (on bf16-capable CPUs it
would otherwise run the fp32 IR in bf16). Exposing an op's output can stop the plugin from fusing it with
the next op, so a layer's figures are those of the same graph with fewer fusions; the int8 arithmetic
(FakeQuantize ranges, int8 weights) is the artifact's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitship.exporters.base import Artifact
from vitship.models import MissingDependencyError

TARGET = "openvino:CPU"
_SKIPPED_OPS = {"Constant", "Parameter", "Result", "ShapeOf", "Convert", "FakeQuantize"}


def _key(output) -> str:
    """The name of an op output: the op's friendly name, plus ``#i`` for the outputs of a multi-output op."""
    node = output.get_node()
    return node.get_friendly_name() + (f"#{output.get_index()}" if node.get_output_size() > 1 else "")


class OpenvinoCapture:
    """One IR on OpenVINO's CPU plugin with its op outputs exposed (all float ones, or the ``names`` given)."""

    target = TARGET

    def __init__(self, artifact: Artifact, path: Path, threads: int | None = None, loaded=None):
        try:
            import openvino as ov
        except ImportError as err:
            raise MissingDependencyError("openvino", "vitship diagnose on OpenVINO artifacts") from err
        self._core, self._path, self._threads = ov.Core(), Path(path), threads
        self._compiled: dict[tuple[str, ...], object] = {}
        self.notes: list[str] = []
        model = self._core.read_model(str(self._path))
        self._outputs = {result.output(0).get_any_name(): _key(result.input_value(0)) for result in model.get_results()}
        self.tensor_names = list(dict.fromkeys(
            _key(output) for op in model.get_ordered_ops() if op.get_type_name() not in _SKIPPED_OPS
            for output in op.outputs() if output.get_element_type().is_real()))

    def output_tensor(self, name: str) -> str:
        return self._outputs[name]

    def run(self, image: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """The float op outputs ``names`` (default: all of them) for one preprocessed image (C, H, W)."""
        names = tuple(self.tensor_names if names is None else names)
        compiled = self._compiled.get(names) or self._compile(names)
        results = compiled(image[None].astype(np.float32))
        return {name: np.asarray(results[port]) for name, port in zip(names, compiled.outputs)}

    def _compile(self, names: tuple[str, ...]):
        model = self._core.read_model(str(self._path))
        by_key = {_key(output): output for op in model.get_ordered_ops() for output in op.outputs()}
        model.add_outputs([by_key[name] for name in names])
        # add_outputs skips an output that is already a model output, so ports are found by their source op,
        # not by position; the compiled model's outputs follow the model's results in order.
        port_of = {_key(result.input_value(0)): i for i, result in enumerate(model.get_results())}
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if self._threads:
            config["INFERENCE_NUM_THREADS"] = self._threads
        compiled = self._core.compile_model(model, "CPU", config)
        exposed = _Exposed(compiled, [compiled.outputs[port_of[name]] for name in names])
        self._compiled = {names: exposed}  # one exposed set at a time
        return exposed


class _Exposed:
    """A compiled model and the ports of the exposed names, in the names' order."""

    def __init__(self, compiled, outputs):
        self._compiled, self.outputs = compiled, list(outputs)

    def __call__(self, batch: np.ndarray):
        return self._compiled(batch)
