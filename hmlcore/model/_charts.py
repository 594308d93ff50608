"""The geometry of the evaluation report's plots: plain numbers the Jinja2 template draws as inline SVG.

Every plot is a square or a wide box with labelled axes; a curve is reduced to at most :data:`MAX_POINTS`
points, so the page stays small whatever the number of rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hmlcore._lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

__all__ = ["MAX_POINTS", "binary_curves", "per_class", "predicted_vs_actual"]

#: the most points a curve or a scatter plot draws
MAX_POINTS = 600
#: the plotting box: width, height and the margin holding the axes' labels
WIDTH, HEIGHT, PAD = 300, 260, 44


def _box(xs: np.ndarray, ys: np.ndarray, lo: tuple[float, float], hi: tuple[float, float]) -> list[dict[str, float]]:
    """Data coordinates to SVG coordinates inside the plotting box (y grows upwards)."""
    span_x = (hi[0] - lo[0]) or 1.0
    span_y = (hi[1] - lo[1]) or 1.0
    px = PAD + (xs - lo[0]) / span_x * (WIDTH - PAD - 10)
    py = HEIGHT - PAD - (ys - lo[1]) / span_y * (HEIGHT - PAD - 10)
    return [{"x": round(float(a), 1), "y": round(float(b), 1)} for a, b in zip(px, py, strict=True)]


def _thin(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(xs) <= MAX_POINTS:
        return xs, ys
    chosen = np.unique(np.linspace(0, len(xs) - 1, MAX_POINTS).round().astype(int))
    return xs[chosen], ys[chosen]


def _plot(title: str, x_label: str, y_label: str, lo: tuple[float, float], hi: tuple[float, float], **parts: Any) -> dict[str, Any]:
    return {
        "title": title,
        "x_label": x_label,
        "y_label": y_label,
        "width": WIDTH,
        "height": HEIGHT,
        "pad": PAD,
        "ticks_x": [f"{lo[0]:.3g}", f"{hi[0]:.3g}"],
        "ticks_y": [f"{lo[1]:.3g}", f"{hi[1]:.3g}"],
        "diagonal": _box(np.array([lo[0], hi[0]]), np.array([lo[1], hi[1]]), lo, hi),
        "level": [],
        "line": [],
        "points": [],
        **parts,
    }


def binary_curves(truth: np.ndarray, positive: np.ndarray) -> list[dict[str, Any]]:
    """The ROC curve, the precision-recall curve and a 10-bin calibration plot of a binary model's scores."""
    from sklearn import metrics as sk

    if len(np.unique(truth)) < 2:
        return []
    fpr, tpr, _ = sk.roc_curve(truth, positive)
    precision, recall, _ = sk.precision_recall_curve(truth, positive)
    unit = ((0.0, 0.0), (1.0, 1.0))
    roc = _plot("ROC curve", "false positive rate", "true positive rate", *unit, line=_box(*_thin(fpr, tpr), *unit))
    pr = _plot("Precision-recall curve", "recall", "precision", *unit, line=_box(*_thin(recall[::-1], precision[::-1]), *unit))
    pr["diagonal"] = []  # no diagonal: the baseline is the share of positives
    pr["level"] = _box(np.array([0.0, 1.0]), np.full(2, float(np.mean(truth))), *unit)
    edges = np.linspace(0, 1, 11)
    bins = np.clip(np.digitize(positive, edges[1:-1]), 0, 9)
    counts = np.bincount(bins, minlength=10)
    filled = counts > 0
    predicted = np.bincount(bins, weights=positive, minlength=10)[filled] / counts[filled]
    observed = np.bincount(bins, weights=truth.astype(float), minlength=10)[filled] / counts[filled]
    calibration = _plot(
        "Calibration", "mean predicted probability", "observed share of positives", *unit, points=_box(predicted, observed, *unit)
    )
    calibration["line"] = calibration["points"]
    return [roc, pr, calibration]


def per_class(truth: np.ndarray, scores: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """Each class's rows, precision and recall (the class with the highest probability is the answer)."""
    from sklearn import metrics as sk

    labels = list(range(scores.shape[1]))
    predicted = scores.argmax(axis=1)
    precision = sk.precision_score(truth, predicted, labels=labels, average=None, zero_division=0)
    recall = sk.recall_score(truth, predicted, labels=labels, average=None, zero_division=0)
    support = np.bincount(truth, minlength=len(labels))
    return [
        {"name": name, "rows": int(n), "precision": f"{p:.3f}", "recall": f"{r:.3f}"}
        for name, n, p, r in zip(names, support, precision, recall, strict=True)
    ]


def predicted_vs_actual(truth: np.ndarray, predicted: np.ndarray, target: str) -> dict[str, Any]:
    """A scatter plot of each row's prediction (across) against its true value (up), with the line of perfect answers."""
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(len(truth), MAX_POINTS, replace=False)) if len(truth) > MAX_POINTS else np.arange(len(truth))
    lo = float(min(np.min(truth), np.min(predicted)))
    hi = float(max(np.max(truth), np.max(predicted)))
    box = ((lo, lo), (hi, hi))
    return _plot(
        "Predicted against actual",
        f"predicted {target}",
        f"actual {target}",
        *box,
        points=_box(predicted[chosen], truth[chosen], *box),
        shown=len(chosen),
        rows=len(truth),
    )
