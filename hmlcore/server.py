"""Serve the inference API: Flask's development server, or gunicorn for production.

``run_prod`` builds the Flask app (so models load once, before gunicorn forks its workers) and hands it
to gunicorn: workers from ``--workers`` / ``HML_WORKERS`` (default: the machine's cores), access log on
stdout, graceful shutdown on SIGTERM.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from hmlcore.errors import ConfigError

if TYPE_CHECKING:
    import flask

__all__ = ["default_workers", "run_dev", "run_prod"]


def default_workers() -> int:
    """``HML_WORKERS`` if set, else the number of cores this process may use."""
    text = os.environ.get("HML_WORKERS")
    if text:
        try:
            workers = int(text)
        except ValueError:
            raise ConfigError(f"HML_WORKERS must be a whole number, got {text!r}") from None
        if workers < 1:
            raise ConfigError(f"HML_WORKERS must be at least 1, got {workers}")
        return workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_dev(flask_app: flask.Flask, *, host: str, port: int, reload: bool = False) -> None:
    """Serve with Flask's development server."""
    flask_app.run(host=host, port=port, debug=False, use_reloader=reload)


def run_prod(flask_app: flask.Flask, *, host: str, port: int, workers: int, timeout: int = 30) -> None:
    """Serve with gunicorn: ``workers`` processes forked from this one after the models are loaded."""
    from gunicorn.app.base import BaseApplication

    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
        "preload_app": True,
        "timeout": timeout,
        "graceful_timeout": timeout,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": os.environ.get("HML_LOG_LEVEL", "info").lower(),
        "proc_name": flask_app.name,
    }

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> flask.Flask:
            return flask_app

    Application().run()
