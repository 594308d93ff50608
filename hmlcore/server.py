"""Serve the inference API: Flask's development server, or gunicorn for production.

``run_prod`` takes the built Flask app (so models are loaded once, before gunicorn forks its workers)
and hands it to gunicorn: sync workers, as many as ``--workers`` / ``HML_WORKERS`` say (default: the
cores this process may use, cgroup CPU limits included), access log on stdout, graceful shutdown on
SIGTERM (a worker finishes the request it is serving, within ``graceful_timeout``). Gunicorn's control
socket is off (it would be written under ``$HOME``, which a read-only container does not have, and two
servers on one machine would fight over it); worker heartbeat files go to ``/dev/shm`` when it exists.

Example:
    >>> default_workers() >= 1
    True
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hmlcore.config import env_int
from hmlcore.errors import ConfigError

if TYPE_CHECKING:
    import flask

__all__ = ["ACCESS_LOG_FORMAT", "available_cores", "default_workers", "gunicorn_options", "limit_threads", "run_dev", "run_prod"]

log = logging.getLogger("hmlcore.server")

#: gunicorn's access log line: client, request line, status, bytes, milliseconds, user agent
ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms "%(a)s"'


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a container's limit)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def default_workers() -> int:
    """``HML_WORKERS`` if set, else :func:`available_cores`.

    Raises:
        ConfigError: ``HML_WORKERS`` is not a whole number of at least 1.
    """
    return env_int("HML_WORKERS", 0) or available_cores()


def limit_threads(workers: int) -> None:
    """Give each of ``workers`` processes its share of the cores for OpenMP / BLAS, unless already set.

    Call before the model libraries are imported: they read these variables once, when they load. Without
    it every worker's XGBoost or NumPy would start a thread per core and they would fight for them.
    """
    threads = str(max(1, available_cores() // max(1, workers)))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, threads)


def run_dev(create_app: Callable[[], flask.Flask], *, host: str, port: int, reload: bool = True) -> None:
    """Serve with Werkzeug's development server; with ``reload``, restart when a source file changes.

    ``create_app`` is called only in the process that serves (the reloader's watcher never loads models).
    """
    from werkzeug.serving import is_running_from_reloader, run_simple

    if reload and not is_running_from_reloader():
        run_simple(host, port, _not_serving, use_reloader=True)
        return
    run_simple(host, port, create_app(), use_reloader=reload, threaded=True)


def _not_serving(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:  # pragma: no cover - never called
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"the reloader does not serve"]


def gunicorn_options(*, host: str, port: int, workers: int, timeout: int = 30, name: str = "hml") -> dict[str, Any]:
    """The gunicorn settings :func:`run_prod` uses."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    options: dict[str, Any] = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
        "preload_app": True,
        "timeout": timeout,
        "graceful_timeout": timeout,
        "keepalive": 5,
        "accesslog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "errorlog": "-",
        "loglevel": os.environ.get("HML_LOG_LEVEL", "info").lower(),
        "proc_name": name,
        "control_socket_disable": True,
    }
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        options["worker_tmp_dir"] = "/dev/shm"
    return options


def run_prod(flask_app: flask.Flask, *, host: str, port: int, workers: int, timeout: int = 30) -> None:
    """Serve ``flask_app`` with gunicorn: ``workers`` processes forked from this one after the models are loaded.

    Returns when gunicorn has stopped (SIGTERM or SIGINT: graceful; a second SIGINT / SIGQUIT: at once).
    """
    from gunicorn.app.base import BaseApplication

    from hmlcore.metrics import gunicorn_hooks

    options = gunicorn_options(host=host, port=port, workers=workers, timeout=timeout, name=flask_app.name)
    options.update(gunicorn_hooks())  # Prometheus multiprocess folder for the workers; dead workers forgotten

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> flask.Flask:
            return flask_app

    log.info("serving on %s with %d gunicorn worker(s)", options["bind"], workers)
    # what is loaded now lives as long as the server: keep the cyclic GC off it, so the workers'
    # collections stay short and do not write to (and copy) the pages they share with this process
    gc.freeze()
    Application().run()
