"""``KfpTask``: a compiled step as ``@hml.deploy_op`` configurators see it, its ``with_*`` methods reaching kfp.

Each ``with_*`` call sets the step's container through kfp and kfp-kubernetes, and keeps the environment and
resources it sets (a TrainJob's nodes get the same). In a dry run (:func:`~hmlcore.pipelines.dry_run.spec_key`)
the calls are noted instead, in order, and kfp is not imported.

Example:
    >>> def configure(op):  # doctest: +SKIP
    ...     return op.with_gcp_auth("svc-account").with_env("GCP_PROJECT", "my-project")
"""

from __future__ import annotations

from typing import Any

from hmlcore._resources import merge_resources
from hmlcore._settings import ContainerSettings
from hmlcore.errors import ConfigError, PipelineError
from hmlcore.pipelines.ops import HmlOp, HmlTask
from hmlcore.storage.config import check_env_name

__all__ = ["KfpTask", "Undescribed"]


class KfpTask(HmlTask, ContainerSettings):
    """A compiled step, as ``@hml.deploy_op`` configurators see it. Every ``with_*`` returns the task.

    Example:
        >>> def configure(op):  # doctest: +SKIP
        ...     return op.with_gcp_auth("svc-account").with_env("GCP_PROJECT", "my-project")
    """

    def __init__(self, op: HmlOp, arguments: dict[str, Any], *, name: str, kfp_task: Any, notes: list[Any] | None = None) -> None:
        super().__init__(op, arguments, name=name)
        self._kfp_task = kfp_task
        #: in a dry run (:func:`~hmlcore.pipelines.dry_run.spec_key`): each ``with_*`` call and its arguments, in order, not kfp's spec
        self._notes = notes
        #: the container's environment (Kubernetes ``EnvVar`` dicts) and resources as configured: what a TrainJob's nodes get too
        self.env: list[dict[str, Any]] = []
        self.resources: dict[str, dict[str, str]] = {}

    @property
    def kfp_task(self) -> Any:
        """kfp's ``PipelineTask`` of this step (for what the ``with_*`` methods do not cover)."""
        if self._kfp_task is None:
            raise Undescribed(f"step {self.name}'s kfp task is used directly")
        return self._kfp_task

    def _applies(self, method: str, *args: Any, **kwargs: Any) -> bool:
        """Note the call in a dry run (and return False), else return True: the caller applies it to kfp's task."""
        if self._notes is None:
            return True
        self._notes.append([self.name, method, list(args), kwargs])
        return False

    def after(self, *tasks: HmlTask) -> KfpTask:
        super().after(*tasks)
        if self._applies("after", *[task.name for task in tasks]):
            for task in tasks:
                self.kfp_task.after(task.kfp_task)  # type: ignore[attr-defined]
        return self

    def with_env(self, name: str, value: Any) -> KfpTask:
        """Set environment variable ``name`` in the step's container."""
        check_env_name(name)
        if self._applies("with_env", name, str(value)):
            self.kfp_task.set_env_variable(name, str(value))
        self.env = [e for e in self.env if e["name"] != name] + [{"name": name, "value": str(value)}]
        return self

    def with_secret(self, secret_name: str, mount_path: str) -> KfpTask:
        """Mount Kubernetes secret ``secret_name`` as a volume at ``mount_path``."""
        if self._applies("with_secret", secret_name, mount_path):
            from kfp import kubernetes

            kubernetes.use_secret_as_volume(self.kfp_task, secret_name=secret_name, mount_path=mount_path)
        return self

    def with_secret_env(self, secret_name: str, keys_to_env: dict[str, str]) -> KfpTask:
        """Expose keys of secret ``secret_name`` as environment variables (``{key: ENV_NAME}``)."""
        if self._applies("with_secret_env", secret_name, dict(keys_to_env)):
            from kfp import kubernetes

            kubernetes.use_secret_as_env(self.kfp_task, secret_name=secret_name, secret_key_to_env=dict(keys_to_env))
        for key, env in dict(keys_to_env).items():
            self.env = [e for e in self.env if e["name"] != env]
            self.env.append({"name": env, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}})
        return self

    def with_empty_dir(self, name: str, mount_path: str, *, size_limit: str | None = None) -> KfpTask:
        """Mount an emptyDir volume called ``name`` at ``mount_path``."""
        if self._applies("with_empty_dir", name, mount_path, size_limit=size_limit):
            from kfp import kubernetes

            kubernetes.empty_dir_mount(self.kfp_task, volume_name=name, mount_path=mount_path, size_limit=size_limit)
        return self

    def with_resources(
        self,
        *,
        cpu_request: str | None = None,
        cpu_limit: str | None = None,
        memory_request: str | None = None,
        memory_limit: str | None = None,
    ) -> KfpTask:
        """Set CPU and memory requests and limits (``"500m"``, ``"2"``, ``"1Gi"``...); a request may not exceed its limit."""
        given = {"cpu_request": cpu_request, "cpu_limit": cpu_limit, "memory_request": memory_request, "memory_limit": memory_limit}
        try:
            merged = merge_resources(self.resources, **given)
        except ConfigError as exc:
            raise ConfigError(f"step {self.name}: {exc}") from None
        if self._applies("with_resources", **{label: str(value) for label, value in given.items() if value is not None}):
            setters = {
                "cpu_request": self.kfp_task.set_cpu_request,
                "cpu_limit": self.kfp_task.set_cpu_limit,
                "memory_request": self.kfp_task.set_memory_request,
                "memory_limit": self.kfp_task.set_memory_limit,
            }
            for label, value in given.items():
                if value is None:
                    continue
                try:
                    setters[label](str(value))
                except ValueError as exc:
                    raise ConfigError(f"step {self.name}: {label} {value!r} is invalid: {exc}") from None
        self.resources = {kind: values for kind, values in merged.items() if values}
        return self

    def with_retries(self, count: int, *, backoff: str = "60s") -> KfpTask:
        """Retry the step up to ``count`` times."""
        if not isinstance(count, int) or count < 0:
            raise ConfigError(f"retries must be a non-negative integer, got {count!r}")
        if self._applies("with_retries", count, backoff=backoff):
            self.kfp_task.set_retry(num_retries=count, backoff_duration=backoff)
        return self

    def with_caching(self, enabled: bool) -> KfpTask:
        """Turn Kubeflow's step caching on or off."""
        if self._applies("with_caching", bool(enabled)):
            self.kfp_task.set_caching_options(bool(enabled))
        return self

    def with_node_selector(self, key: str, value: str) -> KfpTask:
        """Schedule the step only on nodes labelled ``key=value``."""
        if self._applies("with_node_selector", key, value):
            from kfp import kubernetes

            kubernetes.add_node_selector(self.kfp_task, label_key=key, label_value=value)
        return self

    def with_toleration(self, key: str, value: str | None = None, effect: str = "NoSchedule", *, operator: str = "Equal") -> KfpTask:
        """Let the step run on nodes with a matching taint."""
        if self._applies("with_toleration", key, value, effect, operator=operator):
            from kfp import kubernetes

            kubernetes.add_toleration(self.kfp_task, key=key, operator=operator, value=value, effect=effect)  # type: ignore[arg-type]
        return self


class Undescribed(PipelineError):
    """Raised in a dry run when the pipeline does something its description cannot hold (kfp's task used directly)."""
