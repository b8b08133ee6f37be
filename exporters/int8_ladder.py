"""No failing int8 shipped quietly: each int8 export is checked against fp32 and escalated along a fixed ladder.

The check runs the int8 artifact on calibration photos held back from calibration (``calibration_images(...,
"held_back")``) against the PyTorch fp32 model, with the int8 gate of docs/DESIGN.md. Running an artifact needs a
runtime, and exporters never import runtimes, so the check arrives as a callable (``Int8Gate``) that the bench
layer builds (``vitship.bench.int8_gate``) and ``pipeline.export_all(..., gate=...)`` passes on.

The ladder, step by step until one passes (each step recorded in ``Artifact.details["int8"]["steps"]``):

1. the requested recipe (the options as given);
2. the other SmoothQuant fold strengths of ``LADDER_ALPHAS`` (0.5, 0.8, then none), in that order;
3. from the best of those (highest min feature cosine), the most sensitive layers kept in float:
   the top ``KEEP_FLOAT_COUNTS`` (2, 4, 8) Linears named by the locator.

If none passes, the export fails (``Int8GateFailed``) with every step's figures: nothing is shipped.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from vitship.exporters.base import Artifact, ExportError, ExportFn, TraceCache, calibration_images
from vitship.exporters.details import Calibration

if TYPE_CHECKING:
    from vitship.exporters.int8 import Int8Options
    from vitship.models import LoadedModel

LADDER_ALPHAS = (0.5, 0.8, None)
KEEP_FLOAT_COUNTS = (2, 4, 8)


class Int8GateFailed(ExportError):
    """No step of the int8 ladder passed the int8 gate: the artifact is not shipped."""


@dataclass(frozen=True)
class GateCheck:
    """One int8 artifact against the PyTorch fp32 model on the held-back photos."""

    passed: bool
    target: str
    min_cosine: float
    max_prob_error: float
    agreement: float | None  # on decisive photos; None when every photo is ambiguous
    failures: tuple[str, ...] = ()

    def figures(self) -> dict:
        return {"passed": self.passed, "target": self.target, "min_cosine": round(self.min_cosine, 6),
                "max_prob_error": round(self.max_prob_error, 6), "agreement": self.agreement,
                "failures": list(self.failures)}


# check(artifact, model_dir, held-back images) -> GateCheck, or None when no target here runs the artifact.
# The artifact's path is relative to model_dir (it points into the export's temporary folder).
CheckFn = Callable[[Artifact, Path, np.ndarray], "GateCheck | None"]
# locate(artifact, model_dir, images) -> torch module names (``blocks.3.mlp.fc1``), the most sensitive first.
LocateFn = Callable[[Artifact, Path, np.ndarray], list[str]]


@dataclass(frozen=True)
class Int8Gate:
    check: CheckFn
    locate: LocateFn | None = None  # None: rank by the outlier ratio of each Linear's input (outlier_ranking)


def export_gated(exporter: ExportFn, loaded: LoadedModel, tmp: Path, options: Int8Options, cache: TraceCache,
                 gate: Int8Gate) -> Artifact:
    """Export an int8 artifact into ``tmp`` (beside its final folder), escalating until it passes the gate.

    Raises:
        Int8GateFailed: the ladder ended without a passing artifact (the message has every step's figures).
    """
    images, held = calibration_images(loaded.spec, options, "held_back")
    if not len(images):
        artifact = exporter(loaded, tmp, options, cache)
        return _record(artifact, [], "not checked: fewer than 3 calibration photos, none held back", held, options)
    ladder = _Ladder(exporter, loaded, tmp, cache, gate, images)
    check = ladder.attempt(options, "requested recipe")
    if check is None:
        return _record(ladder.artifact, ladder.steps, "not checked: no target here runs this artifact", held, options)
    for alpha in [a for a in LADDER_ALPHAS if a != options.smooth_alpha]:
        if check.passed:
            break
        check = ladder.attempt(options.replace(smooth_alpha=alpha), f"smoothing alpha {alpha if alpha is not None else 'off'}")
    if not check.passed:
        base = ladder.best_options()
        if base is not ladder.last_options:
            ladder.attempt(base, "rebuilt: the best smoothing so far, for the locator", record=False)
        ranked = sensitive_layers(gate, ladder, base, images)
        for count in KEEP_FLOAT_COUNTS:
            check = ladder.attempt(base.replace(keep_float=tuple(ranked[:count])), f"{count} most sensitive layers in float")
            if check.passed:
                break
    if not check.passed:
        lines = "; ".join(f"step {s['step']} ({s['why']}): cosine {s['min_cosine']:.4f}, prob error {s['max_prob_error']:.3f}"
                          for s in ladder.steps)
        raise Int8GateFailed(f"{ladder.artifact.id}: no int8 recipe passed the int8 gate on {len(images)} held-back photos "
                             f"({lines}); keep fp16/fp32 for this model, or pass --calibration with more photos")
    return _record(ladder.artifact, ladder.steps, "passed", held, options, ladder.located_by)


class _Ladder:
    """Exports and checks one recipe at a time in the same temporary folder, keeping every step's figures."""

    def __init__(self, exporter, loaded, tmp: Path, cache, gate: Int8Gate, images: np.ndarray):
        self.exporter, self.loaded, self.tmp, self.cache, self.gate, self.images = exporter, loaded, tmp, cache, gate, images
        self.steps: list[dict] = []
        self.artifact: Artifact | None = None
        self.last_options = None
        self._scored: list[tuple[float, object]] = []
        self.located_by: str | None = None

    def attempt(self, options, why: str, record: bool = True) -> GateCheck | None:
        for child in self.tmp.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.artifact, self.last_options = self.exporter(self.loaded, self.tmp, options, self.cache), options
        check = self.gate.check(self.probe(), self.tmp.parent, self.images)
        if check is not None and record:
            self._scored.append((check.min_cosine, options))
            self.steps.append({"step": len(self.steps) + 1, "why": why, "smooth_alpha": options.smooth_alpha,
                               "keep_float": list(options.keep_float), **check.figures()})
        return check

    def probe(self) -> Artifact:
        """The artifact as it lies in the temporary folder (its path relative to the model folder)."""
        inner = Path(self.artifact.path).relative_to(Path(self.artifact.path).parts[0])
        return dataclasses.replace(self.artifact, path=f"{self.tmp.name}/{inner.as_posix()}")

    def best_options(self):
        return max(self._scored, key=lambda scored: scored[0])[1]


def _record(artifact: Artifact, steps: list[dict], verdict: str, held: Calibration, requested: Int8Options,
            located_by: str | None = None) -> Artifact:
    """Artifact.details.int8: the recipe shipped, the ladder's steps with figures, the layers kept in float.

    ``Artifact.options`` stays the *requested* options: it is the rebuild key, and the next export with the same
    options must find the artifact up to date, whatever recipe the ladder settled on.
    """
    shipped = {"smooth_alpha": artifact.option("smooth_alpha"), "keep_float": artifact.option("keep_float", [])}
    artifact.options = requested.cache_key()
    record = {"gate": verdict, "held_back_photos": held.files, "recipe": shipped, "steps": steps,
              "kept_in_float": shipped["keep_float"], **({"layers_ranked_by": located_by} if located_by else {})}
    artifact.details.int8 = {**(artifact.details.int8 or {}), **record}
    return artifact


def outlier_ranking(loaded: LoadedModel, images: np.ndarray) -> list[str]:
    """Every block Linear ranked by how far its input's largest channel stands above the median channel.

    A per-tensor int8 activation scale is set by the largest channel, so the Linear with the most extreme
    input outliers loses the most. The locator's fallback when the gate brings none.
    """
    from vitship.exporters.smoothing import input_channel_maxima

    named = [(name, module) for name, module in loaded.model.vit.blocks.named_modules() if type(module).__name__ == "Linear"]
    maxima = input_channel_maxima(loaded.model, [module for _, module in named], images)
    ratios = [float(m.max() / m.median().clamp(min=1e-6)) for m in maxima]
    order = sorted(range(len(named)), key=lambda i: -ratios[i])
    return [f"blocks.{named[i][0]}" for i in order]


def sensitive_layers(gate: Int8Gate, ladder: "_Ladder", base: Int8Options, images: np.ndarray) -> list[str]:
    """Block Linears, most sensitive first: the locator's ranking, completed by the outlier ranking of the model
    as quantized (smoothed when ``base`` smooths). The locator compares against an unsmoothed fp32 sibling, so it
    is asked only about unsmoothed artifacts."""
    from vitship.exporters.int8 import model_to_quantize

    located = gate.locate(ladder.probe(), ladder.tmp.parent, images) if gate.locate and base.smooth_alpha is None else []
    quantized, _, _ = model_to_quantize(ladder.loaded, base, TraceCache())
    photos, _ = calibration_images(ladder.loaded.spec, base)
    ranked = outlier_ranking(quantized, photos)
    located = [name for name in located if name in ranked]
    ladder.located_by = "per-layer locator (vitship diagnose)" if located else "input outlier ranking (PyTorch hooks)"
    return located + [name for name in ranked if name not in located]
