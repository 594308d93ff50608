"""Compile an :class:`~hmlcore.pipelines.HmlPipeline` into a Kubeflow Pipelines v2 spec.

Each op becomes a container component whose image is the app's image and whose command line is the
package's own CLI (``<entrypoint> pipelines <pipeline> run <op> ...``), so a step does exactly the same
thing in the cluster as on a laptop. The ``@hml.deploy_op`` configurators receive each task wrapped in
a :class:`KfpTask` whose ``with_*`` methods reach the spec through kfp and kfp-kubernetes.

This module imports kfp; nothing on the serving path imports it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from hmlcore._files import write_atomic
from hmlcore._resources import merge_resources
from hmlcore._settings import TRAINJOB_ENV, ContainerSettings
from hmlcore.errors import ConfigError, PipelineError
from hmlcore.pipelines.cache import CACHE_ENV, KEY_ENV
from hmlcore.pipelines.ops import KFP_TYPES, Collected, HmlOp, HmlTask, building, render_value
from hmlcore.storage.config import check_cluster_platform, check_env_name

if TYPE_CHECKING:
    from hmlcore.pipelines.dag import HmlPipeline

__all__ = ["CompiledPipeline", "KfpTask", "compile_pipeline", "component_yaml"]

OUTPUT_NAME = "Output"
#: the pipeline run id Kubeflow substitutes at run time: kfp's ``dsl.PIPELINE_JOB_ID_PLACEHOLDER``, named here so that
#: the local runner fills it in without importing kfp
RUN_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"


def component_yaml(op: HmlOp, *, pipeline: str, entrypoint: str, image: str) -> str:
    """The op as a KFP component definition (YAML) whose command runs the package's CLI."""
    inputs: list[dict[str, Any]] = []
    args: list[Any] = []
    for p in op.params:
        spec: dict[str, Any] = {"name": p.name, "type": KFP_TYPES[p.type]}
        if not p.required:  # a default of None is refused when the op is made (HmlOp)
            spec["default"] = render_value(p.default, p.type)
        inputs.append(spec)
        args += [p.option, {"inputValue": p.name}]
    inputs.append({"name": "hml_run_id", "type": "String"})
    args += ["--hml-run-id", {"inputValue": "hml_run_id"}]
    component: dict[str, Any] = {
        "name": op.name,
        "description": op.description.split("\n\n")[0] if op.description else f"step {op.name}",
        "inputs": inputs,
        "implementation": {
            "container": {
                "image": image,
                "command": [entrypoint, "pipelines", pipeline, "run", op.name],
                "args": args,
            }
        },
    }
    if op.return_type is not None:
        component["outputs"] = [{"name": OUTPUT_NAME, "type": KFP_TYPES[op.return_type]}]
        args += ["--hml-output", {"outputPath": OUTPUT_NAME}]
    return yaml.safe_dump(component, sort_keys=False)


class KfpTask(HmlTask, ContainerSettings):
    """A compiled step, as ``@hml.deploy_op`` configurators see it. Every ``with_*`` returns the task.

    Example:
        >>> def configure(op):  # doctest: +SKIP
        ...     return op.with_gcp_auth("svc-account").with_env("GCP_PROJECT", "my-project")
    """

    def __init__(self, op: HmlOp, arguments: dict[str, Any], *, name: str, kfp_task: Any) -> None:
        super().__init__(op, arguments, name=name)
        self.kfp_task = kfp_task
        #: the container's environment (Kubernetes ``EnvVar`` dicts) and resources as configured: what a TrainJob's nodes get too
        self.env: list[dict[str, Any]] = []
        self.resources: dict[str, dict[str, str]] = {}

    def after(self, *tasks: HmlTask) -> KfpTask:
        super().after(*tasks)
        for task in tasks:
            self.kfp_task.after(task.kfp_task)  # type: ignore[attr-defined]
        return self

    def with_env(self, name: str, value: Any) -> KfpTask:
        """Set environment variable ``name`` in the step's container."""
        self.kfp_task.set_env_variable(check_env_name(name), str(value))
        self.env = [e for e in self.env if e["name"] != name] + [{"name": name, "value": str(value)}]
        return self

    def with_secret(self, secret_name: str, mount_path: str) -> KfpTask:
        """Mount Kubernetes secret ``secret_name`` as a volume at ``mount_path``."""
        from kfp import kubernetes

        kubernetes.use_secret_as_volume(self.kfp_task, secret_name=secret_name, mount_path=mount_path)
        return self

    def with_secret_env(self, secret_name: str, keys_to_env: dict[str, str]) -> KfpTask:
        """Expose keys of secret ``secret_name`` as environment variables (``{key: ENV_NAME}``)."""
        from kfp import kubernetes

        kubernetes.use_secret_as_env(self.kfp_task, secret_name=secret_name, secret_key_to_env=dict(keys_to_env))
        for key, env in dict(keys_to_env).items():
            self.env = [e for e in self.env if e["name"] != env]
            self.env.append({"name": env, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}})
        return self

    def with_empty_dir(self, name: str, mount_path: str, *, size_limit: str | None = None) -> KfpTask:
        """Mount an emptyDir volume called ``name`` at ``mount_path``."""
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
        self.kfp_task.set_retry(num_retries=count, backoff_duration=backoff)
        return self

    def with_caching(self, enabled: bool) -> KfpTask:
        """Turn Kubeflow's step caching on or off."""
        self.kfp_task.set_caching_options(bool(enabled))
        return self

    def with_node_selector(self, key: str, value: str) -> KfpTask:
        """Schedule the step only on nodes labelled ``key=value``."""
        from kfp import kubernetes

        kubernetes.add_node_selector(self.kfp_task, label_key=key, label_value=value)
        return self

    def with_toleration(self, key: str, value: str | None = None, effect: str = "NoSchedule", *, operator: str = "Equal") -> KfpTask:
        """Let the step run on nodes with a matching taint."""
        from kfp import kubernetes

        kubernetes.add_toleration(self.kfp_task, key=key, operator=operator, value=value, effect=effect)  # type: ignore[arg-type]
        return self


