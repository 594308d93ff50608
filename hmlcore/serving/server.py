"""Serve the inference API: Flask's development server, or gunicorn for production.

``run_prod`` takes the built Flask app (so models are loaded once, before gunicorn forks its workers)
and hands it to gunicorn: as many worker processes as ``--workers`` / ``HML_WORKERS`` say (default: the
cores this process may use, cgroup CPU limits included), each with ``--threads`` threads
(:class:`~hmlcore.serving._gunicorn.HmlWorker`, gunicorn's ``gthread``: its main loop gathers each request
in the poller, holding no thread, until it has wholly arrived, under read deadlines (a client too slow
gets a 408); it serves hmlcore's routes itself, and hands the app's own routes to the threads).
The access log goes to stdout without query strings unless ``--log-query`` (they hold feature values,
personal data). On SIGTERM, ``/readyz`` answers 503 at once while the server keeps serving for
``--drain`` seconds (so a balancer takes it out before it stops), then stops gracefully: a worker
finishes the requests it is serving, within ``graceful_timeout``. Gunicorn's control
socket is off (it would be written under ``$HOME``, which a read-only container does not have, and two
servers on one machine would fight over it); worker heartbeat files go to ``/dev/shm`` when it exists.

Example:
    >>> default_workers() >= 1
    True
"""

from __future__ import annotations

import functools
import gc
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hmlcore import _env
from hmlcore._machine import available_cores
from hmlcore.errors import ConfigError
from hmlcore.serving.native_threads import NATIVE_THREAD_VARIABLES, limit_threads, size_native_pools

if TYPE_CHECKING:
    import flask

__all__ = [
    "ACCESS_LOG_FORMAT",
    "ACCESS_LOG_FORMAT_WITH_QUERY",
    "DEFAULT_DRAIN_SECONDS",
    "DEFAULT_THREADS",
    "NATIVE_THREAD_VARIABLES",
    "available_cores",
    "default_workers",
    "gunicorn_options",
    "limit_threads",
    "run_dev",
    "run_prod",
    "size_native_pools",
]

log = logging.getLogger("hmlcore.server")

#: gunicorn's access log line: client, method, path (no query string), protocol, status, bytes, milliseconds, user agent
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'
#: the same with the whole request line, query string included (``--log-query``)
ACCESS_LOG_FORMAT_WITH_QUERY = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms "%(a)s"'
#: threads per worker unless ``--threads`` / ``HML_THREADS`` say otherwise
DEFAULT_THREADS = 4
#: connections each worker keeps open at most (gunicorn's ``worker_connections``)
DEFAULT_CONNECTIONS = 4000
#: seconds the server keeps serving after SIGTERM, ``/readyz`` answering 503 (``--drain`` / ``HML_DRAIN_SECONDS``)
DEFAULT_DRAIN_SECONDS = 5


def default_workers() -> int:
    """``HML_WORKERS`` if set, else :func:`available_cores`.

    Raises:
        ConfigError: ``HML_WORKERS`` is not a whole number of at least 1.
    """
    return _env.WORKERS.get() or available_cores()


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


