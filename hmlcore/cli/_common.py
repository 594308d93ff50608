"""What every command module shares: the app as the commands see it, one-line errors, the ``--model`` look-up.

The command modules (:mod:`~hmlcore.cli.pipelines`, :mod:`~hmlcore.cli.inference`, ...) import this module;
:mod:`~hmlcore.cli.main` imports them, so the imports run one way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import click

from hmlcore.errors import HmlError, mask_credentials
from hmlcore.storage.config import debugging

if TYPE_CHECKING:
    from hmlcore.model.container import ModelContainer
    from hmlcore.pipelines.dag import HmlPipelineApp
    from hmlcore.serving.inference import HmlInferenceApp
    from hmlcore.storage.lake import Lake
    from hmlcore.storage.warehouse import Warehouse

__all__ = ["CliApp", "HmlCliError", "guard", "registered_model"]


class CliApp(Protocol):
    """What the commands read of the app they are built for (:class:`~hmlcore.app.HmlApp` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def package_entrypoint(self) -> str: ...
    @property
    def image_url(self) -> str: ...
    @property
    def inference_port(self) -> int: ...
    @property
    def k8s_namespace(self) -> str: ...
    @property
    def cluster_platform(self) -> str | None: ...
    @property
    def env(self) -> Mapping[str, str]: ...
    @property
    def models(self) -> Mapping[str, ModelContainer]: ...
    @property
    def pipelines(self) -> HmlPipelineApp: ...
    @property
    def inference(self) -> HmlInferenceApp: ...
    @property
    def lake(self) -> Lake: ...
    @property
    def warehouse(self) -> Warehouse: ...
    def get_model(self, name: str) -> ModelContainer: ...
    def cli(self) -> click.Group: ...


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


def registered_model(app: CliApp, model: str | None) -> ModelContainer:
    """The model named by a command's ``--model`` option, or the only one registered.

    Raises:
        HmlCliError: no name was given and there is not exactly one model.
    """
    if model is None:
        if len(app.models) != 1:
            raise HmlCliError(f"{len(app.models)} models are registered: name one with --model ({', '.join(app.models) or 'none'})")
        model = next(iter(app.models))
    return app.get_model(model)
