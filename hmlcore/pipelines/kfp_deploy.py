"""Deploy a pipeline to Kubeflow Pipelines (v2 API) with ``kfp.Client``.

* :func:`deploy_dev` uploads the pipeline as ``<pipeline>-dev`` (a new version, named after the image
  tag, when it exists), ensures
  the experiment ``<experiment>-dev`` and starts one run now.
* :func:`deploy_prod` uploads a new version of ``<pipeline>`` named after the image tag, ensures the
  pipeline's experiment and replaces its recurring run with one on the pipeline's cron schedule
  (``max_concurrency=1``). Deploying twice leaves one pipeline, two versions and one recurring run.

Everything that can fail without the server (compiling, the cron, the host) is checked before the first
request, and a failure after the upload deletes what this deploy uploaded, so a refused deploy leaves
the cluster as it was. Errors are :class:`~hmlcore.errors.DeployError` with a one-line message.

Example:
    >>> target = KfpTarget(host="https://kfp.example.com")  # doctest: +SKIP
    >>> deploy_prod(app.pipelines["crashed_pipeline"], target=target).recurring_run_id  # doctest: +SKIP
    '5f0c...'

This module imports kfp; the CLI imports it only when a deploy command runs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import os
import re
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hmlcore.errors import ConfigError, DeployError, HmlError
from hmlcore.pipelines.compiler import compile_pipeline
from hmlcore.pipelines.dag import normalise_cron
from hmlcore.pipelines.launcher import pipeline_params

if TYPE_CHECKING:
    from hmlcore.pipelines.dag import HmlPipeline

__all__ = ["MIN_BACKEND", "DeployResult", "KfpTarget", "check_backend_version", "deploy_dev", "deploy_prod", "version_from_image"]

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


@dataclass(frozen=True)
class DeployResult:
    """What a deploy created.

    Attributes:
        pipeline_id: the Kubeflow pipeline's id.
        pipeline_name: its display name.
        version_id: the uploaded version's id.
        version_name: the uploaded version's display name.
        experiment_id: the experiment's id.
        run_id: the run started (``deploy_dev``), else ``None``.
        recurring_run_id: the recurring run created (``deploy_prod``), else ``None``.
        url: the run's or the recurring run's page in the Kubeflow UI.
        replaced: the ids of the recurring runs this deploy removed.
    """

    pipeline_id: str
    pipeline_name: str
    version_id: str
    version_name: str
    experiment_id: str
    url: str
    run_id: str | None = None
    recurring_run_id: str | None = None
    replaced: tuple[str, ...] = ()


def version_from_image(image: str) -> str:
    """The version name an image implies: its tag, or the start of its digest.

    Example:
        >>> version_from_image("ghcr.io/acme/car-crashes:3f2a9c1"), version_from_image("car-crashes")
        ('3f2a9c1', 'latest')
    """
    name, at, digest = image.partition("@")
    if at:
        return digest.split(":")[-1][:12]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def _timestamp() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")


def deploy_dev(
    pipeline: HmlPipeline,
    *,
    target: KfpTarget,
    image: str | None = None,
    params: dict[str, Any] | None = None,
    echo: Callable[[str], None] = lambda line: None,
    allow_pod_local: bool = False,
) -> DeployResult:
    """Upload ``pipeline`` as ``<pipeline>-dev`` and start one run now in experiment ``<experiment>-dev``.

    Args:
        target: the Kubeflow Pipelines endpoint and credentials.
        image: the image the steps run in (default: the app's image).
        params: pipeline parameter values for the run (strings are parsed by type).
        echo: where progress lines go.
        allow_pod_local: deploy steps on a pod-local platform anyway (one node whose pods share a volume).

    Raises:
        DeployError: the server cannot be reached or refuses a request; nothing this deploy uploaded is left.
        PipelineError: the pipeline does not compile or a parameter is bad (nothing was sent).
    """
    image = image or pipeline.owner.image_url
    name = f"{pipeline.name}-dev"
    experiment = f"{pipeline.experiment}-dev"
    version = version_from_image(image)
    with _compiled(pipeline, image, allow_pod_local) as (path, spec):
        given = params or {}
        values = {k: v for k, v in pipeline_params(spec, given).items() if k in given}
        session = _Session(target, echo)
        experiment_id = session.ensure_experiment(experiment)
        pipeline_id, version_id, version, created = session.upload(path, name=name, version=version, description=pipeline.description)
        try:
            run = session.call(
                f"start a run of {name}",
                lambda c: c.run_pipeline(
                    experiment_id=experiment_id,
                    job_name=f"{name} {version}",
                    pipeline_id=pipeline_id,
                    version_id=version_id,
                    params=values,
                ),
            )
        except DeployError:
            session.undo_upload(pipeline_id, version_id, created)
            raise
    url = f"{session.ui}/#/runs/details/{run.run_id}"
    echo(f"started run {run.run_id} of {name} version {version} in experiment {experiment}")
    return DeployResult(pipeline_id, name, version_id, version, experiment_id, url, run_id=run.run_id)


def deploy_prod(
    pipeline: HmlPipeline,
    *,
    target: KfpTarget,
    image: str | None = None,
    version: str | None = None,
    cron: str | None = None,
    echo: Callable[[str], None] = lambda line: None,
    allow_pod_local: bool = False,
) -> DeployResult:
    """Upload a new version of ``pipeline`` and schedule it: one recurring run on its cron, in its experiment.

    Args:
        target: the Kubeflow Pipelines endpoint and credentials.
        image: the image the steps run in (default: the app's image).
        version: the version's name (default: the image tag; a timestamp is added if the name is taken).
        cron: the schedule, 5- or 6-field (default: the ``cron`` of ``@hml.pipeline``).
        echo: where progress lines go.
        allow_pod_local: deploy steps on a pod-local platform anyway (one node whose pods share a volume).

    Raises:
        ConfigError: the pipeline has no cron or the cron is invalid (nothing was sent).
        DeployError: the server cannot be reached or refuses a request; nothing this deploy uploaded is left.
        PipelineError: the pipeline does not compile (nothing was sent).
    """
    schedule = normalise_cron(cron) if cron else pipeline.cron
    if not schedule:
        raise ConfigError(f"pipeline {pipeline.name} has no schedule: give @hml.pipeline(cron='0 0 * * *') or --cron")
    image = image or pipeline.owner.image_url
    name = pipeline.name
    experiment = pipeline.experiment
    with _compiled(pipeline, image, allow_pod_local) as (path, _spec):
        session = _Session(target, echo)
        experiment_id = session.ensure_experiment(experiment)
        pipeline_id, version_id, wanted, created = session.upload(
            path, name=name, version=version or version_from_image(image), description=pipeline.description
        )
        try:
            old = session.recurring_runs(experiment_id, name)
            job = session.call(
                f"create the recurring run of {name}",
                lambda c: c.create_recurring_run(
                    experiment_id=experiment_id,
                    job_name=name,
                    description=f"{name} version {wanted} on '{schedule}'",
                    cron_expression=schedule,
                    max_concurrency=1,
                    no_catchup=True,
                    pipeline_id=pipeline_id,
                    version_id=version_id,
                ),
            )
        except DeployError:
            session.undo_upload(pipeline_id, version_id, created)
            raise
        for job_id in old:
            session.call(f"delete the old recurring run {job_id}", _delete_recurring_run, job_id)
    url = f"{session.ui}/#/recurringrun/details/{job.recurring_run_id}"
    echo(f"scheduled {name} version {wanted} on '{schedule}' in experiment {experiment}" + (f", replacing {len(old)}" if old else ""))
    return DeployResult(
        pipeline_id, name, version_id, wanted, experiment_id, url, recurring_run_id=job.recurring_run_id, replaced=tuple(old)
    )


@contextlib.contextmanager
def _compiled(pipeline: HmlPipeline, image: str, allow_pod_local: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    with tempfile.TemporaryDirectory(prefix="hml-deploy-") as folder:
        path = os.path.join(folder, f"{pipeline.name}.yaml")
        compiled = compile_pipeline(pipeline, path, image=image, for_cluster=True, allow_pod_local=allow_pod_local)
        yield path, compiled.spec


class _Session:
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


def _delete_recurring_run(client: Any, job_id: str) -> Any:
    return client.delete_recurring_run(job_id)


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
