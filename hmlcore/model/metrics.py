"""The metrics of a model's kind on scored rows, once or for every bootstrap resample at once.

:func:`metrics_of` gives what :func:`hmlcore.model.evaluation.evaluate` reports (``rows`` and the kind's
metrics, finite values only); :func:`resampled_metrics` gives a classifier's metrics of each resample of
a bootstrap as arrays (see :mod:`hmlcore.model.assessment`). Classification metrics are computed in numpy
(:mod:`hmlcore.model._fast_metrics`); regression metrics are scikit-learn's.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from hmlcore.model import _fast_metrics as fast

if TYPE_CHECKING:
    from hmlcore.model.container import ModelContainer

__all__ = ["metrics_of", "resampled_metrics"]


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        number = float(value)
        if math.isfinite(number):
            out[key] = int(number) if key == "rows" else number
    return out


def metrics_of(container: ModelContainer, truth: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as sk  # scikit-learn costs a second to import: only regression metrics need it

    rows = {"rows": len(truth)}
    if container.kind == "regression":
        return _finite(
            {
                **rows,
                "rmse": math.sqrt(sk.mean_squared_error(truth, scores)),
                "mae": sk.mean_absolute_error(truth, scores),
                "r2": sk.r2_score(truth, scores) if len(np.unique(truth)) > 1 else math.nan,
            }
        )
    k = scores.shape[1]
    probabilities = np.clip(scores, 0.0, 1.0)
    truth = np.asarray(truth, dtype=np.int64)
    if container.kind == "binary":
        positive = probabilities[:, 1]
        predicted = (positive >= container.threshold).astype(np.int64)
        both = len(np.unique(truth)) == 2
        scored = fast.class_scores(truth, predicted, 2)
        return _finite(
            {
                **rows,
                "auc": fast.roc_auc(truth, positive) if both else math.nan,
                "log_loss": fast.log_loss(truth, probabilities),
                "accuracy": float(np.mean(truth == predicted)),
                "precision": scored["precision"][1],
                "recall": scored["recall"][1],
                "f1": scored["f1"][1],
            }
        )
    predicted = probabilities.argmax(axis=1)
    scored = fast.class_scores(truth, predicted, k)
    present = np.bincount(truth, minlength=k) > 0
    names = container.target_info.class_names
    per_class = {f"recall_{name}": r if seen else math.nan for name, r, seen in zip(names, scored["recall"], present, strict=True)}
    return _finite(
        {
            **rows,
            "accuracy": float(np.mean(truth == predicted)),
            "macro_f1": float(np.mean(scored["f1"])),
            "log_loss": fast.log_loss(truth, probabilities / probabilities.sum(axis=1, keepdims=True)),
            **per_class,
        }
    )


def resampled_metrics(container: ModelContainer, truth: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """A classifier's :func:`metrics_of` (but ``rows``) of each bootstrap resample of ``counts`` (see
    :func:`~hmlcore.model._fast_metrics.resample_counts`) at once: one array per metric, NaN where a resample
    cannot define it (where :func:`metrics_of` leaves the metric out)."""
    k = scores.shape[1]
    n = len(truth)
    probabilities = np.clip(scores, 0.0, 1.0)
    truth = np.asarray(truth, dtype=np.int64)
    if container.kind == "binary":
        positive = probabilities[:, 1]
        predicted = (positive >= container.threshold).astype(np.int64)
        scored = fast.scores_of_counts(**fast.resampled_class_counts(truth, predicted, 2, counts))
        return {
            "auc": fast.resampled_roc_auc(truth, positive, counts),
            "log_loss": counts @ fast.true_class_losses(truth, probabilities) / n,
            "accuracy": counts @ (truth == predicted).astype(np.float64) / n,
            "precision": scored["precision"][:, 1],
            "recall": scored["recall"][:, 1],
            "f1": scored["f1"][:, 1],
        }
    predicted = probabilities.argmax(axis=1)
    counted = fast.resampled_class_counts(truth, predicted, k, counts)
    scored = fast.scores_of_counts(**counted)
    recalls = np.where(counted["actual"] > 0, scored["recall"], np.nan)
    return {
        "accuracy": counts @ (truth == predicted).astype(np.float64) / n,
        "macro_f1": scored["f1"].mean(axis=1),
        "log_loss": counts @ fast.true_class_losses(truth, probabilities / probabilities.sum(axis=1, keepdims=True)) / n,
        **{f"recall_{name}": recalls[:, c] for c, name in enumerate(container.target_info.class_names)},
    }
