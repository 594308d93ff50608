"""The registered models by name: one look-up, one error, for the app, a pipeline step and the inference API.

Example:
    >>> find_model({"crashed": "a container"}, "crashed")
    'a container'
    >>> find_model({}, "crashed")
    Traceback (most recent call last):
    ...
    hmlcore.errors.ConfigError: no model 'crashed' registered; known: none
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from hmlcore.errors import ConfigError

__all__ = ["find_model"]

Model = TypeVar("Model")


def find_model(models: Mapping[str, Model], name: str) -> Model:
    """The model registered in ``models`` as ``name``.

    Raises:
        ConfigError: no model of that name is registered (the message lists those that are).
    """
    try:
        return models[name]
    except KeyError:
        raise ConfigError(f"no model {name!r} registered; known: {', '.join(models) or 'none'}") from None
