"""Pipelines: ``@hml.pipeline`` registers a function whose op calls form a DAG of steps.

:class:`HmlPipelineApp` (``app.pipelines``) holds the pipelines of a package and the ``@hml.deploy_op``
configurators. A pipeline is traced without Kubeflow to learn its steps (fast, for the CLI), and
compiled with Kubeflow (:mod:`hmlcore.pipelines.compiler`) for the cluster and for local ``run-all``.

Example:
    >>> from hmlcore import hml
    >>> app = hml.HmlApp(name="demo", package_entrypoint="demo")
    >>> @hml.op()
    ... def hello(name: str = "world") -> str:
    ...     return f"hello {name}"
    >>> @hml.pipeline(app.pipelines)
    ... def greet():
    ...     hello()
    >>> [o.name for o in app.pipelines["greet"].ops]
    ['hello']

A pipeline can also be declared beside its steps, with no app, and registered by the app that runs it:

    >>> @hml.pipeline(cron="0 0 * * *")
    ... def nightly():
    ...     hello()
    >>> app.pipelines.register(nightly).cron
    '0 0 0 * * *'
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from hmlcore.errors import ConfigError, PipelineError
from hmlcore.pipelines.ops import HmlOp, HmlTask, OpParam, base_type, building
from hmlcore.pipelines.values import KFP_TYPES

if TYPE_CHECKING:
    from hmlcore.model.container import ModelContainer
    from hmlcore.storage.store import DataStore

__all__ = ["HmlPipeline", "HmlPipelineApp", "PipelineHost", "deploy_op", "pipeline"]

#: the fields of Kubeflow's 6-field cron (robfig/cron with seconds): name, lowest, highest, names
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
_CRON_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}


def normalise_cron(cron: str) -> str:
    """Return ``cron`` as the 6-field expression Kubeflow wants (seconds first).

    Accepts the classic 5-field form (``"0 0 * * *"``: minute hour day-of-month month day-of-week; the
    seconds become ``0``), the 6-field form, and ``@daily``-style descriptors. Every field is checked:
    numbers in range, ``*``, ``?`` (day fields), ranges ``a-b``, steps ``/n``, lists ``a,b`` and
    month / weekday names.

    Example:
        >>> normalise_cron("0 0 * * *"), normalise_cron("30 2 * * MON-FRI"), normalise_cron("@hourly")
        ('0 0 0 * * *', '0 30 2 * * MON-FRI', '0 0 * * * *')

    Raises:
        ConfigError: ``cron`` is not a valid 5- or 6-field expression (the message names the bad field).
    """
    text = str(cron).strip()
    if text.lower() in _CRON_DESCRIPTORS:
        return _CRON_DESCRIPTORS[text.lower()]
    fields = text.split()
    if len(fields) not in (5, 6):
        raise ConfigError(
            f"invalid cron {cron!r}: it has {len(fields)} fields;"
            " use 5 like '0 0 * * *' (minute hour day month weekday) or 6 with seconds first"
        )
    if len(fields) == 5:
        fields = ["0", *fields]
    for field, (label, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        problem = _cron_field_problem(field, low, high, names, allow_any=label.startswith("day"))
        if problem:
            raise ConfigError(f"invalid cron {cron!r}: {label} {field!r} {problem}")
    return " ".join(fields)


def _cron_field_problem(field: str, low: int, high: int, names: tuple[str, ...], *, allow_any: bool) -> str | None:
    def number(text: str) -> int | None:
        if text.upper() in names:
            return names.index(text.upper()) + low
        if text.isdigit() and low <= int(text) <= high:
            return int(text)
        return None

    for item in field.split(","):
        base, slash, step = item.partition("/")
        if slash and not (step.isdigit() and int(step) > 0):
            return f"has a bad step {step!r}"
        if base == "*" or (base == "?" and allow_any):
            continue
        start, dash, end = base.partition("-")
        first = number(start)
        if first is None:
            return f"is not a number from {low} to {high}" + (f" or a name like {names[0]}" if names else "")
        if dash:
            last = number(end)
            if last is None or last < first:
                return f"has a bad range {base!r}"
    return None


class _TraceBuilder:
    """Builds the task list of a pipeline without Kubeflow, by calling its function."""

    def __init__(self) -> None:
        self.tasks: list[HmlTask] = []

    def add_task(self, op: HmlOp, arguments: dict[str, Any]) -> HmlTask:
        used = sum(1 for t in self.tasks if t.op is op)
        task = HmlTask(op, arguments, name=op.name if not used else f"{op.name}-{used + 1}")
        self.tasks.append(task)
        return task

    @contextlib.contextmanager
    def parallel_for(self, items: Any, parallelism: int) -> Iterator[Any]:
        yield _Placeholder("loop item")


class HmlPipeline:
    """A pipeline: declared with :func:`pipeline`, run by the app that registers it.

    Attributes:
        name: the pipeline's name (the function's name), used on the command line.
        cron: the production schedule (5- or 6-field cron), if any.
        experiment: the Kubeflow experiment production runs go to (default: the pipeline's name).
        params: the pipeline's own parameters (the function's arguments, with defaults).
    """

    def __init__(
        self, func: Callable[..., Any], owner: HmlPipelineApp | None, *, cron: str | None, experiment: str | None, name: str | None
    ) -> None:
        self.func = func
        self._owner = owner  # None while declared only: app.pipelines.register gives each app a copy of its own
        self.name = name or func.__name__
        self.description = inspect.getdoc(func) or ""
        self.cron = normalise_cron(cron) if cron else None
        self.experiment = experiment or self.name
        hints = typing.get_type_hints(func)
        params = []
        for p in inspect.signature(func).parameters.values():
            base = base_type(hints.get(p.name, type(p.default) if p.default is not inspect.Parameter.empty else str))
            if base not in KFP_TYPES:
                raise PipelineError(f"pipeline {self.name}: parameter {p.name!r} must be typed str, int, float, bool, list or dict")
            if p.default is None:
                raise PipelineError(f"pipeline {self.name}: parameter {p.name!r} defaults to None, which Kubeflow cannot pass")
            params.append(OpParam(p.name, base, p.default))
        self.params = params
        self._tasks: list[HmlTask] | None = None

    def __repr__(self) -> str:
        return f"<hml.pipeline {self.name}>"

    def trace(self) -> list[HmlTask]:
        """The pipeline's tasks, found by calling its function with stand-ins (no Kubeflow needed)."""
        if self._tasks is None:
            builder = _TraceBuilder()
            with building(builder):
                self.func(**{p.name: p.default if not p.required else _Placeholder(p.name) for p in self.params})
            if not builder.tasks:
                raise PipelineError(f"pipeline {self.name} calls no @hml.op step")
            self._tasks = builder.tasks
        return self._tasks

    @property
    def ops(self) -> list[HmlOp]:
        """The distinct ops the pipeline uses, in call order."""
        seen: dict[str, HmlOp] = {}
        for task in self.trace():
            seen.setdefault(task.op.name, task.op)
        return list(seen.values())

    def get_op(self, name: str) -> HmlOp:
        """The op called ``name`` (dashes and underscores alike)."""
        wanted = name.replace("-", "_")
        for candidate in self.ops:
            if candidate.name == wanted:
                return candidate
        raise PipelineError(f"pipeline {self.name} has no step {name!r}; its steps are: {', '.join(o.name for o in self.ops)}")

    @property
    def owner(self) -> HmlPipelineApp:
        """The :class:`HmlPipelineApp` (``app.pipelines``) the pipeline is registered in: its image, entrypoint and configurators.

        Raises:
            PipelineError: the pipeline is declared but no app registered it.
        """
        if self._owner is None:
            raise PipelineError(
                f"pipeline {self.name} is declared but no app runs it: register it with app.pipelines.register({self.name})"
            )
        return self._owner

    @property
    def registered(self) -> bool:
        """Whether an app registered this pipeline (a pipeline only declared has no app to run it)."""
        return self._owner is not None