def gunicorn_options(
    *,
    host: str,
    port: int,
    workers: int,
    threads: int = DEFAULT_THREADS,
    timeout: int = 30,
    name: str = "hml",
    log_query: bool = False,
) -> dict[str, Any]:
    """The gunicorn settings :func:`run_prod` uses (the worker class is set by :func:`run_prod`)."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    options: dict[str, Any] = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        # connections each worker keeps open: waiting ones cost a socket and no thread; past it, the oldest is shed
        "worker_connections": DEFAULT_CONNECTIONS,
        "preload_app": True,
        "timeout": timeout,
        "graceful_timeout": timeout,
        "keepalive": 5,
        "accesslog": "-",
        "access_log_format": ACCESS_LOG_FORMAT_WITH_QUERY if log_query else ACCESS_LOG_FORMAT,
        "errorlog": "-",
        "loglevel": _env.LOG_LEVEL.get(),
        "proc_name": name,
        "control_socket_disable": True,
    }
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        options["worker_tmp_dir"] = "/dev/shm"
    return options


def _builtin_route(flask_app: flask.Flask) -> Callable[[str, str], bool]:
    """``(method, path) -> bool``: whether the request goes to one of hmlcore's own routes (their endpoints start ``hml_``).

    Those answer quickly and wait for nothing, so :class:`~hmlcore.serving._gunicorn.HmlWorker`'s main loop
    serves them; a path no route takes is answered at once too (404, 405). The app's own routes go to the
    pool threads.
    """
    from werkzeug.exceptions import HTTPException

    adapter = flask_app.url_map.bind("localhost")

    @functools.lru_cache(maxsize=1024)
    def builtin(method: str, path: str) -> bool:
        try:
            endpoint, _ = adapter.match(path, method=method)
        except HTTPException:  # no route (404, 405) or a redirect: answered at once
            return True
        except Exception:  # noqa: BLE001 - a path werkzeug cannot match: the threads serve it as any request
            return False
        return str(endpoint).startswith("hml_")

    return builtin


def run_prod(
    flask_app: flask.Flask,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int = DEFAULT_THREADS,
    timeout: int = 30,
    drain: float = DEFAULT_DRAIN_SECONDS,
    header_timeout: float = 10,
    body_timeout: float = 30,
    log_query: bool = False,
    native_threads: int = 1,
) -> None:
    """Serve ``flask_app`` with gunicorn: ``workers`` processes of ``threads`` threads, forked after the models are loaded.

    Args:
        flask_app: the app to serve.
        host: the address to listen on.
        port: the port to listen on.
        workers: worker processes.
        threads: threads per worker, for the app's own routes and answers still leaving; each serves one
            request at a time (a request reaches a thread only once it has wholly arrived).
        timeout: seconds a stopping worker may take to finish its requests, after the drain; a worker
            whose main loop is silent this long is restarted.
        drain: seconds the server keeps serving after SIGTERM while ``/readyz`` answers 503.
        header_timeout: seconds a client has to send a request's line and headers (then 408).
        body_timeout: seconds a client has to send a request's body (then 408).
        log_query: write query strings (feature values) to the access log.
        native_threads: threads each worker's OpenMP and BLAS use, set once the worker is forked (what
            :func:`limit_threads`, called before the app loaded its models, returned).

    Returns when gunicorn has stopped (SIGTERM: after the drain, gracefully; SIGINT / SIGQUIT: at once).
    """
    from gunicorn.app.base import BaseApplication

    from hmlcore.serving._access_log import AccessLogger  # gunicorn: run-prod only
    from hmlcore.serving._draining import DrainFlag, DrainingArbiter, readiness_gate  # gunicorn: run-prod only
    from hmlcore.serving._gunicorn import HmlWorker  # gunicorn: run-prod only
    from hmlcore.serving.metrics import gunicorn_hooks  # numpy and prometheus_client: run-prod only

    if drain < 0:
        raise ConfigError(f"drain must be at least 0 seconds, got {drain}")
    for value, what in ((header_timeout, "header_timeout"), (body_timeout, "body_timeout")):
        if value <= 0:
            raise ConfigError(f"{what} must be more than 0 seconds, got {value}")
    options = gunicorn_options(
        host=host, port=port, workers=workers, threads=threads, timeout=timeout, name=flask_app.name, log_query=log_query
    )
    options.update(gunicorn_hooks())  # Prometheus multiprocess folder for the workers; dead workers forgotten
    flag = DrainFlag()
    settings = {
        "header_timeout": float(header_timeout),
        "body_timeout": float(body_timeout),
        "drain_flag": flag,
        "inline_route": staticmethod(_builtin_route(flask_app)),
        "native_threads": native_threads,
        "max_body_bytes": int(flask_app.config.get("MAX_CONTENT_LENGTH") or HmlWorker.max_body_bytes),
    }
    options["worker_class"] = type("HmlWorker", (HmlWorker,), settings)
    options["logger_class"] = AccessLogger
    arbiter = type("DrainingArbiter", (DrainingArbiter,), {"drain": float(drain), "drain_flag": flag})
    served = readiness_gate(flask_app, flag)

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return served

        def run(self) -> None:
            arbiter(self).run()

    log.info("serving on %s with %d gunicorn worker(s) of %d thread(s)", options["bind"], workers, threads)
    # what is loaded now lives as long as the server: keep the cyclic GC off it, so the workers'
    # collections stay short and do not write to (and copy) the pages they share with this process
    gc.freeze()
    Application().run()
