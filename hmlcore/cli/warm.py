"""``<entrypoint> warm``: the warm interpreters ``run-all`` uses on this machine, and stopping them.

::

    crashed warm            process 4538: key 5ae8a09cc1e8…, 264 MB, up 12 min (this environment)
    crashed warm --stop     stopped process 4538 (key 5ae8a09cc1e8…)
"""

from __future__ import annotations

import os
import sys

import click

from hmlcore._warm.place import Place, describe, servers

__all__ = ["warm_command"]


def warm_command() -> click.Command:
    """The ``warm`` command."""

    @click.command("warm")
    @click.option("--stop", is_flag=True, help="Stop them (a run-all they are running goes on to its end).")
    def warm(stop: bool) -> None:
        """List the warm interpreters run-all starts from (one per Python, installed packages and settings), or stop them.

        Every run-all after the first starts from one; each exits by itself after 30 idle minutes.
        HML_WARM=false runs without them.
        """
        running = servers(os.environ)
        if not running:
            click.echo("no warm interpreter runs")
            return
        here = Place.find(os.environ, sys.path)
        for server in running:
            if stop:
                server.stop()
                click.echo(f"stopped process {server.pid} (key {os.path.basename(server.place.base)})")
            else:
                mine = " (this environment)" if here is not None and server.place == here else ""
                click.echo(describe(server) + mine)

    return warm
