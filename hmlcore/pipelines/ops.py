"""``@hml.op()``: a typed Python function that is also a Kubeflow Pipelines container step.

An op's parameters become the step's inputs and its return value the step's output. Inside a
pipeline function, calling an op adds a task to the pipeline; outside one, it is the plain function
(handy in tests). The step's command line in the container is::

    <entrypoint> pipelines <pipeline> run <op> --<param> <value> ... --hml-run-id <id> --hml-output <file>

A parameter annotated :class:`OpContext` is not an input: the runner passes the step its context
(the lake, the warehouse, the registered models, the run id).

Example:
    >>> @op()
    ... def train(ctx: OpContext, table: str, n_estimators: int = 100) -> dict:
    ...     return {"table": table}
    >>> [p.name for p in train.params]
    ['table', 'n_estimators']
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import json
import math
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hmlcore.errors import PipelineError
from hmlcore.model.lookup import find_model
from hmlcore.storage.lake import Lake, sha256_bytes

if TYPE_CHECKING:
    from hmlcore.model.container import ModelContainer
    from hmlcore.storage.store import DataStore
    from hmlcore.storage.warehouse import Warehouse

__all__ = ["Collected", "HmlOp", "HmlTask", "OpContext", "OpParam", "collected", "op", "parallel_for", "render_output"]

#: the types an op's parameters and return value may have, and their KFP v1-YAML type names
KFP_TYPES: dict[type, str] = {str: "String", int: "Integer", float: "Float", bool: "Boolean", list: "JsonArray", dict: "JsonObject"}

_builder: contextvars.ContextVar[Any] = contextvars.ContextVar("hml_pipeline_builder", default=None)


@contextlib.contextmanager
def building(builder: Any) -> Iterator[None]:
    """While the block runs, an op call adds a task to ``builder`` (its ``add_task(op, arguments)``) instead of running.

    :meth:`~hmlcore.pipelines.HmlPipeline.trace` and the compiler call the pipeline's function inside it.
    """
    token = _builder.set(builder)
    try:
        yield
    finally:
        _builder.reset(token)


@contextlib.contextmanager
def parallel_for(items: Any, *, parallelism: int = 0) -> Iterator[Any]:
    """Inside a pipeline function: call the steps in the block once per item of ``items``; yields the item.

    Compiled, the block is Kubeflow's own ``dsl.ParallelFor`` (at most ``parallelism`` iterations at
    once, 0: no limit); ``run-all`` runs the iterations one after another. A step after the block takes
    every iteration's output, as a list, through :func:`collected`.

    Example:
        >>> @pipeline(app.pipelines)  # doctest: +SKIP
        ... def score():
        ...     shards = plan()
        ...     with parallel_for(shards.output, parallelism=4) as shard:
        ...         part = score_shard(shard=shard)
        ...     merge(parts=collected(part))

    Raises:
        PipelineError: used outside a pipeline function, or ``parallelism`` is not a non-negative integer.
    """
    builder = _builder.get()
    if builder is None:
        raise PipelineError("parallel_for() belongs inside an @hml.pipeline function")
    if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 0:
        raise PipelineError(f"parallelism must be a non-negative integer, got {parallelism!r}")
    with builder.parallel_for(items, parallelism) as item:
        yield item


@dataclass(frozen=True)
class Collected:
    """Every iteration's output of a task inside :func:`parallel_for`, as one list input."""

    task: HmlTask


def collected(task: HmlTask) -> Collected:
    """The outputs of ``task`` (called inside a :func:`parallel_for` block) from every iteration, as a list for a later step."""
    if not isinstance(task, HmlTask) or task.op.return_type is None:
        raise PipelineError(f"collected() takes a step called inside parallel_for that returns a value, got {task!r}")
    return Collected(task)


