"""A local HTTP server speaking the part of the BigQuery REST API that ``hmlcore.bigquery`` uses.

The real google-cloud-bigquery client talks to it over HTTP (:func:`bigquery_client`: ``api_endpoint`` +
anonymous credentials, passed to ``BigQueryWarehouse(client=...)``), so the requests, the JSON it sends
and the JSON it parses are the ones BigQuery sees and answers. The SQL itself runs in an in-memory
DuckDB (one schema per dataset): the server checks the REST contract, not the GoogleSQL dialect, so
SQL meant for both engines must stay within what both accept.

Endpoints (``/bigquery/v2`` prefix):

- ``POST /projects/{p}/queries`` (jobs.query): runs the query in the request's ``defaultDataset``,
  answers ``schema`` + ``rows`` (``{"f": [{"v": "..."}]}``, numbers as strings) with ``jobComplete``;
  with ``maxResults``, the first page and a ``pageToken``. As BigQuery does, the result is kept in a
  table of a hidden dataset (the job's ``destinationTable``) that the next pages are read from;
- ``GET /projects/{p}/queries/{job}`` (jobs.getQueryResults) and ``GET
  /projects/{p}/datasets/{d}/tables/{t}/data`` (tabledata.list): a page of rows (``maxResults`` rows
  from ``pageToken`` / ``startIndex``) with ``totalRows`` and the next ``pageToken``;
- ``GET /projects/{p}/datasets/{d}/tables/{t}`` (tables.get): the table's schema, or 404;
- ``POST /upload/bigquery/v2/projects/{p}/jobs?uploadType=multipart`` (a load job of Parquet,
  ``WRITE_TRUNCATE``); ``POST /projects/{p}/jobs`` (jobs.insert) of a load job of Parquet files in GCS
  (``sourceUris``, read through gcsfs: the tests' GCS emulator); ``GET /projects/{p}/jobs/{id}``
  (jobs.get) for a job's status and configuration.

Anything else answers 501, so a client call outside this contract fails the test loudly. It binds
127.0.0.1 only; :func:`bigquery_server` stops it.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ._fake_api import FakeJsonApi

_TYPES = [
    (pa.types.is_boolean, "BOOLEAN"),
    (pa.types.is_integer, "INTEGER"),
    (pa.types.is_floating, "FLOAT"),
    (pa.types.is_date, "DATE"),
    (pa.types.is_timestamp, "TIMESTAMP"),
]


#: the hidden dataset holding each query's result table, as BigQuery keeps one per query for its pages
ANONYMOUS = "_anonymous"


def _bq_type(arrow_type: pa.DataType) -> str:
    return next((name for check, name in _TYPES if check(arrow_type)), "STRING")


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "BOOLEAN":
        return "true" if value else "false"
    if kind == "FLOAT":
        return repr(float(value))
    if kind == "TIMESTAMP":
        return repr(value.timestamp())
    return str(value)


class FakeBigQuery(FakeJsonApi):
    """The server's state: one DuckDB, the datasets, the finished jobs and a log of the calls made."""

    content_type = "application/json; charset=UTF-8"

    def __init__(self, project: str, datasets: list[str]) -> None:
        super().__init__()
        self.project = project
        self.db = duckdb.connect(":memory:")
        self.lock = threading.Lock()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.queries: list[str] = []
        for dataset in [*datasets, ANONYMOUS]:
            self.db.execute(f"CREATE SCHEMA {dataset}")
        self.datasets = set(datasets)

    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes) -> tuple[int, Any]:
        """Route a request to the endpoint it calls; anything else answers 501."""
        self.calls.append((method, path))
        if method == "GET":
            if m := re.fullmatch(r"/bigquery/v2/projects/[^/]+/datasets/([^/]+)/tables/([^/]+)", path):
                return self.get_table(m.group(1), m.group(2))
            if m := re.fullmatch(r"/bigquery/v2/projects/[^/]+/datasets/([^/]+)/tables/([^/]+)/data", path):
                return self.list_rows(m.group(1), m.group(2), query)
            if m := re.fullmatch(r"/bigquery/v2/projects/[^/]+/queries/([^/]+)", path):
                return self.query_results(m.group(1), query)
            if (m := re.fullmatch(r"/bigquery/v2/projects/[^/]+/jobs/([^/]+)", path)) and m.group(1) in self.jobs:
                return 200, self.jobs[m.group(1)]
        elif method == "POST":
            if re.fullmatch(r"/bigquery/v2/projects/[^/]+/queries", path):
                return self.run_query(json.loads(body))
            if re.fullmatch(r"/bigquery/v2/projects/[^/]+/jobs", path):
                return self.insert_job(json.loads(body))
            if re.fullmatch(r"/upload/bigquery/v2/projects/[^/]+/jobs", path) and query.get("uploadType") == "multipart":
                return self.load(headers.get("Content-Type", ""), body)
        return _error(501, f"the test server does not implement {method} {path}", reason="notImplemented")

    def run_query(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        dataset = (body.get("defaultDataset") or {}).get("datasetId")
        sql = body["query"]
        self.queries.append(sql)
        if dataset and dataset not in self.datasets:
            return _error(404, f"Not found: Dataset {self.project}:{dataset}")
        with self.lock, self.db.cursor() as cursor:
            try:
                cursor.execute(f"USE memory.{dataset or 'main'}")
                relation = cursor.sql(sql)
                table = relation.to_arrow_table() if relation is not None else None
            except duckdb.Error as exc:
                return _error(400, str(exc).splitlines()[0], reason="invalidQuery")
        job = {"projectId": self.project, "jobId": f"job_{uuid.uuid4().hex}", "location": body.get("location") or "US"}
        if table is None or re.match(r"^\s*(CREATE|DROP|INSERT|DELETE|UPDATE)\b", sql, re.IGNORECASE):
            return 200, {"kind": "bigquery#queryResponse", "jobReference": job, "jobComplete": True, "totalRows": "0"}
        destination = {"projectId": self.project, "datasetId": ANONYMOUS, "tableId": f"anon{job['jobId']}"}
        with self.lock, self.db.cursor() as cursor:  # the result table the next pages are read from
            cursor.register("result", table)
            cursor.execute(f"CREATE TABLE {ANONYMOUS}.{destination['tableId']} AS SELECT * FROM result").fetchall()
        self.jobs[job["jobId"]] = {
            "kind": "bigquery#job",
            "id": f"{self.project}:{job['jobId']}",
            "jobReference": job,
            "configuration": {"jobType": "QUERY", "query": {"query": sql, "destinationTable": destination}},
            "status": {"state": "DONE"},
            "statistics": {"query": {"totalBytesProcessed": "0"}},
        }
        return 200, {
            "kind": "bigquery#queryResponse",
            "schema": {"fields": _fields(table.schema)},
            "jobReference": job,
            "jobComplete": True,
            "cacheHit": False,
            **_page(table, offset=0, size=body.get("maxResults")),
        }

    def query_results(self, job_id: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """jobs.getQueryResults: a finished query's schema and a page of its rows (``maxResults`` rows from ``pageToken``)."""
        job = self.jobs.get(job_id)
        if job is None or "query" not in job["configuration"]:
            return _error(404, f"Not found: Job {self.project}:{job_id}")
        table = self._table(job["configuration"]["query"]["destinationTable"]["tableId"], ANONYMOUS)
        return 200, {
            "kind": "bigquery#getQueryResultsResponse",
            "schema": {"fields": _fields(table.schema)},
            "jobReference": job["jobReference"],
            "jobComplete": True,
            **_page(table, offset=int(query.get("pageToken", "0")), size=query.get("maxResults")),
        }

    def list_rows(self, dataset: str, table: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """tabledata.list: a page of a table's rows (``maxResults`` rows from ``pageToken`` or ``startIndex``)."""
        status, found = self.get_table(dataset, table)
        if status != 200:
            return status, found
        start = query.get("pageToken") or query.get("startIndex") or "0"
        page = _page(self._table(table, dataset), offset=int(start), size=query.get("maxResults"))
        return 200, {"kind": "bigquery#tableDataList", **page}

    def _table(self, table: str, dataset: str) -> pa.Table:
        with self.lock, self.db.cursor() as cursor:
            return cursor.sql(f"SELECT * FROM {dataset}.{table}").to_arrow_table()

    def get_table(self, dataset: str, table: str) -> tuple[int, dict[str, Any]]:
        with self.lock, self.db.cursor() as cursor:
            found = cursor.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [dataset, table]
            ).fetchall()
            if not found[0][0]:
                return _error(404, f"Not found: Table {self.project}:{dataset}.{table}")
            schema = cursor.sql(f"SELECT * FROM {dataset}.{table} LIMIT 0").to_arrow_table().schema
            rows = cursor.execute(f"SELECT count(*) FROM {dataset}.{table}").fetchall()[0]
        fields = [{"name": f.name, "type": _bq_type(f.type), "mode": "NULLABLE"} for f in schema]
        return 200, {
            "kind": "bigquery#table",
            "id": f"{self.project}:{dataset}.{table}",
            "tableReference": {"projectId": self.project, "datasetId": dataset, "tableId": table},
            "schema": {"fields": fields},
            "numRows": str(rows[0]),
            "type": "TABLE",
        }

    def load(self, content_type: str, body: bytes) -> tuple[int, dict[str, Any]]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        parts = [part.get_payload(decode=True) for part in message.iter_parts()]  # type: ignore[attr-defined]
        if len(parts) != 2:
            return _error(400, f"a multipart load needs 2 parts, got {len(parts)}")
        return self._load(json.loads(parts[0]), lambda: pq.read_table(io.BytesIO(parts[1])))

    def insert_job(self, resource: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """jobs.insert of a load job reading Parquet files from GCS (``sourceUris``), read here through gcsfs."""
        config = resource.get("configuration", {}).get("load")
        if config is None or not config.get("sourceUris"):
            return _error(
                501, f"the test server runs load jobs from sourceUris only, got {resource.get('configuration')}", reason="notImplemented"
            )
        uris = config["sourceUris"]
        if any(not uri.startswith("gs://") or "*" in uri for uri in uris):
            return _error(400, f"sourceUris must be gs:// objects (no wildcard here), got {uris}")

        if not os.environ.get("STORAGE_EMULATOR_HOST"):
            return _error(400, "this server reads sourceUris from the GCS emulator only (tests/gcs.py), and none is running")

        def read() -> pa.Table:
            import fsspec

            fs = fsspec.filesystem("gs")
            return pa.concat_tables([pq.read_table(io.BytesIO(fs.cat_file(uri))) for uri in uris], promote_options="permissive")

        return self._load(resource, read)

    def _load(self, resource: dict[str, Any], read: Any) -> tuple[int, dict[str, Any]]:
        config = resource["configuration"]["load"]
        destination = config["destinationTable"]
        if config.get("sourceFormat") != "PARQUET" or config.get("writeDisposition") != "WRITE_TRUNCATE":
            return _error(400, f"this server loads PARQUET with WRITE_TRUNCATE only, got {config}")
        dataset, table = destination["datasetId"], destination["tableId"]
        if dataset not in self.datasets:
            return _error(404, f"Not found: Dataset {self.project}:{dataset}")
        try:
            incoming = read()
        except FileNotFoundError as exc:
            return _error(404, f"Not found: URI {exc}")
        with self.lock, self.db.cursor() as cursor:
            cursor.register("incoming", incoming)
            cursor.execute(f"CREATE OR REPLACE TABLE {dataset}.{table} AS SELECT * FROM incoming").fetchall()
        job_id = resource.get("jobReference", {}).get("jobId") or f"job_{uuid.uuid4().hex}"
        job = {
            "kind": "bigquery#job",
            "id": f"{self.project}:{job_id}",
            "jobReference": {"projectId": self.project, "jobId": job_id, "location": "US"},
            "configuration": resource["configuration"],
            "status": {"state": "DONE"},
            "statistics": {"load": {"outputRows": str(incoming.num_rows)}},
        }
        self.jobs[job_id] = job
        return 200, job


def _fields(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": field.name, "type": _bq_type(field.type), "mode": "NULLABLE"} for field in schema]


def _page(table: pa.Table, *, offset: int, size: Any) -> dict[str, Any]:
    """``totalRows``, the rows from ``offset`` (at most ``size``, all if None) and the ``pageToken`` of the rest, as BigQuery pages."""
    stop = table.num_rows if size is None else min(table.num_rows, offset + int(size))
    kinds = [_bq_type(field.type) for field in table.schema]
    rows = [
        {"f": [{"v": _cell(v, k)} for v, k in zip(row.values(), kinds, strict=True)]}
        for row in table.slice(offset, stop - offset).to_pylist()
    ]
    page: dict[str, Any] = {"totalRows": str(table.num_rows), "rows": rows}
    if stop < table.num_rows:
        page["pageToken"] = str(stop)
    return page


def _error(status: int, message: str, *, reason: str = "notFound") -> tuple[int, dict[str, Any]]:
    reason = reason if status != 400 or reason != "notFound" else "invalid"
    return status, {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}


@contextmanager
def bigquery_server(project: str = "test-project", datasets: tuple[str, ...] = ("hml",)) -> Iterator[tuple[str, FakeBigQuery]]:
    """Serve a fake BigQuery on 127.0.0.1; yield ``(endpoint URL, state)``; shut it down on exit."""
    fake = FakeBigQuery(project, list(datasets))
    try:
        with fake:
            yield fake.url, fake
    finally:
        fake.db.close()


def bigquery_client(endpoint: str, project: str = "test-project", location: str | None = None) -> Any:
    """A real ``google.cloud.bigquery.Client`` that calls ``endpoint`` with anonymous credentials."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project=project, location=location, client_options={"api_endpoint": endpoint}, credentials=AnonymousCredentials()
    )
