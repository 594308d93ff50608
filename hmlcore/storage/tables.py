"""The warehouse's interface: :class:`Warehouse`, which every engine subclasses, and what the engines share.

DuckDB (:mod:`hmlcore.storage.warehouse`) and BigQuery (:mod:`hmlcore.storage.bigquery`) both build on it;
:func:`~hmlcore.storage.warehouse.open_warehouse` picks one from a URL.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hmlcore.errors import ConfigError
from hmlcore.storage.lake import Lake

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TABLE_NAME", "Warehouse", "validate_table_name", "write_parquet"]

#: a plain SQL identifier: the table names every engine accepts
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def validate_table_name(name: str) -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise :class:`ConfigError`."""
    if not isinstance(name, str) or not TABLE_NAME.match(name):
        raise ConfigError(f"invalid table name {name!r}: use letters, digits and underscores, starting with a letter")
    return name


class Warehouse:
    """What a pipeline needs of a SQL warehouse. Engines subclass it.

    A query, load or export that fails raises :class:`~hmlcore.errors.WarehouseError`; a table name that
    is not a plain identifier, :class:`~hmlcore.errors.ConfigError`.
    """

    url: str

    def query(self, sql: str) -> pd.DataFrame:
        """Run ``sql`` and return its result as a DataFrame."""
        raise NotImplementedError

    def select_into(self, sql: str, table: str) -> str:
        """Run ``sql`` and replace ``table`` with its result; return the table name."""
        raise NotImplementedError

    def batches(self, sql: str, *, rows: int) -> Any:
        """Run ``sql`` and return its result as a ``pyarrow.RecordBatchReader`` of at most ``rows`` rows a batch.

        The rows stream: memory holds a batch, not the result.

        Raises:
            WarehouseError: the query fails.
        """
        raise NotImplementedError

    def load_dataframe(self, df: pd.DataFrame, table: str) -> str:
        """Replace ``table`` with the rows of ``df``; return the table name."""
        raise NotImplementedError

    def load_parquet(self, urls: Sequence[str], table: str) -> str:
        """Replace ``table`` with the rows of the Parquet files at ``urls`` (lake URLs), in that order; return the table name.

        The rows stream from the files to the table: memory holds a row group, not the table.

        Raises:
            WarehouseError: a file cannot be read or the table cannot be written.
        """
        raise NotImplementedError

    def table(self, name: str) -> pd.DataFrame:
        """Every row of table ``name``."""
        return self.query(f"SELECT * FROM {validate_table_name(name)}")

    def exists(self, table: str) -> bool:
        """Whether ``table`` exists."""
        raise NotImplementedError

    def export(self, table: str, lake_url: str) -> str:
        """Write every row of ``table`` as one Parquet file at ``lake_url`` (a path or fsspec URL); return the URL.

        The file appears whole or not at all (see :meth:`hmlcore.storage.lake.Lake.write_bytes`). Read it back
        with ``pandas.read_parquet(url)``.

        Raises:
            WarehouseError: the table cannot be read.
            StorageError: the URL cannot be written.
        """
        return write_parquet(self._arrow(table), lake_url)

    def _arrow(self, table: str) -> Any:
        import pyarrow as pa  # pyarrow: only when a table is exported

        return pa.Table.from_pandas(self.table(table), preserve_index=False)

    def close(self) -> None:
        """Release the connection."""


def write_parquet(arrow_table: Any, lake_url: str, *, lake: Any = None) -> str:
    """Write ``arrow_table`` as one Parquet file at ``lake_url`` (through ``lake`` if given); return the URL."""
    import pyarrow.parquet as pq  # pyarrow: only when a table is written

    if not isinstance(lake_url, str) or not lake_url.strip():
        raise ConfigError(f"export needs a lake URL, got {lake_url!r}")
    target = lake_url if "://" in lake_url and not lake_url.startswith("file://") else os.path.abspath(lake_url.removeprefix("file://"))
    buffer = io.BytesIO()
    pq.write_table(arrow_table, buffer)
    return (lake or Lake(target)).write_bytes(target, buffer.getvalue())