@dataclass
class OpContext:
    """What a running step may use besides its inputs.

    Attributes:
        store: the app's data (:class:`~hmlcore.storage.store.DataStore`): its lake and warehouse, opened on first use.
        models: the app's registered models by name.
        pipeline: the name of the pipeline the step runs in.
        step: the op's name.
        run_id: the pipeline run's id (the KFP job id in the cluster, the local run's id on a laptop).
    """

    store: DataStore
    models: Mapping[str, ModelContainer]
    pipeline: str
    step: str
    run_id: str

    @property
    def lake(self) -> Lake:
        """The app's lake."""
        return self.store.lake

    @property
    def warehouse(self) -> Warehouse:
        """The app's warehouse."""
        return self.store.warehouse

    def get_model(self, name: str) -> ModelContainer:
        """The registered :class:`~hmlcore.model.ModelContainer` called ``name``."""
        return find_model(self.models, name)

    def artifact_uri(self, name: str) -> str:
        """The full URL of ``name`` in this run's and step's lake folder, where :meth:`save_artifact` writes.

        For a file another library writes there itself, e.g. ``ctx.warehouse.export(table, ctx.artifact_uri("rows.parquet"))``.
        """
        return self.lake.uri("runs", self.pipeline, self.run_id, self.step, name)

    def save_artifact(self, name: str, data: bytes) -> dict[str, Any]:
        """Store ``data`` in the lake under this run and step; return ``{"uri", "sha256", "size"}``.

        Hand the returned dict to the next step, which reads it back with :meth:`load_artifact`.
        """
        uri = self.lake.write_bytes(self.artifact_uri(name), data)
        return {"uri": uri, "sha256": sha256_bytes(data), "size": len(data)}

    def load_artifact(self, artifact: dict[str, Any]) -> bytes:
        """Read an artifact saved by :meth:`save_artifact`, verifying its sha256.

        Raises:
            PipelineError: the artifact is missing or its digest differs.
        """
        try:
            uri, expected = artifact["uri"], artifact["sha256"]
        except (KeyError, TypeError):
            raise PipelineError(f"step {self.step}: {artifact!r} is not an artifact (it needs 'uri' and 'sha256')") from None
        try:
            data = self.lake.read_bytes(uri)
        except FileNotFoundError:
            raise PipelineError(f"step {self.step}: artifact {uri} does not exist") from None
        actual = sha256_bytes(data)
        if actual != expected:
            raise PipelineError(f"step {self.step}: artifact {uri} fails verification: sha256 {actual} != {expected}")
        return data


@dataclass(frozen=True)
class OpParam:
    """One input of an op."""

    name: str
    type: type
    default: Any = inspect.Parameter.empty

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    @property
    def option(self) -> str:
        """The command-line option, e.g. ``--n-estimators``."""
        return "--" + self.name.replace("_", "-")


def base_type(annotation: Any) -> Any:
    """The type a parameter annotation stands for in a step: ``list[int]`` is ``list``, ``dict[str, Any]`` is ``dict``."""
    origin = typing.get_origin(annotation)
    if origin in (list, dict):
        return origin
    return annotation


