"""One definition of each output metric: feature cosine, logit error and probability error.

Parity, compat-check, diagnose, the int8 scheme table and the int8 export gate all compare a candidate's
outputs with a reference's; they import these functions so that "feature cosine" or "probability error"
means the same number everywhere. Probabilities come from the head kind (`models/head.py`): the sigmoid of
a one-logit head, the softmax of a multi-class one (never an element-wise sigmoid of softmax logits).
This module sits in `models` (the lowest layer) so that exporters can gate on the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vitship.models.errors import VitshipError
from vitship.models.head import probabilities
from vitship.models.spec import FEATURES_NAME, LOGITS_NAME, ModelSpec


def _rows(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(len(values), -1)


def _check_shapes(candidate: np.ndarray, reference: np.ndarray, what: str) -> None:
    if np.shape(candidate) != np.shape(reference):
        raise VitshipError(f"{what} shape {np.shape(candidate)} != reference {np.shape(reference)}: "
                           "compare outputs of the same inputs")


def cosine_rows(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity per row (axis 0), in float64; a row that is all zeros on either side scores 0."""
    _check_shapes(candidate, reference, "features")
    a, b = _rows(candidate), _rows(reference)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-300), 0.0)


def min_cosine(candidate: np.ndarray | None, reference: np.ndarray) -> float | None:
    """The lowest per-row cosine similarity; None when there is no candidate (an artifact without features)."""
    if candidate is None:
        return None
    return float(cosine_rows(candidate, reference).min())


def abs_errors(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|candidate - reference| element-wise, in float64."""
    _check_shapes(candidate, reference, "logits")
    return np.abs(np.asarray(candidate, np.float64) - np.asarray(reference, np.float64))


def probability_errors(candidate_logits: np.ndarray, reference_logits: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Per image, the largest |p_candidate - p_reference| over classes, with probabilities from the head kind."""
    _check_shapes(candidate_logits, reference_logits, "logits")
    return np.abs(probabilities(candidate_logits, spec) - probabilities(reference_logits, spec)).max(axis=1)


def max_probability_error(candidate_logits: np.ndarray, reference_logits: np.ndarray, spec: ModelSpec) -> float:
    """The largest class-probability difference over every image (sigmoid or softmax, from the head kind)."""
    return float(probability_errors(candidate_logits, reference_logits, spec).max())


@dataclass(frozen=True)
class OutputErrors:
    """Candidate vs reference outputs ({'logits', 'features'}) summarised by the shared metrics."""

    min_cosine: float | None
    max_abs_logit: float
    mean_abs_logit: float
    p99_abs_logit: float
    max_prob_err: float

    def to_dict(self) -> dict:
        return asdict(self)


def output_errors(candidate: dict[str, np.ndarray], reference: dict[str, np.ndarray], spec: ModelSpec) -> OutputErrors:
    """Every shared metric for aligned outputs; a candidate without 'features' has min_cosine None."""
    errors = abs_errors(candidate[LOGITS_NAME], reference[LOGITS_NAME])
    return OutputErrors(
        min_cosine=min_cosine(candidate.get(FEATURES_NAME), reference[FEATURES_NAME]),
        max_abs_logit=float(errors.max()), mean_abs_logit=float(errors.mean()),
        p99_abs_logit=float(np.percentile(errors, 99)),
        max_prob_err=max_probability_error(candidate[LOGITS_NAME], reference[LOGITS_NAME], spec))
