"""A process's data: its platform settings, lake and warehouse, each made on first use.

:class:`~hmlcore.app.HmlApp` owns one and hands it to the layers that read or write data (a pipeline
step's :class:`~hmlcore.pipelines.OpContext`, the step cache), so none of them needs the app itself.

Example:
    >>> store = DataStore("local", defaults={"HML_HOME": "/tmp/hml-doc"})
    >>> store.settings.platform
    'local'
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hmlcore.storage.config import PlatformSettings
from hmlcore.storage.lake import Lake
from hmlcore.storage.warehouse import Warehouse, open_warehouse

__all__ = ["DataStore"]


class DataStore:
    """The settings, lake and warehouse of ``platform``, resolved when first read.

    Args:
        platform: ``"local"``, ``"s3"`` or ``"GCP"`` (see :class:`~hmlcore.storage.config.PlatformSettings`).
        defaults: environment variables the process environment overrides. The mapping is read when the
            settings are first needed, so variables added to it until then count (the app's ``with_env``).
    """

    def __init__(self, platform: str, *, defaults: Mapping[str, str] | None = None) -> None:
        self.platform = platform
        self._defaults: Mapping[str, str] = {} if defaults is None else defaults
        self._settings: PlatformSettings | None = None
        self._lake: Lake | None = None
        self._warehouse: Warehouse | None = None

    def __repr__(self) -> str:
        return f"DataStore({self.platform!r})"

    @property
    def settings(self) -> PlatformSettings:
        """The platform settings, resolved from the environment and checked on first use.

        Raises:
            ConfigError: a setting is missing or malformed (see :class:`~hmlcore.storage.config.PlatformSettings`).
        """
        if self._settings is None:
            self._settings = PlatformSettings.from_env(self.platform, environ={**self._defaults, **os.environ})
        return self._settings

    @property
    def lake(self) -> Lake:
        """Where artifacts go (a folder locally, an S3 bucket on s3, a GCS bucket on GCP)."""
        if self._lake is None:
            settings = self.settings
            self._lake = Lake(settings.lake_url, storage_options=settings.storage_options)
        return self._lake

    @property
    def warehouse(self) -> Warehouse:
        """The SQL warehouse (DuckDB locally, DuckDB over Parquet in the bucket on s3, BigQuery on GCP)."""
        if self._warehouse is None:
            settings = self.settings
            self._warehouse = open_warehouse(
                settings.warehouse_url, location=settings.gcp_location, storage_options=settings.storage_options
            )
        return self._warehouse
