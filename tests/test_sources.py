"""read_rows: the rows a training pipeline starts from, from files, URLs and warehouse tables, with their digest."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from hmlcore import hml
from hmlcore.pipelines.cache import step_key
from hmlcore.storage.sources import local_file, locate_source, read_rows
from hmlcore.storage.warehouse import open_warehouse

ROWS = pd.DataFrame({"size": [1.5, 2.0, None], "colour": ["red", None, "blue"], "verdict": ["yes", "no", "yes"]})


def csv_bytes() -> bytes:
    return ROWS.to_csv(index=False).encode()


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server on 127.0.0.1 serving a folder: what an https:// data source answers, without TLS."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


@pytest.mark.parametrize(
    "name,data",
    [
        ("rows.csv", csv_bytes()),
        ("rows.csv.gz", gzip.compress(csv_bytes())),
        ("rows.CSV.BZ2", bz2.compress(csv_bytes())),
        ("rows.csv.xz", lzma.compress(csv_bytes())),
        ("rows.tsv", ROWS.to_csv(index=False, sep="\t").encode()),
        ("rows.jsonl", ROWS.to_json(orient="records", lines=True).encode()),
    ],
)
def test_a_file_is_read_by_its_ending_and_digested_as_stored(tmp_path: Path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    loaded = read_rows(str(path))
    pd.testing.assert_frame_equal(loaded.frame, ROWS, check_dtype=False)
    assert loaded.sha256 == hashlib.sha256(data).hexdigest() and loaded.location == str(path)


def test_parquet_keeps_its_types(tmp_path: Path):
    buffer = io.BytesIO()
    ROWS.to_parquet(buffer, index=False)
    (tmp_path / "rows.parquet").write_bytes(buffer.getvalue())
    pd.testing.assert_frame_equal(read_rows(str(tmp_path / "rows.parquet")).frame, ROWS)


def test_a_relative_path_is_found_in_the_working_folder_then_inside_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "lib" / "zoo_rows"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "rows.csv").write_bytes(csv_bytes())
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    elsewhere = tmp_path / "work"
    (elsewhere / "data").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)

    loaded = read_rows("data/rows.csv", package="zoo_rows")
    assert Path(loaded.location) == package / "data" / "rows.csv" and len(loaded.frame) == 3
    assert local_file("data/rows.csv", package="zoo_rows") == loaded.location  # where the step cache looks

    (elsewhere / "data" / "rows.csv").write_bytes(ROWS.head(1).to_csv(index=False).encode())
    assert len(read_rows("data/rows.csv", package="zoo_rows").frame) == 1  # the working folder's file comes first


def test_the_step_cache_keys_an_input_by_the_file_read_rows_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A packaged data file changed under the same name changes the step's key: the cache and extract find the same file."""
    package = tmp_path / "lib" / "zoo_keys"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "steps.py").write_text(
        "from hmlcore import hml\n\n\n@hml.op()\ndef extract(source: str = 'data/rows.csv') -> int:\n    return 0\n"
    )
    (package / "data" / "rows.csv").write_bytes(csv_bytes())
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    monkeypatch.chdir(tmp_path)
    from zoo_keys.steps import extract  # type: ignore[import-not-found]

    def key() -> str | None:
        return step_key(pipeline="p", op=extract, raw={"source": "data/rows.csv"}, env={}).digest

    before = key()
    (package / "data" / "rows.csv").write_bytes(ROWS.head(2).to_csv(index=False).encode())
    assert key() != before
    assert read_rows("data/rows.csv", package="zoo_keys").sha256 == hashlib.sha256((package / "data" / "rows.csv").read_bytes()).hexdigest()


def test_a_url_is_read_over_http(http_folder: tuple[str, Path]):
    base, folder = http_folder
    (folder / "rows.csv.gz").write_bytes(gzip.compress(csv_bytes()))
    loaded = read_rows(f"{base}/rows.csv.gz?version=2")
    pd.testing.assert_frame_equal(loaded.frame, ROWS, check_dtype=False)
    assert loaded.location == f"{base}/rows.csv.gz?version=2"
    with pytest.raises(hml.DataSourceError, match=r"^cannot read http://127\.0\.0\.1:\d+/gone\.csv: HTTP Error 404"):
        read_rows(f"{base}/gone.csv")