class _KfpBuilder:
    def __init__(self, pipeline: HmlPipeline, image: str, entrypoint: str) -> None:
        self.pipeline = pipeline
        self.image = image
        self.entrypoint = entrypoint
        self.tasks: list[KfpTask] = []
        self._components: dict[str, Any] = {}

    def component(self, op: HmlOp) -> Any:
        if op.name not in self._components:
            from kfp import components

            text = component_yaml(op, pipeline=self.pipeline.name, entrypoint=self.entrypoint, image=self.image)
            self._components[op.name] = components.load_component_from_text(text)
        return self._components[op.name]

    @contextlib.contextmanager
    def parallel_for(self, items: Any, parallelism: int) -> Iterator[Any]:
        """Kubeflow's ``dsl.ParallelFor`` over ``items`` (a step's list output, or a list)."""
        from kfp import dsl

        value = items.kfp_task.output if isinstance(items, KfpTask) else items
        with dsl.ParallelFor(items=value, parallelism=parallelism or None) as item:
            yield item

    def add_task(self, op: HmlOp, arguments: dict[str, Any]) -> KfpTask:
        from kfp import dsl

        kfp_args = {}
        for key, value in arguments.items():
            if isinstance(value, Collected):
                kfp_args[key] = dsl.Collected(value.task.kfp_task.output)  # type: ignore[attr-defined]
            else:
                kfp_args[key] = value.kfp_task.output if isinstance(value, KfpTask) else value
        kfp_task = self.component(op)(**kfp_args, hml_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        # Kubeflow's own cache stays off: its fingerprint holds every resolved input, hml_run_id (a new value
        # each run) included, and trusts the image's tag. The step's own cache decides instead, with a key
        # computed by the same code in the pod as on a laptop (hmlcore.pipelines.cache).
        kfp_task.set_caching_options(False)
        used = sum(1 for t in self.tasks if t.op is op)
        task = KfpTask(op, arguments, name=op.name if not used else f"{op.name}-{used + 1}", kfp_task=kfp_task)
        app = self.pipeline.owner
        if app.cluster_platform:
            task.with_env("HML_PLATFORM", app.cluster_platform)
        if app.env:
            task.with_envs(app.env)
        for configure in app.op_configurators:
            configured = configure(task)
            if configured is not None and not isinstance(configured, KfpTask):
                raise PipelineError(f"@hml.deploy_op {getattr(configure, '__name__', configure)} must return the task or None")
        # the step's cache key holds these variables' values; HML_PLATFORM (the pods' platform), the TrainJob (where
        # the workers run) and secrets (credentials) say where and as whom the work happens, not what it computes
        unkeyed = ("HML_PLATFORM", CACHE_ENV, TRAINJOB_ENV)
        keyed = sorted({e["name"] for e in task.env if "value" in e and e["name"] not in unkeyed})
        if keyed:
            kfp_task.set_env_variable(KEY_ENV, ",".join(keyed))
        if any(p.name == "workers" for p in op.params):  # a step that trains on workers starts them as a TrainJob
            trainjob = {"image": self.image, "namespace": app.k8s_namespace, "env": task.env, "resources": task.resources}
            task.with_env(TRAINJOB_ENV, json.dumps(trainjob, separators=(",", ":"), sort_keys=True))
        self.tasks.append(task)
        return task


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
    builder = _KfpBuilder(pipeline, image or app.image_url, app.package_entrypoint)
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
    documents = [d for d in yaml.safe_load_all(text) if d]
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
