"""Where a package keeps its data: the platform settings, read once from the environment.

The local platform needs nothing: artifacts go to a lake folder and tables to an embedded DuckDB file,
both under ``HML_HOME`` (default ``.hml`` in the working directory). The s3 platform keeps artifacts in a
bucket of any S3-compatible store (Kubeflow Pipelines' own object store, SeaweedFS or MinIO, or AWS S3)
and its tables as Parquet files in that bucket, queried with DuckDB: a table one pod writes is read by
the next. The GCP platform keeps artifacts in a GCS bucket and tables in a BigQuery dataset. The
settings of a platform come from the environment and are all checked at once, so a missing one is
named before anything runs.

``local`` keeps everything on the machine's own disk, so it is "pod-local": each pod of a cluster would
see only its own empty disk (see :func:`check_cluster_platform`).

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

from hmlcore import _env
from hmlcore.errors import ConfigError

__all__ = [
    "GCP_SETTINGS",
    "PLATFORMS",
    "POD_LOCAL_PLATFORMS",
    "S3_SETTINGS",
    "PlatformSettings",
    "check_cluster_platform",
    "check_env_name",
]

PLATFORMS = ("local", "s3", "GCP")
#: platforms whose data stays on one machine's disk: a cluster's pods cannot share it
POD_LOCAL_PLATFORMS = ("local",)


_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_LOCATION_RE = re.compile(r"^[A-Za-z]+(-[a-z]+[0-9]*)?$")
_S3_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_ENDPOINT_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
_S3_PREFIX_RE = re.compile(r"^(?!(.*/)?\.\.?(/|$))[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")

#: the environment variables of the GCP platform: (name, what it is, required, check, hint)
GCP_SETTINGS = (
    ("GCP_PROJECT", "the GCP project id", True, _PROJECT_RE, "6-30 lower-case letters, digits and '-', starting with a letter"),
    ("HML_GCS_BUCKET", "the GCS bucket of the lake", True, _BUCKET_RE, "3-63 lower-case letters, digits, '-', '_' and '.'"),
    ("HML_BQ_DATASET", "the BigQuery dataset of the warehouse", False, _DATASET_RE, "letters, digits and '_'"),
    ("GCP_LOCATION", "the BigQuery / GCS location", False, _LOCATION_RE, "a location such as US, EU or europe-west1"),
)

#: the environment variables of the s3 platform: (name, what it is, required, check, hint); credentials come
#: from the standard AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or any source botocore reads)
S3_SETTINGS = (
    ("HML_S3_BUCKET", "the S3 bucket of the lake and the warehouse", True, _S3_BUCKET_RE, "3-63 lower-case letters, digits, '-' and '.'"),
    ("HML_S3_ENDPOINT", "the S3 endpoint URL (blank: AWS)", False, _S3_ENDPOINT_RE, "a URL like http://seaweedfs.kubeflow:9000"),
    (
        "HML_S3_PREFIX",
        "the folder inside the bucket",
        False,
        _S3_PREFIX_RE,
        "letters, digits, '_', '-', '.' and '/' between parts, no '.' or '..' part",
    ),
)


def _check(
    platform: str, settings: tuple[tuple[str, str, bool, re.Pattern[str], str], ...], env: Mapping[str, str], overridden: set[str]
) -> None:
    problems = []
    for name, what, required, pattern, hint in settings:
        value = env.get(name)
        if not value:
            if required and name not in overridden:
                problems.append(f"{name} ({what}) is not set")
        elif not pattern.match(value):
            problems.append(f"{name}={value!r} is not valid: {hint}")
    if problems:
        raise ConfigError(f"platform {platform}: {'; '.join(problems)}")


@dataclass(frozen=True)
class PlatformSettings:
    """The resolved settings of one platform.

    Attributes:
        platform: ``"local"``, ``"s3"`` or ``"GCP"``.
        home: the working folder for local state (run folders, the local lake and warehouse).
        lake_url: where artifacts live: a folder path, an ``s3://bucket/prefix`` or a ``gs://bucket/prefix`` URL.
        warehouse_url: the DuckDB file (local), the folder of Parquet tables DuckDB queries
            (s3: ``s3://bucket/prefix/warehouse``) or ``bigquery://project/dataset`` (GCP).
        gcp_project: the GCP project, on the GCP platform.
        gcp_location: the BigQuery / GCS location, on the GCP platform.
        gcs_bucket: the lake's bucket, on the GCP platform.
        bq_dataset: the warehouse's dataset, on the GCP platform.
        s3_endpoint: the S3 endpoint URL, on the s3 platform (``None``: AWS).
    """

    platform: str
    home: str
    lake_url: str
    warehouse_url: str
    gcp_project: str | None = None
    gcp_location: str | None = None
    gcs_bucket: str | None = None
    bq_dataset: str | None = None
    s3_endpoint: str | None = None

    @property
    def storage_options(self) -> dict[str, object]:
        """The fsspec options of the lake's and the warehouse's filesystem (the GCP project, the S3 endpoint)."""
        if self.platform == "s3":
            return {"client_kwargs": {"endpoint_url": self.s3_endpoint}} if self.s3_endpoint else {}
        if self.platform == "GCP" and self.lake_url.startswith("gs://"):
            return {"project": self.gcp_project}
        return {}

    @classmethod
    def from_env(cls, platform: str = "local", *, environ: Mapping[str, str] | None = None) -> PlatformSettings:
        """Resolve the settings of ``platform`` from environment variables, checking every one.

        Local: ``HML_HOME`` (default ``.hml``), ``HML_LAKE_URL`` (default ``$HML_HOME/lake``),
        ``HML_WAREHOUSE_URL`` (default ``$HML_HOME/warehouse.duckdb``).
        s3: ``HML_S3_BUCKET`` is required; ``HML_S3_ENDPOINT`` is the store's URL (blank: AWS) and
        ``HML_S3_PREFIX`` (default ``hml``) the folder in the bucket; the lake is ``s3://$HML_S3_BUCKET/$HML_S3_PREFIX``
        and the warehouse its ``warehouse`` folder; credentials are the standard ``AWS_ACCESS_KEY_ID`` /
        ``AWS_SECRET_ACCESS_KEY``; ``HML_LAKE_URL`` / ``HML_WAREHOUSE_URL`` still override.
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
        home = _env.HOME.get(env)
        if canonical == "local":
            return cls(
                platform=canonical,
                home=home,
                lake_url=_env.LAKE_URL.get(env) or os.path.join(home, "lake"),
                warehouse_url=_env.WAREHOUSE_URL.get(env) or os.path.join(home, "warehouse.duckdb"),
            )
        if canonical == "s3":
            _check("s3", S3_SETTINGS, env, {"HML_S3_BUCKET"} if _env.LAKE_URL.get(env) and _env.WAREHOUSE_URL.get(env) else set())
            root = f"s3://{env.get('HML_S3_BUCKET')}/{(env.get('HML_S3_PREFIX') or 'hml').strip('/')}"
            return cls(
                platform=canonical,
                home=home,
                lake_url=_env.LAKE_URL.get(env) or root,
                warehouse_url=_env.WAREHOUSE_URL.get(env) or f"{root}/warehouse",
                s3_endpoint=(env.get("HML_S3_ENDPOINT") or "").rstrip("/") or None,
            )
        _check("GCP", GCP_SETTINGS, env, {"HML_GCS_BUCKET"} if _env.LAKE_URL.get(env) else set())
        project = env["GCP_PROJECT"]
        dataset = env.get("HML_BQ_DATASET") or "hml"
        bucket = env.get("HML_GCS_BUCKET") or None
        lake_url = _env.LAKE_URL.get(env) or f"gs://{bucket}/hml"
        return cls(
            platform=canonical,
            home=home,
            lake_url=lake_url,
            warehouse_url=_env.WAREHOUSE_URL.get(env) or f"bigquery://{project}/{dataset}",
            gcp_project=project,
            gcp_location=env.get("GCP_LOCATION") or "US",
            gcs_bucket=bucket,
            bq_dataset=dataset,
        )


def check_cluster_platform(platform: str | None, *, what: str, allow_pod_local: bool = False) -> None:
    """Refuse to send ``platform`` to a cluster when its data would stay on one pod's disk.

    Args:
        platform: the ``HML_PLATFORM`` the pods get (``None``: not set, so the package's default, ``local``).
        what: what is being sent (``"pipeline crashed_pipeline"``), named in the message.
        allow_pod_local: send it anyway (a single-node cluster whose pods share a volume at ``HML_HOME``).

    Raises:
        ConfigError: the platform is pod-local and ``allow_pod_local`` is not set.

    Example:
        >>> check_cluster_platform("s3", what="pipeline p")
    """
    if allow_pod_local or (platform is not None and platform.lower() not in POD_LOCAL_PLATFORMS):
        return
    raise ConfigError(
        f"{what} would run on the pod-local platform {(platform or 'local').lower()!r}, where each pod sees only its own empty disk:"
        " give the app cluster_platform='s3' or 'GCP' (HML_CLUSTER_PLATFORM in a baked package),"
        " or pass --allow-pod-local for a single node whose pods share HML_HOME"
    )


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_env_name(name: object) -> str:
    """Return ``name`` if it can name an environment variable of the app, its steps and its pods, else raise ConfigError.

    Letters, digits and ``_``, not starting with a digit: a name every shell and runtime reads. Kubernetes
    would also take ``.`` and ``-`` in a pod's variables, but a shell cannot export such a name, so the
    same step could not run on a laptop or in ``docker run -e``: hmlcore keeps to the rule both share.

    Example:
        >>> check_env_name("GCP_PROJECT")
        'GCP_PROJECT'
    """
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise ConfigError(f"invalid environment variable name {name!r}: use letters, digits and '_', not starting with a digit")
    return name


def debugging() -> bool:
    """Whether ``HML_DEBUG`` asks for tracebacks (set, and not ``0``, ``false``, ``no`` or ``off``)."""
    return _env.DEBUG.get()
