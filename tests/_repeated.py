"""Data with heavy repetition (few categorical features, most rows exact repeats) and the 5-fold
cross-validation a package's validation metric is checked against.

Shared by ``tests/test_honest_split.py`` and ``benchmarks/honest_split.py``, so the closing figures and
the test are made on the same rows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hmlcore import hml
from hmlcore.model.promotion import PromotionRule

#: the template's XGBoost settings (pipeline.train_model), with the number of trees the tests use
PARAMS = {"max_depth": 4, "learning_rate": 0.05, "tree_method": "hist", "random_state": 0}
OBJECTIVES = {"binary": "binary:logistic", "multiclass": "multi:softprob", "regression": "reg:squarederror"}


def repeated(kind: str, rows: int = 1313, seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A passenger list of ``kind``: class, sex and age band, so 12 distinct feature rows in ``rows``.

    ``binary``: survived 0/1; ``multiclass``: an answer of three (the most common about 60%);
    ``regression``: a fare with noise. Returns the frame and what shared.py must declare for it.
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "pclass": rng.choice(["1st", "2nd", "3rd"], rows, p=[0.25, 0.2, 0.55]),
            "sex": rng.choice(["female", "male"], rows, p=[0.35, 0.65]),
            "age_band": rng.choice(["child", "adult"], rows, p=[0.1, 0.9]),
        }
    )
    first, third = (frame["pclass"] == "1st").to_numpy(), (frame["pclass"] == "3rd").to_numpy()
    female, child = (frame["sex"] == "female").to_numpy(), (frame["age_band"] == "child").to_numpy()
    if kind == "binary":
        odds = -1.3 + 2.4 * female + 1.0 * first - 0.8 * third + 1.0 * child
        frame["survived"] = (rng.random(rows) < 1 / (1 + np.exp(-odds))).astype(int)
    elif kind == "multiclass":
        logits = np.stack([np.full(rows, 1.2), -0.5 + 1.5 * female + 0.5 * child, -1.0 + 2.0 * first - 0.5 * third], axis=1)
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        frame["answer"] = np.array(["agree", "unsure", "disagree"])[(rng.random(rows)[:, None] > p.cumsum(axis=1)).sum(axis=1)]
    else:
        frame["fare"] = (10 + 60 * first + 15 * (~first & ~third) + 8 * female - 5 * child + rng.normal(0, 6, rows)).round(2)
    declared = {"FEATURES_NUMERIC": [], "FEATURES_CATEGORICAL": ["pclass", "sex", "age_band"], "TARGET": str(frame.columns[-1])}
    return frame, declared


def cross_validated(frame: pd.DataFrame, declared: dict[str, Any], kind: str, *, n_estimators: int, folds: int = 5) -> dict[str, Any]:
    """The promotion metric of the template's model under ``folds``-fold cross-validation (stratified for a
    classifier), and of the baseline on the same folds: per fold values, mean and spread."""
    from sklearn.model_selection import KFold, StratifiedKFold
    from xgboost import XGBClassifier, XGBRegressor

    rule = PromotionRule.from_config(None, kind=kind)
    target = declared["TARGET"]
    splitter = StratifiedKFold(folds, shuffle=True, random_state=0) if kind != "regression" else KFold(folds, shuffle=True, random_state=0)
    model_scores, baseline_scores = [], []
    for train, test in splitter.split(frame, frame[target]):
        c = hml.ModelContainer(
            "cv",
            "cv",
            declared["FEATURES_NUMERIC"],
            declared["FEATURES_CATEGORICAL"],
            target,
            kind=kind,
            lake="unused",
            unknown_category="ignore",
        )
        c.analyze_distributions(frame.iloc[train])
        features, labels = c.build_training_matrix(frame.iloc[train])
        estimator = XGBRegressor if kind == "regression" else XGBClassifier
        c.bind_model(estimator(n_estimators=n_estimators, objective=OBJECTIVES[kind], **PARAMS).fit(features, labels))
        verdict = c.assess(frame.iloc[test], resamples=0)
        model_scores.append(verdict["metrics"][rule.metric])
        baseline_scores.append(verdict["baseline"][rule.metric])
    return {
        "metric": rule.metric,
        "folds": model_scores,
        "mean": float(np.mean(model_scores)),
        "std": float(np.std(model_scores, ddof=1)),
        "baseline": float(np.mean(baseline_scores)),
    }


def point_shared_at(shared_py: Path, source: str, declared: dict) -> None:
    """Edit shared.py as a user would: the data source, the feature lists and the target."""
    text = shared_py.read_text()
    text, count = re.subn(r"^DATA_SOURCE = .*$", f"DATA_SOURCE = {source!r}", text, flags=re.M)
    assert count == 1
    for name, value in declared.items():
        text, count = re.subn(rf"^{name} = (\[.*?\]|\".*?\")$", f"{name} = {value!r}", text, flags=re.M | re.S)
        assert count == 1, name
    shared_py.write_text(text)
