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


@pytest.fixture(scope="module")
def analysed():
    """A binary and a multiclass container that learnt their classes (the metrics read the kind, classes and threshold)."""
    from ._kinds import container, generated

    out = {}
    for kind in ("binary", "multiclass"):
        out[kind] = container(kind)
        out[kind].analyze_distributions(generated(kind, 60))
    return out


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
@pytest.mark.parametrize("seed", range(6))
def test_resamples_computed_together_equal_each_resample_computed_alone(analysed, kind, seed, monkeypatch):
    from hmlcore.model import assessment
    from hmlcore.model.metrics import metrics_of as _metrics

    container = analysed[kind]
    k = len(container.target_info.class_names)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 12)) if seed % 2 else int(rng.integers(50, 300))  # small: resamples of one class
    truth = rng.integers(0, k, n)
    raw = np.round(rng.random((n, k)), 1)  # coarse: tied scores
    raw[rng.random(n) < 0.1, 0] = rng.choice([0.0, 1.0])
    scores = raw / np.maximum(raw.sum(axis=1, keepdims=True), 1e-9) if kind == "multiclass" else np.column_stack([1 - raw[:, 1], raw[:, 1]])
    chosen = [rng.integers(0, n, n) for _ in range(40)]
    monkeypatch.setattr(assessment, "_BLOCK_CELLS", 7 * n)  # blocks of 7 resamples
    together = assessment._resampled(container, truth, scores, chosen)
    alone = [_metrics(container, truth[rows], scores[rows]) for rows in chosen]
    assert {name for got in alone for name in got} - {"rows"} <= set(together)
    for name, values in together.items():
        expected = np.asarray([got.get(name, np.nan) for got in alone])
        assert values == pytest.approx(expected, rel=1e-12, abs=1e-15, nan_ok=True), name
