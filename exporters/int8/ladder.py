"""No failing int8 shipped quietly: each int8 export is judged on held-back photos and escalated along a fixed ladder.

The gate (``verdict.Int8Gate``, injected by the layer that can run artifacts) runs each candidate on the
*select* photos (at parity's batch sizes, ``verdict.GATE_BATCHES``) and judges it against PyTorch fp32 with
parity's int8 rule and the gate's margin. The ladder, step by step until one passes (each step in the record):

1. the requested recipe;
2. where the format takes the SmoothQuant fold (``Int8Capabilities.smoothing``), the other strengths of
   ``LADDER_ALPHAS`` (0.5, 0.8, then none);
3. where it can keep layers in float, from the best recipe so far (highest min feature cosine), the top
   ``KEEP_FLOAT_COUNTS`` (2, 4, 8) Linears of ``ranking.sensitive_layers``.

A step that passes on the select photos is confirmed on the *confirm* photos and on each calibration photo:
photos that did not pick it (``calibration.calibration_split``). It ships only if it passes there too, else
the ladder goes on. If no
step passes, the export fails (``Int8GateFailed``) with every step's figures and nothing is shipped.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from vitship.exporters.base import Artifact, ExportError, ExportFn, TraceCache
from vitship.exporters.int8.calibration import MIN_SPLIT, calibration_files
from vitship.exporters.int8.photos import GateInputs, gate_inputs
from vitship.exporters.int8.ranking import sensitive_layers
from vitship.exporters.int8.record import Int8Recipe, Int8Record, Int8Step, PhotoSet
from vitship.exporters.int8.verdict import GateCheck, Int8Gate, batches, check, reference_outputs
from vitship.models.status import Status

if TYPE_CHECKING:
    from vitship.exporters.int8.capabilities import Int8Capabilities
    from vitship.exporters.int8.options import Int8Options
    from vitship.models import LoadedModel

LADDER_ALPHAS = (0.5, 0.8, None)
KEEP_FLOAT_COUNTS = (2, 4, 8)


class Int8GateFailed(ExportError):
    """No step of the int8 ladder passed the int8 gate: the artifact is not shipped. ``record`` has every step."""

    def __init__(self, message: str, record: Int8Record):
        super().__init__(message)
        self.record = record


def recipe_of(options: Int8Options, caps: Int8Capabilities) -> Int8Recipe:
    mode = getattr(options, caps.mode_field) if caps.mode_field else caps.default_mode
    return Int8Recipe(mode, options.smooth_alpha, tuple(options.keep_float))


def not_checked(artifact: Artifact, options: Int8Options, caps: Int8Capabilities, reason: str,
                photos: dict[str, PhotoSet] | None = None, steps: tuple[Int8Step, ...] = ()) -> Artifact:
    """Attach a "not checked" record: the artifact ships, and everything that shows it says it was not checked."""
    return Int8Record(Status.NOT_CHECKED, reason, recipe_of(options, caps), steps, photos or {}).attach(artifact)


def export_gated(exporter: ExportFn, loaded: LoadedModel, tmp: Path, options: Int8Options, cache: TraceCache,
                 gate: Int8Gate, caps: Int8Capabilities) -> Artifact:
    """Export an int8 artifact into ``tmp`` (beside its final folder), escalating until it passes the gate.

    Raises:
        Int8GateFailed: the ladder ended without a passing artifact (the message has every step's figures).
    """
    select, select_info = calibration_files(options, "select")
    if not select:
        artifact = exporter(loaded, tmp, options, cache)
        return not_checked(artifact, options, caps, f"fewer than 3 calibration photos ({select_info.source}): none "
                                                    "held back to check on")
    confirm, confirm_info = calibration_files(options, "confirm")
    calibrate, calibrate_info = calibration_files(options, "calibration")
    split = select != confirm  # calibration_split gives both parts every held-back photo when there are too few
    # the confirmation also runs each calibration photo once: they did not pick the recipe either (issue 22's worst
    # photo was one of them), and with the bundled photos the select and confirm parts then cover parity's 18
    inputs = {"select": gate_inputs(loaded.spec, select, select_info.files, "select", gate.views),
              "confirm": gate_inputs(loaded.spec, confirm, confirm_info.files, "confirm", gate.views,
                                     as_is=(calibrate, calibrate_info.files))}
    ladder = _Ladder(exporter, loaded, tmp, cache, gate, caps, inputs, split)
    ladder.photos["calibrate"] = PhotoSet("calibrate", tuple(calibrate_info.files))
    outcome = ladder.climb(options)
    if outcome is None:
        return not_checked(ladder.artifact, options, caps, f"no target here runs {ladder.artifact.format} "
                           f"({', '.join(caps.gate_targets)})", ladder.photos, tuple(ladder.steps))
    record = ladder.record(Status.PASS if outcome else Status.FAIL, options)
    if not outcome:
        raise Int8GateFailed(f"{ladder.artifact.id}: no int8 recipe passed the int8 gate ({record.reason}); keep "
                             "fp16/fp32 for this model, or pass --calibration with more photos", record)
    artifact = record.attach(ladder.artifact)
    artifact.options = options.cache_key()  # the rebuild key stays the requested recipe, whatever step shipped
    return artifact


class _Ladder:
    """Exports and checks one recipe at a time in the same temporary folder, keeping every step's figures."""

    def __init__(self, exporter, loaded, tmp: Path, cache, gate: Int8Gate, caps: Int8Capabilities,
                 inputs: dict[str, GateInputs], split: bool):
        self.exporter, self.loaded, self.tmp, self.cache, self.gate, self.caps = exporter, loaded, tmp, cache, gate, caps
        self.inputs, self.split = inputs, split
        self.references = {role: reference_outputs(loaded, part) for role, part in inputs.items()}
        self.photos = {role: part.photos for role, part in inputs.items()}
        self.steps: list[Int8Step] = []
        self.artifact: Artifact | None = None
        self.built: Int8Options | None = None
        self.scored: list[tuple[float, Int8Options]] = []
        self.ranked_by: str | None = None

    def climb(self, requested: Int8Options) -> bool | None:
        """True: a step passed select and confirm; False: none did; None: no target here runs the format."""
        rungs = [(requested, "requested recipe")]
        if self.caps.smoothing:
            rungs += [(requested.replace(smooth_alpha=alpha), f"smoothing alpha {alpha if alpha is not None else 'off'}")
                      for alpha in LADDER_ALPHAS if alpha != requested.smooth_alpha]
        for options, why in rungs:
            outcome = self.attempt(options, why)
            if outcome is not False:
                return outcome
        if not self.caps.keep_float:
            return False
        base = max(self.scored, key=lambda scored: scored[0])[1]
        if base is not self.built:
            self.build(base)  # the locator ranks the artifact built with the recipe it will start from
        ranked, self.ranked_by = sensitive_layers(self.loaded, base, self.gate.locate, self.probe(), self.tmp.parent,
                                                  self.inputs["select"].pixels[self.inputs["select"].is_photo])
        for count in KEEP_FLOAT_COUNTS:
            if self.attempt(base.replace(keep_float=tuple(ranked[:count])), f"{count} most sensitive layers in float"):
                return True
        return False

    def build(self, options: Int8Options) -> None:
        for child in self.tmp.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.artifact, self.built = self.exporter(self.loaded, self.tmp, options, self.cache), options

    def attempt(self, options: Int8Options, why: str) -> bool | None:
        self.build(options)
        selected = self.judge(options, why, "select")
        if selected is None or not selected.passed:
            return None if selected is None else False
        confirmed = self.judge(options, f"confirming step {self.steps[-1].step}", "confirm")
        return confirmed is None or confirmed.passed

    def judge(self, options: Int8Options, why: str, role: str) -> GateCheck | None:
        result = check(self.gate, self.probe(), self.tmp.parent, self.inputs[role], self.references[role], self.loaded)
        if result is None:
            return None
        if role == "select":
            self.scored.append((result.min_cosine, options))
        self.steps.append(Int8Step(len(self.steps) + 1, why, recipe_of(options, self.caps), role, result.target,
                                   result.passed, round(result.min_cosine, 6), round(result.max_prob_error, 6),
                                   result.agreement, result.failures))
        return result

    def probe(self) -> Artifact:
        """The artifact as it lies in the temporary folder (its path relative to the model folder)."""
        inner = Path(self.artifact.path).relative_to(Path(self.artifact.path).parts[0])
        return dataclasses.replace(self.artifact, path=f"{self.tmp.name}/{inner.as_posix()}")

    def record(self, verdict: Status, requested: Int8Options) -> Int8Record:
        last = self.steps[-1]
        if verdict is Status.PASS:
            first = "the requested recipe" if len([s for s in self.steps if s.photos == "select"]) == 1 else last.recipe.describe()
            reason = f"{first} passed on the select photos and on the confirm photos"
        else:
            reason = "; ".join(step.figures() for step in self.steps)
        split = ("calibrate / select / confirm (the confirmation also runs each calibration photo once)" if self.split else
                 f"not split: fewer than {MIN_SPLIT} photos held back, so the confirmation repeats the photos that selected "
                 "the recipe (plus each calibration photo once)")
        return Int8Record(verdict, reason, last.recipe if verdict is Status.PASS else recipe_of(requested, self.caps),
                          tuple(self.steps), dict(self.photos), split, self.gate.tolerance, self.gate.margin,
                          batches(self.artifact), self.ranked_by)