class HmlOp:
    """A pipeline step made from a typed function. Create it with :func:`op`."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        cache: bool = True,
        sources: Sequence[str] = (),
    ) -> None:
        if not callable(func):
            raise PipelineError(f"@hml.op needs a function, got {type(func).__name__}")
        if not isinstance(cache, bool):
            raise PipelineError(f"@hml.op cache must be True or False, got {cache!r}")
        if isinstance(sources, str) or not all(isinstance(source, str) for source in sources):
            raise PipelineError(f"@hml.op sources must be a list of input names, got {sources!r}")
        self.func = func
        #: whether a run may reuse the step's recorded output when its key matches (see :mod:`hmlcore.pipelines.cache`)
        self.cache = cache
        #: the inputs that name the rows the step reads: a file is keyed by its bytes, a table, a query or a URL is not cached
        self.sources = tuple(sources)
        self.name = name or func.__name__
        if not self.name.isidentifier():
            raise PipelineError(f"op name {self.name!r} must be a Python identifier")
        self.description = description or inspect.getdoc(func) or ""
        hints = typing.get_type_hints(func)
        self.context_param: str | None = None
        params = []
        for p in inspect.signature(func).parameters.values():
            annotation = hints.get(p.name, inspect.Parameter.empty)
            if annotation is OpContext:
                self.context_param = p.name
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise PipelineError(f"op {self.name}: *args / **kwargs cannot be step inputs")
            base = base_type(annotation)
            if p.default is None:
                raise PipelineError(
                    f"op {self.name}: parameter {p.name!r} defaults to None, which Kubeflow cannot pass; give it a real default or none"
                )
            if base not in KFP_TYPES:
                raise PipelineError(
                    f"op {self.name}: parameter {p.name!r} needs a type annotation of str, int, float, bool, list or dict"
                    f" (got {annotation!r})"
                )
            params.append(OpParam(p.name, base, p.default))
        self.params = params
        text_inputs = {param.name for param in params if param.type is str}
        for source in self.sources:
            if source not in text_inputs:
                known = ", ".join(sorted(text_inputs)) or "none"
                raise PipelineError(f"op {self.name}: sources names {source!r}, which is not one of its str inputs ({known})")
        returned = base_type(hints.get("return", type(None)))
        if returned is type(None):
            returned = None
        elif returned not in KFP_TYPES:
            raise PipelineError(f"op {self.name}: return type must be str, int, float, bool, list, dict or None (got {returned!r})")
        self.return_type: type | None = returned
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"<hml.op {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = _builder.get()
        if builder is None:
            return self.func(*args, **kwargs)
        if args:
            raise PipelineError(f"op {self.name}: pass step inputs by keyword inside a pipeline (got {len(args)} positional)")
        unknown = sorted(set(kwargs) - {p.name for p in self.params})
        if unknown:
            raise PipelineError(f"op {self.name} has no input {unknown[0]!r}; its inputs are {[p.name for p in self.params]}")
        missing = [p.name for p in self.params if p.required and p.name not in kwargs]
        if missing:
            raise PipelineError(f"op {self.name} needs input {missing[0]!r}")
        return builder.add_task(self, kwargs)

    def invoke(self, context: OpContext, arguments: dict[str, Any]) -> Any:
        """Run the function with parsed ``arguments`` and the step's ``context``; check what it returns.

        Raises:
            PipelineError: the function returned a value of another type than its annotation says.
        """
        kwargs = dict(arguments)
        if self.context_param:
            kwargs[self.context_param] = context
        result = self.func(**kwargs)
        if self.return_type is not None and not _is_instance(result, self.return_type):
            raise PipelineError(
                f"step {self.name} returned {type(result).__name__} {_short_repr(result)},"
                f" but is declared to return {self.return_type.__name__}"
            )
        return result


def _is_instance(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class HmlTask:
    """One use of an op inside a pipeline: what the op call returns while the pipeline is built.

    Wraps the Kubeflow task when compiling; configurators registered with ``@hml.deploy_op`` receive
    it and chain ``with_*`` calls on it (see :class:`hmlcore.pipelines.compiler.KfpTask`).
    """

    def __init__(self, op: HmlOp, arguments: dict[str, Any], *, name: str) -> None:
        self.op = op
        self.arguments = arguments
        self.name = name
        self.upstream: list[HmlTask] = []

    def __repr__(self) -> str:
        return f"<task {self.name} of {self.op.name}>"

    @property
    def output(self) -> Any:
        """The step's return value, for use as another step's input."""
        if self.op.return_type is None:
            raise PipelineError(f"op {self.op.name} returns nothing, so its task has no output")
        return self

    def after(self, *tasks: HmlTask) -> HmlTask:
        """Run this task only after ``tasks`` have finished."""
        for task in tasks:
            if not isinstance(task, HmlTask):
                raise PipelineError(f"{self.name}.after() takes tasks, got {type(task).__name__}")
            self.upstream.append(task)
        return self


def op(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    cache: bool = True,
    sources: Sequence[str] = (),
) -> Any:
    """Make ``func`` a pipeline step. Works bare (``@hml.op``) and called (``@hml.op()``).

    Args:
        func: the step's function; parameters typed str/int/float/bool/list/dict.
        name: the step's name (default: the function's name).
        description: shown in ``--help`` and the compiled spec (default: the docstring).
        cache: whether a run may reuse the step's recorded output when its inputs, code and settings are
            unchanged (:mod:`hmlcore.pipelines.cache`). Pass ``False`` for a step whose effects go beyond
            its output (publishing, writing tables) or that reads what its inputs do not name.
        sources: the str inputs that name the rows the step reads (a file, a URL, a warehouse table or a
            query, as :func:`hml.read_rows` takes them). A file is keyed by its bytes; anything else makes
            the step run every time, since a table's or a URL's rows can change under the same name.

    Example:
        >>> @op(sources=["source"])
        ... def count_rows(source: str = "data/rows.csv") -> int:
        ...     return 0
        >>> count_rows.sources
        ('source',)
    """
    if func is None:
        return functools.partial(op, name=name, description=description, cache=cache, sources=sources)
    return HmlOp(func, name=name, description=description, cache=cache, sources=sources)


# ------------------------------------------------------------------ values on the command line
def render_value(value: Any, kind: type | None) -> str:
    """Render ``value`` the way Kubeflow renders a parameter into a command line.

    Kubeflow keeps parameters as protobuf values, whose numbers are all doubles, and renders them as
    JSON: a whole number inside a list or dict comes out without a fraction (``[1, 2]``, not ``[1.0, 2.0]``).

    Example:
        >>> render_value({"w": [1.0, 2.5], "ok": True}, dict), render_value(True, bool), render_value(4.0, int)
        ('{"w":[1,2.5],"ok":true}', 'true', '4')
    """
    if isinstance(value, bool) or kind is bool:
        return "true" if _parse_bool(value) else "false"
    if kind is int and isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(_as_protobuf_json(value), separators=(",", ":"))
    return str(value)


#: the largest integer a protobuf Value (a double) holds exactly: Kubeflow keeps every parameter as one
MAX_EXACT_INT = 2**53


def render_output(value: Any, kind: type, *, step: str) -> str:
    """Render a step's return value for its output file, refusing what Kubeflow's launcher cannot parse.

    The launcher turns the file into a protobuf ``Value``: it refuses ``NaN`` and ``Infinity`` (the step
    would fail after its container exited 0) and stores numbers as doubles (an integer above 2**53
    would silently change). Both are refused here, so ``run-all`` fails the way the cluster would.

    Example:
        >>> render_output({"auc": 0.9, "n": [1, 2]}, dict, step="evaluate")
        '{"auc":0.9,"n":[1,2]}'
        >>> render_output({"auc": float("nan")}, dict, step="evaluate")
        Traceback (most recent call last):
        ...
        hmlcore.errors.PipelineError: step evaluate: output['auc'] is nan, which Kubeflow cannot pass: return a number or None

    Raises:
        PipelineError: the value holds NaN, an infinity or an integer Kubeflow would round (the message
            names the step and the key).
    """
    _check_passable(value, step, "output")
    return render_value(value, kind)


def _check_passable(value: Any, step: str, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise PipelineError(f"step {step}: {where} is {value}, which Kubeflow cannot pass: return a number or None")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_EXACT_INT:
        raise PipelineError(
            f"step {step}: {where} is {value}, above 2**53, which Kubeflow would round (it keeps numbers as doubles): return it as a string"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _check_passable(item, step, f"{where}[{str(key)!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_passable(item, step, f"{where}[{index}]")


def _as_protobuf_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _as_protobuf_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_protobuf_json(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"{value!r} is not a boolean (use true or false)")


def parse_value(text: str, kind: type) -> Any:
    """Parse a command-line string into ``kind``; raise ValueError with a readable message."""
    if kind is str:
        return text
    if kind is bool:
        return _parse_bool(text)
    if kind is int:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not number.is_integer():
            raise ValueError(f"{text!r} is not a whole number")
        return int(number)
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not valid JSON") from exc
    if not isinstance(value, kind):
        raise ValueError(f"{text!r} is not a JSON {'array' if kind is list else 'object'}")
    return value