class _Placeholder:
    """Stands for a required pipeline parameter while tracing."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<pipeline parameter {self.name}>"


class PipelineHost(Protocol):
    """What the pipelines read of the app that holds them, once, when :class:`HmlPipelineApp` is made (``HmlApp`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def image_url(self) -> str: ...
    @property
    def package_entrypoint(self) -> str: ...
    @property
    def cluster_platform(self) -> str | None: ...
    @property
    def k8s_namespace(self) -> str: ...
    @property
    def env(self) -> Mapping[str, str]: ...
    @property
    def store(self) -> DataStore: ...
    @property
    def models(self) -> Mapping[str, ModelContainer]: ...


class HmlPipelineApp:
    """The pipelines of one app, and the configurators applied to every step (``app.pipelines``).

    Args:
        host: the app. Its settings are read here; its environment, data store and models are shared, so
            what ``with_env`` and ``register_model`` add later reaches every step.
    """

    def __init__(self, host: PipelineHost) -> None:
        self.name = host.name
        self.image_url = host.image_url
        self.package_entrypoint = host.package_entrypoint
        self.cluster_platform = host.cluster_platform
        self.k8s_namespace = host.k8s_namespace
        self.env = host.env
        self.store = host.store
        self.models = host.models
        self.pipelines: dict[str, HmlPipeline] = {}
        self.op_configurators: list[Callable[[Any], Any]] = []

    def __getitem__(self, name: str) -> HmlPipeline:
        try:
            return self.pipelines[name]
        except KeyError:
            known = ", ".join(self.pipelines) or "none"
            raise PipelineError(f"no pipeline {name!r}; known pipelines: {known}") from None

    def __iter__(self) -> Iterator[HmlPipeline]:
        return iter(self.pipelines.values())

    def __len__(self) -> int:
        return len(self.pipelines)

    def register(self, pipeline: HmlPipeline) -> HmlPipeline:
        """Run ``pipeline`` (declared with ``@hml.pipeline(...)``) in this app; returns the app's own copy of it.

        A declared pipeline is never changed: each app registering it gets a copy of its own, so two apps
        (one per test, say) never share one.

        Raises:
            ConfigError: ``pipeline`` is not a pipeline.
            PipelineError: a pipeline of the same name is registered already.
        """
        if not isinstance(pipeline, HmlPipeline):
            raise ConfigError(f"app.pipelines.register takes a pipeline declared with @hml.pipeline, got {type(pipeline).__name__}")
        if pipeline.name in self.pipelines:
            raise PipelineError(f"pipeline {pipeline.name!r} is registered twice")
        if pipeline._owner is not self:
            pipeline = copy.copy(pipeline)
            pipeline._owner = self
        self.pipelines[pipeline.name] = pipeline
        return pipeline

    def configure_op(self, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Register ``func`` to configure every step at compile time (what ``@hml.deploy_op`` does)."""
        self.op_configurators.append(func)
        return func


def pipeline(
    pipelines: HmlPipelineApp | None = None,
    *,
    cron: str | None = None,
    experiment: str | None = None,
    name: str | None = None,
) -> Callable[[Callable[..., Any]], HmlPipeline]:
    """Declare the decorated function as a pipeline; with ``app.pipelines``, register it there too.

    Without ``pipelines`` the pipeline is declared beside its steps and an app runs it once it is
    registered: ``app.pipelines.register(nightly)``. Either way its cron is checked here.

    Args:
        pipelines: the app's pipeline registry, or ``None`` to declare the pipeline only.
        cron: the production schedule, 5-field (``"0 0 * * *"``) or 6-field cron.
        experiment: the Kubeflow experiment of production runs (default: the pipeline's name).
        name: the pipeline's name (default: the function's name).

    Raises:
        ConfigError: ``pipelines`` is not ``app.pipelines``, or ``cron`` is not a valid cron expression.
    """
    if pipelines is not None and not isinstance(pipelines, HmlPipelineApp):
        raise ConfigError(f"@hml.pipeline takes app.pipelines or nothing, got {type(pipelines).__name__}")

    def decorate(func: Callable[..., Any]) -> HmlPipeline:
        declared = HmlPipeline(func, pipelines, cron=cron, experiment=experiment, name=name)
        return declared if pipelines is None else pipelines.register(declared)

    return decorate


def deploy_op(pipelines: HmlPipelineApp) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register the decorated function to configure every pipeline step for the cluster.

    The function receives each step's task and chains ``with_env``, ``with_secret``, ``with_gcp_auth``,
    ``with_empty_dir``, ``with_resources``... on it.
    """
    if not isinstance(pipelines, HmlPipelineApp):
        raise ConfigError(f"@hml.deploy_op takes app.pipelines, got {type(pipelines).__name__}")
    return pipelines.configure_op
