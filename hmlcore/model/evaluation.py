"""How good the model is on labelled rows, with the metrics of its kind, as numbers and as one HTML page.

:func:`evaluate` scores a container's model on a frame that holds the target:

- ``binary``: ``auc``, ``log_loss``, ``accuracy``, ``precision``, ``recall`` and ``f1`` (the positive
  class at the container's threshold);
- ``multiclass``: ``accuracy``, ``macro_f1``, ``log_loss`` and ``recall_<class>`` for each class;
- ``regression``: ``rmse``, ``mae`` and ``r2``;

each with ``rows``, the number of rows scored (rows whose target is missing are left out). Every value
is a finite number (a metric the rows cannot define, such as the AUC of rows of one class, is left
out), so the dict can be published with the model and written as JSON. :func:`evaluation_report`
renders the metrics beside their baseline with bootstrap intervals (see :mod:`hmlcore.model.assessment`),
a confusion matrix, ROC, precision-recall and calibration curves (binary), per-class precision and recall
(multiclass) or predictions against true values (regression), and the model's feature importances (an
XGBoost model's mean absolute SHAP contributions, on a seeded sample of :data:`IMPORTANCE_ROWS` rows of a larger
frame; else what the estimator offers) as a self-contained HTML page: inline CSS and SVG, nothing fetched.

The regression metrics are scikit-learn's (a dependency of hmlcore, imported only when evaluating); the
classification metrics are the same numbers computed in plain numpy (:mod:`hmlcore.model._fast_metrics`),
as the bootstrap intervals and the gate compute them hundreds of times.

Example:
    >>> container.evaluate(validation)  # doctest: +SKIP
    {'rows': 2000, 'auc': 0.91, 'log_loss': 0.21, 'accuracy': 0.93, 'precision': 0.71, 'recall': 0.52, 'f1': 0.6}
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from hmlcore._templates import render_page
from hmlcore.errors import FeatureError
from hmlcore.model import _charts
from hmlcore.model.assessment import _truth_and_scores, assess, scorable
from hmlcore.model.explain import ExplanationError, global_importance
from hmlcore.model.metrics import metrics_of
from hmlcore.model.split import SplitSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd

    from hmlcore.model.container import ModelContainer

__all__ = ["evaluate", "evaluation_report", "feature_importances"]

#: the most classes a confusion matrix is drawn for
MAX_MATRIX_CLASSES = 20
#: the most rows the report's SHAP importances are computed on (a seeded sample of larger frames): as costly
#: as training on every validation row, and the usual practice for a SHAP summary
IMPORTANCE_ROWS = 1000
#: the seed of that sample: the same rows, hence the same figures, for the same frame
IMPORTANCE_SEED = 0


def _scored(container: ModelContainer, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(truth, scores)`` of the rows the model can score (see :func:`~hmlcore.model.assessment.scorable`):
    codes and probabilities (n, k), or values and predictions."""
    keep, left_out, _ = scorable(container, df)
    if not keep.any():
        reasons = ", ".join(f"{count} with a {reason}" for reason, count in left_out.items())
        raise FeatureError(f"none of the {len(df)} rows can be scored ({reasons})")
    return _truth_and_scores(container, df.loc[keep])


def evaluate(container: ModelContainer, df: pd.DataFrame) -> dict[str, float]:
    """The kind's metrics of ``container``'s model on the labelled rows of ``df`` (see the module's docstring).

    Raises:
        FeatureError: ``df`` lacks a feature or the target, or none of its rows can be scored (rows with a label or,
            under the "error" policy, a category training never saw are left out).
        ModelLoadError: no model is bound or loaded.
    """
    truth, scores = _scored(container, df)
    return metrics_of(container, truth, scores)


def feature_importances(container: ModelContainer) -> tuple[list[tuple[str, float]], str]:
    """Each feature's importance to the model (one-hot columns summed per feature), largest first, and where it comes from.

    Uses the estimator's ``feature_importances_`` (tree ensembles such as XGBoost and random forests),
    else the magnitude of its ``coef_`` (linear models; it depends on the features' scales); a
    scikit-learn pipeline is asked through its last step. Returns ``([], reason)`` when the model
    offers neither.
    """
    model = container.model
    estimator = model[-1] if hasattr(model, "steps") else model
    columns = container.encoder.columns
    values: np.ndarray | None = None
    source = ""
    try:
        if getattr(estimator, "feature_importances_", None) is not None:
            values, source = np.asarray(estimator.feature_importances_, dtype=np.float64), "the model's feature_importances_"
        elif getattr(estimator, "coef_", None) is not None:
            coef = np.abs(np.asarray(estimator.coef_, dtype=np.float64))
            values = coef.mean(axis=0) if coef.ndim == 2 else coef
            source = "the magnitude of the model's coefficients (it depends on each feature's scale)"
    except (AttributeError, ValueError, TypeError):  # e.g. a booster with no trees
        values = None
    if values is None:
        return [], f"a {type(estimator).__name__} offers no feature importances"
    if len(values) != len(columns):
        return [], f"the model reports {len(values)} importances for {len(columns)} encoded columns: they cannot be named"
    owner = list(container.encoder.numeric)
    for feature in container.encoder.categorical:
        owner.extend([feature] * _width(container, feature))
    totals: dict[str, float] = dict.fromkeys(container.features, 0.0)
    for feature, value in zip(owner, values.tolist(), strict=True):
        totals[feature] += value if math.isfinite(value) else 0.0
    return sorted(totals.items(), key=lambda item: -item[1]), source


