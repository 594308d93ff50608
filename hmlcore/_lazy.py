"""numpy on first use, so ``<package> --help`` starts without it (see ``benchmarks/cli_startup.py``).

The modules the CLI imports to declare a model (the container, its encoder and target, monitoring)
use numpy only inside their functions. They bind it lazily::

    if TYPE_CHECKING:
        import numpy as np
    else:
        np = lazy_module("numpy")

The first ``np.<name>`` imports numpy; from then on the names are numpy's own, read from the stand-in's
``__dict__`` at no extra cost. Unlike :class:`importlib.util.LazyLoader`, nothing is put in
``sys.modules`` before the real import, so ``"numpy" in sys.modules`` still says whether it was imported
(the tests check that ``--help`` never does) and other libraries importing numpy get the real module.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["lazy_module"]


class _LazyModule(types.ModuleType):
    """A stand-in for the module of the same name that imports it when one of its attributes is first read."""

    def __getattr__(self, name: str) -> Any:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(vars(module))
        return getattr(module, name)


def lazy_module(name: str) -> types.ModuleType:
    """The module ``name`` if it is imported already, else a stand-in that imports it on first use.

    Example:
        >>> lazy_module("json").dumps([1])
        '[1]'
    """
    return sys.modules.get(name) or _LazyModule(name)
