"""Compile an :class:`~hmlcore.pipelines.HmlPipeline` into a Kubeflow Pipelines v2 spec with kfp's compiler.

The pipeline function is called with a :class:`~hmlcore.pipelines.tasks.KfpBuilder`, which turns each op call
into a kfp task running the package's own CLI and hands it to the ``@hml.deploy_op`` configurators as a
:class:`~hmlcore.pipelines.kfp_task.KfpTask`; kfp's compiler writes the spec, read back as a :class:`CompiledPipeline`.

This module imports kfp when it compiles; nothing on the serving path imports it.
"""

from __future__ import annotations

import functools
import inspect
import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hmlcore._files import write_atomic
from hmlcore.errors import ConfigError, PipelineError
from hmlcore.pipelines.ops import building
from hmlcore.pipelines.tasks import KfpBuilder
from hmlcore.storage.config import check_cluster_platform

if TYPE_CHECKING:
    from hmlcore.pipelines.dag import HmlPipeline

__all__ = ["RUN_ID_PLACEHOLDER", "CompiledPipeline", "compile_pipeline"]

#: the pipeline run id Kubeflow substitutes at run time: kfp's ``dsl.PIPELINE_JOB_ID_PLACEHOLDER``, named here so that
#: the local runner fills it in without importing kfp
RUN_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"


@dataclass(frozen=True)
class CompiledPipeline:
    """A compiled pipeline.

    Attributes:
        text: the YAML exactly as kfp's compiler wrote it (the pipeline spec, then the Kubernetes
            platform spec as a second document when a configurator added any).
        spec: the pipeline spec (``components``, ``deploymentSpec``, ``root``...).
        platform_spec: the ``platforms`` document (``{}`` when there is none).
    """

    text: str
    spec: dict[str, Any]
    platform_spec: dict[str, Any]

    def step_platforms(self) -> dict[str, str | None]:
        """The ``HML_PLATFORM`` each executor's container gets (``None``: not set)."""
        found: dict[str, str | None] = {}
        for label, executor in self.spec.get("deploymentSpec", {}).get("executors", {}).items():
            env = {e["name"]: e.get("value") for e in executor.get("container", {}).get("env", [])}
            found[label] = env.get("HML_PLATFORM")
        return found

    def check_cluster_platform(self, *, allow_pod_local: bool = False) -> None:
        """Refuse the spec for a cluster if a step would keep its data on its pod's own disk.

        Raises:
            ConfigError: a step runs on a pod-local platform (see :func:`hmlcore.storage.config.check_cluster_platform`).
        """
        name = self.spec.get("pipelineInfo", {}).get("name", "the pipeline")
        for label, platform in self.step_platforms().items():
            check_cluster_platform(platform, what=f"pipeline {name} (step {label.removeprefix('exec-')})", allow_pod_local=allow_pod_local)

    @property
    def kubernetes(self) -> dict[str, Any]:
        """The Kubernetes config of each executor: ``{"exec-train-model": {"secretAsVolume": [...]}}``."""
        platforms = self.platform_spec.get("platforms", {})
        return dict(platforms.get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {}))


def compile_pipeline(
    pipeline: HmlPipeline,
    output_path: str | None = None,
    *,
    image: str | None = None,
    for_cluster: bool = False,
    allow_pod_local: bool = False,
) -> CompiledPipeline:
    """Compile ``pipeline`` with the kfp compiler; write the YAML to ``output_path`` if given.

    The file is written atomically: a failed compile leaves no file behind (and an earlier file intact).

    Args:
        output_path: where to write the YAML (nothing is written without it).
        image: the image steps run in (default: the app's image).
        for_cluster: the spec goes to a cluster: refuse it if a step would run on a pod-local platform
            (:meth:`CompiledPipeline.check_cluster_platform`); ``run-all`` compiles without it.
        allow_pod_local: with ``for_cluster``, accept a pod-local platform (one node whose pods share a volume).

    Example:
        >>> compiled = compile_pipeline(app.pipelines["crashed_pipeline"], "crashed_pipeline.yaml")  # doctest: +SKIP
        >>> list(compiled.spec["root"]["dag"]["tasks"])  # doctest: +SKIP
        ['extract', 'analyze-features', ...]

    Raises:
        PipelineError: the pipeline does not compile (the message says why), or ``output_path`` cannot be written.
        ConfigError: a ``@hml.deploy_op`` configurator was given a bad value, or ``for_cluster`` and a step
            would run on a pod-local platform.
    """
    from kfp import compiler, dsl

    app = pipeline.owner
    folder = os.path.dirname(os.path.abspath(output_path)) if output_path else None
    if folder and not os.path.isdir(folder):
        raise PipelineError(f"cannot write {output_path}: folder {folder} does not exist")
    builder = KfpBuilder(pipeline, image or app.image_url, app.package_entrypoint)
    func = pipeline.func

    @functools.wraps(func)
    def body(*args: Any, **kwargs: Any) -> None:
        with building(builder):
            func(*args, **kwargs)

    body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default, annotation=p.type) for p in pipeline.params]
    )
    body.__annotations__ = {p.name: p.type for p in pipeline.params}
    try:
        kfp_pipeline = dsl.pipeline(name=_kfp_name(pipeline.name), description=pipeline.description or None)(body)
        with tempfile.TemporaryDirectory(prefix="hml-compile-") as scratch:
            path = os.path.join(scratch, "pipeline.yaml")
            compiler.Compiler().compile(kfp_pipeline, path)
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except (PipelineError, ConfigError):
        raise
    except Exception as exc:  # noqa: BLE001 - kfp raises many types; report one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PipelineError(f"pipeline {pipeline.name} does not compile: {type(exc).__name__}: {message}") from exc
    if not builder.tasks:
        raise PipelineError(f"pipeline {pipeline.name} calls no @hml.op step")
    import yaml  # only a compile reads YAML: run-all with a kept spec never needs it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when PyYAML has it: ten times faster on a spec
    documents = [d for d in yaml.load_all(text, Loader=loader) if d]
    compiled = CompiledPipeline(text=text, spec=documents[0], platform_spec=documents[1] if len(documents) > 1 else {})
    if for_cluster:
        compiled.check_cluster_platform(allow_pod_local=allow_pod_local)
    if output_path and folder:
        try:
            write_atomic(output_path, text)
        except OSError as exc:
            raise PipelineError(f"cannot write {output_path}: {exc.strerror or exc}") from exc
    return compiled


def _kfp_name(name: str) -> str:
    return name.replace("_", "-").lower()
