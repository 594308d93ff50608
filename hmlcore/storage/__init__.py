"""Where a package keeps its data: the platform settings, the lake of artifacts and the SQL warehouse.

The bottom layer: it imports nothing else of hmlcore but :mod:`hmlcore.errors` and :mod:`hmlcore._files`.

- :mod:`~hmlcore.storage.config`: the platform (``local``, ``s3``, ``GCP``) and its settings, read from the environment.
- :mod:`~hmlcore.storage.lake`: artifacts by URL (a folder, an S3 or a GCS bucket) through fsspec.
- :mod:`~hmlcore.storage.sources`: :func:`read_rows`, the rows of a file, a URL or a table a pipeline starts from.
- :mod:`~hmlcore.storage.tables`: the warehouse's interface, which each engine subclasses;
  :mod:`~hmlcore.storage.warehouse`: tables in DuckDB (a file, or Parquet in the bucket), and ``open_warehouse``;
  :mod:`~hmlcore.storage.bigquery`: in BigQuery.
- :mod:`~hmlcore.storage.store`: :class:`DataStore`, one process's settings, lake and warehouse, made on first use.
"""

from __future__ import annotations

from hmlcore.storage.config import PlatformSettings
from hmlcore.storage.lake import Lake
from hmlcore.storage.sources import SourceRows, locate_source, read_rows
from hmlcore.storage.store import DataStore
from hmlcore.storage.warehouse import Warehouse, open_warehouse

__all__ = ["DataStore", "Lake", "PlatformSettings", "SourceRows", "Warehouse", "locate_source", "open_warehouse", "read_rows"]
