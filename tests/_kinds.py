"""Generated data of each model kind, and the estimators the kind tests train on it.

The data is made up here (never the demo's crash data): numeric features with missing values, a
categorical feature with missing values, and a target of the kind's own form: string labels (``yes`` /
``no``, penguin species), boolean or integer labels, or a number; a few rows have no target at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hmlcore import hml

NUMERIC = ["flipper", "mass"]
CATEGORICAL = ["island"]
KINDS = ("binary", "multiclass", "regression")
#: per kind, the target column and how its labels look
TARGETS = {"binary": "adopted", "multiclass": "species", "regression": "bill"}
MISSING_TARGETS = 3


def generated(kind: str, rows: int = 300, *, seed: int = 0, labels: str = "strings") -> pd.DataFrame:
    """A frame of ``kind``'s data: features with missing values, ``MISSING_TARGETS`` rows without a target.

    Args:
        labels: for classifiers, ``"strings"``, ``"booleans"`` (binary) or ``"integers"``.
    """
    rng = np.random.default_rng(seed)
    flipper = rng.normal(200, 15, rows)
    mass = rng.normal(4200, 700, rows)
    island = rng.choice(["Biscoe", "Dream", "Torgersen"], rows)
    score = (flipper - 200) / 15 + (mass - 4200) / 700 + (island == "Biscoe") * 0.8 + rng.normal(0, 0.6, rows)
    frame = pd.DataFrame({"flipper": flipper.round(1), "mass": mass.round(0), "island": island})
    frame.loc[frame.index % 11 == 0, "mass"] = np.nan
    frame.loc[frame.index % 13 == 0, "island"] = None
    if kind == "regression":
        target: Any = (40 + 3 * score).round(2)
    elif kind == "binary":
        positive = score > np.median(score)
        target = {"strings": np.where(positive, "yes", "no"), "booleans": positive, "integers": positive.astype(int)}[labels]
    else:
        cut = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
        names = {"strings": np.array(["Adelie", "Chinstrap", "Gentoo"]), "integers": np.array([3, 5, 9])}[labels]
        target = names[cut]
    frame[TARGETS[kind]] = pd.Series(target, dtype=object)
    frame.loc[[i for i in (1, 2, 4)[:MISSING_TARGETS] if i < rows], TARGETS[kind]] = None
    return frame


def container(kind: str, lake: Any = "unused", **options: Any) -> hml.ModelContainer:
    return hml.ModelContainer("penguins", "zoo", NUMERIC, CATEGORICAL, TARGETS[kind], kind=kind, lake=str(lake), **options)


def estimator(kind: str, family: str) -> Any:
    """An untrained estimator of ``kind``: ``xgboost``, or a scikit-learn pipeline that imputes missing values first."""
    if family == "xgboost":
        from xgboost import XGBClassifier, XGBRegressor

        options = {"n_estimators": 15, "max_depth": 3, "n_jobs": 1, "random_state": 0}
        return XGBRegressor(**options) if kind == "regression" else XGBClassifier(**options)
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if kind == "regression":
        return make_pipeline(SimpleImputer(), RandomForestRegressor(n_estimators=20, max_depth=5, random_state=0))
    return make_pipeline(SimpleImputer(), LogisticRegression(max_iter=500))


def trained(
    kind: str, family: str = "xgboost", lake: Any = "unused", frame: pd.DataFrame | None = None, **options: Any
) -> hml.ModelContainer:
    """A container of ``kind`` with an estimator of ``family`` trained on generated data."""
    frame = generated(kind) if frame is None else frame
    c = container(kind, lake, **options).analyze_distributions(frame)
    features, target = c.build_training_matrix(frame)
    return c.bind_model(estimator(kind, family).fit(features, target))
