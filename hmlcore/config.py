"""Where a package keeps its data: the platform settings, read once from the environment.

The local platform needs nothing: artifacts go to a lake folder and tables to an embedded DuckDB file,
both under ``HML_HOME`` (default ``.hml`` in the working directory). The GCP platform keeps artifacts in
a GCS bucket and tables in a BigQuery dataset.

Example:
    >>> settings = PlatformSettings.from_env("local", environ={"HML_HOME": "/tmp/x"})
    >>> settings.lake_url
    '/tmp/x/lake'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from hmlcore.errors import ConfigError

__all__ = ["PLATFORMS", "PlatformSettings"]

PLATFORMS = ("local", "GCP")


@dataclass(frozen=True)
class PlatformSettings:
    """The resolved settings of one platform.

    Attributes:
        platform: ``"local"`` or ``"GCP"``.
        home: the working folder for local state (run folders, the local lake and warehouse).
        lake_url: where artifacts live: a folder path or a ``gs://bucket/prefix`` URL.
        warehouse_url: the DuckDB file (local) or ``bigquery://project/dataset`` (GCP).
        gcp_project: the GCP project, on the GCP platform.
        gcp_location: the BigQuery / GCS location, on the GCP platform.
    """

    platform: str
    home: str
    lake_url: str
    warehouse_url: str
    gcp_project: str | None = None
    gcp_location: str | None = None

    @classmethod
    def from_env(cls, platform: str = "local", *, environ: Mapping[str, str] | None = None) -> PlatformSettings:
        """Resolve the settings of ``platform`` from environment variables.

        Local: ``HML_HOME`` (default ``.hml``), ``HML_LAKE_URL`` (default ``$HML_HOME/lake``),
        ``HML_WAREHOUSE_URL`` (default ``$HML_HOME/warehouse.duckdb``).
        GCP: ``GCP_PROJECT`` and ``HML_GCS_BUCKET`` are required; ``HML_BQ_DATASET`` defaults to ``hml``,
        ``GCP_LOCATION`` to ``US``; ``HML_LAKE_URL`` / ``HML_WAREHOUSE_URL`` still override.

        Raises:
            ConfigError: the platform is unknown or a required setting is missing.
        """
        env = os.environ if environ is None else environ
        canonical = {p.lower(): p for p in PLATFORMS}.get(str(platform).lower())
        if canonical is None:
            raise ConfigError(f"unknown platform {platform!r}: use one of {', '.join(PLATFORMS)}")
        home = env.get("HML_HOME") or ".hml"
        if canonical == "local":
            return cls(
                platform=canonical,
                home=home,
                lake_url=env.get("HML_LAKE_URL") or os.path.join(home, "lake"),
                warehouse_url=env.get("HML_WAREHOUSE_URL") or os.path.join(home, "warehouse.duckdb"),
            )
        missing = [name for name in ("GCP_PROJECT", "HML_GCS_BUCKET") if not env.get(name)]
        if missing and not (env.get("HML_LAKE_URL") and env.get("HML_WAREHOUSE_URL")):
            raise ConfigError(f"platform GCP needs the environment variable {missing[0]} (or HML_LAKE_URL and HML_WAREHOUSE_URL)")
        project = env.get("GCP_PROJECT")
        dataset = env.get("HML_BQ_DATASET") or "hml"
        return cls(
            platform=canonical,
            home=home,
            lake_url=env.get("HML_LAKE_URL") or f"gs://{env['HML_GCS_BUCKET']}/hml",
            warehouse_url=env.get("HML_WAREHOUSE_URL") or f"bigquery://{project}/{dataset}",
            gcp_project=project,
            gcp_location=env.get("GCP_LOCATION") or "US",
        )
