"""Every model kind, with XGBoost and with a scikit-learn pipeline that imputes: train, predict, publish,
load, predict again; targets as they come (strings, booleans, integers, missing); every mismatch refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hmlcore import hml
from hmlcore.errors import ConfigError, FeatureError, ModelKindError

from ._kinds import KINDS, MISSING_TARGETS, TARGETS, container, estimator, generated, trained

FAMILIES = ("xgboost", "sklearn")


def check_answers(c: hml.ModelContainer, answers: list[dict], rows: int) -> None:
    """The answers have the kind's shape and values a user can trust."""
    target = c.target
    assert len(answers) == rows
    for answer in answers:
        if c.kind == "regression":
            assert set(answer) == {target} and isinstance(answer[target], float)
            seen = c.target_distribution
            spread = seen["max"] - seen["min"]
            assert seen["min"] - spread <= answer[target] <= seen["max"] + spread
        elif c.kind == "binary":
            assert set(answer) == {target, "probability"}
            assert 0.0 <= answer["probability"] <= 1.0
            assert answer[target] == c.classes[int(answer["probability"] >= c.threshold)]
        else:
            assert set(answer) == {target, "probabilities"}
            probabilities = answer["probabilities"]
            names = c.target_info.class_names  # JSON keys: the labels as text
            assert list(probabilities) == names and all(0.0 <= p <= 1.0 for p in probabilities.values())
            assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
            assert answer[target] == c.classes[names.index(max(probabilities, key=probabilities.get))]
        if c.kind != "regression":
            assert answer[target] in c.classes and type(answer[target]) is type(c.classes[0])


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_trains_predicts_publishes_and_loads_the_same_answers(tmp_path: Path, kind: str, family: str, capsys):
    frame = generated(kind)
    c = trained(kind, family, tmp_path, frame)
    assert f"left out {MISSING_TARGETS} of {len(frame)} rows whose target {TARGETS[kind]!r} is missing" in capsys.readouterr().err
    fresh = generated(kind, 50, seed=1).drop(columns=[TARGETS[kind]])
    answers = c.predict(fresh)
    check_answers(c, answers, 50)
    if kind == "regression":
        np.testing.assert_allclose([a[c.target] for a in answers], c.model.predict(c.encode(fresh)), rtol=1e-5)
        with pytest.raises(ModelKindError, match="'penguins' is a regression model: it has no class probabilities"):
            c.predict_proba(fresh)
    else:
        expected = c.model.predict_proba(c.encode(fresh))
        np.testing.assert_allclose(c.predict_proba(fresh), expected, rtol=1e-5, atol=1e-6)
        assert c.predict_proba(fresh).shape == (50, len(c.classes))

    c.publish(run_id="run-1", git_commit="abc", metrics=c.evaluate(frame))
    reference = json.loads(Path(c.reference_uri).read_text())
    assert reference["kind"] == kind and reference["classes"] == c.classes
    loaded = container(kind, tmp_path).load()
    assert (loaded.kind, loaded.classes, loaded.target_distribution) == (kind, c.classes, c.target_distribution)
    assert _close(loaded.predict(fresh), answers)
    one = loaded.predict(loaded.encode(fresh.iloc[0].to_dict()))
    assert len(one) == 1 and _close(one, answers[:1])


def _close(got: list[dict], expected: list[dict]) -> bool:
    """Same labels, probabilities equal to 1e-6."""
    for g, e in zip(got, expected, strict=True):
        assert g.keys() == e.keys()
        for key, value in e.items():
            if isinstance(value, dict):
                assert g[key] == pytest.approx(value, abs=1e-6)
            elif isinstance(value, float):
                assert g[key] == pytest.approx(value, abs=1e-6)
            else:
                assert g[key] == value
    return True


@pytest.mark.parametrize(
    ("kind", "labels", "classes"),
    [
        ("binary", "strings", ["no", "yes"]),
        ("binary", "booleans", [False, True]),
        ("binary", "integers", [0, 1]),
        ("multiclass", "strings", ["Adelie", "Chinstrap", "Gentoo"]),
        ("multiclass", "integers", [3, 5, 9]),
    ],
)
def test_class_labels_are_encoded_in_a_stable_order_and_answered_as_they_came(kind: str, labels: str, classes: list):
    frame = generated(kind, labels=labels)
    c = container(kind).analyze_distributions(frame)
    assert c.classes == classes and json.loads(json.dumps(c.classes)) == classes
    features, y = c.build_training_matrix(frame)
    kept = frame[frame[c.target].notna()]
    assert y.dtype == np.int64 and features.shape[0] == len(kept) == len(frame) - MISSING_TARGETS
    assert [classes[code] for code in y] == kept[c.target].tolist()
    np.testing.assert_array_equal(c.target_codes(kept), y)
    c.bind_model(estimator(kind, "xgboost").fit(features, y))
    check_answers(c, c.predict(kept.head(20)), 20)
    counts = c.target_distribution["counts"]
    assert sum(counts.values()) == len(kept) and list(counts) == [str(v).lower() if isinstance(v, bool) else str(v) for v in classes]


