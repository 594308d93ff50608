"""The BigQuery engine, run for real through google-cloud-bigquery against a local HTTP server.

The server is ``tests/bigquery_server.py``: it speaks the BigQuery REST contract the client uses
(jobs.query, tables.get, multipart Parquet load jobs, jobs.get) on 127.0.0.1 and runs the SQL in an
in-memory DuckDB. What these tests prove is the client side: the requests hmlcore sends, the JSON it
parses, the dtypes it returns, its errors. They cannot prove that GoogleSQL accepts a statement; the
demo's SQL keeps to what both dialects share (``MOD``, scalar sub-queries, ``count(*)``,
``CREATE OR REPLACE TABLE dataset.table AS``), which is checked by reading, not here.
"""

from __future__ import annotations

import pandas as pd
import pytest

from hmlcore.errors import ConfigError, WarehouseError
from hmlcore.storage.bigquery import BigQueryWarehouse
from hmlcore.storage.warehouse import open_warehouse
from tests.bigquery_server import bigquery_client, bigquery_server

pytest.importorskip("google.cloud.bigquery")

ROWS = pd.DataFrame(
    {
        "occupant_id": range(1, 201),
        "age": [float(i % 70) if i % 9 else None for i in range(200)],
        "sex": [["f", "m", None][i % 3] for i in range(200)],
        "dead": [i % 2 for i in range(200)],
    }
)
SPLIT = "SELECT * FROM raw WHERE MOD(occupant_id * 2654435761 + 7, 1000) {side} 200"


@pytest.fixture(scope="module")
def server():
    with bigquery_server(project="test-project", datasets=("hml",)) as running:
        yield running


@pytest.fixture
def warehouse(server):
    endpoint, _ = server
    wh = BigQueryWarehouse("test-project", "hml", location="EU", client=bigquery_client(endpoint, location="EU"))
    yield wh
    wh.close()


def test_load_then_read_back_keeps_rows_and_nulls(warehouse):
    assert warehouse.load_dataframe(ROWS, "raw") == "raw"
    back = warehouse.table("raw").sort_values("occupant_id").reset_index(drop=True)
    assert len(back) == 200
    assert str(back["occupant_id"].dtype) == "Int64"
    assert back["age"].isna().sum() == ROWS["age"].isna().sum()
    assert back["sex"].isna().sum() == ROWS["sex"].isna().sum()
    assert back["dead"].tolist() == ROWS["dead"].tolist()


def test_the_demo_split_sql_gives_the_same_rows_on_bigquery_and_duckdb(warehouse, tmp_path):
    duck = open_warehouse(str(tmp_path / "w.duckdb"))
    for wh in (warehouse, duck):
        wh.load_dataframe(ROWS, "raw")
        wh.select_into(SPLIT.format(side=">="), "training")
        wh.select_into(SPLIT.format(side="<"), "validation")
    for table in ("training", "validation"):
        assert sorted(warehouse.table(table)["occupant_id"].tolist()) == sorted(duck.table(table)["occupant_id"].tolist())
    counts = "SELECT (SELECT count(*) FROM training) AS training, (SELECT count(*) FROM validation) AS validation"
    assert warehouse.query(counts).astype(int).to_dict("records") == duck.query(counts).astype(int).to_dict("records")
    duck.close()


def test_calls_are_the_bigquery_rest_contract(warehouse, server):
    _, fake = server
    fake.calls.clear()
    warehouse.load_dataframe(ROWS, "raw")
    warehouse.select_into(SPLIT.format(side="<"), "validation")
    assert warehouse.exists("validation")
    assert fake.calls == [
        ("POST", "/upload/bigquery/v2/projects/test-project/jobs"),
        ("POST", "/bigquery/v2/projects/test-project/queries"),
        ("GET", "/bigquery/v2/projects/test-project/datasets/hml/tables/validation"),
    ]
    assert fake.queries[-1].startswith("CREATE OR REPLACE TABLE hml.validation AS SELECT")


def test_a_query_streams_page_by_page(warehouse, server):
    _, fake = server
    warehouse.load_dataframe(ROWS, "raw")
    fake.calls.clear()
    reader = warehouse.batches("SELECT occupant_id, sex FROM raw", rows=64)
    sizes = [batch.num_rows for batch in reader]
    assert sizes == [64, 64, 64, 8] and reader.schema.names == ["occupant_id", "sex"]
    assert len([path for _, path in fake.calls if "/queries/" in path]) >= 3  # later pages asked for one by one


def test_exists_is_false_for_a_missing_table(warehouse):
    assert warehouse.exists("never_made") is False


def test_export_writes_parquet_to_the_lake(warehouse, tmp_path):
    warehouse.load_dataframe(ROWS, "raw")
    url = warehouse.export("raw", str(tmp_path / "raw.parquet"))
    assert sorted(pd.read_parquet(url)["occupant_id"]) == list(range(1, 201))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda wh: wh.query("SELECT nope FROM raw"), WarehouseError, "BigQuery query failed: .*nope"),
        (lambda wh: wh.table("missing_table"), WarehouseError, "BigQuery query failed: .*missing_table"),
        (lambda wh: wh.select_into("SELECT nope FROM raw", "t"), WarehouseError, "BigQuery query into t failed"),
        (lambda wh: wh.load_dataframe(ROWS, "bad name"), ConfigError, "invalid table name 'bad name'"),
        (lambda wh: wh.batches("SELECT nope FROM raw", rows=10), WarehouseError, "BigQuery query failed: .*nope"),
        (lambda wh: wh.load_parquet(["/tmp/part-0.parquet"], "t"), WarehouseError, "from gs:// URLs, got /tmp/part-0.parquet"),
    ],
    ids=["bad-column", "missing-table", "bad-select-into", "bad-name", "bad-stream", "load-not-gcs"],
)
def test_errors_are_one_line_naming_the_problem(warehouse, call, error, message):
    warehouse.load_dataframe(ROWS, "raw")
    with pytest.raises(error, match=message) as info:
        call(warehouse)
    assert "\n" not in str(info.value)


def test_a_missing_dataset_is_named(server):
    endpoint, _ = server
    wh = BigQueryWarehouse("test-project", "absent", client=bigquery_client(endpoint))
    with pytest.raises(WarehouseError, match="Dataset test-project:absent"):
        wh.query("SELECT 1 AS one")
    wh.close()


def test_open_warehouse_makes_a_bigquery_engine_with_the_location():
    wh = open_warehouse("bigquery://test-project/hml", location="EU")
    assert isinstance(wh, BigQueryWarehouse) and (wh.project, wh.dataset, wh.location) == ("test-project", "hml", "EU")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("bigquery://my-project/hml", ("my-project", "hml", None)),
        ("bigquery://my-project/crashes_eu?location=europe-west1", ("my-project", "crashes_eu", "europe-west1")),
    ],
)
def test_urls_name_project_dataset_and_location(url, expected):
    wh = BigQueryWarehouse.from_url(url)
    assert (wh.project, wh.dataset, wh.location) == expected
    assert wh.url == url.split("?")[0]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("bigquery://my-project", "use bigquery://PROJECT/DATASET"),
        ("bigquery://my-project/a/b", "use bigquery://PROJECT/DATASET"),
        ("bigquery://x/hml", "invalid GCP project id 'x'"),
        ("bigquery://my-project/bad-dataset", "invalid BigQuery dataset 'bad-dataset'"),
    ],
)
def test_bad_urls_are_refused(url, message):
    with pytest.raises(ConfigError, match=message):
        BigQueryWarehouse.from_url(url)
