"""A compiled pipeline spec read the way Kubeflow's launcher reads it, without kfp.

The order of a DAG's tasks, each task's command line with its placeholders filled (constants, pipeline
parameters, the outputs of the tasks it depends on), the environment its container gets, and the
pipeline's parameter values. ``run-all`` (:mod:`hmlcore.pipelines.runner`) runs what these functions
return; the image test reads the same spec with them.

Example:
    >>> dag_order({"root": {"dag": {"tasks": {"b": {"dependentTasks": ["a"]}, "a": {}}}}})
    ['a', 'b']
"""

from __future__ import annotations

import graphlib
import re
from typing import Any

from hmlcore import _env
from hmlcore.errors import PipelineError
from hmlcore.pipelines.compiler import RUN_ID_PLACEHOLDER
from hmlcore.pipelines.values import parse_value, render_value

__all__ = [
    "PARAMETER_KINDS",
    "dag_order",
    "declares_output",
    "output_key",
    "pipeline_params",
    "resolve_command",
    "step_env",
    "task_order",
]

_INPUT_RE = re.compile(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}")
_OUTPUT_RE = re.compile(r"\{\{\$\.outputs\.parameters\['([^']+)'\]\.output_file\}\}")
#: a spec's parameter type, as the Python type a step's option takes
PARAMETER_KINDS: dict[str, type] = {
    "NUMBER_INTEGER": int,
    "NUMBER_DOUBLE": float,
    "BOOLEAN": bool,
    "STRING": str,
    "LIST": list,
    "STRUCT": dict,
}
#: set for the pods, not for a local run: run-all stays on this machine's platform, its workers on this machine
_CLUSTER_ONLY_ENV = ("HML_PLATFORM", _env.TRAINJOB.name)


def dag_order(spec: dict[str, Any]) -> list[str]:
    """The root DAG's task names in an order that respects every dependency (stable: spec order first).

    Raises:
        PipelineError: a task depends on one the DAG does not hold, or the tasks depend on each other in a cycle.

    Example:
        >>> dag_order({"root": {"dag": {"tasks": {"b": {"dependentTasks": ["a"]}, "a": {}, "c": {}}}}})
        ['a', 'c', 'b']
    """
    return task_order(spec["root"]["dag"]["tasks"])


def task_order(tasks: dict[str, Any]) -> list[str]:
    position = {name: i for i, name in enumerate(tasks)}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name, task in tasks.items():
        upstream = task.get("dependentTasks", [])
        unknown = [u for u in upstream if u not in tasks]
        if unknown:
            raise PipelineError(f"task {name} depends on {', '.join(unknown)}, which the pipeline does not hold")
        sorter.add(name, *upstream)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        raise PipelineError(f"the pipeline's tasks depend on each other in a cycle: {' -> '.join(exc.args[1])}") from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order += ready
        sorter.done(*ready)
    return order


def resolve_command(
    spec: dict[str, Any],
    task_name: str,
    *,
    params: dict[str, Any],
    outputs: dict[str, str],
    output_file: str,
    run_id: str,
    dag: dict[str, Any] | None = None,
) -> list[str]:
    """The command line of ``task_name`` with every placeholder filled, as the Kubeflow launcher would.

    Args:
        params: the pipeline's parameter values (inside a loop: the loop's inputs and its item).
        outputs: the output file's text of each finished task (a loop's collected outputs under
            ``<loop>:<output>``).
        output_file: where this task writes its own output.
        run_id: the value of :data:`~hmlcore.pipelines.compiler.RUN_ID_PLACEHOLDER`.
        dag: the DAG holding the task (default: the pipeline's root; a loop's own DAG for a step inside it).
    """
    task = (dag or spec["root"]["dag"])["tasks"][task_name]
    component = spec["components"][task["componentRef"]["name"]]
    if "executorLabel" not in component:
        raise PipelineError(f"task {task_name} is a sub-DAG (a condition or loop); run-all runs only container steps")
    container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    definitions = component.get("inputDefinitions", {}).get("parameters", {})
    values: dict[str, str] = {}
    for name, definition in definitions.items():
        kind = PARAMETER_KINDS.get(definition.get("parameterType", "STRING"), str)
        source = task.get("inputs", {}).get("parameters", {}).get(name)
        if source is None:
            if "defaultValue" in definition:
                values[name] = render_value(definition["defaultValue"], kind)
            continue
        if "runtimeValue" in source:
            constant = source["runtimeValue"]["constant"]
            values[name] = run_id if constant == RUN_ID_PLACEHOLDER else render_value(constant, kind)
        elif "componentInputParameter" in source:
            values[name] = render_value(params[source["componentInputParameter"]], kind)
        elif "taskOutputParameter" in source:
            producer = output_key(source["taskOutputParameter"], outputs)
            if producer not in outputs:
                raise PipelineError(f"task {task_name}: input {name} needs the output of {producer}, which has none")
            values[name] = _as_kfp_passes_it(outputs[producer], kind)
        else:
            raise PipelineError(f"task {task_name}: input {name} has a source this runner does not know: {sorted(source)}")

    def fill(text: str) -> str:
        text = _INPUT_RE.sub(lambda m: values.get(m.group(1), ""), text)
        return _OUTPUT_RE.sub(lambda m: output_file, text)

    return [fill(part) for part in container.get("command", [])] + [fill(part) for part in container.get("args", [])]


