"""``@hml.op()``: a typed Python function that is also a Kubeflow Pipelines container step.

An op's parameters become the step's inputs and its return value the step's output. Inside a
pipeline function, calling an op adds a task to the pipeline; outside one, it is the plain function
(handy in tests). The step's command line in the container is::

    <entrypoint> pipelines <pipeline> run <op> --<param> <value> ... --hml-run-id <id> --hml-output <file>

A parameter annotated :class:`~hmlcore.pipelines.context.OpContext` is not an input: the runner passes the step
its context (the lake, the warehouse, the registered models, the run id). How values are written on the
command line and read back is :mod:`hmlcore.pipelines.values`.

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
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from hmlcore.errors import PipelineError
from hmlcore.pipelines.context import OpContext
from hmlcore.pipelines.values import KFP_TYPES

__all__ = ["Collected", "HmlOp", "HmlTask", "OpParam", "collected", "op", "parallel_for"]

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
    it and chain ``with_*`` calls on it (see :class:`hmlcore.pipelines.kfp_task.KfpTask`).
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
