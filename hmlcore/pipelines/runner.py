"""Run pipelines on this machine: one step as its container would, or the whole DAG in order.

``run-all`` compiles the pipeline with kfp, then walks the compiled spec the way Kubeflow does: each
task's command line is taken from the spec, its placeholders filled with constants, pipeline
parameters and the outputs of the tasks it depends on, and executed through the package's own CLI.
Every finished step's output is kept in a run folder (``$HML_HOME/runs/<run-id>/``), so
``--resume <run-id>`` reruns only what did not finish. Beside each output is the step's log
(``outputs/<step>/log.txt``: what it printed, and the traceback if it failed); a failure names the
command that reruns that step alone, and ``HML_DEBUG=1`` (``run-all --debug``) prints the traceback.
The iterations of a ``dsl.ParallelFor`` loop run side by side as child processes of the package's console
script when it is installed (as many as the loop's parallelism and the CPUs allow), one after another otherwise.
A step whose key is in the step cache is not run: its recorded output is reused and shown as cached
(:mod:`hmlcore.pipelines.cache`). The compiled spec is kept between runs in the per-user cache folder
(``HML_CACHE_DIR``, default ``~/.cache/hml``), keyed by what it is made from (:func:`~hmlcore.pipelines.dry_run.spec_key`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from hmlcore._env import cache_dir
from hmlcore._files import write_atomic
from hmlcore.errors import HmlError, PipelineError
from hmlcore.pipelines.cache import CACHE_ENV, compiled_spec, lookup_command
from hmlcore.pipelines.children import in_parallel, loop_workers, run_child
from hmlcore.pipelines.compiler import compile_pipeline
from hmlcore.pipelines.dry_run import spec_key
from hmlcore.pipelines.launcher import (
    PARAMETER_KINDS,
    dag_order,
    declares_output,
    output_key,
    pipeline_params,
    resolve_command,
    step_env,
    task_order,
)
from hmlcore.pipelines.run_folder import RunFolder, child_log, new_run_id, step_log
from hmlcore.pipelines.values import parse_value
from hmlcore.storage.config import debugging

if TYPE_CHECKING:
    from hmlcore.pipelines.dag import HmlPipeline

__all__ = ["run_all"]


def run_all(
    pipeline: HmlPipeline,
    *,
    params: dict[str, Any] | None = None,
    resume: str | None = None,
    execute: Callable[[Sequence[str]], None],
    spawn: Callable[[Sequence[str]], list[str]] | None = None,
    echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    cache: bool = True,
) -> str:
    """Run every step of ``pipeline`` locally in DAG order and return the run id.

    Each step's command line comes from the compiled spec with its placeholders filled the way the
    Kubeflow launcher fills them, and runs with the environment variables the spec sets for that step
    (:func:`~hmlcore.pipelines.launcher.step_env`); a step's output file is read, parsed by its type and handed to the
    steps that consume it.

    Example:
        >>> run_all(app.pipelines["crashed_pipeline"], execute=run_in_process)  # doctest: +SKIP
        'local-20250101-120000-1a2b3c'

    Args:
        params: pipeline parameter values (strings are parsed by type; defaults from the pipeline function otherwise).
        resume: the id of an earlier run to finish: its succeeded steps are skipped and their outputs reused.
        execute: runs one resolved command line (the package's CLI, in process or as a subprocess).
        spawn: the argument list that runs a resolved command line as a child process (the package's
            console script). Given it, the iterations of a ``dsl.ParallelFor`` loop run in child processes,
            as many at a time as the loop's parallelism and the CPUs allow; each step's output goes to
            its log file only, so the terminal shows whole progress lines.
        echo: where progress lines go.
        cache: reuse a step's recorded output when its key matches (:mod:`hmlcore.pipelines.cache`);
            ``False`` runs every step (and still records fresh entries).

    Raises:
        PipelineError: a step failed (named in the message); the run folder keeps what finished.
    """
    home = pipeline.owner.store.settings.home
    if resume:
        if params:
            raise PipelineError(f"--resume {resume} reuses that run's parameters; do not pass --param with it")
        folder = RunFolder(home, resume)
        if not folder.exists():
            raise PipelineError(f"no run {resume!r} to resume in {os.path.join(home, 'runs')}")
        state = folder.load()
        if state.get("pipeline") != pipeline.name:
            raise PipelineError(f"run {resume} is of pipeline {state.get('pipeline')!r}, not {pipeline.name!r}")
    spec = compiled_spec(
        lambda: spec_key(pipeline),
        folder=os.path.join(cache_dir(), "compiled", pipeline.name),
        compile_spec=lambda: compile_pipeline(pipeline).spec,
        warn=lambda line: echo(f"warning: {line}"),
    )
    order = dag_order(spec)
    if resume:
        values = state["params"]
    else:
        folder = RunFolder(home, new_run_id())
        values = pipeline_params(spec, params or {})
        state = {"run_id": folder.run_id, "pipeline": pipeline.name, "params": values, "tasks": {}, "status": "running"}
        folder.save(state)
    run_id = folder.run_id
    outputs: dict[str, str] = {}
    total = len(order)
    echo(f"run {run_id}: {total} steps of {pipeline.name} (folder {folder.path})")
    started_all = time.perf_counter()

    lock = threading.Lock()  # loop iterations may run in threads, each waiting on its child process

    def save(label: str, record: dict[str, Any], status: str) -> None:
        with lock:
            state["tasks"][label] = record
            state["status"] = status
            folder.save(state)

    def run_step(
        name: str,
        label: str,
        position: str,
        dag: dict[str, Any],
        params: dict[str, Any],
        known: dict[str, str],
        *,
        child: bool = False,
    ) -> str | None:
        """Run the container step ``name`` of ``dag`` (recorded as ``label``, shown at ``position``); return its output's text.

        With ``child`` (and ``spawn``), the step runs as a child process whose output goes to its log file.
        """
        record = state["tasks"].get(label, {})
        output_file = folder.output_file(label)
        if record.get("status") == "succeeded" and (not record.get("output") or os.path.exists(output_file)):
            echo(f"[{position}] {label}: succeeded in an earlier attempt, skipped")
            return _read(output_file) if record.get("output") else None
        command = resolve_command(spec, name, params=params, outputs=known, output_file=output_file, run_id=run_id, dag=dag)
        env = step_env(spec, name, dag)
        hit = lookup_command(pipeline, command, env, warn=lambda line: echo(f"[{position}] warning: {line}")) if cache else None
        if hit is not None:
            if hit.output is not None:
                write_atomic(output_file, hit.output)
            save(label, {"status": "succeeded", "command": command, "cached_from": hit.run_id, "output": hit.output is not None}, "running")
            echo(f"[{position}] {label}: cached (from run {hit.run_id})")
            return hit.output
        echo(f"[{position}] {label} ...")
        started = time.perf_counter()
        save(label, {"status": "running", "command": command}, "running")
        log_file = folder.log_file(label)
        failure: BaseException | None = None
        message = ""
        argv = spawn(command) if child and spawn is not None else None
        with step_log(log_file) if argv is None else child_log(log_file) as log:
            try:
                if argv is not None:
                    run_child(argv, env={**env, CACHE_ENV: "false"}, log=log)
                else:
                    with _environment({**env, CACHE_ENV: "false"}):  # looked up above; the step records its output
                        execute(command)
                if declares_output(spec, name, dag) and not os.path.exists(output_file):
                    raise PipelineError(f"it wrote no output to {output_file}")
            except BaseException as exc:
                failure, message = exc, _message(exc)
                if argv is None:  # a child process printed its own error above
                    log.write("".join(traceback.format_exception(exc)))
        if failure is not None:
            save(label, {"status": "failed", "command": command, "error": message, "log": log_file}, "failed")
            if isinstance(failure, KeyboardInterrupt):
                raise failure
            if debugging():
                echo("".join(traceback.format_exception(failure)).rstrip())
            raise PipelineError(
                f"step {label} ({position}) failed after {time.perf_counter() - started:.1f}s: {message}"
                f" (log: {log_file}; rerun it alone: {shlex.join(command)}; finish with: run-all --resume {run_id})"
            ) from failure
        seconds = time.perf_counter() - started
        has_output = os.path.exists(output_file)
        text = _read(output_file) if has_output else None
        save(label, {"status": "succeeded", "command": command, "seconds": round(seconds, 3), "output": has_output}, "running")
        echo(f"[{position}] {label}: ok in {seconds:.1f}s" + (f" -> {_short(text)}" if text is not None else ""))
        return text

    root = spec["root"]["dag"]
    for i, name in enumerate(order, 1):
        component = spec["components"][root["tasks"][name]["componentRef"]["name"]]
        if "dag" not in component:
            text = run_step(name, name, f"{i}/{total}", root, values, outputs)
            if text is not None:
                outputs[name] = text
            continue
        loop = _run_loop(spec, name, position=f"{i}/{total}", values=values, outputs=outputs, run_step=run_step, children=spawn is not None)
        outputs.update(loop)
    state["status"] = "succeeded"
    folder.save(state)
    echo(f"run {run_id}: {total} steps succeeded in {time.perf_counter() - started_all:.1f}s")
    return run_id


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the block, as the launcher sets them in the step's container."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _run_loop(
    spec: dict[str, Any],
    name: str,
    *,
    position: str,
    values: dict[str, Any],
    outputs: dict[str, str],
    run_step: Callable[..., str | None],
    children: bool = False,
) -> dict[str, str]:
    """Run a ``dsl.ParallelFor`` task: its DAG once per item; return its collected outputs.

    Each iteration's steps get the loop's inputs and the item, as Kubeflow passes them; an output the
    loop gathers (``dsl.Collected``) is the list of each iteration's value, in the items' order. With
    ``children``, the iterations run at the same time in child processes (:func:`~hmlcore.pipelines.children.in_parallel`), else
    one after another in this process.
    """
    task = spec["root"]["dag"]["tasks"][name]
    component = spec["components"][task["componentRef"]["name"]]
    iterator = task.get("parameterIterator")
    if iterator is None:
        raise PipelineError(f"task {name} is a sub-DAG that is not a loop (a condition?); run-all runs steps and dsl.ParallelFor loops")
    definitions = component.get("inputDefinitions", {}).get("parameters", {})
    inputs: dict[str, Any] = {}
    for key, source in task.get("inputs", {}).get("parameters", {}).items():
        kind = PARAMETER_KINDS.get(definitions.get(key, {}).get("parameterType", "STRING"), str)
        if "componentInputParameter" in source:
            inputs[key] = values[source["componentInputParameter"]]
        elif "taskOutputParameter" in source:
            given = outputs[output_key(source["taskOutputParameter"], outputs)]
            inputs[key] = given if kind is str else parse_value(given, kind)
        elif "runtimeValue" in source:
            inputs[key] = source["runtimeValue"]["constant"]
    items_source = iterator["items"]
    items = inputs[items_source["inputParameter"]] if "inputParameter" in items_source else json.loads(items_source["raw"])
    if not isinstance(items, list):
        raise PipelineError(f"loop {name} iterates over {_short(repr(items))}, which is not a list")
    dag = component["dag"]
    order = task_order(dag["tasks"])
    workers = loop_workers(task, len(items)) if children else 1

    def iteration(index: int, item: Any) -> dict[str, str]:
        params = {**inputs, iterator["itemInput"]: item}
        known: dict[str, str] = dict(outputs)
        for inner in order:
            where = f"{position}, item {index + 1}/{len(items)}"
            output = run_step(inner, f"{name}.{index}.{inner}", where, dag, params, known, child=workers > 1)
            if output is not None:
                known[inner] = output
        return known

    collected: dict[str, list[Any]] = {key: [] for key in dag.get("outputs", {}).get("parameters", {})}
    for known in in_parallel(iteration, items, workers=workers):
        for key, definition in dag.get("outputs", {}).get("parameters", {}).items():
            selector = definition.get("valueFromParameter") or {}
            found = known.get(str(selector.get("producerSubtask")))
            collected[key].append(None if found is None else _parsed(found))
    return {f"{name}:{key}": json.dumps(values) for key, values in collected.items()}


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _message(exc: BaseException) -> str:
    if isinstance(exc, HmlError):
        return str(exc)
    format_message = getattr(exc, "format_message", None)  # click's own errors
    if callable(format_message):
        return str(format_message())
    return f"{type(exc).__name__}: {exc}"


def _short(text: str, limit: int = 120) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
