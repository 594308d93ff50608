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
import hashlib
import importlib.metadata
import inspect
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from hmlcore import _env
from hmlcore._files import write_atomic
from hmlcore._resources import merge_resources
from hmlcore._settings import ContainerSettings
from hmlcore.errors import ConfigError, PipelineError
from hmlcore.pipelines.cache import CACHE_ENV, KEY_ENV, code_digest
from hmlcore.pipelines.ops import Collected, HmlOp, HmlTask, building
from hmlcore.pipelines.values import KFP_TYPES, render_value
from hmlcore.storage.config import check_cluster_platform, check_env_name

if TYPE_CHECKING:
    from hmlcore.pipelines.dag import HmlPipeline

__all__ = ["CompiledPipeline", "KfpTask", "compile_pipeline", "component_yaml", "spec_key"]

OUTPUT_NAME = "Output"
#: the pipeline run id Kubeflow substitutes at run time: kfp's ``dsl.PIPELINE_JOB_ID_PLACEHOLDER``, named here so that
#: the local runner fills it in without importing kfp
RUN_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"
#: libyaml's safe loader when PyYAML was built with it (ten times faster on a compiled spec), else the pure-Python one
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def component_yaml(op: HmlOp, *, pipeline: str, entrypoint: str, image: str) -> str:
    """The op as a KFP component definition (YAML) whose command runs the package's CLI."""
    return yaml.safe_dump(_component(op, pipeline=pipeline, entrypoint=entrypoint, image=image), sort_keys=False)


def _component(op: HmlOp, *, pipeline: str, entrypoint: str, image: str) -> dict[str, Any]:
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
    return component


class KfpTask(HmlTask, ContainerSettings):
    """A compiled step, as ``@hml.deploy_op`` configurators see it. Every ``with_*`` returns the task.

    Example:
        >>> def configure(op):  # doctest: +SKIP
        ...     return op.with_gcp_auth("svc-account").with_env("GCP_PROJECT", "my-project")
    """

    def __init__(self, op: HmlOp, arguments: dict[str, Any], *, name: str, kfp_task: Any, notes: list[Any] | None = None) -> None:
        super().__init__(op, arguments, name=name)
        self._kfp_task = kfp_task
        #: in a dry run (:func:`spec_key`): each ``with_*`` call's name and arguments, in order, instead of kfp's spec
        self._notes = notes
        #: the container's environment (Kubernetes ``EnvVar`` dicts) and resources as configured: what a TrainJob's nodes get too
        self.env: list[dict[str, Any]] = []
        self.resources: dict[str, dict[str, str]] = {}

    @property
    def kfp_task(self) -> Any:
        """kfp's ``PipelineTask`` of this step (for what the ``with_*`` methods do not cover)."""
        if self._kfp_task is None:
            raise _Undescribed(f"step {self.name}'s kfp task is used directly")
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


class _Undescribed(PipelineError):
    """Raised in a dry run when the pipeline does something its description cannot hold (kfp's task used directly)."""


class _Stand:
    """Stands for a pipeline parameter or a loop item in a dry run: passed to steps, written in strings."""

    def __init__(self, *path: Any) -> None:
        self.path = list(path)

    def __str__(self) -> str:
        return "{{hml:" + json.dumps(self.path) + "}}"

    def __getattr__(self, name: str) -> _Stand:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stand(*self.path, name)

    def __getitem__(self, key: Any) -> _Stand:
        return _Stand(*self.path, [key])


