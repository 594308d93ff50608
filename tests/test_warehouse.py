"""The embedded warehouse (DuckDB): the operations a pipeline needs, export to the lake, clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from hmlcore.errors import ConfigError
from hmlcore.warehouse import DuckDBWarehouse, open_warehouse
from tests.gcs import gcs_emulator

ROWS = pd.DataFrame({"occupant_id": range(1, 101), "age": [float(i % 70) for i in range(100)], "sex": ["f", "m"] * 50})


@pytest.fixture
def warehouse(tmp_path):
    wh = open_warehouse(str(tmp_path / "data" / "warehouse.duckdb"))
    yield wh
    wh.close()


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
    with pytest.raises(ConfigError, match="cannot write .*blocked/raw.parquet"):
        warehouse.export("raw", str(tmp_path / "blocked" / "raw.parquet"))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda wh: wh.table("missing_table"), "missing_table"),
        (lambda wh: wh.query("SELEC 1"), "warehouse query failed"),
        (lambda wh: wh.select_into("SELECT nope FROM raw", "t"), "warehouse query into t failed"),
        (lambda wh: wh.export("missing_table", "x.parquet"), "export of missing_table failed"),
        (lambda wh: wh.table("raw; DROP TABLE raw"), "invalid table name 'raw; DROP TABLE raw'"),
        (lambda wh: wh.load_dataframe(ROWS, "1st"), "invalid table name '1st'"),
    ],
    ids=["missing-table", "bad-sql", "bad-select-into", "export-missing", "injection", "bad-name"],
)
def test_errors_name_what_is_wrong(warehouse, call, message):
    warehouse.load_dataframe(ROWS, "raw")
    with pytest.raises(ConfigError, match=message):
        call(warehouse)
    assert len(warehouse.table("raw")) == 100


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
