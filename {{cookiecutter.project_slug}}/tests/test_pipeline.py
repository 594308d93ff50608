"""The training pipeline on shared.DATA_SOURCE: the split, the published model and its evaluation, fresh data."""

import json
from pathlib import Path

from click.testing import CliRunner

from {{ cookiecutter.package_name }} import pipeline, shared

PIPELINE = "{{ cookiecutter.pipeline_name }}"

#: the headline metric of each kind, and the score of a model that learnt nothing (it must do better)
BASELINE = {"binary": ("auc", 0.5), "multiclass": ("accuracy", None), "regression": ("r2", 0.0)}


def extract(app, *args: str) -> dict:
    result = CliRunner().invoke(app.cli(), ["pipelines", PIPELINE, "run", "extract", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_split_keeps_every_row_exactly_once(app, data):
    tables = extract(app, "--validation-share", "0.25")
    assert tables["training"] == pipeline.TRAINING_TABLE
    assert tables["training_rows"] + tables["validation_rows"] == len(data)
    assert 0.15 < tables["validation_rows"] / len(data) < 0.35


def test_a_changed_source_is_read_afresh(app, data, tmp_path: Path):
    subset = tmp_path / "subset.csv"
    data.head(len(data) // 2).to_csv(subset, index=False)
    tables = extract(app, "--source", str(subset))
    assert tables["training_rows"] + tables["validation_rows"] == len(data) // 2
    data.to_csv(subset, index=False)
    tables = extract(app, "--source", str(subset))
    assert tables["training_rows"] + tables["validation_rows"] == len(data)


def test_run_all_publishes_a_model_that_learnt_something(model, trained, data):
    assert model.version == trained
    metric, baseline = BASELINE[shared.MODEL_KIND]
    if baseline is None:  # a classifier must beat always answering the most common class
        baseline = data[shared.TARGET].value_counts(normalize=True).max()
    assert model.metrics[metric] > baseline, model.metrics
    assert model.metrics["rows"] > 0


def test_run_all_writes_the_evaluation_report(hml_home, trained):
    reports = [path for path in Path(hml_home).rglob("evaluation.html") if trained in path.parts]
    assert len(reports) == 1
    html = reports[0].read_text(encoding="utf-8").lower()
    assert "<html" in html and BASELINE[shared.MODEL_KIND][0] in html


def test_a_bad_parameter_is_one_line(app):
    result = CliRunner().invoke(app.cli(), ["pipelines", PIPELINE, "run", "extract", "--validation-share", "lots"])
    assert result.exit_code == 2
    assert "--validation-share" in result.output


def test_the_trained_version_is_in_service_with_its_lineage(app, trained):
    result = CliRunner().invoke(app.cli(), ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    newest = json.loads(result.stdout)[0]
    assert (newest["version"], newest["status"], newest["serving"]) == (trained, "champion", True)
    assert newest["data"]["source"] == shared.DATA_SOURCE and len(newest["data"]["sha256"]) == 64
    assert {"n_estimators", "max_depth", "learning_rate", "force"} <= set(newest["parameters"])
    assert newest["kind"] == shared.MODEL_KIND
