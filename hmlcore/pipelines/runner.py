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
(``HML_CACHE_DIR``, default ``~/.cache/hml``), keyed by what it is made from (:func:`~hmlcore.pipelines.compiler.spec_key`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import graphlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

from hmlcore import _env
from hmlcore._env import cache_dir
from hmlcore._files import write_atomic
from hmlcore._machine import available_cores
from hmlcore.errors import HmlError, PipelineError
from hmlcore.pipelines.cache import CACHE_ENV, compiled_spec, lookup_command
from hmlcore.pipelines.compiler import RUN_ID_PLACEHOLDER
from hmlcore.pipelines.values import parse_value, render_value
from hmlcore.storage.config import debugging

if TYPE_CHECKING:
    from hmlcore.pipelines.dag import HmlPipeline

__all__ = ["RunFolder", "dag_order", "pipeline_params", "resolve_command", "run_all", "step_env"]

_INPUT_RE = re.compile(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}")
_OUTPUT_RE = re.compile(r"\{\{\$\.outputs\.parameters\['([^']+)'\]\.output_file\}\}")
_KIND = {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "BOOLEAN": bool, "STRING": str, "LIST": list, "STRUCT": dict}


def new_run_id() -> str:
    """A fresh local run id: ``local-<UTC timestamp>-<random>``."""
    return f"local-{_dt.datetime.now(_dt.UTC).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def dag_order(spec: dict[str, Any]) -> list[str]:
    """The root DAG's task names in an order that respects every dependency (stable: spec order first).

    Raises:
        PipelineError: a task depends on one the DAG does not hold, or the tasks depend on each other in a cycle.

    Example:
        >>> dag_order({"root": {"dag": {"tasks": {"b": {"dependentTasks": ["a"]}, "a": {}, "c": {}}}}})
        ['a', 'c', 'b']
    """
    return _order(spec["root"]["dag"]["tasks"])


def _order(tasks: dict[str, Any]) -> list[str]:
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
        kind = _KIND.get(definition.get("parameterType", "STRING"), str)
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
            producer = _output_key(source["taskOutputParameter"], outputs)
            if producer not in outputs:
                raise PipelineError(f"task {task_name}: input {name} needs the output of {producer}, which has none")
            values[name] = _as_kfp_passes_it(outputs[producer], kind)
        else:
            raise PipelineError(f"task {task_name}: input {name} has a source this runner does not know: {sorted(source)}")

    def fill(text: str) -> str:
        text = _INPUT_RE.sub(lambda m: values.get(m.group(1), ""), text)
        return _OUTPUT_RE.sub(lambda m: output_file, text)

    return [fill(part) for part in container.get("command", [])] + [fill(part) for part in container.get("args", [])]


#: set for the pods, not for a local run: run-all stays on this machine's platform, its workers on this machine
_CLUSTER_ONLY_ENV = ("HML_PLATFORM", _env.TRAINJOB.name)


def _output_key(source: dict[str, Any], outputs: dict[str, str]) -> str:
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
        kind = _KIND.get(definition.get("parameterType", "STRING"), str)
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


class RunFolder:
    """A local run's folder: ``state.json`` and one output file per finished task."""

    def __init__(self, home: str, run_id: str) -> None:
        if not re.match(r"^[A-Za-z0-9_.-]+$", run_id):
            raise PipelineError(f"invalid run id {run_id!r}")
        self.run_id = run_id
        self.path = os.path.join(home, "runs", run_id)
        self.state_path = os.path.join(self.path, "state.json")

    def exists(self) -> bool:
        return os.path.exists(self.state_path)

    def load(self) -> dict[str, Any]:
        with open(self.state_path, encoding="utf-8") as handle:
            return dict(json.load(handle))

    def save(self, state: dict[str, Any]) -> None:
        write_atomic(self.state_path, json.dumps(state, indent=2, sort_keys=True))

    def output_file(self, task: str) -> str:
        return os.path.join(self.path, "outputs", task, "output")

    def log_file(self, task: str) -> str:
        """Where ``task``'s log is kept: beside its output."""
        return os.path.join(self.path, "outputs", task, "log.txt")


class _Tee:
    """A text stream writing to the terminal's stream and to a log file."""

    def __init__(self, stream: IO[str], log: IO[str]) -> None:
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def _step_log(path: str) -> Iterator[IO[str]]:
    """Keep what a step run in this process prints (stdout, stderr, logging) in ``path`` too."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as log:
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            with contextlib.redirect_stdout(_Tee(sys.stdout, log)), contextlib.redirect_stderr(_Tee(sys.stderr, log)):  # type: ignore[type-var]
                yield log
        finally:
            root.removeHandler(handler)


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
    (:func:`step_env`); a step's output file is read, parsed by its type and handed to the
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
    from hmlcore.pipelines.compiler import compile_pipeline, spec_key  # yaml and kfp: a single step needs neither

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
        with _step_log(log_file) if argv is None else _child_log(log_file) as log:
            try:
                if argv is not None:
                    _run_child(argv, env={**env, CACHE_ENV: "false"}, log=log)
                else:
                    with _environment({**env, CACHE_ENV: "false"}):  # looked up above; the step records its output
                        execute(command)
                if _declares_output(spec, name, dag) and not os.path.exists(output_file):
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
    ``children``, the iterations run at the same time in child processes (:func:`_in_parallel`), else
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
        kind = _KIND.get(definitions.get(key, {}).get("parameterType", "STRING"), str)
        if "componentInputParameter" in source:
            inputs[key] = values[source["componentInputParameter"]]
        elif "taskOutputParameter" in source:
            given = outputs[_output_key(source["taskOutputParameter"], outputs)]
            inputs[key] = given if kind is str else parse_value(given, kind)
        elif "runtimeValue" in source:
            inputs[key] = source["runtimeValue"]["constant"]
    items_source = iterator["items"]
    items = inputs[items_source["inputParameter"]] if "inputParameter" in items_source else json.loads(items_source["raw"])
    if not isinstance(items, list):
        raise PipelineError(f"loop {name} iterates over {_short(repr(items))}, which is not a list")
    dag = component["dag"]
    order = _order(dag["tasks"])
    workers = _workers(task, len(items)) if children else 1

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
    for known in _in_parallel(iteration, items, workers=workers):
        for key, definition in dag.get("outputs", {}).get("parameters", {}).items():
            selector = definition.get("valueFromParameter") or {}
            found = known.get(str(selector.get("producerSubtask")))
            collected[key].append(None if found is None else _parsed(found))
    return {f"{name}:{key}": json.dumps(values) for key, values in collected.items()}


def _workers(task: dict[str, Any], items: int) -> int:
    """How many iterations of a loop run at once: its ``parallelismLimit`` (0: no limit), at most the CPUs and the items."""
    limit = int(task.get("iteratorPolicy", {}).get("parallelismLimit") or 0)
    return max(1, min(limit or items, available_cores(), items))


def _in_parallel(iteration: Callable[[int, Any], dict[str, str]], items: list[Any], *, workers: int) -> list[dict[str, str]]:
    """``iteration(index, item)`` for every item, ``workers`` at a time, results in the items' order.

    The first failure (in the items' order) is raised once the iterations already running have ended;
    the ones not started yet never start.
    """
    if workers <= 1:
        return [iteration(index, item) for index, item in enumerate(items)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hml-loop") as pool:
        futures = [pool.submit(iteration, index, item) for index, item in enumerate(items)]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


@contextlib.contextmanager
def _child_log(path: str) -> Iterator[IO[str]]:
    """The log file of a step run as a child process."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as log:
        yield log


def _run_child(argv: list[str], *, env: dict[str, str], log: IO[str]) -> None:
    """Run ``argv`` with this process's environment plus ``env``, its output into ``log``.

    Raises:
        PipelineError: it ended with an exit code other than 0 (the message is the last line it printed: the CLI's error).
    """
    log.flush()
    code = subprocess.run(
        argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=False
    ).returncode
    if code != 0:
        with open(log.name, encoding="utf-8", errors="replace") as written:
            lines = [line.strip() for line in written if line.strip()]
        said = lines[-1].removeprefix("Error: ") if lines else "no output"
        raise PipelineError(f"{said} (exit code {code})")


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _declares_output(spec: dict[str, Any], task_name: str, dag: dict[str, Any] | None = None) -> bool:
    component = spec["components"][(dag or spec["root"]["dag"])["tasks"][task_name]["componentRef"]["name"]]
    return bool(component.get("outputDefinitions", {}).get("parameters"))


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
