"""Fixtures: the app on the local platform, and a model trained once per session in a scratch HML_HOME."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from {{ cookiecutter.package_name }}.start import create_app

PIPELINE = "{{ cookiecutter.pipeline_name }}"


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
