"""What the app, a pipeline step and the inference deployment share: chained environment, GCP and S3 settings.

Each class says how to set one variable (``with_env``) and, for containers, how to mount a secret
(``with_secret``); the chains built on them are written once here, so a step and a pod authenticate to
GCP the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

__all__ = ["GCP_KEY", "GCP_MOUNT_PATH", "KFP_ARTIFACT_SECRET", "ContainerSettings", "EnvSettings"]

#: the key in the secret that holds the service-account JSON, and where ``with_gcp_auth`` mounts it
GCP_KEY = "user-gcp-sa.json"
GCP_MOUNT_PATH = "/secret/gcp-credentials"
#: Kubeflow Pipelines' own object-store credentials (keys ``accesskey`` and ``secretkey``), in every KFP install
KFP_ARTIFACT_SECRET = "mlpipeline-minio-artifact"


class EnvSettings:
    """``with_envs`` for anything with a ``with_env``."""

    def with_env(self, name: str, value: Any) -> Self:
        raise NotImplementedError

    def with_envs(self, values: Mapping[str, Any]) -> Self:
        """Set several environment variables (``{name: value}``)."""
        for name, value in dict(values).items():
            self.with_env(name, value)
        return self


class ContainerSettings(EnvSettings):
    """``with_gcp_auth`` for anything with ``with_env`` and ``with_secret``."""

    def with_secret(self, secret_name: str, mount_path: str) -> Self:
        raise NotImplementedError

    def with_secret_env(self, secret_name: str, keys_to_env: dict[str, str]) -> Self:
        raise NotImplementedError

    def with_s3_auth(self, secret_name: str = KFP_ARTIFACT_SECRET, *, access_key: str = "accesskey", secret_key: str = "secretkey") -> Self:
        """Authenticate to S3 with the keys of Kubernetes secret ``secret_name`` (default: Kubeflow Pipelines' own).

        ``access_key`` and ``secret_key`` name the secret's keys; they become ``AWS_ACCESS_KEY_ID`` and
        ``AWS_SECRET_ACCESS_KEY``, which s3fs (botocore) reads.
        """
        return self.with_secret_env(secret_name, {access_key: "AWS_ACCESS_KEY_ID", secret_key: "AWS_SECRET_ACCESS_KEY"})

    def with_gcp_auth(self, secret_name: str, *, key: str = GCP_KEY, mount_path: str = GCP_MOUNT_PATH) -> Self:
        """Authenticate to GCP with the service-account key ``key`` in Kubernetes secret ``secret_name``.

        The secret is mounted at ``mount_path`` and ``GOOGLE_APPLICATION_CREDENTIALS`` points at the key.
        """
        self.with_secret(secret_name, mount_path)
        return self.with_env("GOOGLE_APPLICATION_CREDENTIALS", f"{mount_path.rstrip('/')}/{key}")
