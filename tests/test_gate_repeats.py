"""On data with many exact repeats, the gate compares a champion and a challenger only on validation rows whose
feature values neither trained on, so a champion that trained on copies of the validation rows is not flattered.

The data is a generated churn table as a stranger's test had it: 2,500 customers, 4,000 rows of which 1,500
repeat a customer's row exactly, labels ``yes``/``no``, 10% of the feature values missing. The champion is
trained with the default random row split (its training holds copies of validation rows); the challenger is
trained honestly with the split keyed on the customer. Before the fix, the gate left out only the validation
rows that *were* champion training rows, kept their copies, and scored the champion on rows it had memorised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmlcore import hml
from hmlcore.model.registry import ModelRegistry
from hmlcore.model.split import ROW_ID, SplitSpec, as_ids, row_ids, validation_mask

NUMERIC, CATEGORICAL, TARGET = ["tenure", "monthly", "calls"], ["contract", "payment"], "churned"
RULE = {"metric": "auc", "min_gain": 0.0}


def churn(customers: int = 2500, rows: int = 4000, seed: int = 0) -> pd.DataFrame:
    """``customers`` customers, ``rows - customers`` of them repeated exactly, 10% of each feature missing."""
    rng = np.random.default_rng(seed)
    base = pd.DataFrame(
        {
            "customer": [f"c{i:05d}" for i in range(customers)],
            "tenure": rng.integers(1, 72, customers).astype(float),
            "monthly": rng.normal(65, 20, customers).round(2),
            "calls": rng.poisson(2, customers).astype(float),
            "contract": rng.choice(["monthly", "yearly", "two-year"], customers, p=[0.5, 0.3, 0.2]),
            "payment": rng.choice(["card", "bank", "check"], customers),
        }
    )
    odds = -0.3 - 0.04 * base["tenure"] + 0.02 * (base["monthly"] - 65) + 1.2 * (base["contract"] == "monthly") + 0.25 * base["calls"]
    base[TARGET] = np.where(rng.random(customers) < 1 / (1 + np.exp(-odds)), "yes", "no")
    for column in NUMERIC + CATEGORICAL:
        base.loc[rng.random(customers) < 0.1, column] = np.nan
    repeats = base.sample(rows - customers, replace=True, random_state=seed)
    frame = pd.concat([base, repeats]).sample(frac=1.0, random_state=seed + 1).reset_index(drop=True)
    return frame.assign(**{ROW_ID: row_ids(frame, list(frame.columns)).view(np.int64)})


def split(frame: pd.DataFrame, spec: SplitSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    mask = validation_mask(frame, spec, ids=as_ids(frame[ROW_ID]), stratify=None if spec.key else frame[TARGET])
    return frame[~mask], frame[mask]


def publish(lake: str, run_id: str, frame: pd.DataFrame, spec: SplitSpec, *, identities_only: bool = False) -> hml.ModelContainer:
    """Train a deep XGBoost (it memorises repeated rows) on the training rows of ``spec`` and publish it through the gate."""
    from xgboost import XGBClassifier

    training, validation = split(frame, spec)
    c = hml.ModelContainer("churn", "shop", NUMERIC, CATEGORICAL, TARGET, lake=lake).analyze_distributions(training)
    features, target = c.build_training_matrix(training)
    c.bind_model(XGBClassifier(n_estimators=200, max_depth=6, learning_rate=0.1, random_state=0).fit(features, target))
    c.publish(
        run_id=run_id,
        git_commit="c0ffee",
        metrics=c.evaluate(validation),
        promote=RULE,
        holdout=validation,
        lineage={"data": {"sha256": "churn"}, "split": spec.to_dict()},
        training_rows=training[ROW_ID] if identities_only else training,  # identities only: as published before value hashes
    )
    return c


def inputs(rows: pd.DataFrame) -> pd.Series:
    """Each row's feature values as one text (a missing value as 'nan'): the test's own notion of 'the same input'."""
    return pd.Series([repr(row) for row in rows[NUMERIC + CATEGORICAL].itertuples(index=False, name=None)], index=rows.index)


def test_the_gate_scores_both_models_only_on_rows_whose_values_neither_trained_on(tmp_path):
    lake, frame = str(tmp_path / "lake"), churn()
    leaky, honest = SplitSpec(), SplitSpec(key="customer")
    champion = publish(lake, "run-1", frame, leaky)
    assert champion.decision.promoted
    challenger = publish(lake, "run-2", frame, honest)

    champion_training, _ = split(frame, leaky)
    honest_training, validation = split(frame, honest)
    seen_by_champion = inputs(validation).isin(set(inputs(champion_training)))
    seen_by_challenger = inputs(validation).isin(set(inputs(honest_training)))
    unseen = validation[~seen_by_champion & ~seen_by_challenger]
    scores, reason = challenger.decision.scores, challenger.decision.reason
    assert 0 < scores["rows"] == len(unseen) < len(validation)
    assert (scores["validation_rows"], scores["seen_by_champion"], scores["seen_by_challenger"]) == (
        len(validation),
        int(seen_by_champion.sum()),
        int(seen_by_challenger.sum()),
    )
    assert (
        f"on the {len(unseen)} validation rows neither trained on (of {len(validation)}: {int(seen_by_champion.sum())} hold "
        f"feature values the champion trained on, {int(seen_by_challenger.sum())} hold feature values this version trained on)"
    ) in reason
    assert scores["matched_by"] == {"champion": "values", "challenger": "values"}

    incumbent = hml.ModelContainer("churn", "shop", NUMERIC, CATEGORICAL, TARGET, lake=lake)
    incumbent.load(ModelRegistry(champion).get("run-1")["reference"])
    assert scores["champion"] == pytest.approx(incumbent.evaluate(unseen)["auc"])
    assert scores["challenger"] == pytest.approx(challenger.evaluate(unseen)["auc"])
    # what the gate showed before: the validation rows that were not themselves champion training rows, copies kept
    trained_ids = set(as_ids(champion_training[ROW_ID]).tolist())
    copies_kept = validation[[int(i) not in trained_ids for i in as_ids(validation[ROW_ID])]]
    flattered = incumbent.evaluate(copies_kept)["auc"]
    assert scores["champion"] < flattered - 0.05, (scores, flattered)
    assert scores["champion"] < champion.decision.scores["challenger"] - 0.05  # below its own (inflated) validation AUC


def test_a_champion_recorded_without_value_hashes_still_works_and_the_line_says_copies_were_not_left_out(tmp_path):
    lake, frame = str(tmp_path / "lake"), churn(1200, 2000, seed=3)
    leaky, honest = SplitSpec(), SplitSpec(key="customer")
    publish(lake, "run-1", frame, leaky, identities_only=True)
    challenger = publish(lake, "run-2", frame, honest)

    champion_training, _ = split(frame, leaky)
    honest_training, validation = split(frame, honest)
    trained_ids = set(as_ids(champion_training[ROW_ID]).tolist())
    seen_by_champion = np.array([int(i) in trained_ids for i in as_ids(validation[ROW_ID])])
    seen_by_challenger = inputs(validation).isin(set(inputs(honest_training))).to_numpy()
    scores, reason = challenger.decision.scores, challenger.decision.reason
    assert scores["rows"] == int((~seen_by_champion & ~seen_by_challenger).sum())
    assert scores["matched_by"] == {"champion": "identity", "challenger": "values"}
    assert f"{int(seen_by_champion.sum())} were the champion's training rows" in reason
    assert "the champion names only its training rows, not their values" in reason
    assert "copies of those rows could not be left out" in reason and "\n" not in reason


def test_when_every_input_repeats_across_the_split_the_gate_refuses_in_one_line_and_force_still_works(tmp_path):
    """A passenger list of 12 distinct feature rows: both models trained on every input, so no validation row is new
    to both; the gate says so (instead of scoring the champion on rows it memorised) and force still promotes."""
    from xgboost import XGBClassifier

    from ._repeated import repeated

    frame, declared = repeated("binary")
    frame = frame.assign(**{ROW_ID: row_ids(frame, list(frame.columns)).view(np.int64)})
    lake, target = str(tmp_path / "lake"), declared["TARGET"]

    def publish_passengers(run_id: str, trees: int, *, force: bool = False) -> hml.ModelContainer:
        mask = validation_mask(frame, SplitSpec(seed=trees), ids=as_ids(frame[ROW_ID]), stratify=frame[target])
        training, validation = frame[~mask], frame[mask]
        c = hml.ModelContainer("voyage", "ship", [], declared["FEATURES_CATEGORICAL"], target, lake=lake).analyze_distributions(training)
        features, labels = c.build_training_matrix(training)
        c.bind_model(XGBClassifier(n_estimators=trees, max_depth=3, random_state=0).fit(features, labels))
        c.publish(run_id=run_id, git_commit="c0ffee", metrics=c.evaluate(validation), promote=RULE, holdout=validation, force=force,
                  lineage={"split": SplitSpec(seed=trees).to_dict()}, training_rows=training)  # fmt: skip
        return c

    assert publish_passengers("run-1", 20).decision.promoted
    refused = publish_passengers("run-2", 40)
    validation_rows = int(validation_mask(frame, SplitSpec(seed=40), ids=as_ids(frame[ROW_ID]), stratify=frame[target]).sum())
    assert refused.decision.status == "rejected" and "\n" not in refused.decision.reason
    assert f"each of the {validation_rows} validation rows holds feature values the champion run-1 ({validation_rows} rows)" in (
        refused.decision.reason
    )
    assert "shared.SPLIT's key" in refused.decision.reason and "--param force=true" in refused.decision.reason
    assert ModelRegistry(refused).champion() == "run-1"
    forced = publish_passengers("run-3", 40, force=True)
    assert forced.decision.promoted and "forced" in forced.decision.reason
