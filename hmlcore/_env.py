"""Every environment variable hmlcore reads, each named once with its default, its type and its check.

A variable is read when :meth:`Variable.get` is called, never cached: ``run-all`` sets each step's
environment around the step, and a test or a worker may change a variable between two calls. A bad
value is a one-line :class:`~hmlcore.errors.ConfigError` naming the variable and the value.

Variables that belong to another program are not here: the ones a library reads itself (``AWS_*`` for
s3fs, ``GOOGLE_APPLICATION_CREDENTIALS``, ``PROMETHEUS_MULTIPROC_DIR``, ``OMP_NUM_THREADS``), the ones the
Kubeflow Trainer sets for a worker (``DMLC_*``, :mod:`hmlcore.model.distributed`), and a platform's table of
settings checked all at once (:mod:`hmlcore.storage.config`).

Example:
    >>> DEBUG.get({"HML_DEBUG": "yes"}), DEBUG.get({})
    (True, False)
    >>> WORKERS.get({"HML_WORKERS": "many"})
    Traceback (most recent call last):
    ...
    hmlcore.errors.ConfigError: HML_WORKERS='many' is not a whole number of at least 1 (the inference server's worker processes...)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from hmlcore.errors import ConfigError

__all__ = [
    "ALLOW_PICKLE",
    "CACHE",
    "CACHE_DIR",
    "CACHE_KEYED",
    "DEBUG",
    "DRIFT_WINDOW",
    "GIT_COMMIT",
    "HOME",
    "IMAGE",
    "KUBECONFIG",
    "LAKE_URL",
    "LOG_LEVEL",
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "MODEL_REFERENCE",
    "RELOAD_INTERVAL",
    "RUN_ID",
    "SIGNING_KEY",
    "SIGNING_KEY_FILE",
    "TRAINJOB",
    "USER",
    "VARIABLES",
    "WAREHOUSE_URL",
    "WARM",
    "WORKERS",
    "Variable",
    "cache_dir",
]

T = TypeVar("T")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class Variable(Generic[T]):
    """One environment variable: its name, the value when it is unset or blank, how its text is read, what it is for.

    Args:
        name: the variable's name.
        default: the value when the variable is unset or blank.
        parse: turns the (stripped) text into the value; raises ``ValueError`` with the reason if it cannot.
        doc: one line saying what the variable sets.
    """

    def __init__(self, name: str, default: T, parse: Callable[[str], T], doc: str) -> None:
        self.name, self.default, self.parse, self.doc = name, default, parse, doc

    def __repr__(self) -> str:
        return f"<environment variable {self.name}>"

    def get(self, environ: Mapping[str, str] | None = None) -> T:
        """The value in ``environ`` (default: this process's environment, read now), or the default if unset or blank.

        Raises:
            ConfigError: the text is not a valid value (the message names the variable, the value and why).
        """
        text = (os.environ if environ is None else environ).get(self.name)
        if text is None or not text.strip():
            return self.default
        try:
            return self.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{self.name}={text!r} {exc} ({self.doc})") from None


def _text(value: str) -> str:
    return value


def _flag(value: str) -> bool:
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ValueError("is not a boolean: set it to true or false")


def _set(value: str) -> bool:
    return value.strip().lower() not in _FALSE


def _whole(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise ValueError(f"is not a whole number of at least {minimum}")
        return number

    return parse


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.strip().lower() not in choices:
            raise ValueError(f"is not one of {', '.join(choices)}")
        return value.strip().lower()

    return parse


def _flag_var(name: str, default: bool, doc: str) -> Variable[bool]:
    return Variable(name, default, _flag, doc)


def _text_var(name: str, doc: str) -> Variable[str | None]:
    return Variable[str | None](name, None, _text, doc)


# ------------------------------------------------------------------ where things are kept
HOME = Variable("HML_HOME", ".hml", _text, "the local platform's folder: the lake, the warehouse, the run folders")
LAKE_URL = _text_var("HML_LAKE_URL", "the lake's URL, over the platform's default")
WAREHOUSE_URL = _text_var("HML_WAREHOUSE_URL", "the warehouse's URL, over the platform's default")
CACHE_DIR = _text_var("HML_CACHE_DIR", "where build products are kept (compiled specs); default $XDG_CACHE_HOME/hml, else ~/.cache/hml")
# ------------------------------------------------------------------ pipelines
CACHE = _flag_var("HML_CACHE", True, "false: run a step even if the step cache holds its output (a fresh entry is still recorded)")
CACHE_KEYED = Variable("HML_CACHE_ENV", "", _text, "the variables (comma-separated) whose values are part of a step's cache key")
RUN_ID = _text_var("HML_RUN_ID", "the pipeline run a step belongs to, when --hml-run-id is not given")
TRAINJOB = _text_var("HML_TRAINJOB", "set by compile in a step that trains on workers: the TrainJob they run as (JSON)")
IMAGE = _text_var("HML_IMAGE", "the image the package runs in, recorded with a published model")
GIT_COMMIT = _text_var("HML_GIT_COMMIT", "the commit recorded with a published model, when the working folder is not a git checkout")
USER = _text_var("HML_USER", "who is acting, in the registry's audit log (default: $USER)")
# ------------------------------------------------------------------ models
MODEL_REFERENCE = _text_var("HML_MODEL_REFERENCE", "the published model to load, pinned (default: the one in service)")
ALLOW_PICKLE = _flag_var("HML_ALLOW_PICKLE", False, "true: load pickled (joblib) models, which run code when loaded")
SIGNING_KEY = _text_var("HML_SIGNING_KEY", "the key that signs published models and checks them when loaded")
SIGNING_KEY_FILE = _text_var("HML_SIGNING_KEY_FILE", "a file (a mounted secret) holding the signing key")
# ------------------------------------------------------------------ serving
WORKERS = Variable("HML_WORKERS", 0, _whole(1), "the inference server's worker processes (default: the CPUs this process may use)")
MAX_BATCH = Variable("HML_MAX_BATCH", 0, _whole(1), "the most rows one /predict request may hold")
MAX_BODY_BYTES = Variable("HML_MAX_BODY_BYTES", 0, _whole(1), "the largest /predict request body, in bytes")
DRIFT_WINDOW = Variable("HML_DRIFT_WINDOW", 0, _whole(1), "how many recent requests the drift monitor compares with training")
RELOAD_INTERVAL = Variable("HML_RELOAD_INTERVAL", 30, _whole(0), "seconds between two looks for a newly promoted model (0: no hot reload)")
LOG_LEVEL = Variable("HML_LOG_LEVEL", "info", _one_of("debug", "info", "warning", "error", "critical"), "the inference server's log level")
# ------------------------------------------------------------------ the command line
DEBUG = Variable("HML_DEBUG", False, _set, "set (and not 0, false, no or off): print tracebacks with errors (run-all --debug)")
WARM = Variable[bool | None](
    "HML_WARM", None, _flag, "false: run-all runs in a fresh interpreter, never forked from a warm one (default: on; off when CI is set)"
)
KUBECONFIG = _text_var("KUBECONFIG", "the Kubernetes client configuration (kubectl's variable; default ~/.kube/config)")

#: every variable above, by name
VARIABLES: dict[str, Variable[object]] = {
    v.name: v  # type: ignore[misc]
    for v in (
        HOME,
        LAKE_URL,
        WAREHOUSE_URL,
        CACHE_DIR,
        CACHE,
        CACHE_KEYED,
        RUN_ID,
        TRAINJOB,
        IMAGE,
        GIT_COMMIT,
        USER,
        MODEL_REFERENCE,
        ALLOW_PICKLE,
        SIGNING_KEY,
        SIGNING_KEY_FILE,
        WORKERS,
        MAX_BATCH,
        MAX_BODY_BYTES,
        DRIFT_WINDOW,
        RELOAD_INTERVAL,
        LOG_LEVEL,
        DEBUG,
        WARM,
        KUBECONFIG,
    )
}


def cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """The folder of build products: ``HML_CACHE_DIR``, else ``$XDG_CACHE_HOME/hml``, else ``~/.cache/hml``.

    Example:
        >>> cache_dir({"HML_CACHE_DIR": "/tmp/c"}), cache_dir({"XDG_CACHE_HOME": "/tmp/x"})
        ('/tmp/c', '/tmp/x/hml')
    """
    env = os.environ if environ is None else environ
    given = CACHE_DIR.get(env)
    if given:
        return os.path.expanduser(given)
    xdg = env.get("XDG_CACHE_HOME", "").strip()  # the XDG base directory specification: relative paths are ignored
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hml")
