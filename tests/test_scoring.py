"""Batch scoring (:mod:`hmlcore.model.scoring`) and the ``parallel_for`` it fans out with.

Every kind scores a generated table with missing values, unknown categories and bad types: the answers
equal what the API's own path gives each row (``container.encode`` on the row as a record, then the
predictor), each refused row carries the API's message, and 1, 3 or 7 shards write the same tables.
A pipeline with ``hml.parallel_for`` compiles to Kubeflow's own loop, which kfp's loader reads back, and
``run-all`` runs each iteration through the package's command line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from hmlcore import hml
from hmlcore.errors import ConfigError, FeatureError
from hmlcore.model import scoring
from hmlcore.pipelines.compiler import compile_pipeline
from hmlcore.storage.lake import Lake
from hmlcore.storage.warehouse import open_warehouse

from . import _kinds


def messy(kind: str, rows: int = 120) -> pd.DataFrame:
    """Generated rows with missing values, categories training never saw and numbers that are not numbers."""
    frame = _kinds.generated(kind, rows, seed=5).drop(columns=_kinds.TARGETS[kind])
    frame["customer"] = [f"c{i:04d}" for i in range(rows)]
    frame["mass"] = [None if pd.isna(v) else str(v) for v in frame["mass"]]  # numbers as text, as some exports hold them
    frame.loc[frame.index % 17 == 3, "island"] = "Atlantis"
    frame.loc[frame.index % 19 == 5, "mass"] = "heavy"
    frame.loc[frame.index % 23 == 7, "flipper"] = np.nan
    return frame


def api_answers(container: hml.ModelContainer, frame: pd.DataFrame) -> dict[int, object]:
    """What /predict gives each row sent alone: its answer, or the 422 message."""
    answers: dict[int, object] = {}
    for i, record in enumerate(json.loads(frame[container.features].to_json(orient="records"))):
        try:
            answers[i] = container.predict(container.encode([record]))[0]
        except FeatureError as exc:
            answers[i] = str(exc)
    return answers


def run_scoring(container, source, tmp: Path, *, shards: int, chunk_rows: int = 16) -> tuple[pd.DataFrame, pd.DataFrame]:
    lake, warehouse = Lake(str(tmp / f"lake{shards}")), open_warehouse(str(tmp / f"w{shards}.duckdb"))
    staged = scoring.stage(source, warehouse=warehouse, lake=lake, url="staged/rows.parquet", chunk_rows=chunk_rows)
    plan = scoring.plan_shards(staged, shards=shards)
    assert len(plan) == shards
    parts = [scoring.score_shard(container, s, lake=lake, folder="parts", run_id="r1", keys=["customer"]) for s in plan]
    merged = scoring.merge_parts(warehouse, parts, predictions_table="scores", rejects_table="refused")
    assert merged["rows"] == staged["rows"] == merged["scored"] + merged["rejected"]
    return warehouse.table("scores"), warehouse.table("refused")


@pytest.mark.parametrize("kind", _kinds.KINDS)
def test_every_kind_scores_as_the_api_answers_and_keeps_the_refused_rows(kind: str, tmp_path: Path):
    container = _kinds.trained(kind)
    frame = messy(kind)
    source = tmp_path / "rows.parquet"
    frame.to_parquet(source)
    tables = [run_scoring(container, str(source), tmp_path, shards=n) for n in (1, 3, 7)]
    predictions, rejects = tables[0]
    expected = api_answers(container, frame)
    refused = {i for i, a in expected.items() if isinstance(a, str)}
    assert refused and sorted(rejects["input_row"]) == sorted(refused)
    assert all(reason == expected[row] for row, reason in zip(rejects["input_row"], rejects["reason"], strict=True))
    assert list(rejects["customer"]) == [f"c{row:04d}" for row in rejects["input_row"]]
    assert sorted(predictions["input_row"]) == [i for i in range(len(frame)) if i not in refused]
    for _, row in predictions.iterrows():
        answer = expected[row["input_row"]]
        assert row["customer"] == f"c{row['input_row']:04d}"
        for name, value in answer.items():  # type: ignore[union-attr]
            got = json.loads(row[name]) if name == "probabilities" else row[name]
            if isinstance(value, dict):
                assert got == pytest.approx(value)
            elif isinstance(value, float):
                assert got == pytest.approx(value)
            else:
                assert str(got) == str(value)
    for other, other_rejects in tables[1:]:
        pd.testing.assert_frame_equal(other, predictions)
        pd.testing.assert_frame_equal(other_rejects, rejects)


@pytest.mark.slow
def test_rows_in_an_s3_bucket_are_scored_into_tables_in_the_bucket(s3_server, tmp_path: Path):
    """The s3 platform against a real SeaweedFS: the rows, the staged file, the parts and the tables all live in the bucket."""
    import io

    from hmlcore.storage.warehouse import ParquetWarehouse

    container = _kinds.trained("multiclass")
    frame = messy("multiclass", 60)
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    prefix, options = s3_server.fresh_prefix(), s3_server.storage_options()
    lake, warehouse = Lake(prefix + "/lake", storage_options=options), ParquetWarehouse(prefix + "/warehouse", storage_options=options)
    source = lake.write_bytes("incoming/rows.parquet", buffer.getvalue())
    staged = scoring.stage(source, warehouse=warehouse, lake=lake, url="staged/rows.parquet", chunk_rows=16)
    assert staged["url"].startswith("s3://") and staged["rows"] == 60
    parts = [scoring.score_shard(container, s, lake=lake, folder="parts", run_id="r1") for s in scoring.plan_shards(staged, shards=3)]
    assert all(p["predictions"].startswith(prefix) for p in parts)
    scoring.merge_parts(warehouse, parts, predictions_table="scores", rejects_table="refused")
    reader = ParquetWarehouse(prefix + "/warehouse", storage_options=options)  # another pod sees them
    local = tmp_path / "rows.parquet"
    frame.to_parquet(local)
    expected_scores, expected_refused = run_scoring(container, str(local), tmp_path, shards=1)
    pd.testing.assert_frame_equal(reader.table("scores"), expected_scores.drop(columns="customer"))
    pd.testing.assert_frame_equal(reader.table("refused"), expected_refused.drop(columns="customer"))


@pytest.mark.slow
def test_a_bigquery_table_is_scored_into_bigquery_tables_through_gcs(tmp_path: Path):
    """The gcp platform: BigQuery (the stand-in of ``tests/bigquery_server.py``) and GCS (the emulator of ``tests/gcs.py``).

    The rows come from a BigQuery table a page at a time (jobs.query, then jobs.getQueryResults with page
    tokens), the staged file and the parts live in GCS, and one load job reads the parts from GCS into
    each table: the tables equal the local run's.
    """
    pytest.importorskip("google.cloud.bigquery")
    from hmlcore.storage.bigquery import BigQueryWarehouse
    from tests.bigquery_server import bigquery_client, bigquery_server
    from tests.gcs import gcs_emulator

    container = _kinds.trained("multiclass")
    frame = messy("multiclass", 60)
    local = tmp_path / "rows.parquet"
    frame.to_parquet(local)
    expected = run_scoring(container, str(local), tmp_path, shards=1)
    with gcs_emulator() as gcs, bigquery_server() as (endpoint, fake):
        warehouse = BigQueryWarehouse("test-project", "hml", client=bigquery_client(endpoint))
        warehouse.load_dataframe(frame, "incoming")
        lake = Lake(gcs.fresh_prefix())
        fake.calls.clear()
        staged = scoring.stage("incoming", warehouse=warehouse, lake=lake, url="staged/rows.parquet", chunk_rows=16)
        assert staged["url"].startswith("gs://") and staged["row_groups"] == [16, 16, 16, 12]
        pages = [path for method, path in fake.calls if method == "GET" and "/queries/" in path]
        assert len(pages) >= 3  # the rows came page by page, not in one answer
        parts = [
            scoring.score_shard(container, s, lake=lake, folder="parts", run_id="r1", keys=["customer"])
            for s in scoring.plan_shards(staged, shards=3)
        ]
        assert all(p["predictions"].startswith("gs://") for p in parts)
        fake.calls.clear()
        scoring.merge_parts(warehouse, parts, predictions_table="scores", rejects_table="refused")
        assert fake.calls.count(("POST", "/bigquery/v2/projects/test-project/jobs")) == 2  # a load job from GCS per table
        for table, want in zip(("scores", "refused"), expected, strict=True):
            got = warehouse.table(table).sort_values("input_row").reset_index(drop=True)
            pd.testing.assert_frame_equal(got, want, check_dtype=False)
        warehouse.close()


def test_a_csv_folder_and_a_warehouse_query_are_scored_too(tmp_path: Path):
    container = _kinds.trained("binary")
    frame = messy("binary", 40)
    folder = tmp_path / "csv"
    folder.mkdir()
    frame.head(25).to_csv(folder / "a.csv", index=False)
    frame.tail(15).to_csv(folder / "b.csv", index=False)
    predictions, rejects = run_scoring(container, str(folder), tmp_path, shards=3)
    assert len(predictions) + len(rejects) == 40 and set(rejects["reason"]) and "Atlantis" in " ".join(rejects["reason"])
    (tmp_path / "rows.jsonl").write_text(frame.to_json(orient="records", lines=True), encoding="utf-8")
    (tmp_path / "rows.json").write_text(frame.to_json(orient="records"), encoding="utf-8")
    frame.assign(mass=frame["mass"].astype(str)).to_feather(tmp_path / "rows.feather")
    for name in ("rows.jsonl", "rows.json", "rows.feather"):
        predictions, rejects = run_scoring(container, str(tmp_path / name), tmp_path, shards=2)
        assert len(predictions) + len(rejects) == 40
    warehouse = open_warehouse(str(tmp_path / "w3.duckdb"))
    warehouse.load_dataframe(frame.head(10), "incoming")
    warehouse.close()
    predictions, rejects = run_scoring(container, "SELECT * FROM incoming WHERE customer <> 'c0000'", tmp_path, shards=3)
    assert len(predictions) + len(rejects) == 9


@pytest.mark.parametrize(
    ("source", "message"),
    [("missing.parquet", "no data at"), ("notes.txt", "cannot score"), ("no_such_table", "no table 'no_such_table'")],
)
def test_a_source_it_cannot_read_is_named(source: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        scoring.stage(source, warehouse=open_warehouse(str(tmp_path / "w.duckdb")), lake=Lake(str(tmp_path)), url="x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_a_number_the_api_refuses_is_refused_here_too():
    container = _kinds.trained("regression")
    frame = pd.DataFrame({"flipper": [200.0, np.inf, 1e300, 190.0], "mass": [4000.0, 4100.0, 4200.0, np.nan], "island": ["Dream"] * 4})
    chunk = scoring.score_frame(container, frame)
    assert chunk.accepted == [0, 3]
    reasons = []
    for row in (1, 2):  # the records as Python values: JSON cannot even carry an infinity to the API
        with pytest.raises(FeatureError) as refused:
            container.encode([frame.iloc[row].to_dict()])
        reasons.append((row, str(refused.value)))
    assert chunk.rejected == reasons and "finite" in reasons[0][1]


def test_shards_split_the_rows_into_contiguous_ranges():
    plan = scoring.plan_shards({"url": "x", "rows": 10, "row_groups": [4, 4, 2]}, shards=3)
    assert [(s["start"], s["stop"]) for s in plan] == [(0, 4), (4, 7), (7, 10)]
    assert len(scoring.plan_shards({"url": "x", "rows": 2, "row_groups": [2]}, shards=7)) == 2
    with pytest.raises(ConfigError, match="shards must be a positive integer, got 0"):
        scoring.plan_shards({"url": "x", "rows": 2, "row_groups": [2]}, shards=0)


# ------------------------------------------------------------------ parallel_for in a pipeline
def looping_app() -> hml.HmlApp:
    app = hml.HmlApp(name="loops", cluster_platform="s3", package_entrypoint="loops", image_url="registry.example/loops:abc123")

    @hml.op()
    def plan(count: int = 3) -> list:
        """Deal out the shards."""
        return [{"shard": i, "rows": i + 1} for i in range(count)]

    @hml.op()
    def work(shard: dict, factor: int = 10) -> dict:
        """Score one shard."""
        return {"shard": shard["shard"], "value": shard["rows"] * factor}

    @hml.op()
    def gather(parts: list) -> str:
        """Merge the parts."""
        return json.dumps(parts)

    @hml.pipeline(app.pipelines, cron="0 3 * * *", experiment="scoring")
    def loops(count: int = 3, factor: int = 10):
        """Fan out and gather."""
        shards = plan(count=count)
        with hml.parallel_for(shards.output, parallelism=2) as shard:
            part = work(shard=shard, factor=factor)
        gather(parts=hml.collected(part))

    return app


def test_parallel_for_compiles_to_kubeflows_loop_that_kfp_reads_back(tmp_path: Path):
    from kfp import components

    path = tmp_path / "loops.yaml"
    compiled = compile_pipeline(looping_app().pipelines["loops"], str(path))
    components.load_component_from_file(str(path))  # kfp's own loader accepts the spec
    loop = next(task for task in compiled.spec["root"]["dag"]["tasks"].values() if "parameterIterator" in task)
    assert loop["iteratorPolicy"] == {"parallelismLimit": 2}
    inner = compiled.spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert list(inner) == ["work"]
    executor = compiled.spec["deploymentSpec"]["executors"]["exec-work"]["container"]
    assert executor["command"] == ["loops", "pipelines", "loops", "run", "work"]
    gather = compiled.spec["root"]["dag"]["tasks"]["gather"]["inputs"]["parameters"]["parts"]["taskOutputParameter"]
    assert gather["producerTask"] == next(name for name, task in compiled.spec["root"]["dag"]["tasks"].items() if task is loop)
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["root"] == compiled.spec["root"]


def test_run_all_runs_every_iteration_and_gathers_their_outputs_in_order(tmp_path: Path):
    app = looping_app()
    result = CliRunner().invoke(app.cli(), ["pipelines", "loops", "run-all", "--param", "count=4"], env={"HML_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip()
    gathered = (tmp_path / "runs" / run_id / "outputs" / "gather" / "output").read_text(encoding="utf-8")
    assert json.loads(gathered) == [{"shard": i, "value": (i + 1) * 10} for i in range(4)]
    assert result.stderr.count("work: ok in") == 4


def meeting_app() -> hml.HmlApp:
    """A loop whose iterations each wait (up to a minute) until another iteration has started: they only all finish at once.

    Run one after another, the first iteration would wait in vain and say so. ``BARRIER`` (a folder) is
    where the iterations leave their marks; shard 2 fails when ``FAIL_SHARD`` says so.
    """
    app = hml.HmlApp(name="meeting", package_entrypoint="meeting", image_url="registry.example/meeting:abc123")

    @hml.op()
    def plan(count: int = 3) -> list:
        """Deal out the shards."""
        return list(range(count))

    @hml.op()
    def work(shard: int) -> dict:
        """Wait for company, then answer."""
        import os
        import time

        folder = Path(os.environ["BARRIER"])
        (folder / f"started-{shard}").write_text(str(os.getpid()), encoding="utf-8")
        print(f"shard {shard} started in process {os.getpid()}")
        if os.environ.get("FAIL_SHARD") == str(shard):
            raise hml.PipelineError(f"shard {shard} cannot be scored")
        deadline = time.monotonic() + 60
        while len(list(folder.glob("started-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"shard": shard, "pid": os.getpid(), "met": len(list(folder.glob("started-*"))) >= 2}

    @hml.op()
    def gather(parts: list) -> str:
        """Merge the parts."""
        return json.dumps(parts)

    @hml.pipeline(app.pipelines)
    def meeting(count: int = 3):
        """Fan out and gather."""
        shards = plan(count=count)
        with hml.parallel_for(shards.output, parallelism=2) as shard:
            part = work(shard=shard)
        gather(parts=hml.collected(part))

    return app


@pytest.mark.slow
@pytest.mark.parametrize("failing", [False, True], ids=["ok", "one-fails"])
def test_run_all_runs_a_loops_iterations_at_the_same_time_in_child_processes(
    failing: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """With ``spawn`` (what ``run-all`` passes when the package's console script is installed), iterations run in child
    processes, two at a time here (the loop's parallelism): each one's log holds its own output, the outputs are
    gathered in the items' order, and a failing iteration fails the run in one line naming the step and its error."""
    from hmlcore.pipelines.runner import run_all

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: run-all runs the iterations one after another")
    monkeypatch.setenv("HML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BARRIER", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    if failing:
        monkeypatch.setenv("FAIL_SHARD", "2")
    child = "import sys; from tests.test_scoring import meeting_app; meeting_app().start(sys.argv[1:])"
    app = meeting_app()
    lines: list[str] = []

    def execute(command):
        app.cli().main(args=list(command[1:]), prog_name=command[0], standalone_mode=False)

    def run() -> str:
        spawn = lambda command: [sys.executable, "-c", child, *command[1:]]  # noqa: E731 - the console script's stand-in
        return run_all(app.pipelines["meeting"], params={"count": 5}, execute=execute, spawn=spawn, echo=lines.append)

    if failing:
        with pytest.raises(
            hml.PipelineError, match=r"step for-loop-\d+\.2\.work .*failed .*: shard 2 cannot be scored \(exit code 1\)"
        ) as info:
            run()
        assert "\n" not in str(info.value)
        return
    run_id = run()
    outputs = tmp_path / "home" / "runs" / run_id / "outputs"
    parts = json.loads((outputs / "gather" / "output").read_text(encoding="utf-8"))
    assert [p["shard"] for p in parts] == [0, 1, 2, 3, 4] and all(p["met"] for p in parts)
    assert os.getpid() not in {p["pid"] for p in parts} and len({p["pid"] for p in parts}) == 5
    for part in parts:
        (log,) = outputs.glob(f"for-loop-*.{part['shard']}.work/log.txt")
        assert f"shard {part['shard']} started in process {part['pid']}" in log.read_text(encoding="utf-8")
    assert sum("work: ok in" in line for line in lines) == 5


def test_parallel_for_belongs_in_a_pipeline():
    with pytest.raises(hml.PipelineError, match="inside an @hml.pipeline"), hml.parallel_for([1, 2]):
        pass


@pytest.mark.slow
def test_deploy_prod_uploads_the_loop_and_schedules_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """deploy-prod through kfp.Client against the fake v2beta1 API server in tests/kfp_server.py."""
    from kfp.client import client

    from hmlcore.pipelines.kfp_deploy import KfpTarget, deploy_prod

    from .kfp_server import FakeKfp

    monkeypatch.setattr(client.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp" / "context.json"))
    with FakeKfp() as fake:
        result = deploy_prod(looping_app().pipelines["loops"], target=KfpTarget(host=fake.url))
        (job,) = fake.recurring_runs.values()
        assert job["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
        uploaded = fake.versions[result.version_id]["pipeline_spec"]
    loop = next(task for task in uploaded["root"]["dag"]["tasks"].values() if "parameterIterator" in task)
    assert loop["iteratorPolicy"] == {"parallelismLimit": 2}
    assert uploaded["deploymentSpec"]["executors"]["exec-work"]["container"]["image"] == "registry.example/loops:abc123"
