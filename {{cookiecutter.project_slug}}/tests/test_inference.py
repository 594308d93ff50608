from {{ cookiecutter.package_name }} import shared

CRASH = {
    "age": 27,
    "year_vehicle": 1995,
    "frontal": 1,
    "airbag_deployed": 0,
    "speed_band": "55+",
    "airbag": "none",
    "seatbelt": "none",
    "sex": "m",
    "occupant_role": "driver",
}


def test_get_predict_answers_a_probability(client):
    response = client.get("/predict", query_string=CRASH)
    assert response.status_code == 200, response.json
    prediction = response.json["predictions"][0]
    assert 0.0 <= prediction["dead_probability"] <= 1.0
    assert response.json["model"]["name"] == shared.MODEL_NAME


def test_post_batch_ranks_a_fast_unbelted_crash_above_a_slow_belted_one(client):
    gentle = {**CRASH, "speed_band": "1-9", "seatbelt": "belted", "age": 30}
    response = client.post("/predict", json=[CRASH, gentle])
    assert response.status_code == 200, response.json
    severe, mild = (p["dead_probability"] for p in response.json["predictions"])
    assert severe > mild


def test_missing_feature_is_422_naming_it(client):
    response = client.post("/predict", json={k: v for k, v in CRASH.items() if k != "seatbelt"})
    assert response.status_code == 422
    assert "seatbelt" in response.json["error"]


def test_unknown_category_is_422(client):
    response = client.post("/predict", json={**CRASH, "seatbelt": "maybe"})
    assert response.status_code == 422
    assert response.json["details"][0]["feature"] == "seatbelt"


def test_malformed_json_is_400(client):
    response = client.post("/predict", data="{not json", content_type="application/json")
    assert response.status_code == 400


def test_a_value_of_the_wrong_type_is_422_naming_the_feature_and_type(client):
    response = client.post("/predict", json={**CRASH, "age": "old"})
    assert response.status_code == 422
    assert response.json["details"][0]["feature"] == "age"
    assert response.json["details"][0]["expected"] == "number"


def test_kserve_v1_predict_answers_like_predict(client):
    response = client.post(f"/v1/models/{shared.MODEL_NAME}:predict", json={"instances": [CRASH]})
    assert response.status_code == 200, response.json
    assert response.json["predictions"] == client.post("/predict", json=CRASH).json["predictions"]


def test_openapi_lists_the_categories_seen_in_training(client):
    record = client.get("/openapi.json").json["components"]["schemas"]["Record"]
    assert set(record["required"]) == set(shared.FEATURES_NUMERIC + shared.FEATURES_CATEGORICAL)
    assert "belted" in record["properties"]["seatbelt"]["enum"]


def test_ready_once_the_model_is_loaded(client):
    assert client.get("/readyz").status_code == 200
    assert client.get("/model").json["metrics"]["auc"] > 0.75
