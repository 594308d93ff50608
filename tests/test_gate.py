"""The gate never scores a champion on rows it trained on: when the share, the seed or the data change it compares
on the rows neither model saw, refuses when there are none, calls identical inputs "no change", and refuses a
model that does not beat its baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmlcore import hml
from hmlcore.model.registry import ModelRegistry
from hmlcore.model.split import ROW_ID, SplitSpec, as_ids, row_ids, validation_mask

from ._kinds import container, estimator, generated

RULE = {"metric": "auc", "min_gain": 0.0}


def data(rows: int = 500, seed: int = 0) -> pd.DataFrame:
    frame = generated("binary", rows, seed=seed).dropna(subset=["adopted"]).reset_index(drop=True)
    return frame.assign(**{ROW_ID: row_ids(frame, list(frame.columns)).view(np.int64)})


def publish(
    lake, run_id: str, frame: pd.DataFrame, *, force: bool = False, model=None, holdout: pd.DataFrame | None = None, **spec
) -> hml.ModelContainer:
    """Split ``frame`` by ``spec``, train on the training rows, publish through the gate with the split recorded
    (judged on ``holdout`` instead of the validation rows if given)."""
    split = SplitSpec(**spec)
    mask = validation_mask(frame, split, ids=as_ids(frame[ROW_ID]), stratify=frame["adopted"])
    training, validation = frame[~mask], frame[mask] if holdout is None else holdout
    c = container("binary", lake).analyze_distributions(training)
    features, target = c.build_training_matrix(training)
    c.bind_model((model or estimator("binary", "xgboost")).fit(features, target))
    c.publish(
        run_id=run_id,
        git_commit="c0ffee",
        metrics=c.evaluate(validation),
        promote=RULE,
        holdout=validation,
        force=force,
        lineage={"data": {"sha256": str(pd.util.hash_pandas_object(frame).sum())}, "split": split.to_dict(), "parameters": {"n": 15}},
        training_rows=training,
    )
    return c


def champion_trained_on(lake) -> set[int]:
    registry = ModelRegistry(container("binary", lake))
    return set(registry.training_rows(registry.get(registry.champion())).tolist())


@pytest.mark.parametrize(
    ("change", "spec"),
    [("seed", {"seed": 3}), ("share", {"validation_share": 0.5}), ("data", {})],
)
def test_the_champion_is_scored_only_on_rows_it_never_trained_on(tmp_path, change, spec):
    lake = str(tmp_path / "lake")
    frame = data()
    champion = publish(lake, "run-1", frame)
    assert champion.decision.promoted
    trained_on = champion_trained_on(lake)
    if change == "data":  # more rows, in another order: the old rows keep their identity
        frame = pd.concat([frame, data(300, seed=9)], ignore_index=True).sample(frac=1.0, random_state=2).reset_index(drop=True)
    challenger = publish(lake, "run-2", frame, **spec)
    validation = frame[validation_mask(frame, SplitSpec(**spec), ids=as_ids(frame[ROW_ID]), stratify=frame["adopted"])]
    unseen = validation[[int(i) not in trained_on for i in as_ids(validation[ROW_ID])]]
    scores = challenger.decision.scores
    assert 0 < scores["rows"] == len(unseen) < len(validation)
    incumbent = container("binary", lake).load(ModelRegistry(champion).get("run-1")["reference"])
    assert scores["champion"] == pytest.approx(incumbent.evaluate(unseen)["auc"])  # exactly these rows, none it saw
    assert "validation rows neither trained on" in challenger.decision.reason
    assert "95% interval" in challenger.decision.reason


def test_no_row_unseen_by_the_champion_is_a_refusal_that_says_what_to_do_and_force_still_works(tmp_path):
    lake = str(tmp_path / "lake")
    frame = data()
    publish(lake, "run-1", frame, validation_share=0.2)
    trained_on = champion_trained_on(lake)
    seen_only = frame[[int(i) in trained_on for i in as_ids(frame[ROW_ID])]]
    refused = publish(lake, "run-2", seen_only, validation_share=0.3)
    assert refused.decision.status == "rejected"
    assert refused.decision.reason.startswith("version run-2 not promoted: the champion run-1 trained on all ")
    assert "seed 7, validation_share 0.2" in refused.decision.reason and "--param force=true" in refused.decision.reason
    assert "\n" not in refused.decision.reason
    forced = publish(lake, "run-3", seen_only, validation_share=0.3, force=True)
    assert forced.decision.promoted and "forced" in forced.decision.reason


def test_identical_inputs_are_no_change_and_the_champion_stays(tmp_path):
    lake = str(tmp_path / "lake")
    frame = data()
    publish(lake, "run-1", frame)
    again = publish(lake, "run-2", frame)
    assert again.decision.status == "unchanged" and not again.decision.promoted
    assert again.decision.reason.startswith("no change: version run-2 has the same data, split, parameters and code as run-1")
    registry = ModelRegistry(again)
    assert registry.champion() == "run-1" and registry.get("run-2")["status"] == "unchanged"


def test_a_model_that_does_not_beat_its_baseline_is_not_promoted_even_first(tmp_path):
    from sklearn.dummy import DummyClassifier

    lake = str(tmp_path / "lake")
    prior = publish(lake, "run-1", data(), model=DummyClassifier(strategy="prior"))
    assert prior.decision.status == "rejected"
    assert "does not beat its baseline (auc 0.5 vs 0.5 for the class prior on the same rows)" in prior.decision.reason
    assert ModelRegistry(prior).champion() is None


def test_rows_that_cannot_define_the_metric_are_a_refusal_not_a_promotion(tmp_path):
    lake = str(tmp_path / "lake")
    frame = data()
    publish(lake, "run-1", frame)
    trained_on = champion_trained_on(lake)
    fresh = data(200, seed=4)
    one_class = fresh[fresh["adopted"] == "yes"].head(5)  # unseen by the champion, all of one class: no AUC
    holdout = pd.concat([frame[[int(i) in trained_on for i in as_ids(frame[ROW_ID])]].head(40), one_class])
    refused = publish(lake, "run-2", frame, holdout=holdout, seed=5)  # the fresh rows: unseen by both
    assert refused.decision.status == "rejected"
    assert "auc is not defined on the 5 validation rows neither it nor the champion run-1 trained on" in refused.decision.reason
