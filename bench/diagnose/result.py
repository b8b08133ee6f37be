"""DiagnoseResult: the per-layer divergence of an artifact against its fp32 sibling, and how it is ranked."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from vitship.models import VitshipError
from vitship.models.atomic import atomic_write_json

SCHEMA_VERSION = 1


class DiagnoseError(VitshipError):
    """An artifact vitship diagnose cannot compare (no fp32 sibling, an unknown id, no common tensors)."""


@dataclass(frozen=True)
class LayerDivergence:
    """One compared tensor: a layer's output in the artifact against the same tensor in the fp32 sibling.

    Attributes:
        module: the torch module path that computes the tensor (``blocks.3.mlp.fc1``), stable across formats;
            ``features``/``logits`` for the model outputs.
        tensor: the format's own name of the tensor (ONNX tensor, OpenVINO op, MIL variable, ...).
        min_cosine: the lowest cosine over the images (each image's tensor flattened).
        max_abs_error: the largest absolute difference over the images.
        input_tensor: the tensor the layer is measured against: the module's input (None: the model input, or not
            found); for a container such as ``blocks.3`` (its output is the residual add), its last sublayer.
        input_min_cosine: the lowest cosine of that input over the images (1.0 for the model input).
        added_drop: the cosine the layer itself loses, max over images of ``cos(input) - cos(output)``.
        smoothed: a LayerNorm whose output the SmoothQuant fold rescales per channel in the artifact (the next
            Linear scales it back): its cosine measures the rescale, not an error, so it is neither ranked nor
            judged against the gate, and the Linear it feeds is measured against the LayerNorm's input.
    """

    module: str
    tensor: str
    min_cosine: float
    max_abs_error: float
    input_tensor: str | None = None
    input_min_cosine: float = 1.0
    added_drop: float = 0.0
    smoothed: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class DiagnoseResult:
    """Every compared layer from input to logits, in graph order, for one artifact.

    Ranking. A quantization error shows at the output of the op that quantizes, but it is often caused
    by the op's *input*: ONNX dynamic int8 quantizes the activation that enters ``attn.qkv`` and
    ``mlp.fc1`` per tensor, so outlier channels in ``norm1``/``norm2``'s output crush the other channels
    and the cosine falls at the output of qkv/fc1 while the LayerNorm's own output (computed in float)
    is still exact. Every later layer inherits that loss, so ranking by the cosine itself would name
    whatever comes last. ``worst`` ranks by ``added_drop`` instead: the cosine a layer loses relative
    to its own input, so a layer that only passes an upstream error on ranks low, and the layer where
    the error enters ranks high. A layer named there is the op whose quantization hurts; its input's
    producer (``input_tensor``) is the range it was given.
    """

    artifact: str
    reference: str  # the fp32 sibling's artifact id
    target: str  # where both ran ("onnxruntime:cpu", "openvino:CPU", ...)
    gate: float  # the min feature cosine of the artifact's precision (models/judgement.py)
    n_images: int
    layers: list[LayerDivergence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def first_below(self, gate: float | None = None) -> LayerDivergence | None:
        """The first layer in graph order whose min cosine is below ``gate`` (default: the precision's gate)."""
        gate = self.gate if gate is None else gate
        return next((layer for layer in self.layers if layer.min_cosine < gate and not layer.smoothed), None)

    def worst(self, n: int = 5) -> list[LayerDivergence]:
        """The ``n`` layers that add the most divergence (largest ``added_drop``; ties: lower cosine first)."""
        return sorted(self.layers, key=lambda layer: (-layer.added_drop, layer.min_cosine))[:n]

    def layer(self, module: str) -> LayerDivergence:
        """The row of one module path; KeyError when it was not compared."""
        for row in self.layers:
            if row.module == module:
                return row
        raise KeyError(module)

    def to_dict(self) -> dict:
        first = self.first_below()
        return {"schema_version": self.schema_version, "artifact": self.artifact, "reference": self.reference,
                "target": self.target, "gate": self.gate, "n_images": self.n_images,
                "first_below_gate": first.module if first else None,
                "worst": [layer.module for layer in self.worst()],
                "layers": [layer.to_dict() for layer in self.layers], "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: dict) -> "DiagnoseResult":
        layers = [LayerDivergence(**row) for row in data["layers"]]
        return cls(data["artifact"], data["reference"], data["target"], data["gate"], data["n_images"], layers,
                   list(data.get("notes", [])), data.get("schema_version", SCHEMA_VERSION))

    def write_json(self, path: Path) -> Path:
        atomic_write_json(Path(path), self.to_dict())
        return Path(path)