def test_a_table_is_read_from_the_warehouse_and_digested_by_its_content(tmp_path: Path):
    warehouse = open_warehouse(str(tmp_path / "warehouse.duckdb"))
    warehouse.load_dataframe(ROWS, "crashes")
    first = read_rows("crashes", warehouse=warehouse)
    pd.testing.assert_frame_equal(first.frame, ROWS, check_dtype=False)
    assert read_rows("crashes", warehouse=warehouse).sha256 == first.sha256
    warehouse.load_dataframe(ROWS.head(2), "crashes")
    assert read_rows("crashes", warehouse=warehouse).sha256 != first.sha256
    with pytest.raises(hml.DataSourceError, match=r"^no table 'other' in the warehouse .*: name a table there, or a file path or URL$"):
        read_rows("other", warehouse=warehouse)
    with pytest.raises(hml.DataSourceError, match="no warehouse was given"):
        read_rows("crashes")


@pytest.mark.parametrize(
    "source,message",
    [
        ("no/such/rows.csv", r"^no data at 'no/such/rows\.csv': it is neither in .+ nor in the package hmlcore$"),
        ("{tmp}/gone.csv", r"^no data at .+gone\.csv: there is no such file$"),
        ("{tmp}/rows.xlsx", r"^cannot read .+rows\.xlsx: name a file ending in \.csv, \.tsv, .+ \(optionally \.gz, \.bz2 or \.xz\)$"),
        ("{tmp}/broken.csv.gz", r"^cannot read .+broken\.csv\.gz as csv\.gz: .+$"),
        ("{tmp}/broken.parquet", r"^cannot read .+broken\.parquet as parquet: .+$"),
        ("SELECT * FROM crashes", r"^cannot read rows from the query 'SELECT \* FROM crashes': name a warehouse table"),
        ("", r"^no data at '': name a file's path or URL, or a warehouse table$"),
    ],
)
def test_a_source_that_cannot_be_read_is_one_line_naming_it(tmp_path: Path, source: str, message: str):
    (tmp_path / "rows.xlsx").write_bytes(b"PK\x03\x04")
    (tmp_path / "broken.csv.gz").write_bytes(b"not gzip at all")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(hml.DataSourceError, match=message) as raised:
        read_rows(source.format(tmp=tmp_path), package="hmlcore")
    assert "\n" not in str(raised.value)


def test_options_are_checked_before_anything_is_read():
    with pytest.raises(hml.DataSourceError, match="timeout must be a positive number of seconds, got 0"):
        read_rows("https://example.invalid/rows.csv", timeout=0)


def test_scoring_sources_pass_through_and_paths_are_found():
    assert locate_source("crashes") == "crashes" and locate_source("with recent as (select 1) select * from recent").startswith("with")
    assert locate_source("s3://bucket/rows.parquet") == "s3://bucket/rows.parquet"
    assert locate_source("py.typed", package="hmlcore").endswith("py.typed")


@pytest.mark.slow
def test_an_s3_url_is_read_through_the_lakes_own_endpoint_and_keys(s3_server):
    """SeaweedFS (a real S3 server) on 127.0.0.1: the URL is read with the lake's storage options, as batch scoring reads it."""
    from hmlcore.storage.lake import Lake

    lake = Lake(s3_server.fresh_prefix(), storage_options=s3_server.storage_options())
    url = lake.write_bytes("data/rows.csv.gz", gzip.compress(csv_bytes()))
    loaded = read_rows(url, lake=lake)
    pd.testing.assert_frame_equal(loaded.frame, ROWS, check_dtype=False)
    assert loaded.location == url and loaded.sha256 == hashlib.sha256(lake.read_bytes(url)).hexdigest()
