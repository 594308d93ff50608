"""The embedded warehouse (DuckDB) and DuckDB over Parquet in an S3 bucket (a real SeaweedFS): the operations
a pipeline needs, export to the lake, clear errors. Every test taking ``warehouse`` runs on both engines."""

from __future__ import annotations

import click
import pandas as pd
import pytest
from click.testing import CliRunner

from hmlcore.cli.main import guard
from hmlcore.errors import ConfigError, StorageError, WarehouseError
from hmlcore.storage.warehouse import DuckDBWarehouse, ParquetWarehouse, open_warehouse
from tests.gcs import gcs_emulator

ROWS = pd.DataFrame({"occupant_id": range(1, 101), "age": [float(i % 70) for i in range(100)], "sex": ["f", "m"] * 50})


@pytest.fixture(params=["duckdb", pytest.param("s3", marks=pytest.mark.slow)])
def warehouse(request, tmp_path):
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        wh = ParquetWarehouse(server.fresh_prefix() + "/warehouse", storage_options=server.storage_options())
    else:
        wh = open_warehouse(str(tmp_path / "data" / "warehouse.duckdb"))
    yield wh
    wh.close()


@pytest.mark.slow
def test_s3_tables_written_by_one_process_are_read_by_another(s3_server):
    """What separate pods need: tables live as Parquet objects in the bucket, not in one process's memory."""
    url = s3_server.fresh_prefix() + "/warehouse"
    writer = open_warehouse(url, storage_options=s3_server.storage_options())
    assert isinstance(writer, ParquetWarehouse)
    writer.load_dataframe(ROWS, "raw")
    writer.select_into("SELECT sex, count(*) AS n, avg(age) AS mean_age FROM raw GROUP BY sex", "by_sex")
    writer.close()
    reader = open_warehouse(url, storage_options=s3_server.storage_options())
    assert reader.tables() == ["by_sex", "raw"]
    got = reader.query("SELECT sex, n FROM by_sex ORDER BY sex")
    assert got.to_dict("list") == {"sex": ["f", "m"], "n": [50, 50]}
    # a table another process adds after this one connected is seen by the next query
    ParquetWarehouse(url, storage_options=s3_server.storage_options()).load_dataframe(ROWS.head(3), "late")
    assert int(reader.query("SELECT count(*) AS c FROM late")["c"][0]) == 3


@pytest.mark.slow
def test_s3_warehouse_without_credentials_is_refused_in_one_line(s3_server):
    wrong = {**s3_server.storage_options(), "key": "nobody", "secret": "wrong-secret"}
    with pytest.raises((StorageError, WarehouseError), match=r"cannot (write|list) .*s3://mlpipeline/.*(Forbidden|denied|PermissionError)"):
        ParquetWarehouse(s3_server.fresh_prefix(), storage_options=wrong).load_dataframe(ROWS, "raw")


def test_load_select_into_table_and_query(warehouse):
    assert not warehouse.exists("raw")
    assert warehouse.load_dataframe(ROWS, "raw") == "raw"
    assert warehouse.exists("raw")
    warehouse.select_into("SELECT * FROM raw WHERE MOD(occupant_id * 2654435761 + 7, 1000) < 200", "validation")
    validation = warehouse.table("validation")
    expected = ROWS[(ROWS["occupant_id"] * 2654435761 + 7) % 1000 < 200]
    assert sorted(validation["occupant_id"]) == sorted(expected["occupant_id"])
    count = warehouse.query("SELECT (SELECT count(*) FROM raw) AS everything, (SELECT count(*) FROM validation) AS held_out")
    assert (int(count["everything"][0]), int(count["held_out"][0])) == (100, len(expected))


def test_parquet_files_load_into_a_table_in_their_order(warehouse, tmp_path):
    folder = warehouse.url.rsplit("/", 1)[0] + "/parts" if "://" in warehouse.url else str(tmp_path / "parts")
    urls = []
    for i, rows in enumerate((ROWS.iloc[60:], ROWS.iloc[:25], ROWS.iloc[25:60])):
        warehouse.load_dataframe(rows, f"piece{i}")
        urls.append(warehouse.export(f"piece{i}", f"{folder}/piece-{i}.parquet"))
    assert warehouse.load_parquet(urls, "whole") == "whole"
    assert warehouse.table("whole")["occupant_id"].tolist() == [*range(61, 101), *range(1, 61)]


def test_a_query_that_fails_midway_leaves_the_table_as_it_was(warehouse):
    """The result streams into the table batch by batch: a failure after the first batches must not publish a part."""
    warehouse.load_dataframe(pd.DataFrame({"s": [str(i) for i in range(250_000)] + ["not a number"]}), "t")
    with pytest.raises(WarehouseError, match="query into t failed"):
        warehouse.select_into("SELECT CAST(s AS INTEGER) AS n FROM t", "t")
    assert warehouse.query("SELECT count(*) AS c, max(s) AS top FROM t").to_dict("list") == {"c": [250_001], "top": ["not a number"]}


