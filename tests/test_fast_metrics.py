"""The numpy classification metrics the bootstrap loops use equal scikit-learn's, on random data with ties and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from hmlcore.model import _fast_metrics as fast


@pytest.mark.parametrize("seed", range(20))
def test_binary_metrics_equal_scikit_learns(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    truth = rng.integers(0, 2, n)
    truth[:2] = [0, 1]
    positive = np.round(rng.random(n), int(rng.integers(1, 4)))  # coarse rounding: many tied scores
    positive[rng.random(n) < 0.05] = rng.choice([0.0, 1.0])  # probabilities at the clip's edges
    probabilities = np.column_stack([1 - positive, positive])
    predicted = (positive >= 0.5).astype(np.int64)
    assert fast.roc_auc(truth, positive) == pytest.approx(sk.roc_auc_score(truth, positive), rel=1e-12, abs=1e-15)
    assert fast.log_loss(truth, probabilities) == pytest.approx(sk.log_loss(truth, probabilities, labels=[0, 1]), rel=1e-12)
    scores = fast.class_scores(truth, predicted, 2)
    assert scores["precision"][1] == sk.precision_score(truth, predicted, zero_division=0)
    assert scores["recall"][1] == sk.recall_score(truth, predicted, zero_division=0)
    assert scores["f1"][1] == pytest.approx(sk.f1_score(truth, predicted, zero_division=0), rel=1e-15)


@pytest.mark.parametrize("seed", range(10))
def test_multiclass_scores_equal_scikit_learns_even_for_a_class_never_seen(seed: int):
    rng = np.random.default_rng(seed)
    k, n = 4, int(rng.integers(5, 300))
    truth = rng.integers(0, k - 1, n)  # class 3 never occurs in the truth
    raw = rng.random((n, k))
    probabilities = raw / raw.sum(axis=1, keepdims=True)
    predicted = probabilities.argmax(axis=1)
    labels = list(range(k))
    scores = fast.class_scores(truth, predicted, k)
    assert np.array_equal(scores["recall"], sk.recall_score(truth, predicted, labels=labels, average=None, zero_division=0))
    assert np.mean(scores["f1"]) == pytest.approx(sk.f1_score(truth, predicted, labels=labels, average="macro", zero_division=0), rel=1e-15)
    assert fast.log_loss(truth, probabilities) == pytest.approx(sk.log_loss(truth, probabilities, labels=labels), rel=1e-12)


def test_no_positive_prediction_scores_zero_as_scikit_learn_does():
    truth, predicted = np.array([0, 1, 1]), np.array([0, 0, 0])
    scores = fast.class_scores(truth, predicted, 2)
    assert (scores["precision"][1], scores["recall"][1], scores["f1"][1]) == (0.0, 0.0, 0.0)
