"""The inference API through Flask's test client: predictions, KServe, health, bad input, user code and routes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hmlcore import hml
from hmlcore.errors import ConfigError

from ._serving import CATEGORICAL, MODEL, NUMERIC, RECORD, publish_model, serving_app


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lake")
    publish_model(path)
    return path


@pytest.fixture
def app(lake: Path) -> hml.HmlApp:
    return serving_app(lake)


@pytest.fixture
def client(app: hml.HmlApp):
    return app.inference.create_app().test_client()


def by_hand(app: hml.HmlApp, record: dict) -> float:
    """The model's probability for ``record``, its feature vector built by hand from the saved categories."""
    encoder = app.get_model(MODEL).encoder
    row = [float(record[f]) for f in NUMERIC]
    for feature in CATEGORICAL:
        row += [1.0 if record[feature] == c else 0.0 for c in encoder.categories[feature]]
    return float(app.get_model(MODEL).model.predict_proba(np.array([row], dtype=np.float32))[0, 1])


# ----------------------------------------------------------------- predictions
def test_get_predict_answers_the_models_probability_and_version(client, app):
    response = client.get("/predict", query_string=RECORD)
    assert response.status_code == 200, response.json
    assert response.json["model"] == {"name": MODEL, "version": "run-1"}
    assert response.json["predictions"][0]["probability"] == pytest.approx(by_hand(app, RECORD), abs=1e-6)


def test_post_batch_answers_in_order_and_matches_one_by_one(client, app):
    records = [RECORD, {**RECORD, "speed": 20.0, "road": "city", "age": 20}, {**RECORD, "sex": "f"}]
    response = client.post("/predict", json=records)
    assert response.status_code == 200, response.json
    got = [p["probability"] for p in response.json["predictions"]]
    assert got == pytest.approx([by_hand(app, r) for r in records], abs=1e-6)
    assert got[0] > got[1]  # fast on a highway beats slow in town
    single = client.post("/predict", json=records[1]).json["predictions"]
    assert single[0]["probability"] == pytest.approx(got[1])


def test_missing_values_and_numeric_strings_are_read_like_training_does(client, app):
    container = app.get_model(MODEL)
    record = {"age": "40", "speed": None, "sex": None, "road": "rural"}
    got = client.post("/predict", json=record).json["predictions"][0]["probability"]
    expected = container.predict_proba(container.encoder.transform([record]))[0, 1]
    assert got == pytest.approx(float(expected), abs=1e-6)


def test_a_declared_default_fills_a_missing_feature(tmp_path: Path):
    publish_model(tmp_path, defaults={"road": "city"})
    client = serving_app(tmp_path, defaults={"road": "city"}).inference.create_app().test_client()
    without = client.post("/predict", json={k: v for k, v in RECORD.items() if k != "road"})
    explicit = client.post("/predict", json={**RECORD, "road": "city"})
    assert without.status_code == 200, without.json
    assert without.json["predictions"] == explicit.json["predictions"]


def test_the_authors_predictor_shapes_the_answer(lake: Path):
    app = serving_app(lake)
    app.inference.set_predictor(
        lambda container, features: [{"hurt": bool(p >= 0.5)} for p in container.predict_proba(features)[:, 1]], model=MODEL
    )
    response = app.inference.create_app().test_client().post("/predict", json=[RECORD])
    assert response.json["predictions"] == [{"hurt": by_hand(app, RECORD) >= 0.5}]


def test_kserve_v1_predict_takes_objects_or_lists_in_feature_order(client, app):
    positional = [RECORD[f] for f in NUMERIC + CATEGORICAL]
    response = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [RECORD, positional]})
    assert response.status_code == 200, response.json
    first, second = (p["probability"] for p in response.json["predictions"])
    assert first == second == pytest.approx(by_hand(app, RECORD), abs=1e-6)
    assert client.get(f"/v1/models/{MODEL}").json == {"name": MODEL, "version": "run-1", "ready": True}


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v1/models/nope:predict", {"instances": [RECORD]}, 404, "'nope'"),
        (f"/v1/models/{MODEL}:predict", [RECORD], 422, "instances"),
        (f"/v1/models/{MODEL}:predict", {"instances": [[1, 2]]}, 422, "has 2 values; the model takes 4"),
        (f"/v1/models/{MODEL}:predict", {"instances": []}, 422, "empty"),
    ],
    ids=["unknown-model", "no-instances", "short-list", "empty"],
)
def test_kserve_bad_requests(client, path: str, body: object, status: int, needle: str):
    response = client.post(path, json=body)
    assert response.status_code == status
    assert needle in response.json["error"]


# ----------------------------------------------------------------- health and metadata
def test_health_and_readiness(lake: Path):
    app = serving_app(lake, load=False)
    client = app.inference.create_app().test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    waiting = client.get("/readyz")
    assert waiting.status_code == 503 and waiting.json["waiting_for"] == [MODEL]
    assert client.get("/predict", query_string=RECORD).status_code == 503
    app.get_model(MODEL).load()
    assert client.get("/readyz").status_code == 200


