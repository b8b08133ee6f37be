"""The export's int8 gate: what it injects (a runner), what it judges on, and how it judges.

Running an artifact needs a runtime and exporters never import runtimes, so the layer above builds an
``Int8Gate`` whose ``run`` executes an artifact (``vitship.bench.int8_gate.int8_gate``) and hands it to
``pipeline.export_all(..., gate=...)``. Everything else is here: the reference outputs (PyTorch fp32, in
this process), the judgement (``models.judgement.judge``, the one parity uses, photos first and a noise
floor on random tensors) and the margin that makes a pass on the gate's photos predict one in parity.

The margin (``GATE_MARGIN``) holds back a fraction of each error budget of parity's int8 gate: with 0.4,
the gate asks for max probability error <= 0.03 and feature cosine >= 0.988 where parity allows 0.05 and
0.98. With the bundled photos the gate sees parity's photos at parity's batch sizes; the margin is for the
photos it did not see (``--calibration DIR``). It was chosen by measurement: how much worse photos left out
were than the worst photo seen, over every int8 artifact measured on seeded, seeded-outliers and
seeded-outliers-trained (docs/MEASUREMENTS.md "int8 verdicts").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vitship.exporters.base import Artifact
from vitship.exporters.int8.photos import DEFAULT_VIEWS, GateInputs
from vitship.models import FEATURES_NAME, LOGITS_NAME
from vitship.models.judgement import DEFAULT_TOLERANCES, Judgement, Tolerance, judge

if TYPE_CHECKING:
    from vitship.models import LoadedModel

GATE_MARGIN = 0.4
# parity's batch sizes (bench.parity.run.ParityConfig; a test keeps them equal): ONNX Runtime's dynamic int8 scales
# each activation over the whole batch, so a batch of 8 can lose more than one image alone (measured: up to 2x)
GATE_BATCHES = (1, 8)


@dataclass(frozen=True)
class ArtifactRun:
    """An artifact's outputs on the gate's inputs, from the runner the layer above injects."""

    target: str
    outputs: dict[str, np.ndarray] | None = None  # {"logits", "features"}, aligned with the inputs; None: it failed
    error: str = ""  # why it failed to run


# run(artifact, model_dir, pixels, batch) -> ArtifactRun, or None when no target here runs the artifact's format.
# ``batch`` images at a time (the last batch the remainder); the artifact's path is relative to model_dir (it points
# into the export's temporary folder).
RunFn = Callable[[Artifact, Path, np.ndarray, int], "ArtifactRun | None"]
# locate(artifact, model_dir, pixels) -> torch module names (``blocks.3.mlp.fc1``), the most sensitive first.
LocateFn = Callable[[Artifact, Path, np.ndarray], list[str]]


@dataclass(frozen=True)
class Int8Gate:
    """The export's int8 gate, as the layer that can run artifacts builds it.

    Attributes:
        run: executes an artifact on a batch (injected: exporters never import runtimes).
        locate: ranks the Linears of a failing artifact (vitship diagnose's locator); None: by input outliers.
        margin: the fraction of each error budget held back (GATE_MARGIN).
        views: the views of each select and confirm photo judged (photos.VIEWS; default the photo alone).
    """

    run: RunFn
    locate: LocateFn | None = None
    margin: float = GATE_MARGIN
    views: tuple[str, ...] = DEFAULT_VIEWS

    @property
    def tolerance(self) -> Tolerance:
        return gate_tolerance(self.margin)


def gate_tolerance(margin: float = GATE_MARGIN) -> Tolerance:
    """Parity's int8 gate with ``margin`` of each error budget held back."""
    return DEFAULT_TOLERANCES["int8"].tightened(margin)


@dataclass(frozen=True)
class GateCheck:
    """One artifact judged on one part's inputs."""

    target: str
    judgement: Judgement | None  # None: the artifact did not run
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def min_cosine(self) -> float:
        return float(self.judgement.metrics.min_cosine or 0.0) if self.judgement else 0.0

    @property
    def max_prob_error(self) -> float:
        return float(self.judgement.metrics.max_prob_err) if self.judgement else 1.0

    @property
    def agreement(self) -> float | None:
        return self.judgement.metrics.decisive_agreement if self.judgement else None


def reference_outputs(loaded: LoadedModel, inputs: GateInputs) -> dict[str, np.ndarray]:
    """The PyTorch fp32 outputs on the gate's inputs (what every step is judged against)."""
    import torch

    with torch.inference_mode():
        logits, features = loaded.model(torch.from_numpy(inputs.pixels))
    return {LOGITS_NAME: logits.numpy(), FEATURES_NAME: features.numpy()}


def batches(artifact: Artifact) -> tuple[int, ...]:
    """The batch sizes the gate runs: parity's, or batch 1 alone for a program that takes one image at a time."""
    return artifact.batch_shapes.distinct(GATE_BATCHES)


def check(gate: Int8Gate, artifact: Artifact, model_dir: Path, inputs: GateInputs, reference: dict[str, np.ndarray],
          loaded: LoadedModel) -> GateCheck | None:
    """Run ``artifact`` on ``inputs`` at parity's batch sizes and judge it as parity does, with the gate's margin.

    Returns None when no target here runs the artifact.
    """
    sizes, outputs = batches(artifact), []
    for size in sizes:
        run = gate.run(artifact, model_dir, inputs.pixels, size)
        if run is None:
            return None
        if run.outputs is None:
            return GateCheck(run.target, None, (f"could not run on {run.target} at batch {size}: {run.error}",))
        outputs.append(run.outputs)
    stacked = {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}
    repeated = {name: np.concatenate([values] * len(sizes)) for name, values in reference.items()}
    names = [f"{name}@b{size}" for size in sizes for name in inputs.names]
    judgement = judge(stacked, repeated, loaded.spec, names, np.tile(inputs.is_photo, len(sizes)), "int8", gate.tolerance,
                      repeats=len(sizes))
    return GateCheck(run.target, judgement, tuple(judgement.failures))
