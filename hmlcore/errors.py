"""The exceptions hmlcore raises.

Every error a user can cause derives from :class:`HmlError`, so a caller can catch one type and the CLI
can turn any of them into a one-line message with a non-zero exit code.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConfigError",
    "DeployError",
    "FeatureError",
    "HmlError",
    "ModelKindError",
    "ModelLoadError",
    "PipelineError",
    "RegistryError",
    "UntrustedModelError",
]


class HmlError(Exception):
    """Base class of every error hmlcore raises on purpose."""


class ConfigError(HmlError):
    """Raised if a setting (an argument, an environment variable, a platform option) is missing or invalid."""


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
