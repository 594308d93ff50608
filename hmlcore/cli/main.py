"""The package's command line, built from its :class:`~hmlcore.app.HmlApp`.

::

    <entrypoint> pipelines <pipeline> run <step> [--param value ...]
    <entrypoint> pipelines <pipeline> run-all [--resume RUN_ID] [--param name=value ...]
    <entrypoint> pipelines <pipeline> compile [-o FILE]
    <entrypoint> inference run-dev | run-prod
    <entrypoint> models list | show VERSION | promote VERSION | rollback

The groups live in :mod:`hmlcore.cli.pipelines`, :mod:`hmlcore.cli.inference` and :mod:`hmlcore.cli.models`. Any
:class:`~hmlcore.errors.HmlError` becomes a one-line ``Error: ...`` and exit code 1; any other exception
in a command does too, with its type (set ``HML_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from hmlcore.errors import HmlError, mask_credentials
from hmlcore.storage.config import debugging

if TYPE_CHECKING:
    from hmlcore.app import HmlApp
    from hmlcore.model.container import ModelContainer

__all__ = ["HmlCliError", "build_cli", "guard", "registered_model"]


class HmlCliError(click.ClickException):
    """A one-line error with exit code 1."""


def guard(func: Any) -> Any:
    """Run a command callback; turn errors into one-line click errors."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except HmlError as exc:
            raise HmlCliError(str(exc)) from exc
        except Exception as exc:
            if debugging():
                raise
            raise HmlCliError(mask_credentials(f"{type(exc).__name__}: {exc} (set HML_DEBUG=1 for the traceback)")) from exc

    wrapper.__name__ = getattr(func, "__name__", "command")
    wrapper.__doc__ = func.__doc__
    return wrapper


def registered_model(app: HmlApp, model: str | None) -> ModelContainer:
    """The model named by a command's ``--model`` option, or the only one registered.

    Raises:
        HmlCliError: no name was given and there is not exactly one model.
    """
    if model is None:
        if len(app.models) != 1:
            raise HmlCliError(f"{len(app.models)} models are registered: name one with --model ({', '.join(app.models) or 'none'})")
        model = next(iter(app.models))
    return app.get_model(model)


def build_cli(app: HmlApp) -> click.Group:
    """The root command group of ``app``'s package."""
    from hmlcore.cli.inference import inference_group  # here, not at the top: each group module imports guard from this one
    from hmlcore.cli.models import models_group
    from hmlcore.cli.monitor import monitor_group
    from hmlcore.cli.pipelines import pipelines_group

    @click.group(name=app.package_entrypoint, context_settings={"help_option_names": ["-h", "--help"]})
    def root() -> None:
        pass

    root.help = f"{app.name}: train and serve the model locally, or deploy it to Kubeflow and Kubernetes."
    root.add_command(pipelines_group(app))
    root.add_command(inference_group(app))
    root.add_command(monitor_group(app))
    root.add_command(models_group(app))
    return root
