"""Where a package keeps its data: the platform settings, read once from the environment.

The local platform needs nothing: artifacts go to a lake folder and tables to an embedded DuckDB file,
both under ``HML_HOME`` (default ``.hml`` in the working directory). The GCP platform keeps artifacts in
a GCS bucket and tables in a BigQuery dataset; its settings (project, bucket, dataset, location) come
from the environment and are all checked at once, so a missing one is named before anything runs.

Example:
    >>> settings = PlatformSettings.from_env("local", environ={"HML_HOME": "/tmp/x"})
    >>> settings.lake_url
    '/tmp/x/lake'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from hmlcore.errors import ConfigError

__all__ = ["GCP_SETTINGS", "PLATFORMS", "PlatformSettings", "check_env_name", "env_int"]

PLATFORMS = ("local", "GCP")


_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_LOCATION_RE = re.compile(r"^[A-Za-z]+(-[a-z]+[0-9]*)?$")

#: the environment variables of the GCP platform: (name, what it is, required, check, hint)
GCP_SETTINGS = (
    ("GCP_PROJECT", "the GCP project id", True, _PROJECT_RE, "6-30 lower-case letters, digits and '-', starting with a letter"),
    ("HML_GCS_BUCKET", "the GCS bucket of the lake", True, _BUCKET_RE, "3-63 lower-case letters, digits, '-', '_' and '.'"),
    ("HML_BQ_DATASET", "the BigQuery dataset of the warehouse", False, _DATASET_RE, "letters, digits and '_'"),
    ("GCP_LOCATION", "the BigQuery / GCS location", False, _LOCATION_RE, "a location such as US, EU or europe-west1"),
)


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
        gcs_bucket: the lake's bucket, on the GCP platform.
        bq_dataset: the warehouse's dataset, on the GCP platform.
    """

    platform: str
    home: str
    lake_url: str
    warehouse_url: str
    gcp_project: str | None = None
    gcp_location: str | None = None
    gcs_bucket: str | None = None
    bq_dataset: str | None = None

    @classmethod
    def from_env(cls, platform: str = "local", *, environ: Mapping[str, str] | None = None) -> PlatformSettings:
        """Resolve the settings of ``platform`` from environment variables, checking every one.

        Local: ``HML_HOME`` (default ``.hml``), ``HML_LAKE_URL`` (default ``$HML_HOME/lake``),
        ``HML_WAREHOUSE_URL`` (default ``$HML_HOME/warehouse.duckdb``).
        GCP: ``GCP_PROJECT`` and ``HML_GCS_BUCKET`` are required; ``HML_BQ_DATASET`` defaults to ``hml``,
        ``GCP_LOCATION`` to ``US``; the lake is ``gs://$HML_GCS_BUCKET/hml`` and the warehouse
        ``bigquery://$GCP_PROJECT/$HML_BQ_DATASET``; ``HML_LAKE_URL`` / ``HML_WAREHOUSE_URL`` still override.

        Raises:
            ConfigError: the platform is unknown, or settings are missing or malformed: the message names
                every one of them, what it is and what a valid value looks like.
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
        overridden = {"HML_GCS_BUCKET": bool(env.get("HML_LAKE_URL"))}
        problems = []
        for name, what, required, pattern, hint in GCP_SETTINGS:
            value = env.get(name)
            if not value:
                if required and not overridden.get(name):
                    problems.append(f"{name} ({what}) is not set")
            elif not pattern.match(value):
                problems.append(f"{name}={value!r} is not valid: {hint}")
        if problems:
            raise ConfigError(f"platform GCP: {'; '.join(problems)}")
        project = env["GCP_PROJECT"]
        dataset = env.get("HML_BQ_DATASET") or "hml"
        bucket = env.get("HML_GCS_BUCKET") or None
        lake_url = env.get("HML_LAKE_URL") or f"gs://{bucket}/hml"
        return cls(
            platform=canonical,
            home=home,
            lake_url=lake_url,
            warehouse_url=env.get("HML_WAREHOUSE_URL") or f"bigquery://{project}/{dataset}",
            gcp_project=project,
            gcp_location=env.get("GCP_LOCATION") or "US",
            gcs_bucket=bucket,
            bq_dataset=dataset,
        )


def env_int(name: str, default: int) -> int:
    """The whole number in environment variable ``name`` (at least 1), or ``default`` if it is unset or blank.

    Raises:
        ConfigError: the variable is set to something other than a whole number of at least 1.

    Example:
        >>> env_int("HML_NOT_SET", 4)
        4
    """
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {text!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_env_name(name: object) -> str:
    """Return ``name`` if it can name an environment variable of the app and its steps, else raise ConfigError.

    Letters, digits and ``_``, not starting with a digit: a name every shell and runtime reads.

    Example:
        >>> check_env_name("GCP_PROJECT")
        'GCP_PROJECT'
    """
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise ConfigError(f"invalid environment variable name {name!r}")
    return name


def debugging() -> bool:
    """Whether ``HML_DEBUG`` asks for tracebacks (set, and not ``0``, ``false`` or ``no``)."""
    return os.environ.get("HML_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
