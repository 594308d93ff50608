"""Explanations: per-row contributions of the raw request features, through /explain and KServe's :explain."""

from __future__ import annotations

import numpy as np
import pytest

from hmlcore import hml
from hmlcore.model.explain import global_importance
from tests import _serving

RECORDS = [_serving.RECORD, {**_serving.RECORD, "road": "city", "age": 20}, {**_serving.RECORD, "sex": None, "speed": None}]


def served(model_factory, target_of, kind: str = "binary") -> tuple[hml.ModelContainer, object]:
    """A container trained on the synthetic crashes with ``target_of(frame)`` as target, and a test client serving it."""
    frame = _serving.training_frame()
    frame["hurt"] = target_of(frame)
    container = _serving.container("unused-lake", kind=kind)
    container.analyze_distributions(frame)
    features, target = container.build_training_matrix(frame)
    container.bind_model(model_factory().fit(features, target))
    app = hml.HmlApp(name="demo-explain", package_entrypoint="demo")
    app.register_model(_serving.MODEL, container)
    hml.enable_monitoring(app.inference)
    return container, app.inference.create_app().test_client()


@pytest.fixture(scope="module")
def binary():
    from xgboost import XGBClassifier

    return served(lambda: XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1, random_state=0), lambda f: f["hurt"])


def test_binary_contributions_and_bias_add_up_to_the_raw_margin_and_name_raw_features(binary):
    import xgboost

    container, client = binary
    answer = client.post("/explain", json=RECORDS)
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert body["output"] == "log_odds" and body["model"]["name"] == _serving.MODEL
    margins = container.model.get_booster().predict(xgboost.DMatrix(container.encode(RECORDS)), output_margin=True)
    assert len(body["explanations"]) == len(RECORDS)
    for explanation, margin in zip(body["explanations"], margins, strict=True):
        assert list(explanation["contributions"]) == ["age", "speed", "sex", "road"]  # raw features, not "road=city"
        assert sum(explanation["contributions"].values()) + explanation["bias"] == pytest.approx(float(margin), abs=1e-4)
        assert explanation["margin"] == pytest.approx(float(margin), abs=1e-4)
    # the highway row and the city row differ in road's contribution, in the direction the data was made
    assert body["explanations"][0]["contributions"]["road"] > body["explanations"][1]["contributions"]["road"]
    kserve = client.post(f"/v1/models/{_serving.MODEL}:explain", json={"instances": [list(_serving.RECORD.values())]})
    assert kserve.status_code == 200 and kserve.json["explanations"][0] == body["explanations"][0]
    assert 'route="/explain"' in client.get("/metrics").get_data(as_text=True)


def test_bad_explain_requests_get_the_predict_routes_json_errors(binary):
    _, client = binary
    missing = client.post("/explain", json={"age": 40})
    assert missing.status_code == 422 and {d["feature"] for d in missing.json["details"]} >= {"speed", "sex", "road"}
    assert client.post("/explain", data=b"{").status_code == 400
    assert client.post("/v1/models/nope:explain", json={"instances": []}).status_code == 404


def test_global_importance_ranks_raw_features_from_the_same_numbers(binary):
    container, _ = binary
    importance = global_importance(container, _serving.training_frame(rows=200, seed=5))
    assert set(importance) == {"age", "speed", "sex", "road"}
    values = list(importance.values())
    assert values == sorted(values, reverse=True) and min(values) >= 0
    assert list(importance)[-1] == "sex"  # the data does not depend on sex
    report = container.evaluation_report(_serving.training_frame(rows=200, seed=5))
    assert "mean absolute contribution" in report and report.index(">road<") < report.index(">sex<")


def test_the_report_computes_importances_on_a_seeded_sample_of_a_large_frame_and_says_so(binary, monkeypatch):
    from hmlcore.model import evaluation

    container, _ = binary
    frame = _serving.training_frame(rows=200, seed=5)
    monkeypatch.setattr(evaluation, "IMPORTANCE_ROWS", 50)
    report = container.evaluation_report(frame)
    assert "mean absolute contribution on a random sample of 50 of these 200 rows drawn with seed 0 (the numbers" in report
    sample = frame.iloc[np.sort(np.random.default_rng(0).choice(200, size=50, replace=False))]
    for feature, value in global_importance(container, sample).items():
        assert f">{feature}<" in report and f"{value:.4g}" in report
    monkeypatch.setattr(evaluation, "IMPORTANCE_ROWS", 200)
    assert "mean absolute contribution on these rows" in container.evaluation_report(frame)


def test_multiclass_explanations_have_one_set_of_contributions_per_class():
    import xgboost
    from xgboost import XGBClassifier

    container, client = served(
        lambda: XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1, random_state=0),
        lambda f: np.array(["slow", "medium", "fast"])[np.digitize(f["speed"], [60, 110])],
        kind="multiclass",
    )
    body = client.post("/explain", json=RECORDS[:2]).json
    assert body["output"] == "class_log_odds"
    margins = container.model.get_booster().predict(xgboost.DMatrix(container.encode(RECORDS[:2])), output_margin=True)
    for explanation, row_margin in zip(body["explanations"], margins, strict=True):
        classes = list(explanation["contributions"])
        assert classes == container.target_info.class_names and sorted(classes) == ["fast", "medium", "slow"]
        assert list(explanation["bias"]) == classes
        for index, name in enumerate(classes):
            assert list(explanation["contributions"][name]) == ["age", "speed", "sex", "road"]
            total = sum(explanation["contributions"][name].values()) + explanation["bias"][name]
            assert total == pytest.approx(float(row_margin[index]), abs=1e-4)


def test_regression_explanations_add_up_to_the_predicted_value():
    from xgboost import XGBRegressor

    container, client = served(
        lambda: XGBRegressor(n_estimators=20, max_depth=3, n_jobs=1, random_state=0),
        lambda f: f["speed"] * 2.0 + f["age"],
        kind="regression",
    )
    body = client.post("/explain", json=RECORDS[:2]).json
    assert body["output"] == "value"
    predicted = container.model.predict(container.encode(RECORDS[:2]))
    for explanation, value in zip(body["explanations"], predicted, strict=True):
        assert sum(explanation["contributions"].values()) + explanation["bias"] == pytest.approx(float(value), rel=1e-4)


def test_a_model_other_than_xgboost_gets_a_clear_501():
    from sklearn.ensemble import RandomForestClassifier

    _, client = served(lambda: RandomForestClassifier(n_estimators=5, random_state=0), lambda f: f["hurt"])
    answer = client.post("/explain", json=RECORDS[0])
    assert answer.status_code == 501
    assert "explanations need an XGBoost model" in answer.json["error"] and "RandomForestClassifier" in answer.json["error"]
    assert client.post("/predict", json=RECORDS[0]).status_code == 200