def test_model_describes_version_features_and_metrics_but_no_path(client, lake):
    response = client.get("/model")
    info = response.json
    assert info["name"] == MODEL and info["version"] == "run-1"
    assert "reference" not in info
    assert str(lake) not in response.get_data(as_text=True) and "reference.json" not in response.get_data(as_text=True)
    assert info["metrics"] == {"auc": 0.9}
    assert info["features"]["road"]["enum"][:3] == ["city", "highway", "rural"]
    assert 18 <= info["features"]["age"]["x-hml-training"]["min"] < info["features"]["age"]["x-hml-training"]["max"] <= 90


# ----------------------------------------------------------------- bad input
BAD = [
    ("malformed-json", "{oops", 400, "not valid JSON", None),
    ("nan-constant", '{"age": NaN}', 400, "not valid JSON", None),
    ("deep-nesting", "[" * 100_000, 400, "not valid JSON", None),
    ("not-utf8", b"\xff\xfe{", 400, "not valid JSON", None),
    ("null-body", "null", 422, "not null", None),
    ("number-body", "3", 422, "not a number", None),
    ("empty-batch", "[]", 422, "empty", None),
    ("missing", json.dumps({k: v for k, v in RECORD.items() if k != "sex"}), 422, "missing feature sex", "sex"),
    ("numeric-text", json.dumps({**RECORD, "age": "old"}), 422, "age: expected a number, got 'old'", "age"),
    ("numeric-bool", json.dumps({**RECORD, "age": True}), 422, "expected a number", "age"),
    ("numeric-huge", json.dumps({**RECORD, "age": 10**400}), 422, "expected a finite number", "age"),
    ("numeric-float32-overflow", json.dumps({**RECORD, "speed": 1e300}), 422, "out of range", "speed"),
    ("category-list", json.dumps({**RECORD, "road": ["city"]}), 422, "road: expected a string, got list", "road"),
    ("category-object", json.dumps([RECORD, {**RECORD, "road": {"a": 1}}]), 422, "row 1: road: expected a string", "road"),
    ("unseen-category", json.dumps({**RECORD, "road": "moon"}), 422, "unknown category 'moon' (known: city, highway, rural)", "road"),
    ("record-not-object", json.dumps([RECORD, 5]), 422, "row 1: record: expected an object", None),
]


