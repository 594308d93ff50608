import json

from click.testing import CliRunner

from {{ cookiecutter.package_name }} import pipeline

PIPELINE = "{{ cookiecutter.pipeline_name }}"


def test_split_keeps_every_row_exactly_once(app):
    result = CliRunner().invoke(app.cli(), ["pipelines", PIPELINE, "run", "extract", "--validation-share", "0.25"])
    assert result.exit_code == 0, result.output
    tables = json.loads(result.stdout)
    assert tables["training"] == pipeline.TRAINING_TABLE
    total = app.warehouse.query(f"SELECT count(*) AS n FROM {tables['training']}")["n"][0] + tables["validation_rows"]
    assert total == app.warehouse.query("SELECT count(*) AS n FROM crashes_raw")["n"][0]
    assert 0.2 < tables["validation_rows"] / total < 0.3


def test_run_all_publishes_an_evaluated_model(app, trained):
    container = app.get_model("{{ cookiecutter.model_name }}").load()
    assert container.version == trained
    assert container.metrics["auc"] > 0.75
    assert container.metrics["validation_rows"] > 1000


def test_a_bad_parameter_is_one_line(app):
    result = CliRunner().invoke(app.cli(), ["pipelines", PIPELINE, "run", "extract", "--validation-share", "lots"])
    assert result.exit_code == 2
    assert "--validation-share" in result.output