def test_labels_read_as_training_read_them_and_an_unseen_one_is_named():
    c = container("multiclass").analyze_distributions(generated("multiclass", labels="integers"))
    assert c.target_codes(pd.DataFrame({"species": ["5", 9.0, 3], "flipper": 1, "mass": 1, "island": "Dream"})).tolist() == [1, 2, 0]
    with pytest.raises(FeatureError, match=r"target 'species' has label 7, which training never saw \(classes: 3, 5, 9\)"):
        c.target_codes(pd.DataFrame({"species": [3, 7], "flipper": 1, "mass": 1, "island": "Dream"}))
    with pytest.raises(FeatureError, match="target 'species' is missing in 1 of 2 rows: drop them first"):
        c.target_codes(pd.DataFrame({"species": [3, None], "flipper": 1, "mass": 1, "island": "Dream"}))


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        (
            "binary",
            lambda f: f.assign(adopted=generated("multiclass")["species"]),
            r"has 3 class\(es\) .*a binary model needs exactly two; use",
        ),
        ("multiclass", lambda f: f.assign(species="Adelie"), r"target 'species' has 1 class\(es\) \('Adelie'\)|has one class"),
        (
            "multiclass",
            lambda f: f.assign(species=np.linspace(0, 1, len(f))),
            "holds fractional numbers such as 0.00334448: a classifier's",
        ),
        ("regression", lambda f: f.assign(bill="long"), "target 'bill' holds 'long', not a number: a regression target is numeric"),
        ("regression", lambda f: f.assign(bill=None), "target 'bill' is missing in all 300 rows"),
    ],
    ids=["binary-with-3-classes", "one-class", "fractional-labels", "text-to-regress", "no-target"],
)
def test_a_target_that_does_not_fit_the_kind_is_one_clear_line(kind, change, message):
    with pytest.raises(FeatureError, match=message) as caught:
        container(kind).build_training_matrix(change(generated(kind)))
    assert "\n" not in str(caught.value)


def test_a_kind_that_does_not_exist_is_named():
    with pytest.raises(ConfigError, match="kind 'ranking' is not one of binary, multiclass, regression"):
        container("binary").__class__("m", "p", ["x"], [], "y", kind="ranking")
    with pytest.raises(ConfigError, match="threshold 1.5 must be a number between 0 and 1"):
        container("binary", threshold=1.5)


def _model_of(kind: str, frame_kind: str | None = None, family: str = "xgboost"):
    """An estimator of ``kind`` trained on the encoded features of generated data of ``frame_kind``."""
    frame = generated(frame_kind or kind)
    c = container(frame_kind or kind).analyze_distributions(frame)
    features, y = c.build_training_matrix(frame)
    return estimator(kind, family).fit(features, y)


@pytest.mark.parametrize(
    ("kind", "model", "message"),
    [
        (
            "binary",
            lambda: _model_of("regression"),
            "a XGBRegressor is a regressor \\(no predict_proba\\), but the container's kind is 'binary'",
        ),
        ("multiclass", lambda: _model_of("regression", family="sklearn"), "a Pipeline is a regressor .*kind is 'multiclass'"),
        (
            "regression",
            lambda: _model_of("binary"),
            "a XGBClassifier is a classifier \\(it has predict_proba\\), but the container's kind is 'regression'",
        ),
        ("binary", lambda: _model_of("multiclass"), "a XGBClassifier with 3 classes, but the container's kind is 'binary'"),
        ("multiclass", lambda: _model_of("binary", "multiclass"), None),  # built below: 2 classes where 3 are
    ],
    ids=["regressor-in-binary", "regressor-in-multiclass", "classifier-in-regression", "3-classes-in-binary", "2-classes-in-3"],
)
def test_bind_model_refuses_a_model_of_another_kind_with_one_line(kind, model, message):
    c = container(kind).analyze_distributions(generated(kind))
    if message is None:
        features, y = c.build_training_matrix(generated(kind))
        wrong = estimator("binary", "xgboost").fit(features, (y == 0).astype(int))
        message = r"a XGBClassifier with 2 classes, but the container's target has 3 \('Adelie', 'Chinstrap', 'Gentoo'\)"
        model = lambda: wrong  # noqa: E731
    with pytest.raises(ModelKindError, match=message) as caught:
        c.bind_model(model())
    assert "\n" not in str(caught.value) and c.model is None


