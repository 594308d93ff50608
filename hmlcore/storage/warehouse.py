"""The warehouse: SQL tables the pipeline reads and writes.

One interface, :class:`Warehouse`, three engines: DuckDB (embedded, a single file, no server: the
default), DuckDB over Parquet tables in a lake folder (:class:`ParquetWarehouse`: ``s3://bucket/prefix``,
so every pod of a cluster sees the same tables) and BigQuery (:mod:`hmlcore.storage.bigquery`, the ``gcp``
extra). :func:`open_warehouse` picks the engine from a URL. What a pipeline needs: :meth:`~Warehouse.query`, :meth:`~Warehouse.select_into`,
:meth:`~Warehouse.load_dataframe`, :meth:`~Warehouse.table`, :meth:`~Warehouse.exists` and
:meth:`~Warehouse.export` (a table to a Parquet file in the lake, for the next step to read); for tables
larger than memory, :meth:`~Warehouse.batches` (a query's rows, a batch at a time) and
:meth:`~Warehouse.load_parquet` (Parquet files in the lake into a table, streamed).

Example:
    >>> import pandas as pd
    >>> wh = open_warehouse(":memory:")
    >>> wh.load_dataframe(pd.DataFrame({"a": [1, 2]}), "t")
    't'
    >>> int(wh.query("SELECT sum(a) AS s FROM t")["s"][0])
    3
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hmlcore.errors import ConfigError, WarehouseError
from hmlcore.storage.lake import Lake
from hmlcore.storage.tables import TABLE_NAME, Warehouse, validate_table_name, write_parquet

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DuckDBWarehouse", "ParquetWarehouse", "Warehouse", "arrow_reader", "open_warehouse", "validate_table_name"]

#: rows a batch when a table streams through memory (a row group of the Parquet tables written so)
_STREAM_ROWS = 100_000


def arrow_reader(relation: Any, rows: int) -> Any:
    """A DuckDB relation's rows as a ``pyarrow.RecordBatchReader`` of ``rows`` rows a batch (DuckDB 1.4+ and before)."""
    read = getattr(relation, "to_arrow_reader", None) or relation.fetch_record_batch
    return read(rows)


class DuckDBWarehouse(Warehouse):
    """The embedded default: a DuckDB database in one file (or ``:memory:``).

    Args:
        path: the database file; its folder is created if missing.
    """

    def __init__(self, path: str) -> None:
        self.url = path
        self._path = path
        self._con: Any = None

    def __repr__(self) -> str:
        return f"DuckDBWarehouse({self._path!r})"

    @property
    def con(self) -> Any:
        """The open DuckDB connection (opened on first use)."""
        if self._con is None:
            import duckdb

            if self._path != ":memory:":
                folder = os.path.dirname(os.path.abspath(self._path))
                try:
                    os.makedirs(folder, exist_ok=True)
                except OSError as exc:
                    raise WarehouseError(f"cannot create the warehouse folder {folder}: {exc.strerror or exc}") from exc
            try:
                self._con = duckdb.connect(self._path)
            except duckdb.Error as exc:
                raise WarehouseError(f"cannot open the warehouse {self._path}: {exc}") from exc
        return self._con

    def query(self, sql: str) -> pd.DataFrame:
        import duckdb

        try:
            return self.con.execute(sql).df()
        except duckdb.Error as exc:
            raise WarehouseError(f"warehouse query failed: {str(exc).splitlines()[0]}") from exc

    def batches(self, sql: str, *, rows: int) -> Any:
        import duckdb

        try:
            return arrow_reader(self.con.sql(sql), rows)
        except duckdb.Error as exc:
            raise WarehouseError(f"warehouse query failed: {str(exc).splitlines()[0]}") from exc

    def select_into(self, sql: str, table: str) -> str:
        import duckdb

        validate_table_name(table)
        try:
            self.con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}").fetchall()
        except duckdb.Error as exc:
            raise WarehouseError(f"warehouse query into {table} failed: {str(exc).splitlines()[0]}") from exc
        return table

    def load_parquet(self, urls: Sequence[str], table: str) -> str:
        if not urls:
            raise WarehouseError(f"warehouse load into {table} failed: no Parquet file named")
        files = ", ".join("'" + str(url).replace("'", "''") + "'" for url in urls)
        return self.select_into(f"SELECT * FROM read_parquet([{files}])", table)

    def load_dataframe(self, df: pd.DataFrame, table: str) -> str:
        import duckdb

        validate_table_name(table)
        self.con.register("_hml_incoming", df)
        try:
            self.con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _hml_incoming").fetchall()
        except duckdb.Error as exc:
            raise WarehouseError(f"warehouse load into {table} failed: {str(exc).splitlines()[0]}") from exc
        finally:
            self.con.unregister("_hml_incoming")
        return table

    def _arrow(self, table: str) -> Any:
        import duckdb

        validate_table_name(table)
        try:
            return self.con.sql(f"SELECT * FROM {table}").to_arrow_table()
        except duckdb.Error as exc:
            raise WarehouseError(f"warehouse export of {table} failed: {str(exc).splitlines()[0]}") from exc

    def exists(self, table: str) -> bool:
        validate_table_name(table)
        rows = self.con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchall()
        return bool(rows and rows[0][0])

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


