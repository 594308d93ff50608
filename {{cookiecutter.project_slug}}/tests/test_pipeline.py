"""The training pipeline on shared.DATA_SOURCE: the split, the published model and its evaluation, fresh data."""

import json
from pathlib import Path

import pandas as pd
from click.testing import CliRunner
from hmlcore import hml
from hmlcore.model.split import ROW_ID, SplitSpec

from {{ cookiecutter.package_name }} import pipeline, shared

PIPELINE = "{{ cookiecutter.pipeline_name }}"
#: the metric the promotion gate judges by (shared.PROMOTION), and which way is better
RULE = hml.PromotionRule.from_config(shared.PROMOTION, kind=shared.MODEL_KIND)


def extract(app, *args: str) -> dict:
    result = CliRunner().invoke(app.cli(), ["pipelines", PIPELINE, "run", "extract", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_split_keeps_every_row_exactly_once(app, data):
    tables = extract(app, "--validation-share", "0.25")
    assert tables["training"] == pipeline.TRAINING_TABLE
    assert tables["training_rows"] + tables["validation_rows"] == len(data)
    assert 0.15 < tables["validation_rows"] / len(data) < 0.35
{%- if cookiecutter.model_kind == "regression" %}


def test_the_split_is_reproducible(app, hml_home):
    first, again = extract(app), extract(app)
    assert first["split"] == again["split"] and first["split"]["data_sha256"] == first["sha256"]
    validation = pd.read_parquet(first["validation_url"])
    assert sorted(validation[ROW_ID]) == sorted(pd.read_parquet(again["validation_url"])[ROW_ID])
{%- else %}


def test_the_split_is_reproducible_and_keeps_each_class_share(app, hml_home):
    first, again = extract(app), extract(app)
    assert first["split"] == again["split"] and first["split"]["data_sha256"] == first["sha256"]
    validation = pd.read_parquet(first["validation_url"])
    assert sorted(validation[ROW_ID]) == sorted(pd.read_parquet(again["validation_url"])[ROW_ID])
    if not shared.SPLIT["key"] and not shared.SPLIT["time"]:  # a random split keeps each class's share on both sides
        training = pd.read_parquet(first["training_url"])
        shares = validation[shared.TARGET].value_counts(normalize=True)
        expected = training[shared.TARGET].value_counts(normalize=True)
        assert (shares - expected).abs().max() < 0.05, (shares, expected)
{%- endif %}


def test_a_changed_source_is_read_afresh(app, data, tmp_path: Path):
    subset = tmp_path / "subset.csv"
    data.head(len(data) // 2).to_csv(subset, index=False)
    tables = extract(app, "--source", str(subset))
    assert tables["training_rows"] + tables["validation_rows"] == len(data) // 2
    data.to_csv(subset, index=False)
    tables = extract(app, "--source", str(subset))
    assert tables["training_rows"] + tables["validation_rows"] == len(data)


def test_run_all_publishes_a_model_that_learnt_something(app, model, trained):
    assert model.version == trained
    record = hml.ModelRegistry(model).get(trained)
    verdict, split = record["evaluation"], SplitSpec.from_record(record["split"]).describe()
    score, baseline = verdict["metrics"][RULE.metric], verdict["baseline"][RULE.metric]
    assert RULE.gain(new=score, old=baseline) > 0, (
        f"{RULE.metric} {score:.4g} does not beat {verdict['baseline_name']} ({baseline:.4g}) on the "
        f"{verdict['rows']} validation rows ({split}): the model learnt nothing these rows can show"
    )


def test_run_all_writes_the_evaluation_report(hml_home, trained):
    reports = [path for path in Path(hml_home).rglob("evaluation.html") if trained in path.parts]
    assert len(reports) == 1
    html = reports[0].read_text(encoding="utf-8").lower()
    assert "<html" in html and f"<th>{RULE.metric}</th>" in html and "baseline" in html and trained in html


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
    assert newest["split"]["seed"] == shared.SPLIT["seed"] and newest["training_rows"]["rows"] > 0
