"""The int8 record every int8 artifact carries: its verdict, the recipe shipped, every ladder step, the photos used.

It lives in the manifest at ``Artifact.details.int8_gate`` (``exporters/details.py`` ``ArtifactDetails``), written
and read by the manifest's schema like every other typed field; ``Int8Record.attach`` / ``Int8Record.of`` set and
read it. An int8 artifact without one cannot be built: the pipeline attaches a "not checked" record when the gate
is turned off (``gate=False``, ``--no-int8-gate``). A manifest written before this record existed reads migrated
(``exporters/schema.py``: the old ladder's gate becomes a record with no steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vitship.models.judgement import Tolerance
from vitship.models.status import Status
from vitship.models.typed import OpenRecord

if TYPE_CHECKING:
    from vitship.exporters.base import Artifact

GATE_OFF = "the int8 gate was turned off (gate=False, --no-int8-gate): the requested recipe shipped unchecked"
NO_RECORD = "exported without the int8 gate (no record)"
RECORD_VERSION = 1
PHOTO_ROLES = ("calibrate", "select", "confirm")


@dataclass(frozen=True)
class Int8Recipe:
    """What an int8 artifact was quantized with: the format's mode, the SmoothQuant fold, the Linears kept in float."""

    mode: str | None = None
    smooth_alpha: float | None = None
    keep_float: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [self.mode or "default", f"smoothing {self.smooth_alpha if self.smooth_alpha is not None else 'off'}"]
        return ", ".join(parts + ([f"{len(self.keep_float)} Linears in float"] if self.keep_float else []))


@dataclass(frozen=True)
class PhotoSet:
    """The photos one part of the gate used: calibrate on, select the recipe on, or confirm the pick on."""

    role: str  # one of PHOTO_ROLES
    files: tuple[str, ...]
    views: int = 1  # deterministic views of each photo the gate ran (1: the photos alone; photos.VIEWS)
    random_tensors: int = 0  # random tensors checked against the noise floor beside them
    as_is: tuple[str, ...] = ()  # photos also checked, each once without views (the calibration photos, at confirm)


@dataclass(frozen=True)
class Int8Step:
    """One rung of the ladder: the recipe tried and what the gate measured on its photos."""

    step: int
    why: str  # "requested recipe", "smoothing alpha 0.8", "4 most sensitive layers in float", "confirmation"
    recipe: Int8Recipe
    photos: str  # the PhotoSet role judged: "select" or "confirm"
    target: str
    passed: bool
    min_cosine: float
    max_prob_error: float
    agreement: float | None  # on decisive photos; None when every photo is ambiguous
    failures: tuple[str, ...] = ()

    def figures(self) -> str:
        return (f"step {self.step} ({self.why}, {self.photos} photos): cosine {self.min_cosine:.4f}, "
                f"prob error {self.max_prob_error:.3f}")


@dataclass
class Int8Record(OpenRecord):
    """The verdict on one int8 artifact and how it was reached.

    Attributes:
        verdict: PASS (a step passed on the select photos and again on the confirm photos), FAIL (no step did:
            nothing shipped) or NOT_CHECKED (gate off, no target here runs the format, or too few photos).
        reason: why, in a sentence (the shipped step, or what was not checked and why).
        recipe: what the shipped artifact was quantized with (the rebuild key stays the *requested* options).
        steps: every step with its figures, in order.
        photos: the PhotoSets the verdict used, by role.
        split: how the photos were split ("calibrate / select / confirm", or why not).
        tolerance: the gate the steps were judged by (parity's int8 gate with the margin held back).
        margin: the fraction of each error budget the gate held back (verdict.GATE_MARGIN).
        batches: the batch sizes each step ran its photos at (verdict.GATE_BATCHES: parity's).
        layers_ranked_by: what ranked the Linears kept in float, when the ladder got that far.
    """

    verdict: Status
    reason: str
    recipe: Int8Recipe = field(default_factory=Int8Recipe)
    steps: tuple[Int8Step, ...] = ()
    photos: dict[str, PhotoSet] = field(default_factory=dict)
    split: str = ""
    tolerance: Tolerance | None = None
    margin: float = 0.0
    batches: tuple[int, ...] = ()
    layers_ranked_by: str | None = None
    version: int = RECORD_VERSION

    @property
    def gate_was_off(self) -> bool:
        """Not checked because nobody ran the gate (rather than because nothing here could run the artifact)."""
        return self.verdict is Status.NOT_CHECKED and self.reason in (GATE_OFF, NO_RECORD)

    def summary(self) -> str:
        """One line for tables: the verdict and, for a pass, the step that shipped."""
        if self.verdict is Status.PASS and self.steps:
            shipped = [s for s in self.steps if s.photos == "select"][-1]
            return str(Status.PASS) if shipped.step == 1 else f"{Status.PASS} (step {shipped.step}: {shipped.why})"
        if self.verdict is Status.FAIL:
            return f"{Status.FAIL}: no step of {len([s for s in self.steps if s.photos == 'select'])} passed"
        return f"{self.verdict}: {self.reason}"

    def rejected_reason(self) -> str:
        """Why this int8 was not shipped, in one sentence with its best step's figures (the report's "avoid" line)."""
        tried = [step for step in self.steps if step.photos == "select"]
        best = max(tried, key=lambda step: step.min_cosine, default=None)
        figures = f"; best: {best.why}, cosine {best.min_cosine:.4f}, prob error {best.max_prob_error:.3f}" if best else ""
        return f"not shipped: none of {len(tried)} int8 recipes passed the export's int8 gate{figures}"

    def attach(self, artifact: Artifact) -> Artifact:
        artifact.details.int8_gate = self
        return artifact

    @classmethod
    def of(cls, artifact: Artifact) -> Int8Record | None:
        """The artifact's record; None for a non-int8 artifact. An int8 with no record at all reads as not checked."""
        if artifact.precision != "int8":
            return None
        return artifact.details.int8_gate or cls(Status.NOT_CHECKED, NO_RECORD)


def verdict_of(artifact: Artifact) -> Status | None:
    """The int8 gate's verdict on ``artifact`` (None when it is not int8): what parity, the report and compare show."""
    record = Int8Record.of(artifact)
    return record.verdict if record else None
