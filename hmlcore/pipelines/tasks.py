"""A pipeline function's op calls turned into kfp tasks, or, in a dry run, into notes of what they would be.

:func:`~hmlcore.pipelines.compiler.compile_pipeline` calls the pipeline function with a :class:`KfpBuilder`:
each op becomes a container component whose image is the app's image and whose command line is the package's
own CLI (``<entrypoint> pipelines <pipeline> run <op> ...``), so a step does the same thing in the cluster as on
a laptop; every ``@hml.deploy_op`` configurator then gets the task. Given ``notes``, the builder imports no kfp
and notes each component, task, loop and configuration call instead (:func:`~hmlcore.pipelines.dry_run.spec_key`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hmlcore import _env
from hmlcore.errors import PipelineError
from hmlcore.pipelines.cache import CACHE_ENV, KEY_ENV
from hmlcore.pipelines.kfp_task import KfpTask, Undescribed
from hmlcore.pipelines.ops import Collected, HmlOp, HmlTask
from hmlcore.pipelines.values import KFP_TYPES, render_value

if TYPE_CHECKING:
    from hmlcore.pipelines.dag import HmlPipeline

__all__ = ["OUTPUT_NAME", "KfpBuilder", "Stand", "component_yaml", "described"]

OUTPUT_NAME = "Output"


def component_yaml(op: HmlOp, *, pipeline: str, entrypoint: str, image: str) -> str:
    """The op as a KFP component definition (YAML) whose command runs the package's CLI."""
    import yaml  # only a compile writes components: the dry run that keys a kept spec does not

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


class Stand:
    """Stands for a pipeline parameter or a loop item in a dry run: passed to steps, written in strings."""

    def __init__(self, *path: Any) -> None:
        self.path = list(path)

    def __str__(self) -> str:
        return "{{hml:" + json.dumps(self.path) + "}}"

    def __getattr__(self, name: str) -> Stand:
        if name.startswith("__"):
            raise AttributeError(name)
        return Stand(*self.path, name)

    def __getitem__(self, key: Any) -> Stand:
        return Stand(*self.path, [key])


class KfpBuilder:
    """Adds a kfp task for each op the pipeline function calls (see :func:`~hmlcore.pipelines.ops.building`).

    With ``notes`` (a dry run), kfp is not imported: each component, task, loop and ``with_*`` call is noted instead.
    """

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
            self.notes.append(["loop", described(items), parallelism])
            yield Stand("item", self._loops)
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
            self.notes.append(["task", name, {key: described(value) for key, value in sorted(arguments.items())}])
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


def described(value: Any) -> Any:
    """A step's argument in a dry run's notes: a task's or a stand-in's name, else the value itself (JSON)."""
    if isinstance(value, HmlTask):
        return {"task": value.name}
    if isinstance(value, Collected):
        return {"collected": value.task.name}
    if isinstance(value, Stand):
        return {"stand": value.path}
    if isinstance(value, list | tuple):
        return [described(v) for v in value]
    if isinstance(value, dict):
        return {str(k): described(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise Undescribed(f"an argument of type {type(value).__name__} has no stable description")
