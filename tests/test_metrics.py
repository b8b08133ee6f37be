"""vitship.models.metrics: the one definition of cosine, logit error and probability error, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from vitship.models import VitshipError, tiny_spec
from vitship.models.metrics import (abs_errors, cosine_rows, max_probability_error, min_cosine, output_errors,
                                    probability_errors)

SOFTMAX_SPEC = tiny_spec().replace(labels=("real", "fake"), head_kind="softmax")


def test_cosine_per_row_flattens_and_scores_a_zero_row_zero():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert cosine_rows(a, b) == pytest.approx([1.0, 1 / np.sqrt(2), 0.0])
    assert min_cosine(a[:2], b[:2]) == pytest.approx(1 / np.sqrt(2))
    assert min_cosine(None, b) is None
    images = np.ones((2, 3, 2, 2), np.float32)
    assert cosine_rows(images, -images) == pytest.approx([-1.0, -1.0])


def test_mismatched_shapes_are_a_domain_error():
    with pytest.raises(VitshipError, match="shape"):
        cosine_rows(np.ones((2, 4)), np.ones((3, 4)))
    with pytest.raises(VitshipError, match="logits shape"):
        abs_errors(np.ones((2, 1)), np.ones((2, 2)))


def test_one_logit_head_uses_the_sigmoid():
    spec = tiny_spec()
    assert spec.head_kind == "sigmoid"
    candidate, reference = np.array([[2.5], [0.0]]), np.array([[2.0], [0.0]])
    expected = 1 / (1 + np.exp(-2.5)) - 1 / (1 + np.exp(-2.0))
    assert probability_errors(candidate, reference, spec) == pytest.approx([expected, 0.0])


def test_two_class_softmax_head_uses_the_softmax_not_an_elementwise_sigmoid():
    # Shifting both logits by the same amount leaves the softmax unchanged: no probability error,
    # where an element-wise sigmoid (the old compat-check and int8 table) reported 0.12.
    reference = np.array([[1.0, 3.0], [0.0, 0.0]])
    candidate = reference + 1.0
    assert max_probability_error(candidate, reference, SOFTMAX_SPEC) == pytest.approx(0.0, abs=1e-12)
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    assert np.abs(sigmoid(candidate) - sigmoid(reference)).max() > 0.1
    # a real change: p(fake) of softmax([1, 3]) = 0.8808 against softmax([1, 2]) = 0.7311
    moved = np.array([[1.0, 2.0], [0.0, 0.0]])
    p = lambda a, b: np.exp(b) / (np.exp(a) + np.exp(b))  # noqa: E731
    assert max_probability_error(moved, reference, SOFTMAX_SPEC) == pytest.approx(p(1, 3) - p(1, 2))


def test_output_errors_summarise_logits_features_and_probabilities():
    reference = {"logits": np.array([[0.0, 1.0], [2.0, 0.0]]), "features": np.eye(2)}
    candidate = {"logits": np.array([[0.0, 1.5], [2.0, 0.0]]), "features": np.array([[1.0, 1.0], [0.0, 1.0]])}
    errors = output_errors(candidate, reference, SOFTMAX_SPEC)
    assert errors.min_cosine == pytest.approx(1 / np.sqrt(2))
    assert (errors.max_abs_logit, errors.mean_abs_logit) == pytest.approx((0.5, 0.125))
    p = lambda z: 1 / (1 + np.exp(-z))  # softmax of two logits = sigmoid of their difference  # noqa: E731
    assert errors.max_prob_err == pytest.approx(p(1.5) - p(1.0))
    assert output_errors({"logits": candidate["logits"]}, reference, SOFTMAX_SPEC).min_cosine is None
