"""The package's command line, built from its :class:`~hmlcore.app.HmlApp`.

::

    <entrypoint> pipelines <pipeline> run <step> [--param value ...]
    <entrypoint> pipelines <pipeline> run-all [--resume RUN_ID] [--param name=value ...]
    <entrypoint> pipelines <pipeline> compile [-o FILE]
    <entrypoint> inference run-dev | run-prod
    <entrypoint> models list | show VERSION | promote VERSION | rollback
    <entrypoint> warm [--stop]

The groups live in :mod:`hmlcore.cli.pipelines`, :mod:`hmlcore.cli.inference`, :mod:`hmlcore.cli.models` and
:mod:`hmlcore.cli.warm`
(what they share, in :mod:`hmlcore.cli._common`). Any
:class:`~hmlcore.errors.HmlError` becomes a one-line ``Error: ...`` and exit code 1; any other exception
in a command does too, with its type (set ``HML_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

import click

from hmlcore.cli._common import CliApp, HmlCliError, guard, registered_model
from hmlcore.cli.inference import inference_group
from hmlcore.cli.models import models_group
from hmlcore.cli.monitor import monitor_group
from hmlcore.cli.pipelines import pipelines_group
from hmlcore.cli.warm import warm_command

__all__ = ["HmlCliError", "build_cli", "guard", "registered_model"]


def build_cli(app: CliApp) -> click.Group:
    """The root command group of ``app``'s package."""

    @click.group(name=app.package_entrypoint, context_settings={"help_option_names": ["-h", "--help"]})
    def root() -> None:
        pass

    root.help = f"{app.name}: train and serve the model locally, or deploy it to Kubeflow and Kubernetes."
    root.add_command(pipelines_group(app))
    root.add_command(inference_group(app))
    root.add_command(monitor_group(app))
    root.add_command(models_group(app))
    root.add_command(warm_command())
    return root
