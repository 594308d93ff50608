"""The prediction API, asked about rows of the training data (see conftest.py): each answer is checked by check_answer."""

import pytest

from {{ cookiecutter.package_name }} import shared

FEATURES = [*shared.FEATURES_NUMERIC, *shared.FEATURES_CATEGORICAL]


def test_get_predict_answers_the_model_kind(client, check_answer, record):
    response = client.get("/predict", query_string=record)
    assert response.status_code == 200, response.json
    check_answer(response.json["predictions"][0])
    assert response.json["model"]["name"] == shared.MODEL_NAME


def test_post_a_batch_answers_each_row(client, check_answer, records):
    response = client.post("/predict", json=records)
    assert response.status_code == 200, response.json
    predictions = response.json["predictions"]
    assert len(predictions) == len(records)
    for answer in predictions:
        check_answer(answer)


def test_missing_values_travel_as_null_and_as_an_empty_query_value(client, check_answer, record):
    blank = {**record, **{f: None for f in FEATURES[:: max(1, len(FEATURES) - 1)]}}  # the first and the last feature
    response = client.post("/predict", json=blank)
    assert response.status_code == 200, response.json
    check_answer(response.json["predictions"][0])
    response = client.get("/predict", query_string={**record, **{f: "" for f in blank if blank[f] is None}})
    assert response.status_code == 200, response.json


def test_missing_feature_is_422_naming_it(client, record):
    left_out = FEATURES[-1]
    response = client.post("/predict", json={k: v for k, v in record.items() if k != left_out})
    assert response.status_code == 422
    assert left_out in response.json["error"]


@pytest.mark.skipif(not shared.FEATURES_CATEGORICAL, reason="the model has no categorical feature")
def test_unknown_category_is_422(client, record):
    feature = shared.FEATURES_CATEGORICAL[0]
    response = client.post("/predict", json={**record, feature: "never-seen-in-training"})
    assert response.status_code == 422
    assert response.json["details"][0]["feature"] == feature


def test_malformed_json_is_400(client):
    response = client.post("/predict", data="{not json", content_type="application/json")
    assert response.status_code == 400


@pytest.mark.skipif(not shared.FEATURES_NUMERIC, reason="the model has no numeric feature")
def test_a_value_of_the_wrong_type_is_422_naming_the_feature_and_type(client, record):
    feature = shared.FEATURES_NUMERIC[0]
    response = client.post("/predict", json={**record, feature: "not a number"})
    assert response.status_code == 422
    assert response.json["details"][0]["feature"] == feature
    assert response.json["details"][0]["expected"] == "number"


def test_kserve_v1_predict_answers_like_predict(client, records):
    response = client.post(f"/v1/models/{shared.MODEL_NAME}:predict", json={"instances": records[:3]})
    assert response.status_code == 200, response.json
    assert response.json["predictions"] == client.post("/predict", json=records[:3]).json["predictions"]


def test_openapi_lists_the_features_and_the_categories_seen_in_training(client, model):
    record = client.get("/openapi.json").json["components"]["schemas"]["Record"]
    assert set(record["required"]) == set(FEATURES)
    for feature in shared.FEATURES_CATEGORICAL:
        assert set(record["properties"][feature]["enum"]) >= set(model.distributions["categorical"][feature]["counts"])


def test_ready_once_the_model_is_loaded(client, trained):
    assert client.get("/readyz").status_code == 200
    assert client.get("/model").json["version"] == trained


def test_explain_names_each_raw_feature_or_says_why_not(client, records):
    response = client.post("/explain", json=records[:3])
    if response.status_code == 501:  # a model other than XGBoost (see the README) has no contributions of its own
        assert "explanations need an XGBoost model" in response.json["error"]
        return
    assert response.status_code == 200, response.json
    assert len(response.json["explanations"]) == 3
    for explanation in response.json["explanations"]:
{%- if cookiecutter.model_kind == "multiclass" %}
        for per_class in explanation["contributions"].values():  # one set of contributions per class
            assert list(per_class) == FEATURES
{%- else %}
        assert list(explanation["contributions"]) == FEATURES
{%- endif %}
