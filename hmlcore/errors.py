"""The exceptions hmlcore raises.

Every error a user can cause derives from :class:`HmlError`, so a caller can catch one type and the CLI
can turn any of them into a one-line message with a non-zero exit code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "ConfigError",
    "DataSourceError",
    "DeployError",
    "FeatureError",
    "HmlError",
    "ModelKindError",
    "ModelLoadError",
    "PipelineError",
    "RegistryError",
    "StorageError",
    "UntrustedModelError",
    "WarehouseError",
    "mask_credentials",
]

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/@:]*)(?::(?P<password>[^\s/@]*))?@")
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&](?:password|passwd|pwd|token|access_token|secret|client_secret|api_?key|key|signature|sig"
    r"|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential)=)[^&\s#'\"]+",
    re.IGNORECASE,
)


def mask_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``: passwords, tokens, signatures.

    Every :class:`HmlError` message goes through it, so a password given in ``--host`` or a lake URL never
    reaches a terminal or a log.

    Example:
        >>> mask_credentials("cannot reach https://admin:s3cret@kfp.example.com/pipeline")
        'cannot reach https://admin:***@kfp.example.com/pipeline'
        >>> mask_credentials("s3://bucket/x?X-Amz-Signature=abc&part=1 and https://ghp_token@example.com")
        's3://bucket/x?X-Amz-Signature=***&part=1 and https://***@example.com'
    """

    def userinfo(match: re.Match[str]) -> str:
        if match.group("password") is None:
            return f"{match.group('scheme')}***@"
        return f"{match.group('scheme')}{match.group('user')}:***@"

    return _SECRET_PARAM.sub(r"\g<name>***", _USERINFO.sub(userinfo, text))


class HmlError(Exception):
    """Base class of every error hmlcore raises on purpose; credentials in URLs in its message are masked."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(mask_credentials(arg) if isinstance(arg, str) else arg for arg in args))


class ConfigError(HmlError):
    """Raised if a setting (an argument, an environment variable, a platform option) is missing or invalid."""


class StorageError(HmlError):
    """Raised if the lake's store (a folder, S3, GCS) refuses a write or cannot be reached."""


class WarehouseError(HmlError):
    """Raised if the warehouse (DuckDB, Parquet tables, BigQuery) cannot be opened or fails a query, a load or an export."""


class DataSourceError(HmlError):
    """Raised if a data source (a file's path, a URL, a warehouse table) names nothing, or holds rows that cannot be read."""


class PipelineError(HmlError):
    """Raised if a pipeline or one of its steps is defined wrongly or fails to run."""


class ModelLoadError(HmlError):
    """Raised if a model reference or one of its artifacts is missing, malformed or fails verification."""


class RegistryError(HmlError):
    """Raised if the model registry has no such version, nothing to roll back to, or a record is malformed."""


class UntrustedModelError(ModelLoadError):
    """Raised if a model or its reference is refused as untrusted, before anything of it is executed.

    A pickle without the opt-in, a reference that is unsigned or wrongly signed while a signing key is
    configured, or a pointer, reference or artifact URI that leaves the lake.
    """


class ModelKindError(HmlError):
    """Raised if a model does not fit its container's kind (a regressor where a classifier belongs, another
    number of classes), or is asked for what its kind cannot give (class probabilities of a regressor)."""


class DeployError(HmlError):
    """Raised if a deployment target (Kubeflow Pipelines, Kubernetes) refuses or cannot be reached."""


class FeatureError(HmlError, ValueError):
    """Raised if input data lacks a declared feature or holds a value the model cannot encode.

    Attributes:
        details: one entry per problem, each a dict with at least ``feature`` and ``message``.
    """

    def __init__(self, message: str, details: Sequence[dict] | None = None) -> None:
        super().__init__(message)
        self.details: list[dict] = list(details or [])
