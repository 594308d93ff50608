"""What a container asks of the model it is given: does it fit the kind, and can it predict one row fast.

:func:`check_model` refuses, with one line, a model that would answer in another shape than the container
promises (a regressor in a classifier container, a three-class model in a binary one, a model that takes
other columns than the encoder makes). :func:`fast_predictor` finds, for an XGBoost model, a
single-threaded copy of its booster whose in-place prediction gives the same numbers as the model's own
``predict_proba`` / ``predict`` without the scikit-learn wrapper's per-call checks (tens of microseconds,
most of a one-row request); the user's model is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hmlcore._lazy import lazy_module
from hmlcore.errors import ModelKindError

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

__all__ = ["check_model", "fast_predictor", "is_classifier"]

#: XGBoost objectives whose in-place prediction is what the container serves, by kind
_FAST_OBJECTIVES = {"binary": ("binary:logistic",), "multiclass": ("multi:softprob",)}
_REGRESSION_PREFIXES = ("reg:", "count:", "survival:")


def is_classifier(model: Any) -> bool:
    """Whether ``model`` answers with class probabilities (it has ``predict_proba``)."""
    return callable(getattr(model, "predict_proba", None))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def check_model(model: Any, *, name: str, kind: str, classes: Sequence[Any], columns: int | None) -> None:
    """Refuse ``model`` if it does not fit a container of ``kind`` with ``classes`` and ``columns`` encoded columns.

    Raises:
        ModelKindError: one line saying what the model is and what the container expects.
    """
    described = type(model).__name__
    if not callable(getattr(model, "predict", None)) and not is_classifier(model):
        raise ModelKindError(f"model {name!r}: a {described} has neither predict nor predict_proba; bind a trained estimator")
    if kind == "regression":
        if is_classifier(model):
            raise ModelKindError(
                f"model {name!r}: a {described} is a classifier (it has predict_proba), but the container's kind is 'regression'"
            )
        _check_width(model, name, described, columns)
        return
    if not is_classifier(model):
        raise ModelKindError(f"model {name!r}: a {described} is a regressor (no predict_proba), but the container's kind is {kind!r}")
    model_classes = getattr(model, "classes_", None)
    if model_classes is not None:
        found = [_plain(c) for c in np.asarray(model_classes).tolist()]
        if kind == "binary" and len(found) != 2:
            raise ModelKindError(f"model {name!r}: a {described} with {len(found)} classes, but the container's kind is 'binary'")
        if classes and len(found) != len(classes):
            shown = ", ".join(map(repr, classes))
            raise ModelKindError(
                f"model {name!r}: a {described} with {len(found)} classes, but the container's target has {len(classes)} ({shown})"
            )
        if found != list(range(len(found))) and classes and found != list(classes):
            raise ModelKindError(
                f"model {name!r} was trained on classes {found}: "
                f"train it on the codes 0..{len(found) - 1} that build_training_matrix returns"
            )
    _check_width(model, name, described, columns)


def _check_width(model: Any, name: str, described: str, columns: int | None) -> None:
    width = getattr(model, "n_features_in_", None)
    if columns is not None and isinstance(width, (int, np.integer)) and int(width) != columns:
        raise ModelKindError(
            f"model {name!r}: a {described} trained on {int(width)} columns, but the container encodes {columns}: "
            "train it on the matrix build_training_matrix returns"
        )


def fast_predictor(model: Any, kind: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """A function giving ``model``'s answers by XGBoost's in-place prediction on one thread, or None.

    The answers are what the container needs: ``(n,)`` P(positive class) for a binary model, ``(n, k)``
    probabilities for a multiclass model, ``(n,)`` values for a regressor. The copy of the booster is
    checked against the model's own prediction on a probe matrix (zeros and missing values), so a
    model whose in-place prediction means something else (another objective, early stopping the copy
    does not honour) keeps the ordinary path.
    """
    get_booster = getattr(model, "get_booster", None)
    objective = str(getattr(model, "objective", "") or "")
    width = getattr(model, "n_features_in_", None)
    if get_booster is None or not isinstance(width, (int, np.integer)):
        return None
    if kind == "regression" and not objective.startswith(_REGRESSION_PREFIXES):
        return None
    if kind != "regression" and objective not in _FAST_OBJECTIVES.get(kind, ()):
        return None
    try:
        booster = get_booster().copy()
        booster.set_param({"nthread": 1})
        best = getattr(model, "best_iteration", None)
    except Exception:  # noqa: BLE001 - no fast path; the model's own methods still work
        return None
    iteration_range = (0, int(best) + 1) if isinstance(best, (int, np.integer)) else (0, 0)

    def predict(features: np.ndarray) -> np.ndarray:
        return np.asarray(booster.inplace_predict(features, iteration_range=iteration_range), dtype=np.float64)

    probe = np.zeros((3, int(width)), dtype=np.float32)
    probe[1, :] = np.nan
    probe[2, :] = 1.0
    try:
        fast = predict(probe)
        if kind == "regression":
            slow = np.asarray(model.predict(probe), dtype=np.float64)
        else:
            slow = np.asarray(model.predict_proba(probe), dtype=np.float64)
            slow = slow[:, 1] if kind == "binary" else slow
    except Exception:  # noqa: BLE001 - no fast path
        return None
    if fast.shape != slow.shape or not np.allclose(fast, slow, rtol=1e-5, atol=1e-6):
        return None
    return predict
