"""A model's verdict on held-out rows: its metrics beside a baseline's, each with an interval, and the rows left out.

:func:`assess` scores a container's model on labelled rows and answers:

- ``metrics``: the kind's metrics (see :mod:`hmlcore.model.evaluation`);
- ``baseline``: the same metrics of a model that learnt nothing, scored on the same rows: the class
  shares of the training rows (the prior) for a classifier, the training mean for a regression;
- ``intervals``: for each metric, the 95% percentile interval over ``resamples`` bootstrap resamples of
  the rows (the rows drawn with replacement, the model not retrained: it says how much the number would
  move on another sample of the same size, not how much another training run would);
- ``left_out``: rows not scored, by reason: a missing target, a label training never saw, a category
  training never saw that the container's ``unknown_category`` policy refuses (the API would answer 422);
- ``unknown_categories``: per feature, how many scored or left-out rows hold a category training never saw.

:func:`compare` scores two models on the rows both can score and gives the gain of one over the other
under a :class:`~hmlcore.model.promotion.PromotionRule`, with a paired bootstrap interval (the same
resampled rows for both models).

Example:
    >>> verdict = assess(container, validation)  # doctest: +SKIP
    >>> verdict["metrics"]["auc"], verdict["baseline"]["auc"], verdict["intervals"]["auc"]  # doctest: +SKIP
    (0.86, 0.5, [0.83, 0.89])
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from hmlcore.errors import FeatureError
from hmlcore.model import _fast_metrics as fast
from hmlcore.model.metrics import metrics_of, resampled_metrics
from hmlcore.model.target import missing_target

if TYPE_CHECKING:
    import pandas as pd

    from hmlcore.model.container import ModelContainer
    from hmlcore.model.promotion import PromotionRule

__all__ = ["RESAMPLES", "assess", "baseline_name", "compare", "scorable"]

#: bootstrap resamples behind each interval
RESAMPLES = 200
#: the interval's coverage
LEVEL = 0.95
#: the most draw counts (resamples x rows) computed on at once
_BLOCK_CELLS = 2_000_000


def baseline_name(kind: str) -> str:
    """What the baseline of a ``kind`` model is, in words."""
    return "the training mean" if kind == "regression" else "the class prior"


def scorable(container: ModelContainer, df: pd.DataFrame) -> tuple[np.ndarray, dict[str, int], dict[str, int]]:
    """Which rows of ``df`` the model can score, the count left out by reason, and unseen categories per feature.

    Raises:
        FeatureError: ``df`` lacks a feature or the target, or has no rows.
    """
    container._check_frame(df, need_target=True)
    keep = ~missing_target(df[container.target])
    left_out: dict[str, int] = {}
    if (~keep).any():
        left_out["missing target"] = int((~keep).sum())
    if container.target_info.is_classifier:
        import pandas as pd

        codes, uniques = pd.factorize(df[container.target].to_numpy(dtype=object), use_na_sentinel=True)
        known = np.array([_known_label(container, label) for label in uniques] + [True], dtype=bool)
        unseen_label = keep & ~known[codes]
        if unseen_label.any():
            left_out["label never seen in training"] = int(unseen_label.sum())
            keep &= ~unseen_label
    unknown: dict[str, int] = {}
    refused = np.zeros(len(df), dtype=bool)
    for feature, mask in container.encoder.unseen(df).items():
        if mask.any():
            unknown[feature] = int(mask.sum())
            refused |= mask
    if container.encoder.unknown == "error" and (refused & keep).any():
        left_out["category never seen in training"] = int((refused & keep).sum())
        keep &= ~refused
    return keep, left_out, unknown


def _known_label(container: ModelContainer, label: Any) -> bool:
    """Whether the target reads ``label`` as a class training saw (``"1"`` as ``1``, ``"True"`` as ``True``)."""
    try:
        container.target_info.codes(np.asarray([label], dtype=object))
    except (FeatureError, ValueError, TypeError):
        return False
    return True


def _truth_and_scores(container: ModelContainer, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    truth = container.target_codes(df)
    features = container.encode(df)
    if container.kind == "regression":
        return truth, np.asarray([p[container.target] for p in container.predict(features)], dtype=np.float64)
    return truth, container.predict_proba(features)


def baseline_scores(container: ModelContainer, rows: int) -> np.ndarray:
    """What a model that learnt nothing answers for ``rows`` rows: the training class shares, or the training mean."""
    distribution = container.target_info.distribution
    if container.kind == "regression":
        return np.full(rows, float(distribution.get("mean", 0.0)))
    shares = distribution.get("frequencies") or {}
    prior = np.asarray([float(shares.get(name, 0.0)) for name in container.target_info.class_names])
    prior = prior / prior.sum() if prior.sum() > 0 else np.full(len(prior), 1 / len(prior))
    return np.tile(prior, (rows, 1))


def _interval(values: list[float]) -> list[float] | None:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 0.9 * len(values) or not finite:
        return None
    low, high = np.quantile(finite, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return [float(low), float(high)]


def _bootstrap(
    container: ModelContainer, truth: np.ndarray, scores: np.ndarray, names: list[str], resamples: int, seed: int
) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    chosen = [rng.integers(0, len(truth), len(truth)) for _ in range(resamples)]
    got = _resampled(container, truth, scores, chosen)
    draws = {name: got[name].tolist() if name in got else [math.nan] * resamples for name in names}
    out = {}
    for name, values in draws.items():
        interval = _interval(values)
        if interval is not None:
            out[name] = interval
    return out


def _resampled(container: ModelContainer, truth: np.ndarray, scores: np.ndarray, chosen: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Each metric of ``container``'s kind on each resample (row indices) in ``chosen``, NaN where it is undefined.

    A classifier's resamples are computed together, a block of them at a time (a block's draw counts hold at
    most :data:`_BLOCK_CELLS` numbers); a regression's one by one.
    """

    if container.kind == "regression":
        each = [metrics_of(container, truth[rows], scores[rows]) for rows in chosen]
        names = {name for got in each for name in got if name != "rows"}
        return {name: np.asarray([got.get(name, math.nan) for got in each], dtype=np.float64) for name in names}
    block = max(1, _BLOCK_CELLS // max(1, len(truth)))
    parts = [
        resampled_metrics(container, truth, scores, fast.resample_counts(chosen[start : start + block], len(truth)))
        for start in range(0, len(chosen), block)
    ]
    out = {}
    for name in parts[0] if parts else {}:
        joined = np.concatenate([part[name] for part in parts])
        out[name] = np.where(np.isfinite(joined), joined, np.nan)
    return out


def assess(container: ModelContainer, df: pd.DataFrame, *, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """The verdict on the labelled rows of ``df`` (see the module's docstring); plain JSON data.

    Raises:
        FeatureError: ``df`` lacks a feature or the target, or no row can be scored.
        ModelLoadError: no model is bound or loaded.
    """

    keep, left_out, unknown = scorable(container, df)
    if not keep.any():
        reasons = ", ".join(f"{count} with a {reason}" for reason, count in left_out.items())
        raise FeatureError(f"none of the {len(df)} rows can be scored ({reasons})")
    truth, scores = _truth_and_scores(container, df.loc[keep])
    metrics = metrics_of(container, truth, scores)
    baseline = metrics_of(container, truth, baseline_scores(container, len(truth)))
    names = [name for name in metrics if name != "rows"]
    return {
        "rows": int(len(truth)),
        "metrics": metrics,
        "baseline": baseline,
        "baseline_name": baseline_name(container.kind),
        "intervals": _bootstrap(container, truth, scores, names, resamples, seed) if resamples else {},
        "interval_method": f"{LEVEL:.0%} bootstrap percentile interval over {resamples} resamples of the {len(truth)} rows",
        "left_out": left_out,
        "unknown_categories": unknown,
    }


def compare(
    challenger: ModelContainer,
    champion: ModelContainer,
    df: pd.DataFrame,
    rule: PromotionRule,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Both models' ``rule.metric`` on the rows of ``df`` both can score, the gain and its paired bootstrap interval.

    Returns:
        ``{"rows", "challenger", "champion", "gain", "interval"}``: the scores and the gain are None when the
        rows cannot define the metric (an AUC of rows of one class); ``interval`` is None when the
        resamples cannot.

    Raises:
        FeatureError: no row can be scored by both.
    """

    keep_new, _, _ = scorable(challenger, df)
    keep_old, _, _ = scorable(champion, df)
    both = keep_new & keep_old
    if not both.any():
        raise FeatureError(f"none of the {len(df)} rows can be scored by both models")
    rows = df.loc[both]
    truth_new, scores_new = _truth_and_scores(challenger, rows)
    truth_old, scores_old = _truth_and_scores(champion, rows)
    new = metrics_of(challenger, truth_new, scores_new).get(rule.metric)
    old = metrics_of(champion, truth_old, scores_old).get(rule.metric)
    if new is None or old is None:  # e.g. an AUC on rows of one class
        return {"rows": int(len(rows)), "challenger": new, "champion": old, "gain": None, "interval": None}
    rng = np.random.default_rng(seed)
    chosen = [rng.integers(0, len(rows), len(rows)) for _ in range(resamples)]
    nan = np.full(resamples, math.nan)
    ours = _resampled(challenger, truth_new, scores_new, chosen).get(rule.metric, nan)
    theirs = _resampled(champion, truth_old, scores_old, chosen).get(rule.metric, nan)
    gains = [rule.gain(new=a, old=b) for a, b in zip(ours.tolist(), theirs.tolist(), strict=True)]
    return {
        "rows": int(len(rows)),
        "challenger": float(new),
        "champion": float(old),
        "gain": float(rule.gain(new=new, old=old)),
        "interval": _interval(gains),
    }