def test_the_warehouse_is_a_file_that_outlives_the_connection(tmp_path):
    path = str(tmp_path / "w.duckdb")
    first = DuckDBWarehouse(path)
    first.load_dataframe(ROWS, "raw")
    first.close()
    second = open_warehouse("duckdb://" + path)
    assert len(second.table("raw")) == 100
    second.close()


def test_export_writes_a_parquet_file_the_next_step_reads(warehouse, tmp_path):
    warehouse.load_dataframe(ROWS, "raw")
    url = warehouse.export("raw", str(tmp_path / "lake" / "runs" / "raw.parquet"))
    back = pd.read_parquet(url)
    pd.testing.assert_frame_equal(back.reset_index(drop=True), ROWS, check_dtype=False)
    assert [p.name for p in (tmp_path / "lake" / "runs").iterdir()] == ["raw.parquet"]


@pytest.mark.slow
def test_export_to_s3(warehouse, s3_server):
    warehouse.load_dataframe(ROWS, "raw")
    target = s3_server.fresh_prefix() + "/exports/raw.parquet"
    if isinstance(warehouse, ParquetWarehouse):
        url = warehouse.export("raw", target)
    else:  # the embedded warehouse writes through s3fs, credentials from the standard AWS variables
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
            env.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
            env.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
            url = warehouse.export("raw", target)
    assert url == target
    back = pd.read_parquet(url, storage_options=s3_server.storage_options())
    assert back["occupant_id"].tolist() == ROWS["occupant_id"].tolist()


def test_export_to_gcs(warehouse):
    warehouse.load_dataframe(ROWS, "raw")
    with gcs_emulator() as gcs:
        import fsspec

        url = warehouse.export("raw", gcs.fresh_prefix() + "/raw.parquet")
        with fsspec.open(url, "rb") as handle:
            assert len(pd.read_parquet(handle)) == 100


def test_export_to_an_unwritable_place_is_named_and_leaves_nothing(warehouse, tmp_path):
    warehouse.load_dataframe(ROWS, "raw")
    (tmp_path / "blocked").write_text("a file")
    with pytest.raises(StorageError, match="cannot write .*blocked/raw.parquet"):
        warehouse.export("raw", str(tmp_path / "blocked" / "raw.parquet"))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda wh: wh.table("missing_table"), WarehouseError, "missing_table"),
        (lambda wh: wh.query("SELEC 1"), WarehouseError, "warehouse query failed"),
        (lambda wh: wh.select_into("SELECT nope FROM raw", "t"), WarehouseError, "warehouse query into t failed"),
        (lambda wh: wh.export("missing_table", "x.parquet"), WarehouseError, "export of missing_table failed"),
        (lambda wh: wh.table("raw; DROP TABLE raw"), ConfigError, "invalid table name 'raw; DROP TABLE raw'"),
        (lambda wh: wh.load_dataframe(ROWS, "1st"), ConfigError, "invalid table name '1st'"),
    ],
    ids=["missing-table", "bad-sql", "bad-select-into", "export-missing", "injection", "bad-name"],
)
def test_errors_name_what_is_wrong(warehouse, call, error, message):
    warehouse.load_dataframe(ROWS, "raw")
    with pytest.raises(error, match=message):
        call(warehouse)
    assert len(warehouse.table("raw")) == 100


def test_a_failed_query_in_a_command_is_one_line_and_exit_code_1(tmp_path):
    wh = open_warehouse(str(tmp_path / "w.duckdb"))

    def report() -> None:
        wh.query("SELECT nope")

    result = CliRunner().invoke(click.command("report")(guard(report)))
    wh.close()
    assert result.exit_code == 1
    assert result.output.startswith("Error: warehouse query failed: ") and result.output.count("\n") == 1


def test_an_empty_table_reads_as_an_empty_frame(warehouse):
    warehouse.load_dataframe(ROWS, "raw")
    warehouse.select_into("SELECT * FROM raw WHERE age < 0", "empty")
    assert warehouse.exists("empty") and len(warehouse.table("empty")) == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://x/y", "unknown warehouse URL"),
        ("bigquery://", "invalid BigQuery warehouse URL"),
        ("bigquery://Bad_Project/d", "invalid GCP project id"),
    ],
)
def test_open_warehouse_refuses_what_it_cannot_open(url, message):
    with pytest.raises(ConfigError, match=message):
        open_warehouse(url)