def _importances(container: ModelContainer, df: pd.DataFrame) -> tuple[list[tuple[str, float]], str]:
    """XGBoost: each feature's mean absolute contribution on ``df``, or on a seeded sample of
    :data:`IMPORTANCE_ROWS` of its rows if it holds more (the numbers ``/explain`` answers with); other models:
    :func:`feature_importances`."""
    if container.model is None:
        return [], "no model"
    rows = "these rows"
    if len(df) > IMPORTANCE_ROWS:
        picked = np.random.default_rng(IMPORTANCE_SEED).choice(len(df), size=IMPORTANCE_ROWS, replace=False)
        rows = f"a random sample of {IMPORTANCE_ROWS:,} of these {len(df):,} rows drawn with seed {IMPORTANCE_SEED}"
        df = df.iloc[np.sort(picked)]
    try:
        importance = global_importance(container, df)
    except ExplanationError:
        return feature_importances(container)
    return list(importance.items()), f"each feature's mean absolute contribution on {rows} (the numbers /explain answers with)"


def _width(container: ModelContainer, feature: str) -> int:
    return len(container.encoder.categories.get(feature, [])) + (1 if container.encoder.has_other else 0)


def _confusion(container: ModelContainer, truth: np.ndarray, scores: np.ndarray) -> dict[str, Any] | None:
    k = scores.shape[1]
    if k > MAX_MATRIX_CLASSES:
        return None
    if container.kind == "binary":
        predicted = (scores[:, 1] >= container.threshold).astype(np.int64)
    else:
        predicted = scores.argmax(axis=1)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (truth, predicted), 1)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros((k, k)), where=totals > 0)
    cell = 44 if k <= 8 else 28
    return {
        "names": container.target_info.class_names,
        "cells": [
            {"row": i, "col": j, "count": int(counts[i, j]), "share": float(shares[i, j]), "x": 120 + j * cell, "y": 40 + i * cell}
            for i in range(k)
            for j in range(k)
        ],
        "cell": cell,
        "width": 140 + k * cell,
        "height": 60 + k * cell,
    }


def evaluation_report(
    container: ModelContainer,
    df: pd.DataFrame,
    *,
    metrics: Mapping[str, float] | None = None,
    verdict: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    split: Mapping[str, Any] | None = None,
) -> str:
    """A self-contained HTML page evaluating ``container``'s model on the labelled rows of ``df``.

    It shows the kind's metrics beside the baseline's with their intervals (``verdict`` if given, see
    :func:`~hmlcore.model.assessment.assess`, else computed; ``metrics`` replaces the model's numbers), the
    rows left out and the categories training never saw, how the rows were split (``split``), a confusion
    matrix (classifiers), the ROC, precision-recall and calibration curves (binary), each class's precision
    and recall (multiclass) or predictions against true values (regression), and the feature importances
    the model offers (or why there are none). The title names ``run_id`` and the model's version.

    Raises:
        FeatureError: ``df`` lacks a feature or the target, or none of its rows can be scored.
    """

    truth, scores = _scored(container, df)
    verdict = dict(verdict) if verdict is not None else assess(container, df)
    figures = dict(metrics) if metrics is not None else dict(verdict["metrics"])
    baseline, intervals = verdict.get("baseline") or {}, verdict.get("intervals") or {}
    importances, source = _importances(container, df.loc[scorable(container, df)[0]])
    top = max((v for _, v in importances), default=0.0) or 1.0
    names = container.target_info.class_names
    split_text = ""
    if split:
        spec = SplitSpec.from_record(split)
        split_text = spec.describe() + (", stratified by class" if split.get("stratified") else "")
    return render_page(
        "evaluation.html",
        name=container.name,
        version=container.version or run_id or "unpublished",  # the pipeline publishes a model as its run's id
        run_id=run_id or "",
        kind=container.kind,
        target=container.target,
        classes=names,
        threshold=container.threshold,
        created=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        metrics=[
            {
                "name": key,
                "value": _shown(value),
                "baseline": _shown(baseline[key]) if key in baseline and key != "rows" else "",
                "interval": f"{intervals[key][0]:.4f} to {intervals[key][1]:.4f}" if key in intervals else "",
            }
            for key, value in figures.items()
        ],
        baseline_name=verdict.get("baseline_name", ""),
        interval_method=verdict.get("interval_method", ""),
        left_out=verdict.get("left_out") or {},
        unknown_categories=verdict.get("unknown_categories") or {},
        split=split_text,
        confusion=_confusion(container, truth, scores) if container.kind != "regression" else None,
        curves=_charts.binary_curves(truth, scores[:, 1]) if container.kind == "binary" else [],
        per_class=_charts.per_class(truth, scores, names) if container.kind == "multiclass" else [],
        scatter=_charts.predicted_vs_actual(truth, scores, container.target) if container.kind == "regression" else None,
        importances=[{"feature": f, "value": f"{v:.4g}", "bar": round(300 * v / top, 1)} for f, v in importances],
        importance_source=source,
        max_classes=MAX_MATRIX_CLASSES,
    )


def _shown(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