@pytest.mark.parametrize(("body", "status", "needle", "feature"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_4xx_naming_the_problem(client, body, status: int, needle: str, feature: str | None):
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == status, response.json
    assert set(response.json) == {"error", "details"}
    assert needle in response.json["error"]
    if feature:
        assert response.json["details"][0]["feature"] == feature
        assert response.json["details"][0]["expected"] in ("number", "string")


def test_get_with_a_bad_value_names_the_feature_and_type(client):
    response = client.get("/predict", query_string={**RECORD, "speed": "fast"})
    assert response.status_code == 422
    assert response.json["details"] == [
        {"index": 0, "feature": "speed", "message": "expected a number, got 'fast'", "expected": "number", "value": "fast"}
    ]


def test_a_query_string_that_is_not_utf8_gets_a_400(client):
    """gunicorn before 26 passes a raw byte of the request line through to the app."""
    response = client.get("/predict", environ_overrides={"QUERY_STRING": "a\x89e=40&speed=90.0"})
    assert response.status_code == 400
    assert response.json["error"] == "the query string is not UTF-8 (byte 0x89 at 1)"


def test_a_huge_bad_batch_lists_a_bounded_number_of_problems(client):
    response = client.post("/predict", json=[{"age": "x"}] * 5000)
    assert response.status_code == 422
    assert len(response.json["details"]) == 20
    assert "more)" in response.json["error"]


def test_the_ignore_policy_serves_an_unseen_category(tmp_path: Path):
    publish_model(tmp_path, unknown_category="ignore")
    app = serving_app(tmp_path, unknown_category="ignore")
    client = app.inference.create_app().test_client()
    unseen = client.post("/predict", json={**RECORD, "road": "moon"})
    missing = client.post("/predict", json={**RECORD, "road": None})
    assert unseen.status_code == 200, unseen.json
    assert unseen.json["predictions"] == missing.json["predictions"]


def test_batch_and_body_limits_are_413(lake: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HML_MAX_BATCH", "3")
    monkeypatch.setenv("HML_MAX_BODY_BYTES", "2000")
    client = serving_app(lake).inference.create_app().test_client()
    assert client.post("/predict", json=[RECORD] * 3).status_code == 200
    too_many = client.post("/predict", json=[RECORD] * 4)
    assert too_many.status_code == 413 and "at most 3" in too_many.json["error"]
    too_big = client.post("/predict", data=json.dumps([{**RECORD, "pad": "x" * 3000}]), content_type="application/json")
    assert too_big.status_code == 413 and too_big.json["details"] == []


@pytest.mark.parametrize("value", ["lots", "0"])
def test_a_bad_limit_setting_is_refused_naming_it(lake: Path, monkeypatch: pytest.MonkeyPatch, value: str):
    monkeypatch.setenv("HML_MAX_BATCH", value)
    with pytest.raises(ConfigError, match=f"HML_MAX_BATCH='{value}' is not a whole number of at least 1"):
        serving_app(lake).inference.create_app()


def test_unknown_routes_and_methods_answer_json(client):
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.is_json
    wrong = client.put("/predict")
    assert wrong.status_code == 405 and wrong.is_json
    assert "POST" in wrong.headers["Allow"]


# ----------------------------------------------------------------- user code
def test_a_failing_predictor_is_a_500_with_a_request_id_and_a_logged_traceback(lake: Path, caplog: pytest.LogCaptureFixture):
    app = serving_app(lake)

    def broken(container, features):
        raise RuntimeError("secret-internal-detail")

    app.inference.set_predictor(broken)
    client = app.inference.create_app().test_client()
    with caplog.at_level(logging.ERROR, logger="hmlcore.inference"):
        response = client.post("/predict", json=RECORD)
        echoed = client.post("/predict", json=RECORD, headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 500
    request_id = response.json["request_id"]
    assert response.headers["X-Request-ID"] == request_id and request_id in response.json["error"]
    assert "secret-internal-detail" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert any(request_id in r.getMessage() and r.exc_info and "secret-internal-detail" in str(r.exc_info[1]) for r in caplog.records)
    assert echoed.json["request_id"] == "abc-123"


def test_user_routes_and_error_handlers_win_over_the_defaults(lake: Path):
    app = serving_app(lake)

    @hml.inference(app.inference)
    def routes(inference_app: hml.HmlInferenceApp) -> None:
        @inference_app.flask.get("/predict")
        def my_predict():
            return {"mine": True}

        @inference_app.flask.get("/hello")
        def hello():
            return {"hello": "world"}

        inference_app.flask.register_error_handler(404, lambda error: ({"custom": "not here"}, 404))

    client = app.inference.create_app().test_client()
    assert client.get("/predict", query_string=RECORD).json == {"mine": True}
    assert client.post("/predict", json=RECORD).json["model"]["name"] == MODEL  # POST stays built in
    assert client.get("/hello").json == {"hello": "world"}
    assert client.get("/nowhere").json == {"custom": "not here"}
    paths = client.get("/openapi.json").json["paths"]
    assert set(paths["/predict"]) == {"post"}  # the author's GET is the author's to document


def test_the_init_function_runs_once(lake: Path):
    app = serving_app(lake)
    calls = []
    hml.inference(app.inference)(calls.append)
    app.inference.create_app()
    app.inference.create_app()
    assert calls == [app.inference]


def test_inference_refuses_anything_but_app_inference():
    with pytest.raises(ConfigError, match="takes app.inference, got HmlApp"):
        hml.inference(hml.HmlApp(name="x"))  # type: ignore[arg-type]


def test_two_models_need_the_served_one_named(lake: Path):
    app = serving_app(lake)
    app.register_model("other", hml.ModelContainer("other", "demo", ["x"], [], "y", lake=str(lake)))
    with pytest.raises(ConfigError, match="2 models are registered"):
        _ = app.inference.model
    app.inference.set_predictor(lambda c, f: [{"p": 1.0}] * len(f), model=MODEL)
    assert app.inference.model is app.get_model(MODEL)


# ----------------------------------------------------------------- observers
def test_observers_hear_predictions_and_refusals_and_cannot_break_serving(lake: Path):
    app = serving_app(lake)
    heard: list[tuple] = []

    class Recorder:
        def on_predict(self, container, records, features, predictions):
            heard.append(("predict", container.name, len(records), features.shape, len(predictions)))

        def on_invalid(self, container, details):
            heard.append(("invalid", container.name, details[0]["feature"]))

    class Broken:
        def on_predict(self, *args):
            raise RuntimeError("observer bug")

    app.inference.observe(Broken())
    app.inference.observe(Recorder())
    client = app.inference.create_app().test_client()
    assert client.post("/predict", json=[RECORD, RECORD]).status_code == 200
    assert client.post("/predict", json={**RECORD, "road": "moon"}).status_code == 422
    assert heard == [("predict", MODEL, 2, (2, 7), 2), ("invalid", MODEL, "road")]


# ----------------------------------------------------------------- layering
@pytest.mark.slow
def test_serving_never_imports_kfp(lake: Path):
    probe = (
        "import sys\n"
        "from tests._serving import RECORD, serving_app\n"
        f"client = serving_app({str(lake)!r}).inference.create_app().test_client()\n"
        "assert client.get('/predict', query_string=RECORD).status_code == 200\n"
        "assert client.get('/openapi.json').status_code == 200\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kfp'))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
