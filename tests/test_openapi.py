"""/openapi.json describes the model from its training metadata, and schemathesis finds no 5xx against it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from hmlcore import hml
from hmlcore.serving.openapi import feature_schemas

from ._serving import MODEL, RECORD, publish_model, serving_app

#: examples per operation and generation mode: enough to find a 5xx in a handler, fast enough for every run
EXAMPLES = 30


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> hml.HmlApp:
    lake = tmp_path_factory.mktemp("lake")
    publish_model(lake, defaults={"sex": "f"})
    app = serving_app(lake, defaults={"sex": "f"})
    app.inference.create_app()
    return app


@pytest.fixture(scope="module")
def base_url(app: hml.HmlApp) -> Iterator[str]:
    """The app served on 127.0.0.1 by a threaded Werkzeug server, shut down after the module."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app.inference.create_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_features_are_described_from_training(app: hml.HmlApp):
    document = app.inference.create_app().test_client().get("/openapi.json").json
    record = document["components"]["schemas"]["Record"]
    assert record["required"] == ["age", "speed", "road"]  # sex has a declared default
    assert record["properties"]["sex"]["default"] == "f"
    assert record["properties"]["road"]["enum"] == ["city", "highway", "rural", None]
    age = record["properties"]["age"]
    assert age["type"] == "number" and 18 <= age["x-hml-training"]["min"] < age["x-hml-training"]["max"] <= 89
    assert "training saw 18 to" in age["description"]
    assert document["info"]["version"] == "run-1"
    kserve = {"/v1/models/{name}:predict", "/v1/models/{name}:explain"}
    assert set(document["paths"]) == {"/predict", "/explain", "/healthz", "/readyz", "/model"} | kserve
    get_parameters = {p["name"]: p for p in document["paths"]["/predict"]["get"]["parameters"]}
    assert get_parameters["road"]["schema"]["enum"] == ["city", "highway", "rural"]
    batch = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]
    assert batch["maxItems"] == app.inference.max_batch


def test_an_ignore_policy_lists_categories_without_refusing_others():
    container = hml.ModelContainer("m", "p", [], ["road"], "y", unknown_category="ignore")
    container.encoder.categories = {"road": ["city"]}
    schema = feature_schemas(container)["road"]
    assert "enum" not in schema and "city" in schema["description"]


def test_every_example_in_the_document_is_served(base_url: str):
    import requests

    document = requests.get(f"{base_url}/openapi.json", timeout=5).json()
    example = {f: s["example"] for f, s in document["components"]["schemas"]["Record"]["properties"].items()}
    response = requests.post(f"{base_url}/predict", json=example, timeout=5)
    assert response.status_code == 200, response.text
    assert requests.post(f"{base_url}/v1/models/{MODEL}:predict", json={"instances": [RECORD]}, timeout=5).status_code == 200


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # schemathesis and hypothesis warn about their own settings
def test_schemathesis_finds_no_server_error(base_url: str):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 8
    tried = 0

    def fuzz(operation, mode, checks) -> None:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
        def call(case) -> None:
            nonlocal tried
            tried += 1
            case.call_and_validate(base_url=base_url, checks=checks)

        call()

    conformance = [status_code_conformance, content_type_conformance, response_schema_conformance]
    for operation in operations:
        fuzz(operation, schemathesis.GenerationMode.POSITIVE, [not_a_server_error, *conformance])
        if len(operation.query) or len(operation.path_parameters) or len(operation.body):  # something to get wrong
            fuzz(operation, schemathesis.GenerationMode.NEGATIVE, [not_a_server_error])
    assert tried >= (6 + 3) * 5  # every operation, and the three that take input in both modes
