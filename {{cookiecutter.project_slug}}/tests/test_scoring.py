"""The batch scoring pipeline: rows scored as /predict answers them, refused rows kept with the API's reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from click.testing import CliRunner

from {{ cookiecutter.package_name }} import shared

SCORE = "{{ cookiecutter.package_name }}_score"
FEATURES = [*shared.FEATURES_NUMERIC, *shared.FEATURES_CATEGORICAL]


def score(app, **params: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the scoring pipeline; return its predictions and rejects tables."""
    options = [part for name, value in params.items() for part in ("--param", f"{name}={value}")]
    result = CliRunner().invoke(app.cli(), ["pipelines", SCORE, "run-all", *options])
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip().splitlines()[-1]
    predictions = app.warehouse.table(shared.SCORING["predictions_table"])
    rejects = app.warehouse.table(shared.SCORING["rejects_table"])
    assert set(predictions["run_id"]) <= {run_id} and set(rejects["run_id"]) <= {run_id}
    return predictions, rejects


def answers(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The predictions table's rows as /predict answers, in input order."""
    columns = [c for c in table.columns if c not in ("input_row", *shared.SCORING["keys"], "model", "model_version", "run_id")]
    rows = table.sort_values("input_row")[columns].to_dict("records")
    return [{k: json.loads(v) if k == "probabilities" else v for k, v in row.items()} for row in rows]


def same(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> bool:
    def close(a: Any, b: Any) -> bool:
        if isinstance(a, dict):
            return set(a) == set(b) and all(close(a[k], b[k]) for k in a)
        if isinstance(a, float) or isinstance(b, float):
            return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))
        return str(a) == str(b)

    return len(left) == len(right) and all(close(a, b) for a, b in zip(left, right, strict=True))


def test_the_sample_data_is_scored_as_the_api_answers_it(app, client, data, trained):
    predictions, rejects = score(app, shards=3)
    assert len(predictions) + len(rejects) == len(data)
    assert set(predictions["model_version"]) == {trained}
    rows = predictions.sort_values("input_row")["input_row"].head(50).tolist()
    records = json.loads(data.iloc[rows][FEATURES].to_json(orient="records"))
    response = client.post("/predict", json=records)
    assert response.status_code == 200, response.json
    assert same(answers(predictions)[:50], response.json["predictions"])


def test_the_shard_count_changes_nothing(app, trained):
    tables = [score(app, shards=shards)[0].drop(columns="run_id") for shards in (1, 3, 7)]
    for table in tables[1:]:
        pd.testing.assert_frame_equal(table.sort_values("input_row").reset_index(drop=True), tables[0])


def test_refused_rows_go_to_the_rejects_with_the_api_reason(app, client, records, trained, tmp_path: Path):
    messy = [dict(records[i % len(records)]) for i in range(12)]
    refused = []
    if shared.FEATURES_CATEGORICAL:
        messy[1][shared.FEATURES_CATEGORICAL[0]] = "a category never seen"
        messy[9][shared.FEATURES_CATEGORICAL[-1]] = None  # a missing category: scored, as the API scores it
        refused.append(1)
    if shared.FEATURES_NUMERIC:
        messy[4][shared.FEATURES_NUMERIC[0]] = "not a number"
        messy[7][shared.FEATURES_NUMERIC[-1]] = None  # a missing number: scored too
        refused.append(4)
    source = tmp_path / "messy.csv"
    pd.DataFrame(messy).to_csv(source, index=False)
    predictions, rejects = score(app, source=source, shards=2)
    assert sorted(rejects["input_row"]) == refused
    assert sorted(predictions["input_row"]) == [i for i in range(12) if i not in refused]
    for row, reason in zip(rejects["input_row"], rejects["reason"], strict=True):
        response = client.post("/predict", json=[messy[row]])
        assert response.status_code == 422 and response.json["error"] == reason, (reason, response.json)
    kept = [messy[i] for i in sorted(predictions["input_row"])]
    response = client.post("/predict", json=kept)
    assert response.status_code == 200, response.json
    assert same(answers(predictions), response.json["predictions"])


def test_a_source_that_is_not_there_is_one_line(app, trained):
    result = CliRunner().invoke(app.cli(), ["pipelines", SCORE, "run-all", "--param", "source=no/such/rows.parquet"])
    assert result.exit_code != 0
    assert "no data at 'no/such/rows.parquet'" in result.output and "Traceback" not in result.output


def test_the_scored_rows_get_a_drift_report(app, hml_home, trained):
    result = CliRunner().invoke(app.cli(), ["pipelines", SCORE, "run-all", "--param", "shards=2"])
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip().splitlines()[-1]
    merged = json.loads((Path(hml_home) / "runs" / run_id / "outputs" / "write-predictions" / "output").read_text(encoding="utf-8"))
    assert merged["drift"]["status"] in ("ok", "warn", "alert")
    html = Path(merged["drift"]["html"]).read_text(encoding="utf-8")
    assert "<html" in html.lower() and all(feature in html for feature in FEATURES)
    assert f"drift of the scored rows: {merged['drift']['status']}" in result.stderr
