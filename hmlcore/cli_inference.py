"""``<entrypoint> inference run-dev | run-prod``: the serving commands. Nothing here imports kfp."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from hmlcore.cli import guard

if TYPE_CHECKING:
    from hmlcore.app import HmlApp

__all__ = ["inference_group"]


def inference_group(app: HmlApp) -> click.Group:
    """The ``inference`` group: serve the model (and deploy it)."""
    group = click.Group("inference", help="Serve predictions from the trained model.")
    host_option = click.option("--host", default="0.0.0.0", envvar="HML_HOST", show_default=True, help="Address to listen on.")
    port_option = click.option(
        "--port", type=click.IntRange(1, 65535), default=app.inference_port, envvar="HML_PORT", show_default=True, help="Port to listen on."
    )

    @group.command("run-dev")
    @host_option
    @port_option
    @click.option("--reload/--no-reload", default=False, help="Restart when the code changes.")
    @guard
    def run_dev_command(host: str, port: int, reload: bool) -> None:
        """Serve with Flask's development server."""
        from hmlcore.server import run_dev

        run_dev(app.inference.create_app(), host=host, port=port, reload=reload)

    @group.command("run-prod")
    @host_option
    @port_option
    @click.option(
        "--workers", type=click.IntRange(1, 64), default=None, help="Worker processes (default: HML_WORKERS or the number of cores)."
    )
    @guard
    def run_prod_command(host: str, port: int, workers: int | None) -> None:
        """Serve with gunicorn: models load once, then workers fork."""
        from hmlcore.server import default_workers, run_prod

        run_prod(app.inference.create_app(), host=host, port=port, workers=workers or default_workers())

    return group
