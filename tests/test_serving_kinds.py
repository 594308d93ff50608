"""The inference API for each model kind, through Flask's test client: the answer's shape and values,
``GET /model``, the OpenAPI document (answers validated against it) and the ``/metrics`` histograms."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hmlcore import hml
from hmlcore.serving.metrics import SCORE_BUCKETS

from ._kinds import KINDS, TARGETS, container, generated, trained


def records(kind: str, rows: int, seed: int) -> list[dict]:
    """Request bodies as a client sends them: JSON values, ``null`` for a missing one."""
    frame = generated(kind, rows, seed=seed).drop(columns=[TARGETS[kind]])
    return [{k: (None if v != v or v is None else v) for k, v in row.items()} for row in frame.to_dict("records")]


@pytest.fixture(scope="module", params=KINDS)
def served(request, tmp_path_factory: pytest.TempPathFactory):
    """``(kind, app, client)``: a published model of the kind, loaded by an app with monitoring, and its test client."""
    kind = request.param
    lake = tmp_path_factory.mktemp(f"lake-{kind}")
    family = "sklearn" if kind == "multiclass" else "xgboost"
    trained(kind, family, lake).publish(run_id=f"{kind}-1", git_commit="g")
    app = hml.HmlApp(name="zoo", package_entrypoint="zoo")
    app.register_model("penguins", container(kind, lake))

    @hml.inference(app.inference)
    def start(inference_app: hml.HmlInferenceApp) -> None:
        inference_app.get_model("penguins").load()
        hml.enable_monitoring(inference_app)

    return kind, app, app.inference.create_app().test_client()


def schema_of(client) -> dict:
    """The OpenAPI document's prediction schema, as a JSON schema with its references resolved."""
    document = client.get("/openapi.json").json
    schemas = document["components"]["schemas"]
    answer = document["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    return {**answer, "properties": {**answer["properties"], "model": schemas["ModelVersion"]}, "components": {"schemas": schemas}}


def test_post_and_get_answer_in_the_kinds_shape_and_fit_the_openapi_schema(served):
    kind, app, client = served
    c = app.get_model("penguins")
    batch = records(kind, 40, seed=9)
    response = client.post("/predict", json=batch)
    assert response.status_code == 200, response.json
    answers = response.json["predictions"]
    assert response.json["model"] == {"name": "penguins", "version": f"{kind}-1"}
    target = TARGETS[kind]
    for answer in answers:
        if kind == "regression":
            assert set(answer) == {target}
            low, high = c.target_distribution["min"], c.target_distribution["max"]
            assert low - (high - low) <= answer[target] <= high + (high - low)
        elif kind == "binary":
            assert set(answer) == {target, "probability"} and 0 <= answer["probability"] <= 1
            assert answer[target] in c.classes
        else:
            assert set(answer) == {target, "probabilities"} and answer[target] in c.classes
            assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
            assert all(0 <= p <= 1 for p in answer["probabilities"].values())
    assert answers == c.predict(batch)
    schema = schema_of(client)
    jsonschema.validate(response.json, schema)
    query = {k: "" if v is None else v for k, v in batch[0].items()}  # an empty value is a missing one in a query string
    got = client.get("/predict", query_string=query)
    assert got.status_code == 200 and got.json["predictions"][0].keys() == answers[0].keys(), got.json
    jsonschema.validate(got.json, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**response.json, "predictions": [{"species": "Emperor"} if kind != "regression" else {target: "x"}]}, schema)


def test_model_and_openapi_show_the_kind_and_the_classes(served):
    kind, app, client = served
    c = app.get_model("penguins")
    info = client.get("/model").json
    assert (info["kind"], info["target"], info["classes"]) == (kind, TARGETS[kind], c.classes)
    assert ("threshold" in info) == (kind == "binary")
    document = client.get("/openapi.json").json
    assert document["info"]["x-hml-kind"] == kind and document["info"]["x-hml-classes"] == c.classes
    prediction = document["components"]["schemas"]["Prediction"]
    label = prediction["properties"][TARGETS[kind]]
    if kind == "regression":
        assert prediction["required"] == ["bill"] and label["type"] == "number"
        assert f"{c.target_distribution['max']:g}" in label["description"]
    else:
        assert label["enum"] == c.classes and label["type"] == "string"
        if kind == "binary":
            assert (
                prediction["required"] == ["adopted", "probability"] and "(yes)" in prediction["properties"]["probability"]["description"]
            )
        else:
            assert list(prediction["properties"]["probabilities"]["properties"]) == c.classes


def test_metrics_bucket_the_kinds_outputs(served):
    kind, app, client = served
    c = app.get_model("penguins")
    assert client.post("/predict", json=records(kind, 30, seed=11)).status_code == 200
    page = client.get("/metrics").get_data(as_text=True)
    buckets: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == "hml_prediction_score_bucket":
                buckets.setdefault(sample.labels["output"], []).append(float(sample.labels["le"]))
    if kind == "regression":
        edges = c.target_distribution["histogram"]["edges"]
        assert buckets["bill"][:-1] == pytest.approx(edges, rel=1e-5) and buckets["bill"][-1] == float("inf")
    elif kind == "binary":
        assert buckets["probability"][:-1] == list(SCORE_BUCKETS)
    else:
        assert sorted(buckets) == [f"probabilities.{name}" for name in c.classes]
    if kind != "regression":
        counted = [s for f in text_string_to_metric_families(page) for s in f.samples if s.name == "hml_predictions_total"]
        assert {s.labels["value"] for s in counted} <= set(c.target_info.class_names)
        assert sum(s.value for s in counted) >= 30


def test_a_served_model_of_another_kind_is_refused_at_start(tmp_path: Path):
    trained("regression", "xgboost", tmp_path).publish(run_id="r", git_commit="g")
    app = hml.HmlApp(name="zoo", package_entrypoint="zoo")
    app.register_model("penguins", hml.ModelContainer("penguins", "zoo", ["flipper", "mass"], ["island"], "bill", lake=str(tmp_path)))

    @hml.inference(app.inference)
    def start(inference_app: hml.HmlInferenceApp) -> None:
        inference_app.get_model("penguins").load()

    with pytest.raises(hml.ModelKindError, match="a regression model, but the container 'penguins' is of kind 'binary'"):
        app.inference.create_app()


def test_a_predictor_that_reshapes_the_answer_describes_it_in_the_openapi_document(tmp_path: Path):
    trained("binary", "xgboost", tmp_path).publish(run_id="r", git_commit="g")
    app = hml.HmlApp(name="zoo", package_entrypoint="zoo")
    app.register_model("penguins", container("binary", tmp_path))
    shape = {"type": "object", "properties": {"adopted_percent": {"type": "number"}}, "required": ["adopted_percent"]}

    def percent(model: hml.ModelContainer, features) -> list[dict]:
        return [{"adopted_percent": round(100 * a["probability"], 1)} for a in model.predict(features)]

    @hml.inference(app.inference)
    def start(inference_app: hml.HmlInferenceApp) -> None:
        inference_app.get_model("penguins").load()
        inference_app.set_predictor(percent, schema=shape)

    client = app.inference.create_app().test_client()
    assert client.get("/openapi.json").json["components"]["schemas"]["Prediction"] == shape
    response = client.post("/predict", json=records("binary", 3, seed=1))
    jsonschema.validate(response.json, schema_of(client))
    with pytest.raises(hml.ConfigError, match="schema must be a JSON schema"):
        app.inference.set_predictor(percent, schema="number")
