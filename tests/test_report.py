"""``<entrypoint> monitor report``: the offline drift report, as text and as a self-contained HTML page."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from hmlcore.model.container import ModelContainer
from hmlcore.serving.report import drift_report, render_html

from .test_monitoring import NUMERIC, build_app, publish_model, synthetic_data


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lake")
    publish_model(folder)
    return folder


def invoke(lake: Path, home: Path, *args: str, **monitoring: object):
    app = build_app(lake, **monitoring)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HML_HOME", str(home))
        return app, CliRunner().invoke(app.cli(), ["monitor", "report", *args])


def feature_line(output: str, feature: str) -> list[str]:
    return next(line.split() for line in output.splitlines() if line.startswith(f"{feature} "))


def test_report_of_a_file_names_the_drifting_feature(lake: Path, tmp_path: Path):
    data = synthetic_data(500, seed=41)
    data["speed"] = data["speed"] * 2 + 50
    data.to_csv(tmp_path / "requests.csv", index=False)
    _, result = invoke(lake, tmp_path, "--input", str(tmp_path / "requests.csv"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"drift of model mon version run-1 in {tmp_path / 'requests.csv'} over 500 rows: alert"
    assert lines[2].startswith("speed ")  # the worst feature first
    assert feature_line(result.output, "speed")[2] == "alert"
    for feature in ["age", "sex", "road"]:
        assert feature_line(result.output, feature)[2] == "ok", result.output


def test_html_report_is_self_contained_with_a_chart_per_feature(lake: Path, tmp_path: Path):
    data = synthetic_data(400, seed=42)
    data.loc[data.index[:200], "road"] = "highway"
    data.to_csv(tmp_path / "requests.csv", index=False)
    _, result = invoke(lake, tmp_path, "--input", str(tmp_path / "requests.csv"), "--html", str(tmp_path / "drift.html"))
    assert result.exit_code == 0, result.output
    page = (tmp_path / "drift.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 4
    assert not re.search(r"<script|<link|<img|@import|src=|url\(", page)  # nothing fetched: no JS, no stylesheet, no image
    assert re.findall(r"https?://[^'\"]+", page) == ["http://www.w3.org/2000/svg"] * 4  # only the SVG namespace
    road = page[page.index('id="f-road"') :]
    assert "alert" in road[:200] and "highway: current" in road
    assert page.index('id="f-road"') < page.index('id="f-age"')  # the alert first


def test_report_of_a_warehouse_table_and_fail_on(lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HML_HOME", str(tmp_path))
    app = build_app(lake)
    fine = synthetic_data(300, seed=43)
    app.warehouse.load_dataframe(fine, "requests_ok")
    shifted = fine.assign(age=fine["age"] - 30)
    app.warehouse.load_dataframe(shifted, "requests_shifted")
    app.warehouse.close()
    runner = CliRunner()
    ok = runner.invoke(app.cli(), ["monitor", "report", "--table", "requests_ok", "--fail-on", "warn"])
    assert ok.exit_code == 0, ok.output
    assert "table requests_ok over 300 rows: ok" in ok.output
    bad = runner.invoke(app.cli(), ["monitor", "report", "--table", "requests_shifted", "--fail-on", "alert"])
    assert bad.exit_code == 2, bad.output
    assert feature_line(bad.output, "age")[2] == "alert"


def test_the_served_thresholds_apply_offline(lake: Path, tmp_path: Path):
    data = synthetic_data(300, seed=44)
    data["age"] += 10
    data.to_csv(tmp_path / "requests.csv", index=False)
    lenient = {"features": {"age": {"psi": (5.0, 9.0), "out_of_range": (0.9, 0.95)}}}
    _, strict = invoke(lake, tmp_path, "--input", str(tmp_path / "requests.csv"))
    _, relaxed = invoke(lake, tmp_path, "--input", str(tmp_path / "requests.csv"), thresholds=lenient)
    assert feature_line(strict.output, "age")[2] in ("warn", "alert")
    assert feature_line(relaxed.output, "age")[2] == "ok"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one of --input FILE or --table NAME"),
        (["--input", "nope.csv"], "--input nope.csv does not exist"),
        (["--table", "no_such_table"], "no_such_table"),
        (["--input", "{csv_without_age}"], "lacks feature column(s) age"),
    ],
    ids=["no-input", "missing-file", "missing-table", "missing-column"],
)
def test_bad_input_is_one_line(lake: Path, tmp_path: Path, args: list[str], message: str):
    synthetic_data(20, seed=45).drop(columns=["age"]).to_csv(tmp_path / "no-age.csv", index=False)
    args = [a.replace("{csv_without_age}", str(tmp_path / "no-age.csv")) for a in args]
    _, result = invoke(lake, tmp_path, *args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output and len(result.output.strip().splitlines()) == 1


def test_too_few_rows_are_pending_not_ok(lake: Path, tmp_path: Path):
    synthetic_data(20, seed=46).to_csv(tmp_path / "few.csv", index=False)
    _, result = invoke(lake, tmp_path, "--input", str(tmp_path / "few.csv"))
    assert result.exit_code == 0
    assert "over 20 rows: pending" in result.output
    assert all(feature_line(result.output, f)[2] == "pending" for f in NUMERIC)


def test_the_html_page_escapes_names_and_categories_it_did_not_choose():
    column, category = '<img src=x onerror="alert(1)">', "</title><script>alert(2)</script>"
    container = ModelContainer("m", "p", ["x"], [column], "y")
    train = pd.DataFrame({"x": [float(i % 7) for i in range(300)], column: ["a", category, "c"] * 100})
    report = drift_report(container.analyze_distributions(train), train.assign(x=train["x"] + 3))
    page = render_html(report, model="m<1>", version="v'1", source="requests&old.csv")
    assert "<script" not in page and "<img" not in page
    assert "&lt;/title&gt;&lt;script&gt;alert(2)&lt;/script&gt;: training 33.3%" in page
    assert "<title>Drift of m&lt;1&gt; v&#39;1</title>" in page and "500 rows" not in page and "from requests&amp;old.csv" in page
    assert page.count("<svg") == 2 and page.count("<rect") == 2 * sum(len(f.labels) for f in report.features.values())  # training, current
