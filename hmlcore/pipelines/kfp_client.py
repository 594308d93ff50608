"""The Kubeflow Pipelines API through ``kfp.Client``, each failure a one-line :class:`~hmlcore.errors.DeployError`.

:class:`KfpTarget` says where and as whom; a :class:`KfpSession` checks the server's health and release
(:data:`MIN_BACKEND` or newer), then finds or creates experiments, uploads pipeline versions (and deletes them
again when a deploy fails after the upload) and lists recurring runs. :mod:`hmlcore.pipelines.kfp_deploy`
decides what a dev or prod deploy does with them.

This module imports kfp when a session starts.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import re
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hmlcore.errors import ConfigError, DeployError, HmlError

__all__ = ["MIN_BACKEND", "KfpSession", "KfpTarget", "check_backend_version"]

#: seconds to wait for the API server to answer the health check
HEALTH_TIMEOUT = 15.0
#: the oldest Kubeflow Pipelines backend the compiled pipelines run on: older drivers leave
#: ``{{$.pipeline_job_uuid}}`` unfilled and cannot read kfp-kubernetes' ``secretNameParameter``
MIN_BACKEND = (2, 5, 0)


@dataclass(frozen=True)
class KfpTarget:
    """Where and as whom to deploy.

    Attributes:
        host: the Kubeflow Pipelines API endpoint, e.g. ``https://kfp.example.com/pipeline``.
        namespace: the Kubernetes namespace (multi-user Kubeflow), ``kubeflow`` otherwise.
        client_id: the OAuth client id of an IAP-protected endpoint.
        existing_token: a bearer token obtained elsewhere.
    """

    host: str
    namespace: str = "kubeflow"
    client_id: str | None = None
    existing_token: str | None = None

    def __post_init__(self) -> None:
        if not self.host or not str(self.host).strip():
            raise ConfigError("no Kubeflow Pipelines host: pass --host or set KFP_HOST")
        if not re.match(r"^https?://[^\s/]+", self.host):
            raise ConfigError(f"Kubeflow Pipelines host {self.host!r} must be a URL like https://kfp.example.com")


class KfpSession:
    """A ``kfp.Client`` whose failures become one-line :class:`DeployError`\\ s."""

    def __init__(self, target: KfpTarget, echo: Callable[[str], None]) -> None:
        import kfp

        class Client(kfp.Client):
            """kfp.Client whose health check asks once, with a timeout (kfp's retries 5 times, 5 s apart).

            It calls the server's API through the client's public per-service attributes (``healthzs``,
            ``pipelines``: kfp.Client makes one for each ``kfp_server_api`` service).
            """

            def get_kfp_healthz(self, sleep_duration: int = 5) -> Any:
                return self.healthzs.healthz_service_get_healthz(_request_timeout=HEALTH_TIMEOUT)

            def get_kfp_release(self) -> str | None:
                """The server's release (healthz ``tag_name``), read from the raw answer: kfp_server_api's model drops it."""
                raw = self.healthzs.healthz_service_get_healthz(_request_timeout=HEALTH_TIMEOUT, _preload_content=False)
                try:
                    tag = json.loads(raw.data or b"{}").get("tag_name")
                except (AttributeError, ValueError):
                    return None
                return str(tag) if tag is not None else None

        self.target = target
        self.echo = echo
        self.ui = target.host.rstrip("/")
        self.client = self.call(
            "check its health",
            lambda _: Client(
                host=target.host,
                namespace=target.namespace or "kubeflow",
                client_id=target.client_id,
                existing_token=target.existing_token,
            ),
        )
        note = check_backend_version(self.call("check its health", lambda c: c.get_kfp_release()), host=target.host)
        if note:
            echo(note)

    def call(self, what: str, action: Callable[..., Any], *args: Any) -> Any:
        """Run ``action(client, *args)``; kfp's own prints are swallowed, its errors become a DeployError."""
        import kfp_server_api

        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                return action(getattr(self, "client", None), *args)
        except kfp_server_api.ApiException as exc:
            status = exc.status or 0
            if status in (401, 403):
                raise DeployError(
                    f"Kubeflow Pipelines at {self.target.host} refused to {what}: HTTP {status} {exc.reason or ''}".rstrip()
                    + " (check --existing-token / --client-id and your access to the namespace)"
                ) from None
            if status == 0:
                raise DeployError(f"cannot reach Kubeflow Pipelines at {self.target.host}: {_reason(exc)}") from None
            raise DeployError(
                f"Kubeflow Pipelines at {self.target.host} failed to {what}: HTTP {status} {_api_message(exc)}".rstrip()
            ) from None
        except HmlError:
            raise
        except Exception as exc:  # noqa: BLE001 - urllib3 and kfp raise many types
            if _is_network_error(exc):
                raise DeployError(f"cannot reach Kubeflow Pipelines at {self.target.host}: {_reason(exc)}") from None
            raise DeployError(f"could not {what} on {self.target.host}: {_reason(exc)}") from exc

    def ensure_experiment(self, name: str) -> str:
        namespace = self.target.namespace
        experiment = self.call(f"find or create experiment {name}", lambda c: c.create_experiment(name=name, namespace=namespace))
        return str(experiment.experiment_id)

    def pipeline_id(self, name: str) -> str | None:
        found = self.call(f"look up pipeline {name}", lambda c: c.get_pipeline_id(name))
        return str(found) if found else None

    def version_exists(self, pipeline_id: str, version: str) -> bool:
        query = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": version}]})
        found = self.call(f"list the versions of {pipeline_id}", lambda c: c.list_pipeline_versions(pipeline_id, filter=query))
        return bool(found.pipeline_versions)

    def upload(self, path: str, *, name: str, version: str, description: str) -> tuple[str, str, str, bool]:
        """Upload ``path`` as version ``version`` of pipeline ``name``, creating the pipeline if needed.

        A version name already taken gets a timestamp (and, if need be, a random) suffix.
        Returns the pipeline id, the version id, the version's name and whether the pipeline is new.
        """
        import kfp_server_api

        pipeline_id = self.pipeline_id(name)
        created = pipeline_id is None
        if pipeline_id is None:
            body = kfp_server_api.V2beta1Pipeline(display_name=name, description=(description or name)[:1000])
            # a pipeline without a version, so that its first version gets our name (upload_pipeline names it after the pipeline)
            made = self.call(f"create pipeline {name}", lambda c: c.pipelines.pipeline_service_create_pipeline(pipeline=body))
            pipeline_id = str(made.pipeline_id)
            self.echo(f"created pipeline {name} ({pipeline_id})")
        else:
            for candidate in (version, f"{version}-{_timestamp()}", f"{version}-{uuid.uuid4().hex[:8]}"):
                if not self.version_exists(pipeline_id, candidate):
                    version = candidate
                    break
        try:
            uploaded = self.call(
                f"upload version {version} of {name}",
                lambda c: c.upload_pipeline_version(
                    path, pipeline_version_name=version, pipeline_id=pipeline_id, description=description or None
                ),
            )
        except DeployError:
            if created:
                self.undo_upload(pipeline_id, None, True)
            raise
        self.echo(f"uploaded version {version} of pipeline {name}")
        return pipeline_id, str(uploaded.pipeline_version_id), version, created

    def undo_upload(self, pipeline_id: str, version_id: str | None, created: bool) -> None:
        """Best effort: delete what :meth:`upload` created (a failure here must not hide the first one)."""
        with contextlib.suppress(DeployError):
            if created:
                versions = (
                    self.call("list versions", lambda c: c.list_pipeline_versions(pipeline_id, page_size=100)).pipeline_versions or []
                )
                for v in versions:
                    self.call("delete a version", _delete_version, pipeline_id, v.pipeline_version_id)
                self.call("delete the pipeline", lambda c: c.delete_pipeline(pipeline_id))
            elif version_id:
                self.call("delete the version", lambda c: c.delete_pipeline_version(pipeline_id, version_id))

    def recurring_runs(self, experiment_id: str, name: str) -> list[str]:
        """The ids of the recurring runs called ``name`` in the experiment."""
        query = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
        found = self.call(
            "list the recurring runs",
            lambda c: c.list_recurring_runs(experiment_id=experiment_id, filter=query, page_size=100),
        )
        return [str(r.recurring_run_id) for r in found.recurring_runs or [] if r.display_name == name]


def check_backend_version(tag: str | None, *, host: str) -> str | None:
    """Refuse a Kubeflow Pipelines backend older than :data:`MIN_BACKEND`, from its healthz ``tag_name``.

    Returns:
        a line to show when the server does not say its version (a development build), else ``None``.

    Raises:
        DeployError: the server's release is older than 2.5.0.

    Example:
        >>> check_backend_version("2.17.0", host="https://kfp")
        >>> check_backend_version("2.4.1", host="https://kfp")
        Traceback (most recent call last):
        ...
        hmlcore.errors.DeployError: Kubeflow Pipelines at https://kfp is 2.4.1; hmlcore needs backend 2.5.0 or newer: upgrade it
    """
    minimum = ".".join(map(str, MIN_BACKEND))
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", str(tag or ""))
    if not match:
        return f"Kubeflow Pipelines at {host} does not say its release (tag_name {tag!r}); hmlcore needs backend {minimum} or newer"
    if tuple(int(part) for part in match.groups()) < MIN_BACKEND:
        raise DeployError(f"Kubeflow Pipelines at {host} is {tag}; hmlcore needs backend {minimum} or newer: upgrade it")
    return None


def _timestamp() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")


def _delete_version(client: Any, pipeline_id: str, version_id: str) -> Any:
    return client.delete_pipeline_version(pipeline_id, version_id)


def _api_message(exc: Any) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return str(exc.reason or "")
    message = body.get("message") or body.get("error") or exc.reason or ""
    return str(message).splitlines()[0] if message else ""


def _is_network_error(exc: BaseException) -> bool:
    import urllib3

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    import urllib3

    reason: Any = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        reason = exc.reason
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    match = re.search(r"\[Errno -?\d+\] ([^')\"]+)", text)
    if match:
        text = match.group(1)
    return text
