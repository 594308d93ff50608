"""Classification metrics in plain numpy, for the bootstrap loops that compute them hundreds of times.

Each equals scikit-learn's function of the same name (up to the last bits of a double: the tests compare
them on random data with ties); scikit-learn's input validation, which costs more than the arithmetic on
a few thousand rows, is what they leave out. Inputs are already clean: ``truth`` holds class codes
``0..k-1`` and ``probabilities`` is ``(n, k)`` within [0, 1].
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_scores", "log_loss", "roc_auc"]


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
    eps = np.finfo(probabilities.dtype).eps if probabilities.dtype.kind == "f" else np.finfo(np.float64).eps
    chosen = np.clip(probabilities[np.arange(len(truth)), truth], eps, 1 - eps)
    return float(-np.log(chosen).mean())


def class_scores(truth: np.ndarray, predicted: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per class of ``0..k-1``: ``precision``, ``recall`` and ``f1``, each 0 where undefined (``zero_division=0``)."""
    true_positive = np.bincount(truth[truth == predicted], minlength=k).astype(np.float64)
    actual = np.bincount(truth, minlength=k).astype(np.float64)
    guessed = np.bincount(predicted, minlength=k).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(guessed > 0, true_positive / guessed, 0.0)
        recall = np.where(actual > 0, true_positive / actual, 0.0)
        denominator = actual + guessed
        f1 = np.where(denominator > 0, 2 * true_positive / denominator, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1}
