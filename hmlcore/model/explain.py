"""Explanations: how much each raw request feature moved each prediction, and global importance.

For an XGBoost model the numbers are the booster's own SHAP values (``pred_contribs=True``): one per
encoded column and a bias, adding up to the model's raw output (the margin: log-odds for a binary
classifier, one log-odds per class for a multiclass one, the value itself for a regressor). The
columns a categorical feature was one-hot encoded into are summed back into that feature, so every
explanation names the features the client sent. Other estimators cannot be explained this way:
:func:`explain` raises :class:`ExplanationError` (the API answers 501).

Example:
    >>> explain(container, container.encode([{"age": 40, "sex": "m"}]))  # doctest: +SKIP
    {'output': 'log_odds', 'explanations': [{'contributions': {'age': 0.41, 'sex': -0.12}, 'bias': -0.3, 'margin': -0.01}]}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hmlcore.errors import HmlError

if TYPE_CHECKING:
    import pandas as pd

    from hmlcore.model.container import ModelContainer

__all__ = ["ExplanationError", "explain", "feature_contributions", "global_importance"]


class ExplanationError(HmlError):
    """Raised if the model cannot be explained (only XGBoost models carry their own contributions)."""


def _booster(model: Any) -> Any:
    """The XGBoost booster behind ``model``, or raise :class:`ExplanationError`."""
    get_booster = getattr(model, "get_booster", None)
    if callable(get_booster) and type(model).__module__.startswith("xgboost"):
        return get_booster()
    if type(model).__module__.startswith("xgboost") and type(model).__name__ == "Booster":
        return model
    raise ExplanationError(
        f"explanations need an XGBoost model; this one is a {type(model).__module__}.{type(model).__name__} "
        "(use /predict, or explain it offline with a model-agnostic method such as SHAP's KernelExplainer)"
    )


def _feature_groups(container: ModelContainer) -> tuple[list[str], np.ndarray]:
    """The raw features and the 0/1 matrix (encoded columns x features) that sums columns back into them."""
    encoder = container.encoder
    columns = encoder.columns
    features = encoder.features
    where = {f: i for i, f in enumerate(features)}
    owner = np.zeros((len(columns), len(features)))
    for j, column in enumerate(columns):
        feature = column if column in where else column.split("=", 1)[0]
        owner[j, where[feature]] = 1.0
    return features, owner


def feature_contributions(container: ModelContainer, features: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each raw feature's contribution to each row's margin, and the bias.

    Args:
        container: a loaded model container holding an XGBoost model.
        features: the encoded matrix (``container.encode(records)``).

    Returns:
        ``(feature names, contributions, bias)``: contributions are ``rows x features`` (``rows x classes x
        features`` for a multiclass model), bias is ``rows`` (``rows x classes``); contributions plus bias
        add up to the margin.

    Raises:
        ExplanationError: the model is not an XGBoost model, or its columns are not the encoder's.
    """
    import xgboost

    booster = _booster(container.model)
    names, owner = _feature_groups(container)
    if booster.num_features() != owner.shape[0]:
        raise ExplanationError(f"the model takes {booster.num_features()} columns but the encoder makes {owner.shape[0]}")
    raw = np.asarray(booster.predict(xgboost.DMatrix(np.asarray(features, dtype=np.float32)), pred_contribs=True), dtype=np.float64)
    return names, raw[..., :-1] @ owner, raw[..., -1]


def _classes(container: ModelContainer, count: int) -> list[str]:
    names = [str(c) for c in container.target_info.class_names]
    return names if len(names) == count else [str(i) for i in range(count)]


def explain(container: ModelContainer, features: np.ndarray, *, digits: int = 6) -> dict[str, Any]:
    """The explanation of every row of ``features``, as the ``/explain`` route answers it.

    Returns:
        ``{"output": ..., "explanations": [...]}``. ``output`` is ``log_odds`` (binary: the positive
        class's log-odds), ``class_log_odds`` (multiclass: per class) or ``value`` (regression). Each
        explanation holds ``contributions`` (feature -> number, or class -> feature -> number), ``bias``
        and ``margin`` (their sum).

    Raises:
        ExplanationError: the model cannot be explained.
    """
    names, contributions, bias = feature_contributions(container, features)
    explanations: list[dict[str, Any]] = []
    if contributions.ndim == 3:
        classes = _classes(container, contributions.shape[1])
        margins = contributions.sum(axis=2) + bias
        for row, row_bias, row_margin in zip(contributions, bias, margins, strict=True):
            explanations.append(
                {
                    "contributions": {c: _rounded(names, values, digits) for c, values in zip(classes, row, strict=True)},
                    "bias": {c: round(float(b), digits) for c, b in zip(classes, row_bias, strict=True)},
                    "margin": {c: round(float(m), digits) for c, m in zip(classes, row_margin, strict=True)},
                }
            )
        return {"output": "class_log_odds", "explanations": explanations}
    margins = contributions.sum(axis=1) + bias
    for row, row_bias, row_margin in zip(contributions, bias, margins, strict=True):
        explanations.append(
            {
                "contributions": _rounded(names, row, digits),
                "bias": round(float(row_bias), digits),
                "margin": round(float(row_margin), digits),
            }
        )
    return {"output": "value" if container.kind == "regression" else "log_odds", "explanations": explanations}


def _rounded(names: list[str], values: np.ndarray, digits: int) -> dict[str, float]:
    return {name: round(float(v), digits) for name, v in zip(names, values, strict=True)}


def global_importance(container: ModelContainer, data: pd.DataFrame | np.ndarray) -> dict[str, float]:
    """Each raw feature's mean absolute contribution over ``data`` (summed over classes), largest first.

    Args:
        container: a loaded container holding an XGBoost model.
        data: rows of raw features (a frame) or an encoded matrix.

    Raises:
        ExplanationError: the model cannot be explained.
    """
    features = data if isinstance(data, np.ndarray) else container.encode(data)
    names, contributions, _ = feature_contributions(container, features)
    magnitude = np.abs(contributions)
    per_feature = magnitude.sum(axis=1).mean(axis=0) if magnitude.ndim == 3 else magnitude.mean(axis=0)
    ranked = sorted(zip(names, per_feature.tolist(), strict=True), key=lambda item: -item[1])
    return {name: round(float(value), 6) for name, value in ranked}
