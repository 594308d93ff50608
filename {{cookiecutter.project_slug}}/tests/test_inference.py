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