def output_key(source: dict[str, Any], outputs: dict[str, str]) -> str:
    """Where ``outputs`` holds the output ``source`` names: ``<loop>:<output>`` for a loop's, the step's name for a step's own."""
    producer, key = source["producerTask"], source.get("outputParameterKey", "")
    gathered = f"{producer}:{key}"
    return gathered if gathered in outputs else str(producer)


def step_env(spec: dict[str, Any], task_name: str, dag: dict[str, Any] | None = None) -> dict[str, str]:
    """The environment variables the compiled spec sets in ``task_name``'s container (``with_env``).

    ``HML_PLATFORM`` is left out: it names the platform of the cluster's pods, while a local run stays
    on the platform of the machine it runs on; so is ``HML_TRAINJOB``: a local run's workers are local processes.
    """
    task = (dag or spec["root"]["dag"])["tasks"][task_name]
    component = spec["components"][task["componentRef"]["name"]]
    container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    return {e["name"]: str(e.get("value", "")) for e in container.get("env", []) if e["name"] not in _CLUSTER_ONLY_ENV}


def _as_kfp_passes_it(text: str, kind: type) -> str:
    """An output file's text as Kubeflow hands it to a consumer: parsed by its type, rendered again."""
    if kind is str:
        return text
    try:
        return render_value(parse_value(text, kind), kind)
    except ValueError:
        return text


def pipeline_params(spec: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's parameter values: ``given`` over the spec's defaults; raise if one is missing or bad.

    A value given as a string (from the command line) is parsed by the parameter's type, like a step's
    option: JSON for lists and dicts, ``true``/``false`` for booleans.

    Example:
        >>> spec = {"root": {"inputDefinitions": {"parameters": {"n": {"parameterType": "NUMBER_INTEGER", "defaultValue": 3.0}}}}}
        >>> pipeline_params(spec, {}), pipeline_params(spec, {"n": "5"})
        ({'n': 3.0}, {'n': 5})
    """
    definitions = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    unknown = sorted(set(given) - set(definitions))
    if unknown:
        raise PipelineError(
            f"unknown pipeline parameter {unknown[0]!r}; known: {', '.join(definitions) or 'none'}"
            " (a step's parameter is a pipeline parameter only if the pipeline function takes it and passes it on)"
        )
    values = {}
    for name, definition in definitions.items():
        kind = PARAMETER_KINDS.get(definition.get("parameterType", "STRING"), str)
        if name in given:
            value = given[name]
            if isinstance(value, str) and kind is not str:
                try:
                    value = parse_value(value, kind)
                except ValueError as exc:
                    raise PipelineError(f"pipeline parameter {name}: {exc}") from None
            values[name] = value
        elif "defaultValue" in definition:
            values[name] = definition["defaultValue"]
        else:
            raise PipelineError(f"pipeline parameter {name!r} has no default: pass --param {name}=VALUE")
    return values


def declares_output(spec: dict[str, Any], task_name: str, dag: dict[str, Any] | None = None) -> bool:
    component = spec["components"][(dag or spec["root"]["dag"])["tasks"][task_name]["componentRef"]["name"]]
    return bool(component.get("outputDefinitions", {}).get("parameters"))