class _KfpBuilder:
    def __init__(self, pipeline: HmlPipeline, image: str, entrypoint: str, *, notes: list[Any] | None = None) -> None:
        self.pipeline = pipeline
        self.image = image
        self.entrypoint = entrypoint
        self.tasks: list[KfpTask] = []
        self._components: dict[str, Any] = {}
        #: a dry run (no kfp): what the pipeline and its configurators did, in order (see :func:`spec_key`)
        self.notes = notes
        self._loops = 0

    def component(self, op: HmlOp) -> Any:
        if op.name not in self._components:
            if self.notes is not None:
                self.notes.append(["component", _component(op, pipeline=self.pipeline.name, entrypoint=self.entrypoint, image=self.image)])
                self._components[op.name] = None
            else:
                from kfp import components

                text = component_yaml(op, pipeline=self.pipeline.name, entrypoint=self.entrypoint, image=self.image)
                self._components[op.name] = components.load_component_from_text(text)
        return self._components[op.name]

    @contextlib.contextmanager
    def parallel_for(self, items: Any, parallelism: int) -> Iterator[Any]:
        """Kubeflow's ``dsl.ParallelFor`` over ``items`` (a step's list output, or a list)."""
        if self.notes is not None:
            self._loops += 1
            self.notes.append(["loop", _described(items), parallelism])
            yield _Stand("item", self._loops)
            self.notes.append(["end loop"])
            return
        from kfp import dsl

        value = items.kfp_task.output if isinstance(items, KfpTask) else items
        with dsl.ParallelFor(items=value, parallelism=parallelism or None) as item:
            yield item

    def add_task(self, op: HmlOp, arguments: dict[str, Any]) -> KfpTask:
        component = self.component(op)
        used = sum(1 for t in self.tasks if t.op is op)
        name = op.name if not used else f"{op.name}-{used + 1}"
        if self.notes is not None:
            self.notes.append(["task", name, {key: _described(value) for key, value in sorted(arguments.items())}])
            kfp_task = None
        else:
            from kfp import dsl

            kfp_args = {}
            for key, value in arguments.items():
                if isinstance(value, Collected):
                    kfp_args[key] = dsl.Collected(value.task.kfp_task.output)  # type: ignore[attr-defined]
                else:
                    kfp_args[key] = value.kfp_task.output if isinstance(value, KfpTask) else value
            kfp_task = component(**kfp_args, hml_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
            # Kubeflow's own cache stays off: its fingerprint holds every resolved input, hml_run_id (a new value
            # each run) included, and trusts the image's tag. The step's own cache decides instead, with a key
            # computed by the same code in the pod as on a laptop (hmlcore.pipelines.cache).
            kfp_task.set_caching_options(False)
        task = KfpTask(op, arguments, name=name, kfp_task=kfp_task, notes=self.notes)
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
        unkeyed = ("HML_PLATFORM", CACHE_ENV, _env.TRAINJOB.name)
        keyed = sorted({e["name"] for e in task.env if "value" in e and e["name"] not in unkeyed})
        if keyed and kfp_task is not None:
            kfp_task.set_env_variable(KEY_ENV, ",".join(keyed))
        if any(p.name == "workers" for p in op.params):  # a step that trains on workers starts them as a TrainJob
            trainjob = {"image": self.image, "namespace": app.k8s_namespace, "env": task.env, "resources": task.resources}
            task.with_env(_env.TRAINJOB.name, json.dumps(trainjob, separators=(",", ":"), sort_keys=True))
        self.tasks.append(task)
        return task


def _parameter_default(param: Any) -> Any:
    return {"required": True} if param.required else _described(param.default)


def _described(value: Any) -> Any:
    """A step's argument in a dry run's notes: a task's or a stand-in's name, else the value itself (JSON)."""
    if isinstance(value, HmlTask):
        return {"task": value.name}
    if isinstance(value, Collected):
        return {"collected": value.task.name}
    if isinstance(value, _Stand):
        return {"stand": value.path}
    if isinstance(value, list | tuple):
        return [_described(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _described(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise _Undescribed(f"an argument of type {type(value).__name__} has no stable description")


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
    documents = [d for d in yaml.load_all(text, Loader=_YAML_LOADER) if d]
    compiled = CompiledPipeline(text=text, spec=documents[0], platform_spec=documents[1] if len(documents) > 1 else {})
    if for_cluster:
        compiled.check_cluster_platform(allow_pod_local=allow_pod_local)
    if output_path and folder:
        try:
            write_atomic(output_path, text)
        except OSError as exc:
            raise PipelineError(f"cannot write {output_path}: {exc.strerror or exc}") from exc
    return compiled


def spec_key(pipeline: HmlPipeline, *, image: str | None = None) -> str | None:
    """A digest of everything ``pipeline``'s compiled spec is made from, found without kfp; ``None`` if it cannot be told.

    A dry run calls the pipeline function (its parameters and loop items as stand-ins) and every
    ``@hml.deploy_op`` configurator with tasks that note each ``with_*`` call instead of applying it. The
    digest holds those notes in order (every step, its arguments, each environment variable, secret,
    volume and resource it is given), each step's component, the pipeline's name, description and
    parameters, the app's settings the compile reads, hmlcore's code, the installed distributions and
    kfp's version. A setting read from the environment or a file (at import, in a configurator) reaches
    the spec only through these calls, so it changes the key exactly when it changes the spec; an
    unrelated variable, or an edit inside a step's body, does not.

    Returns ``None`` (compile every time) when the dry run raises, an argument has no stable description,
    or the pipeline reaches kfp's task directly (``task.kfp_task``): what it does there is not noted.

    Example:
        >>> spec_key(app.pipelines["crashed_pipeline"])  # doctest: +SKIP
        '9b1f...'
    """
    app = pipeline.owner
    notes: list[Any] = []
    builder = _KfpBuilder(pipeline, image or app.image_url, app.package_entrypoint, notes=notes)
    try:
        with building(builder):
            pipeline.func(**{p.name: _Stand("param", p.name) for p in pipeline.params})
        described = {
            "format": 1,
            "code": code_digest("hmlcore"),  # the compiler's own code, the installed distributions (kfp's version), Python's
            "kfp": importlib.metadata.version("kfp"),
            "pipeline": [pipeline.name, pipeline.description, [[p.name, p.type.__name__, _parameter_default(p)] for p in pipeline.params]],
            "app": [app.name, app.package_entrypoint, builder.image, app.cluster_platform, app.k8s_namespace, _described(dict(app.env))],
            "notes": notes,
        }
        text = json.dumps(described, sort_keys=True, allow_nan=True)
    except Exception:  # noqa: BLE001 - the real compile reports what is wrong; this only decides whether to reuse a spec
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def _kfp_name(name: str) -> str:
    return name.replace("_", "-").lower()
