"""What the head's logits mean: class probabilities and the 'fake' probability, for one-logit and softmax heads."""

from __future__ import annotations

import numpy as np

from vitship.models.spec import ModelSpec

# The 'fake' probability from which the label is "fake": the default of parity, predict and eval, and what every
# artifact records (exporters/base.py model_metadata) for an app to start from.
DEFAULT_THRESHOLD = 0.5


def probabilities(logits: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Class probabilities, (N, C) in float64: sigmoid for a one-logit head, softmax otherwise."""
    logits = np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)
    if spec.head_kind == "sigmoid" or logits.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def fake_probability(logits: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """The 'fake' probability per image, (N,): the sigmoid of a one-logit head, or the fake class's softmax."""
    probs = probabilities(logits, spec)
    return probs[:, 0] if probs.shape[1] == 1 else probs[:, spec.fake_index]