class ParquetWarehouse(DuckDBWarehouse):
    """DuckDB over Parquet tables kept in a lake folder: table ``t`` is the file ``<url>/t.parquet``.

    The same SQL as :class:`DuckDBWarehouse` runs on an in-memory DuckDB where every table of the folder
    is a view over its Parquet file, read through the folder's fsspec filesystem (DuckDB's own S3
    support, the httpfs extension, is downloaded at run time, which a cluster without internet cannot do).
    A table written here is one object written whole, so a step in another pod reads it complete.

    Args:
        url: the folder, e.g. ``s3://bucket/hml/warehouse`` (any fsspec URL, or a local folder).
        storage_options: passed to fsspec (e.g. the S3 endpoint).

    Example:
        >>> import pandas as pd, tempfile
        >>> wh = ParquetWarehouse(tempfile.mkdtemp())
        >>> wh.load_dataframe(pd.DataFrame({"a": [1, 2]}), "t")
        't'
        >>> int(ParquetWarehouse(wh.url).query("SELECT sum(a) AS s FROM t")["s"][0])
        3
    """

    def __init__(self, url: str, *, storage_options: dict[str, Any] | None = None) -> None:
        self._lake = Lake(url, storage_options=storage_options)
        super().__init__(":memory:")
        self.url = self._lake.url
        self._views: set[str] = set()

    def __repr__(self) -> str:
        return f"ParquetWarehouse({self.url!r})"

    @property
    def con(self) -> Any:
        if self._con is None:
            import duckdb

            self._con = duckdb.connect(":memory:")
            if "://" in self.url:
                self._con.register_filesystem(self._lake.fs)
        return self._con

    def _file(self, table: str) -> str:
        return self._lake.uri(f"{validate_table_name(table)}.parquet")

    def tables(self) -> list[str]:
        """The names of the tables stored in the folder, sorted."""
        try:
            names = self._lake.fs.ls(self.url, detail=False)
        except FileNotFoundError:
            return []
        except Exception as exc:  # noqa: BLE001 - any storage failure becomes one clear error
            raise WarehouseError(f"cannot list the warehouse {self.url}: {type(exc).__name__}: {exc}") from exc
        found = (str(n).rstrip("/").rsplit("/", 1)[-1] for n in names)
        return sorted(n[: -len(".parquet")] for n in found if n.endswith(".parquet") and TABLE_NAME.match(n[: -len(".parquet")]))

    def _sync(self) -> None:
        """Make every table of the folder a view (tables another process wrote since appear too)."""
        for table in self.tables():
            if table not in self._views:
                self._view(table)

    def _view(self, table: str) -> None:
        import duckdb

        location = self._file(table).replace("'", "''")
        try:
            self.con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{location}')").fetchall()
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open warehouse table {table} at {location}: {str(exc).splitlines()[0]}") from exc
        self._views.add(table)

    def _store(self, arrow_table: Any, table: str) -> str:
        write_parquet(arrow_table, self._file(table), lake=self._lake)
        self._view(table)
        return table

    def query(self, sql: str) -> pd.DataFrame:
        self._sync()
        return super().query(sql)

    def batches(self, sql: str, *, rows: int) -> Any:
        self._sync()
        return super().batches(sql, rows=rows)

    def select_into(self, sql: str, table: str) -> str:
        """Replace ``table`` with the result of ``sql``, streamed batch by batch into its Parquet file (a query that
        needs its whole input at once, such as an ``ORDER BY``, holds what DuckDB needs for it)."""
        import duckdb
        import pyarrow as pa
        import pyarrow.parquet as pq

        validate_table_name(table)
        self._sync()
        try:
            with self._lake.open_atomic(self._file(table)) as handle:
                reader = arrow_reader(self.con.sql(sql), _STREAM_ROWS)
                with pq.ParquetWriter(handle, reader.schema) as writer:
                    for batch in reader:
                        writer.write_batch(batch)
        except (duckdb.Error, pa.ArrowException, OSError) as exc:  # DuckDB's error while streaming reaches pyarrow as OSError
            raise WarehouseError(f"warehouse query into {table} failed: {str(exc).splitlines()[0]}") from exc
        self._view(table)
        return table

    def load_dataframe(self, df: pd.DataFrame, table: str) -> str:
        import pyarrow as pa

        validate_table_name(table)
        try:
            arrow_table = pa.Table.from_pandas(df, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise WarehouseError(f"warehouse load into {table} failed: {exc}") from exc
        return self._store(arrow_table, table)

    def exists(self, table: str) -> bool:
        return self._lake.exists(self._file(table))

    def export(self, table: str, lake_url: str) -> str:
        return write_parquet(self._arrow(table), lake_url, lake=self._lake)

    def _arrow(self, table: str) -> Any:
        if not self.exists(table):
            raise WarehouseError(f"warehouse export of {table} failed: no table {table} in {self.url}")
        self._sync()
        return super()._arrow(table)


def open_warehouse(url: str, *, location: str | None = None, storage_options: dict[str, Any] | None = None) -> Warehouse:
    """Open the warehouse at ``url``: a DuckDB file path (or ``duckdb:///path``, ``:memory:``), a lake folder
    of Parquet tables (``s3://bucket/prefix``) or ``bigquery://project/dataset``.

    Args:
        url: where the tables live.
        location: the BigQuery location jobs run in (ignored by DuckDB).
        storage_options: fsspec options of a lake folder (e.g. the S3 endpoint).

    Raises:
        ConfigError: the URL names an engine this installation cannot open.
    """
    if url.startswith("duckdb://"):
        url = url[len("duckdb://") :] or ":memory:"
    if url.startswith("bigquery://"):
        from hmlcore.storage.bigquery import BigQueryWarehouse  # only for a BigQuery URL: --help and DuckDB never load it

        return BigQueryWarehouse.from_url(url, location=location)
    if url.startswith(("s3://", "s3a://")):
        return ParquetWarehouse(url, storage_options=storage_options)
    if "://" in url:
        raise ConfigError(f"unknown warehouse URL {url!r}: use a DuckDB file path, s3://bucket/prefix or bigquery://project/dataset")
    return DuckDBWarehouse(url)
