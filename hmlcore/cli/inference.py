"""``<entrypoint> inference run-dev | run-prod``: the serving commands. Nothing here imports kfp."""

from __future__ import annotations

import click

from hmlcore.cli._common import CliApp, guard
from hmlcore.cli.example import add_example_command
from hmlcore.cli.k8s import add_k8s_commands
from hmlcore.serving.server import DEFAULT_DRAIN_SECONDS, DEFAULT_THREADS, default_workers, limit_threads, run_dev, run_prod

__all__ = ["inference_group"]


def inference_group(app: CliApp) -> click.Group:
    """The ``inference`` group: serve the model (and deploy it)."""
    group = click.Group("inference", help="Serve predictions from the trained model.")
    host_option = click.option(
        "--host", default="0.0.0.0", envvar="HML_HOST", show_envvar=True, show_default=True, help="Address to listen on."
    )
    port_option = click.option(
        "--port",
        type=click.IntRange(1, 65535),
        default=app.inference_port,
        envvar="HML_PORT",
        show_envvar=True,
        show_default=True,
        help="Port to listen on.",
    )

    @group.command("run-dev")
    @host_option
    @port_option
    @click.option("--reload/--no-reload", default=True, show_default=True, help="Restart when a source file changes.")
    @guard
    def run_dev_command(host: str, port: int, reload: bool) -> None:
        """Serve with Flask's development server (one process, reloads on code changes)."""
        run_dev(app.inference.create_app, host=host, port=port, reload=reload)

    @group.command("run-prod")
    @host_option
    @port_option
    @click.option(
        "--workers", type=click.IntRange(1, 64), default=None, help="Worker processes (default: HML_WORKERS or the number of cores)."
    )
    @click.option(
        "--timeout",
        type=click.IntRange(1, 3600),
        default=30,
        show_default=True,
        help="Seconds the workers have to finish their requests once the drain is over.",
    )
    @click.option(
        "--threads",
        type=click.IntRange(1, 256),
        default=DEFAULT_THREADS,
        envvar="HML_THREADS",
        show_envvar=True,
        show_default=True,
        help="Threads per worker: they serve the routes you add to the app and finish sending answers to slow clients; "
        "/predict and the API's other routes are answered by the worker itself once the whole request has arrived.",
    )
    @click.option(
        "--drain",
        type=click.FloatRange(0, 3600),
        default=DEFAULT_DRAIN_SECONDS,
        envvar="HML_DRAIN_SECONDS",
        show_envvar=True,
        show_default=True,
        help="Seconds to keep serving after SIGTERM while /readyz answers 503, before stopping.",
    )
    @click.option(
        "--header-timeout",
        type=click.FloatRange(0, 3600, min_open=True),
        default=10,
        envvar="HML_HEADER_TIMEOUT",
        show_envvar=True,
        show_default=True,
        help="Seconds a client has to send a request's headers (then 408).",
    )
    @click.option(
        "--body-timeout",
        type=click.FloatRange(0, 3600, min_open=True),
        default=30,
        envvar="HML_BODY_TIMEOUT",
        show_envvar=True,
        show_default=True,
        help="Seconds a client has to send a request's body (then 408).",
    )
    @click.option(
        "--log-query/--no-log-query",
        default=False,
        envvar="HML_LOG_QUERY",
        show_envvar=True,
        show_default=True,
        help="Write query strings (feature values: maybe personal data) to the access log.",
    )
    @guard
    def run_prod_command(
        host: str,
        port: int,
        workers: int | None,
        timeout: int,
        threads: int,
        drain: float,
        header_timeout: float,
        body_timeout: float,
        log_query: bool,
    ) -> None:
        """Serve in production: the models load once, then --workers processes answer the requests; SIGTERM drains, then stops."""
        workers = workers or default_workers()
        native_threads = limit_threads(workers)  # before the models load: the master must start no native thread
        run_prod(
            app.inference.create_app(),
            host=host,
            port=port,
            workers=workers,
            threads=threads,
            timeout=timeout,
            drain=drain,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            log_query=log_query,
            native_threads=native_threads,
        )

    return add_k8s_commands(add_example_command(group, app), app)
