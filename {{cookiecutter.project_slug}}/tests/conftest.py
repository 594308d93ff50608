"""Fixtures: the app on the local platform, a model trained once per session in a scratch HML_HOME, and
rows of the data in shared.DATA_SOURCE to ask it about. Nothing here knows what the data is about: only
that the model is {{ {'binary': 'a binary classifier', 'multiclass': 'a multiclass classifier', 'regression': 'a regression model'}[cookiecutter.model_kind] }}."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from hmlcore import hml

from {{ cookiecutter.package_name }} import shared
from {{ cookiecutter.package_name }}.start import create_app

PIPELINE = "{{ cookiecutter.pipeline_name }}"
FEATURES = [*shared.FEATURES_NUMERIC, *shared.FEATURES_CATEGORICAL]


@pytest.fixture(scope="session")
def hml_home(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("hml"))


@pytest.fixture
def app(hml_home: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HML_HOME", hml_home)
    monkeypatch.setenv("HML_PLATFORM", "local")
    monkeypatch.delenv("HML_MODEL_REFERENCE", raising=False)
    return create_app()


@pytest.fixture(scope="session")
def trained(hml_home: str) -> str:
    """Run the whole pipeline once; return the run id."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HML_HOME", hml_home)
        patch.setenv("HML_PLATFORM", "local")
        result = CliRunner().invoke(create_app().cli(), ["pipelines", PIPELINE, "run-all", "--param", "n_estimators=60"])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def client(app, trained: str):
    return app.inference.create_app().test_client()


@pytest.fixture
def model(app, trained: str):
    """The published model, as the inference API loads it."""
    return app.get_model(shared.MODEL_NAME).load()


@pytest.fixture
def data(app) -> pd.DataFrame:
    """Every row of shared.DATA_SOURCE, read as the extract step reads it."""
    return hml.read_rows(shared.DATA_SOURCE, warehouse=app.warehouse, package="{{ cookiecutter.package_name }}").frame


def as_json(value: Any) -> Any:
    """A cell of the data as a JSON value: None for a missing one, plain Python numbers and strings."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


@pytest.fixture
def records(data: pd.DataFrame, model) -> list[dict[str, Any]]:
    """Up to 20 rows of the data, features only, that have every feature and only categories the model saw."""
    known = model.distributions["categorical"]
    complete = data.dropna(subset=FEATURES)
    for feature in shared.FEATURES_CATEGORICAL:
        complete = complete[complete[feature].astype(str).isin(known[feature]["counts"])]
    assert len(complete), "no row of the data has every feature with a category the model saw"
    return [{f: as_json(row[f]) for f in FEATURES} for _, row in complete.head(20).iterrows()]


@pytest.fixture
def record(records: list[dict[str, Any]]) -> dict[str, Any]:
    return records[0]
{%- if cookiecutter.model_kind == "regression" %}


@pytest.fixture
def check_answer(data: pd.DataFrame) -> Callable[[dict[str, Any]], None]:
    """Assert that one prediction is a number of the target, within a tenth of its range around the data's values."""
    low, high = data[shared.TARGET].min(), data[shared.TARGET].max()
    margin = (high - low) / 10

    def check(answer: dict[str, Any]) -> None:
        assert set(answer) == {shared.TARGET}
        assert low - margin <= answer[shared.TARGET] <= high + margin, answer

    return check
{%- elif cookiecutter.model_kind == "binary" %}


@pytest.fixture
def check_answer(model) -> Callable[[dict[str, Any]], None]:
    """Assert that one prediction is one of the two classes with its probability, the second class above the threshold."""

    def check(answer: dict[str, Any]) -> None:
        assert set(answer) == {shared.TARGET, "probability"}
        assert answer[shared.TARGET] in model.classes, answer
        assert 0.0 <= answer["probability"] <= 1.0
        assert (answer["probability"] >= model.threshold) == (answer[shared.TARGET] == model.classes[1])

    return check
{%- else %}


@pytest.fixture
def check_answer(model) -> Callable[[dict[str, Any]], None]:
    """Assert that one prediction is the most probable class, with each class's probability summing to one."""

    def check(answer: dict[str, Any]) -> None:
        assert set(answer) == {shared.TARGET, "probabilities"}
        assert answer[shared.TARGET] in model.classes, answer
        probabilities = answer["probabilities"]
        assert list(probabilities) == [str(c) for c in model.classes] or list(probabilities) == list(model.classes)
        assert abs(sum(probabilities.values()) - 1) < 1e-4
        assert all(0.0 <= p <= 1.0 for p in probabilities.values())
        assert str(answer[shared.TARGET]) == str(max(probabilities, key=probabilities.get))

    return check
{%- endif %}
