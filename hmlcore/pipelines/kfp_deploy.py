"""Deploy a pipeline to Kubeflow Pipelines (v2 API) with ``kfp.Client``.

* :func:`deploy_dev` uploads the pipeline as ``<pipeline>-dev`` (a new version, named after the image
  tag, when it exists), ensures
  the experiment ``<experiment>-dev`` and starts one run now.
* :func:`deploy_prod` uploads a new version of ``<pipeline>`` named after the image tag, ensures the
  pipeline's experiment and replaces its recurring run with one on the pipeline's cron schedule
  (``max_concurrency=1``). Deploying twice leaves one pipeline, two versions and one recurring run.

Everything that can fail without the server (compiling, the cron, the host) is checked before the first
request, and a failure after the upload deletes what this deploy uploaded, so a refused deploy leaves
the cluster as it was. Errors are :class:`~hmlcore.errors.DeployError` with a one-line message; the API
calls and their errors are :mod:`hmlcore.pipelines.kfp_client`'s.

Example:
    >>> target = KfpTarget(host="https://kfp.example.com")  # doctest: +SKIP
    >>> deploy_prod(app.pipelines["crashed_pipeline"], target=target).recurring_run_id  # doctest: +SKIP
    '5f0c...'

This module imports kfp; the CLI imports it only when a deploy command runs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hmlcore.errors import ConfigError, DeployError
from hmlcore.pipelines.compiler import compile_pipeline
from hmlcore.pipelines.dag import normalise_cron
from hmlcore.pipelines.kfp_client import KfpSession, KfpTarget
from hmlcore.pipelines.launcher import pipeline_params

if TYPE_CHECKING:
    from hmlcore.pipelines.dag import HmlPipeline

#: ``KfpTarget`` is named here too: the CLI and the deploy functions' callers import it with them
__all__ = ["DeployResult", "KfpTarget", "deploy_dev", "deploy_prod", "version_from_image"]


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
        session = KfpSession(target, echo)
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
        session = KfpSession(target, echo)
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


def _delete_recurring_run(client: Any, job_id: str) -> Any:
    return client.delete_recurring_run(job_id)
