"""Classification metrics in plain numpy, for the bootstrap loops that compute them hundreds of times.

Each equals scikit-learn's function of the same name (up to the last bits of a double: the tests compare
them on random data with ties); scikit-learn's input validation, which costs more than the arithmetic on
a few thousand rows, is what they leave out. Inputs are already clean: ``truth`` holds class codes
``0..k-1`` and ``probabilities`` is ``(n, k)`` within [0, 1].

The ``resampled_*`` functions compute the same numbers for many bootstrap resamples at once: a resample
is given by how many times it drew each row (a row of ``counts``, see :func:`resample_counts`), and each
metric of the rows drawn is a weighted sum over the original rows (the rows sorted once, not per resample).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "class_scores",
    "log_loss",
    "resample_counts",
    "resampled_class_counts",
    "resampled_roc_auc",
    "roc_auc",
    "scores_of_counts",
    "true_class_losses",
]


def roc_auc(truth: np.ndarray, positive: np.ndarray) -> float:
    """The area under the ROC curve of scores ``positive`` for the 0/1 ``truth`` (both classes present): ``roc_auc_score``.

    The Mann-Whitney statistic with tied scores sharing their average rank, which is the area under the
    ROC curve's trapezoids.
    """
    n = len(truth)
    order = np.argsort(positive, kind="mergesort")
    ordered = positive[order]
    starts_group = np.empty(n, dtype=bool)
    starts_group[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts_group[1:])
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], n)
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]
    is_positive = truth == 1
    n1 = float(np.count_nonzero(is_positive))
    n0 = n - n1
    return float((ranks[is_positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def log_loss(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """The mean negative log-probability of each row's true class, probabilities clipped to [eps, 1 - eps]: ``log_loss``."""
    return float(true_class_losses(truth, probabilities).mean())


def true_class_losses(truth: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Each row's negative log-probability of its true class, clipped to [eps, 1 - eps] (``log_loss`` is their mean)."""
    eps = np.finfo(probabilities.dtype).eps if probabilities.dtype.kind == "f" else np.finfo(np.float64).eps
    return -np.log(np.clip(probabilities[np.arange(len(truth)), truth], eps, 1 - eps))


def resample_counts(chosen: list[np.ndarray], n: int) -> np.ndarray:
    """``(resamples, n)``: how many times each resample (row indices into ``0..n-1``) drew each row."""
    counts = np.zeros((len(chosen), n), dtype=np.float64)
    for row, indices in zip(counts, chosen, strict=True):
        row += np.bincount(indices, minlength=n)
    return counts


def resampled_roc_auc(truth: np.ndarray, positive: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """:func:`roc_auc` of each resample of ``counts``; NaN where a resample holds one class only.

    The Mann-Whitney statistic as pairs: each drawn positive row scores the drawn negative rows below its
    score, plus half of those tied with it (what the average ranks of :func:`roc_auc` add up to).
    """
    order = np.argsort(positive, kind="mergesort")
    ordered = positive[order]
    n = len(truth)
    starts_group = np.empty(n, dtype=bool)
    starts_group[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts_group[1:])
    group = np.cumsum(starts_group) - 1
    ends = np.append(np.flatnonzero(starts_group)[1:], n) - 1  # each group's last position
    is_positive = truth[order] == 1
    drawn = counts[:, order]
    negatives = np.cumsum(np.where(is_positive, 0.0, drawn), axis=1)  # drawn negatives at or below each position
    through_group = negatives[:, ends]
    below_group = np.concatenate([np.zeros((len(counts), 1)), through_group[:, :-1]], axis=1)
    below = (below_group + (through_group - below_group) / 2.0)[:, group]
    n1 = drawn[:, is_positive].sum(axis=1)
    n0 = negatives[:, -1]
    pairs = (drawn[:, is_positive] * below[:, is_positive]).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n1 > 0) & (n0 > 0), pairs / (n1 * n0), np.nan)


def resampled_class_counts(truth: np.ndarray, predicted: np.ndarray, k: int, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per resample of ``counts`` and class of ``0..k-1`` (``(resamples, k)``): ``true_positive``, ``actual``, ``guessed``."""

    def drawn(rows: np.ndarray) -> np.ndarray:  # per resample, the draws of the rows marked, class by class
        return np.stack([counts[:, rows == c].sum(axis=1) for c in range(k)], axis=1)

    return {"true_positive": drawn(np.where(truth == predicted, truth, -1)), "actual": drawn(truth), "guessed": drawn(predicted)}


def scores_of_counts(true_positive: np.ndarray, actual: np.ndarray, guessed: np.ndarray) -> dict[str, np.ndarray]:
    """``precision``, ``recall`` and ``f1`` from class counts (any shape), each 0 where undefined (``zero_division=0``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(guessed > 0, true_positive / guessed, 0.0)
        recall = np.where(actual > 0, true_positive / actual, 0.0)
        denominator = actual + guessed
        f1 = np.where(denominator > 0, 2 * true_positive / denominator, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1}


def class_scores(truth: np.ndarray, predicted: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per class of ``0..k-1``: ``precision``, ``recall`` and ``f1``, each 0 where undefined (``zero_division=0``)."""
    true_positive = np.bincount(truth[truth == predicted], minlength=k).astype(np.float64)
    actual = np.bincount(truth, minlength=k).astype(np.float64)
    guessed = np.bincount(predicted, minlength=k).astype(np.float64)
    return scores_of_counts(true_positive, actual, guessed)
