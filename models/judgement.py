"""The one judgement of an artifact against its reference: every metric, and the per-precision tolerance gates.

Parity and the export's int8 gate both judge with this module, so that a verdict means the same thing at
export and in ``vitship parity`` (docs/DESIGN.md "Parity"). It sits in ``models`` (the lowest layer) so that
exporters can gate on it without importing the bench layer.

The ambiguity rule. A reference decision is *ambiguous* when its 'fake' probability lies within the
gate's own probability tolerance of the threshold (|p_ref - threshold| <= max_prob). Inside that band
the probability gate itself allows the candidate to land on the other side, so a flip there says
nothing the probability error does not already say. Such flips are counted and named in every
result (`n_ambiguous`, `ambiguous_flips`, `flipped`) and shown in the table; the agreement gate is
applied to the *decisive* photos (outside the band), where a flip is a real error. The untrained
(seeded) weights put many photos close to 0.5, which is why this matters here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitship.models.errors import VitshipError
from vitship.models.head import fake_probability
from vitship.models.metrics import output_errors
from vitship.models.spec import FEATURES_NAME, LOGITS_NAME, ModelSpec

# Lower rank = less precise. An fp32 IR run in bf16 is judged as bf16; an int8 IR stays int8.
PRECISION_RANK = {"fp32": 3, "fp16": 2, "bf16": 1, "int8": 0}


class ToleranceError(VitshipError):
    """A tolerance override (file or --tolerance) that cannot be used."""


@dataclass(frozen=True)
class Tolerance:
    """One gate. A field set to None is not checked (it is still measured and reported)."""

    min_cosine: float | None = None
    max_abs_logit: float | None = None
    max_prob: float | None = None
    min_agreement: float | None = None  # fraction of decisive real photos on which decisions agree

    def judge(self, metrics: "Metrics", what: str = "") -> list[str]:
        """The checks `metrics` fails, as readable sentences (empty: it passes)."""
        prefix = f"{what}: " if what else ""
        failures = []
        if self.min_cosine is not None:
            if metrics.min_cosine is None:
                failures.append(f"{prefix}no '{FEATURES_NAME}' output to compare")
            elif metrics.min_cosine < self.min_cosine:
                failures.append(f"{prefix}feature cosine {metrics.min_cosine:.6f} < {self.min_cosine}")
        if self.max_abs_logit is not None and metrics.max_abs_logit > self.max_abs_logit:
            failures.append(f"{prefix}max abs logit error {metrics.max_abs_logit:.3g} > {self.max_abs_logit:g}")
        if self.max_prob is not None and metrics.max_prob_err > self.max_prob:
            failures.append(f"{prefix}max probability error {metrics.max_prob_err:.3g} > {self.max_prob:g}")
        if self.min_agreement is not None and metrics.decisive_agreement is not None \
                and metrics.decisive_agreement < self.min_agreement:
            failures.append(f"{prefix}decision agreement {metrics.decisive_agreement:.1%} < {self.min_agreement:.0%} "
                            f"on decisive photos (flipped: {', '.join(metrics.flipped)})")
        return failures

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(min_cosine=0.99999, max_abs_logit=1e-4),
    "fp16": Tolerance(min_cosine=0.999, max_prob=1e-2, min_agreement=1.0),
    "bf16": Tolerance(min_cosine=0.999, max_prob=1e-2, min_agreement=1.0),
    "int8": Tolerance(min_cosine=0.98, max_prob=0.05, min_agreement=0.99),
}


# Image-input artifacts, judged end to end (bench/parity/frames.py): the decoded frame through the artifact's own
# resize, crop and normalisation against PyTorch on Pillow's preprocessing. The in-graph resize is at most 2 8-bit
# levels from Pillow's, 0.66% of the values 1 level or more (exporters/frame_graph.py), which is more than fp32's
# 1e-4 logit gate allows: on the seeded ViT-S the fp32 image artifacts measured min feature cosine 0.9999994, max
# abs logit error 3.4e-4 and max probability error 8.3e-5 (docs/MEASUREMENTS.md "Image-input artifacts"), so the
# fp32 gate leaves a 100x margin on 1 - cosine and 12x on the probability error; the other precisions keep their
# own gate, which that distance does not move (openvino-image-fp32 in bf16: cosine 0.99997, as the tensor IR).
FRAME_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(min_cosine=0.9999, max_prob=1e-3, min_agreement=1.0),
    "fp16": Tolerance(min_cosine=0.999, max_prob=1e-2, min_agreement=1.0),
    "bf16": Tolerance(min_cosine=0.999, max_prob=1e-2, min_agreement=1.0),
    "int8": Tolerance(min_cosine=0.98, max_prob=0.05, min_agreement=0.99),
}
FRAMES = "frames"  # the input kind, and the tolerance key prefix of its overrides


def effective_precision(artifact_precision: str, runtime_precision: str) -> str:
    """The least precise of what the artifact stores and what the runtime computes in."""
    if runtime_precision not in PRECISION_RANK:
        return artifact_precision
    return min(artifact_precision, runtime_precision, key=lambda p: PRECISION_RANK.get(p, 99))


@dataclass
class ToleranceTable:
    """docs/DESIGN.md's defaults plus overrides, looked up by (format, precision, effective runtime precision).

    Override keys, from generic to specific (each later one wins field by field):
    `<effective>` (e.g. `bf16`), `<format>@<effective>` (`openvino@bf16`), `<artifact-id>`
    (`onnx-int8`), `<artifact-id>@<effective>` (`openvino-fp32@bf16`).
    """

    overrides: dict[str, dict] = field(default_factory=dict)

    def lookup(self, fmt: str, precision: str, effective: str, inputs: str = "") -> tuple[Tolerance, list[str]]:
        """The gate and the keys it came from; ``inputs="frames"``: the end-to-end gates (FRAME_TOLERANCES), whose
        overrides are keyed `frames@<effective>` (generic) and the artifact id (specific)."""
        defaults = FRAME_TOLERANCES if inputs == FRAMES else DEFAULT_TOLERANCES
        base = defaults.get(effective) or defaults.get(precision) or defaults["fp32"]
        used = [f"default:{inputs + '@' if inputs else ''}{effective if effective in defaults else precision}"]
        generic = (f"{FRAMES}@{effective}",) if inputs == FRAMES else (effective, f"{fmt}@{effective}")
        for key in (*generic, f"{fmt}-{precision}", f"{fmt}-{precision}@{effective}"):
            if key in self.overrides:
                base = dataclasses.replace(base, **self.overrides[key])
                used.append(key)
        return base, used

    def set(self, key: str, name: str, value: float | None) -> None:
        if name not in {f.name for f in dataclasses.fields(Tolerance)}:
            raise ToleranceError(f"unknown tolerance field {name!r} in {key}.{name}; "
                                 f"valid: {', '.join(f.name for f in dataclasses.fields(Tolerance))}")
        self.overrides.setdefault(key, {})[name] = value

    def to_dict(self) -> dict:
        return {"defaults": {k: v.to_dict() for k, v in DEFAULT_TOLERANCES.items()},
                "frame_defaults": {k: v.to_dict() for k, v in FRAME_TOLERANCES.items()}, "overrides": self.overrides}

    @classmethod
    def from_file(cls, path: Path) -> "ToleranceTable":
        """Read overrides from JSON or TOML: {"int8": {"max_prob": 0.06}, "onnx-int8": {...}}."""
        path = Path(path)
        try:
            text = path.read_text()
            if path.suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                data = json.loads(text)
        except (OSError, ValueError) as err:
            raise ToleranceError(f"{path}: cannot read tolerances ({err}); expected JSON or TOML like "
                                 '{"int8": {"max_prob": 0.06}}') from err
        table = cls()
        for key, fields in data.items():
            if not isinstance(fields, dict):
                raise ToleranceError(f"{path}: {key!r} must map to a table of fields, e.g. {{\"max_prob\": 0.06}}")
            for name, value in fields.items():
                table.set(key, name, None if value is None else float(value))
        return table

    def apply_cli(self, assignments: list[str]) -> None:
        """Apply `KEY.FIELD=VALUE` strings (VALUE may be `none` to switch a check off)."""
        for text in assignments:
            lhs, sep, value = text.partition("=")
            key, dot, name = lhs.strip().rpartition(".")
            if not sep or not dot or not key:
                raise ToleranceError(f"--tolerance {text!r}: expected KEY.FIELD=VALUE, e.g. int8.max_prob=0.06")
            try:
                number = None if value.strip().lower() == "none" else float(value)
            except ValueError as err:
                raise ToleranceError(f"--tolerance {text!r}: {value!r} is not a number (or none)") from err
            self.set(key, name, number)


@dataclass
class Metrics:
    """Candidate vs reference over a set of inputs (every metric is computed; the gate picks)."""

    n_inputs: int
    n_photos: int
    max_abs_logit: float
    mean_abs_logit: float
    p99_abs_logit: float
    min_cosine: float | None
    max_prob_err: float
    agreement: float | None  # over every real photo
    decisive_agreement: float | None  # over real photos outside the ambiguity band
    n_ambiguous: int
    ambiguous_flips: int
    flipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def compare(candidate: dict, reference: dict, spec: ModelSpec, names: list[str], is_photo: np.ndarray,
            band: float = 0.0, threshold: float = 0.5, repeats: int = 1) -> Metrics:
    """Every parity metric for aligned candidate/reference outputs ({'logits', 'features'} each).

    `repeats` > 1 means the inputs are the same images run that many times (once per batch size):
    image counts are reported per image, flips per run.
    """
    errors = output_errors(candidate, reference, spec)  # cosine, logit and probability errors: models.metrics
    p_cand, p_ref = fake_probability(candidate[LOGITS_NAME], spec), fake_probability(reference[LOGITS_NAME], spec)
    agree = (p_cand >= threshold) == (p_ref >= threshold)
    ambiguous = np.abs(p_ref - threshold) <= band
    photos, decisive = is_photo, is_photo & ~ambiguous
    return Metrics(
        n_inputs=len(p_ref) // repeats, n_photos=int(photos.sum()) // repeats,
        max_abs_logit=errors.max_abs_logit, mean_abs_logit=errors.mean_abs_logit, p99_abs_logit=errors.p99_abs_logit,
        min_cosine=errors.min_cosine, max_prob_err=errors.max_prob_err,
        agreement=float(agree[photos].mean()) if photos.any() else None,
        decisive_agreement=float(agree[decisive].mean()) if decisive.any() else None,
        n_ambiguous=int((photos & ambiguous).sum()) // repeats,
        ambiguous_flips=int((photos & ambiguous & ~agree).sum()),
        flipped=[f"{names[i]} (ref p={p_ref[i]:.4f}, got {p_cand[i]:.4f}{', ambiguous' if ambiguous[i] else ''})"
                 for i in np.flatnonzero(photos & ~agree)],
    )
