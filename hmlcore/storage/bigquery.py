"""The BigQuery engine of the warehouse (the ``gcp`` extra: google-cloud-bigquery, db-dtypes, pyarrow).

A :class:`BigQueryWarehouse` works in one dataset. Queries run with that dataset as the default, so the
pipeline's SQL names tables without a prefix and runs unchanged on DuckDB and on BigQuery (keep to the
SQL both share: ``MOD``, ``CAST``, ``CASE``, scalar sub-queries, ``count(*)``...).

Tables are written by ``CREATE OR REPLACE TABLE dataset.table AS ...`` (:meth:`select_into`) and by load
jobs of Parquet, from memory (:meth:`load_dataframe`) or from files in GCS (:meth:`load_parquet`); all
replace the table. A query's rows stream page by page (:meth:`batches`: jobs.getQueryResults and
tabledata.list, each page one Arrow record batch), so a table larger than memory can be read. The dataset itself must exist
(``bq mk --dataset PROJECT:DATASET``): creating datasets needs rights a pipeline should not have.

The client is made on first use with the environment's Google credentials; pass ``client=`` to use one
made otherwise (another endpoint or credentials, through ``google.cloud.bigquery.Client``'s own options).

Example:
    >>> wh = BigQueryWarehouse.from_url("bigquery://my-project/hml?location=EU")
    >>> wh.project, wh.dataset, wh.location
    ('my-project', 'hml', 'EU')
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from hmlcore.errors import ConfigError, WarehouseError
from hmlcore.storage.tables import Warehouse, validate_table_name

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BigQueryWarehouse"]

_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[a-z0-9.-]+:[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")


class BigQueryWarehouse(Warehouse):
    """Tables in one BigQuery dataset.

    Args:
        project: the GCP project that owns the dataset and pays for the queries.
        dataset: the dataset the tables live in.
        location: where the jobs run (``US``, ``EU``, a region); default: the dataset's.
        client: a ready ``google.cloud.bigquery.Client`` to use instead of making one (its own project,
            location, endpoint and credentials apply; :meth:`close` closes it).

    Example:
        >>> BigQueryWarehouse("my-project", "hml").url
        'bigquery://my-project/hml'
    """

    def __init__(
        self,
        project: str,
        dataset: str,
        *,
        location: str | None = None,
        client: Any = None,
    ) -> None:
        if not isinstance(project, str) or not _PROJECT_RE.match(project):
            raise ConfigError(f"invalid GCP project id {project!r}: 6-30 lower-case letters, digits and '-', starting with a letter")
        if not isinstance(dataset, str) or not _DATASET_RE.match(dataset):
            raise ConfigError(f"invalid BigQuery dataset {dataset!r}: use letters, digits and underscores")
        self.project = project
        self.dataset = dataset
        self.location = location or None
        self.url = f"bigquery://{project}/{dataset}"
        self._client = client

    def __repr__(self) -> str:
        return f"BigQueryWarehouse({self.project!r}, {self.dataset!r}, location={self.location!r})"

    @classmethod
    def from_url(cls, url: str, *, location: str | None = None) -> BigQueryWarehouse:
        """Open ``bigquery://PROJECT/DATASET[?location=LOC]``.

        Raises:
            ConfigError: the URL lacks the project or the dataset, or either is invalid.
        """
        parts = urlsplit(url)
        dataset = parts.path.strip("/")
        if parts.scheme != "bigquery" or not parts.netloc or not dataset or "/" in dataset:
            raise ConfigError(f"invalid BigQuery warehouse URL {url!r}: use bigquery://PROJECT/DATASET")
        query_location = parse_qs(parts.query).get("location", [None])[0]
        return cls(parts.netloc, dataset, location=location or query_location)

    @property
    def client(self) -> Any:
        """The ``google.cloud.bigquery.Client`` (made on first use)."""
        if self._client is None:
            try:
                from google.cloud import bigquery
            except ImportError as exc:
                raise ConfigError(f"warehouse {self.url} needs the GCP extra: pip install 'hmlcore[gcp]' ({exc})") from exc
            try:
                self._client = bigquery.Client(project=self.project, location=self.location)
            except Exception as exc:  # noqa: BLE001 - missing credentials and the like: one clear message
                raise ConfigError(f"cannot connect to BigQuery for {self.url}: {type(exc).__name__}: {exc}") from exc
        return self._client

    def _table_id(self, table: str) -> str:
        return f"{self.project}.{self.dataset}.{validate_table_name(table)}"

    def _job_config(self) -> Any:
        from google.cloud import bigquery

        return bigquery.QueryJobConfig(default_dataset=f"{self.project}.{self.dataset}", use_legacy_sql=False)

    def _run(self, sql: str, what: str, *, page_size: int | None = None) -> Any:
        from google.api_core import exceptions

        try:
            return self.client.query_and_wait(sql, job_config=self._job_config(), location=self.location, page_size=page_size)
        except exceptions.GoogleAPIError as exc:
            raise WarehouseError(f"{what} failed: {_message(exc)}") from exc

    def batches(self, sql: str, *, rows: int) -> Any:
        """Run ``sql`` and return its rows as a ``pyarrow.RecordBatchReader``, one result page (at most ``rows`` rows) a batch.

        The pages come one after another over the REST API (the first with the query's answer, the next
        ones from the query's result table), so memory holds a page, not the result.

        Raises:
            WarehouseError: the query fails, or a page cannot be fetched.
        """
        import pyarrow as pa

        result = self._run(sql, "BigQuery query", page_size=rows)
        pages = _pages(result.to_arrow_iterable(), self.url)
        first = next(pages, None)  # a result's first page is there even when it has no rows: it carries the schema
        if first is None:
            return pa.RecordBatchReader.from_batches(pa.schema([]), iter(()))
        return pa.RecordBatchReader.from_batches(first.schema, _chained(first, pages))

    def load_parquet(self, urls: Sequence[str], table: str) -> str:
        """Replace ``table`` with the rows of the Parquet files at ``urls`` (``gs://`` URLs): one load job reads them all.

        Raises:
            WarehouseError: a URL is not in GCS, or the load job fails.
        """
        from google.api_core import exceptions
        from google.cloud import bigquery

        table_id = self._table_id(table)
        elsewhere = [str(url) for url in urls if not str(url).startswith("gs://")]
        if not urls or elsewhere:
            named = elsewhere[0] if elsewhere else "no file"
            raise WarehouseError(f"BigQuery load into {table} failed: it loads Parquet files from gs:// URLs, got {named}")
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET, write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE
        )
        try:
            self.client.load_table_from_uri(list(urls), table_id, job_config=config, location=self.location).result()
        except exceptions.GoogleAPIError as exc:
            raise WarehouseError(f"BigQuery load into {table} failed: {_message(exc)}") from exc
        return table

    def query(self, sql: str) -> pd.DataFrame:
        """Run ``sql`` (GoogleSQL, tables of the dataset unqualified) and return the rows as a DataFrame.

        Integer and boolean columns come back as pandas' nullable ``Int64`` / ``boolean``.
        """
        import pandas as pd
        import pyarrow as pa

        rows = self._run(sql, "BigQuery query")
        nullable = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
        return rows.to_arrow(create_bqstorage_client=False).to_pandas(types_mapper=nullable.get)

    def select_into(self, sql: str, table: str) -> str:
        """Replace ``table`` with the result of ``sql`` (``CREATE OR REPLACE TABLE ... AS``); return its name."""
        validate_table_name(table)
        self._run(f"CREATE OR REPLACE TABLE {self.dataset}.{table} AS {sql}", f"BigQuery query into {table}")
        return table

    def load_dataframe(self, df: pd.DataFrame, table: str) -> str:
        """Replace ``table`` with the rows of ``df`` (a load job of Parquet written by pyarrow); return its name."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        from google.api_core import exceptions
        from google.cloud import bigquery

        table_id = self._table_id(table)
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buffer)
        size = buffer.tell()
        buffer.seek(0)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET, write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE
        )
        try:
            self.client.load_table_from_file(buffer, table_id, job_config=config, size=size, location=self.location).result()
        except exceptions.GoogleAPIError as exc:
            raise WarehouseError(f"BigQuery load into {table} failed: {_message(exc)}") from exc
        return table

    def exists(self, table: str) -> bool:
        """Whether ``table`` exists in the dataset."""
        from google.api_core import exceptions

        try:
            self.client.get_table(self._table_id(table))
        except exceptions.NotFound:
            return False
        except exceptions.GoogleAPIError as exc:
            raise WarehouseError(f"cannot look up table {self._table_id(table)}: {_message(exc)}") from exc
        return True

    def close(self) -> None:
        """Close the client's HTTP session."""
        if self._client is not None:
            self._client.close()
            self._client = None


def _pages(batches: Iterator[Any], url: str) -> Iterator[Any]:
    """The record batches of ``batches``, an API error while fetching a page raised as :class:`WarehouseError`."""
    from google.api_core import exceptions

    try:
        yield from batches
    except exceptions.GoogleAPIError as exc:
        raise WarehouseError(f"reading a query's rows from {url} failed: {_message(exc)}") from exc


def _chained(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if errors and isinstance(errors[0], dict) and errors[0].get("message"):
        return str(errors[0]["message"]).splitlines()[0]
    message = getattr(exc, "message", None) or str(exc)
    return str(message).splitlines()[0]