@pytest.mark.slow
def test_bind_model_refuses_a_model_trained_on_other_columns_or_on_the_raw_labels():
    frame = generated("multiclass")
    c = container("multiclass").analyze_distributions(frame)
    features, y = c.build_training_matrix(frame)
    with pytest.raises(ModelKindError, match="trained on 3 columns, but the container encodes 5"):
        c.bind_model(estimator("multiclass", "sklearn").fit(features[:, :3], y))
    raw = np.array(c.classes, dtype=object)[y]
    labelled = estimator("multiclass", "sklearn").fit(features, raw)  # sklearn sorts the labels as the container does
    assert c.bind_model(labelled).predict(frame.head(3))[0]["species"] in c.classes
    odd = estimator("multiclass", "sklearn").fit(features, np.array(["a", "b", "c"], dtype=object)[y])
    with pytest.raises(ModelKindError, match=r"trained on classes \['a', 'b', 'c'\]: train it on the codes 0..2"):
        c.bind_model(odd)


@pytest.mark.parametrize("published", KINDS)
def test_load_refuses_a_published_model_of_another_kind_before_unpickling_it(tmp_path: Path, published: str, monkeypatch):
    trained(published, "xgboost", tmp_path).publish(run_id="r", git_commit="g")
    import joblib

    monkeypatch.setattr(joblib, "load", lambda *a, **k: pytest.fail("unpickled a model of the wrong kind"))
    for kind in KINDS:
        if kind == published:
            continue
        c = hml.ModelContainer("penguins", "zoo", ["flipper", "mass"], ["island"], TARGETS[published], kind=kind, lake=str(tmp_path))
        with pytest.raises(ModelKindError, match=f"a {published} model, but the container 'penguins' is of kind '{kind}'"):
            c.load()


def test_load_refuses_a_model_whose_classes_do_not_match_its_metadata(tmp_path: Path):
    c = trained("multiclass", "xgboost", tmp_path)
    frame = generated("multiclass")
    features, y = c.build_training_matrix(frame)
    c.model = estimator("binary", "xgboost").fit(features, (y == 0).astype(int))  # as a tampered or mixed-up artifact would be
    c.publish(run_id="r", git_commit="g")
    with pytest.raises(ModelKindError, match="with 2 classes, but the container's target has 3"):
        container("multiclass", tmp_path).load()


def test_the_fast_path_leaves_the_users_model_alone_and_gives_its_answers():
    for kind in KINDS:
        c = trained(kind)
        model = c.model
        before = dict(vars(model))
        fresh = generated(kind, 30, seed=3)
        answers = c.predict(fresh)
        assert vars(model).keys() == before.keys(), "attributes were glued onto the user's model"
        own = model.predict(c.encode(fresh)) if kind == "regression" else model.predict_proba(c.encode(fresh))
        if kind == "binary":
            own = own[:, 1]
        got = [a.get("probability", a.get("probabilities", a.get(c.target))) for a in answers]
        got = [list(g.values()) if isinstance(g, dict) else g for g in got]
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), own, rtol=1e-5, atol=1e-6)


def test_the_binary_threshold_decides_the_label():
    c = trained("binary")
    fresh = generated("binary", 60, seed=4)
    strict = container("binary", threshold=0.9).analyze_distributions(generated("binary")).bind_model(c.model)
    for loose, tight in zip(c.predict(fresh), strict.predict(fresh), strict=True):
        assert loose["probability"] == tight["probability"]
        assert tight["adopted"] == ("yes" if tight["probability"] >= 0.9 else "no")


def test_the_analysis_handed_between_steps_carries_the_kind_and_the_classes():
    analysed = container("multiclass").analyze_distributions(generated("multiclass", labels="integers"))
    data = analysed.dump_analysis()
    step = container("multiclass").load_analysis(data)
    assert (step.kind, step.classes, step.target_distribution) == ("multiclass", [3, 5, 9], analysed.target_distribution)
    with pytest.raises(ModelKindError, match="the feature analysis: a multiclass model, but the container 'penguins' is of kind 'binary'"):
        hml.ModelContainer("penguins", "zoo", ["flipper", "mass"], ["island"], "species").load_analysis(data)


def test_a_model_published_before_kinds_were_saved_loads_as_the_binary_model_it_was(tmp_path: Path):
    c = trained("binary", "xgboost", tmp_path, generated("binary", labels="integers"))
    uri = c.publish(run_id="old", git_commit="g")
    reference = json.loads(Path(uri).read_text())
    metadata_file = Path(reference["artifacts"]["metadata"]["uri"])
    metadata = json.loads(metadata_file.read_text())
    for key in ("kind", "target_info"):
        del metadata[key]
    old = json.dumps(metadata).encode()
    metadata_file.write_bytes(old)
    import hashlib

    reference["artifacts"]["metadata"]["sha256"] = hashlib.sha256(old).hexdigest()
    Path(uri).write_text(json.dumps(reference))
    loaded = container("binary", tmp_path).load(uri)
    assert loaded.classes == [0, 1]
    fresh = generated("binary", 20, seed=2)
    assert [a["probability"] for a in loaded.predict(fresh)] == pytest.approx([a["probability"] for a in c.predict(fresh)])
