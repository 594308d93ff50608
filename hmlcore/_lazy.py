"""Modules and names on first use, so ``<package> --help`` starts without what it does not need.

:func:`lazy_names` gives a package PEP 562's ``__getattr__``/``__dir__``: ``hmlcore`` and ``hmlcore.hml``
name everything, but importing them (or a layer below, like ``hmlcore.storage``) loads no layer until one
of its names is read. :func:`lazy_module` does the same for numpy (see ``benchmarks/cli_startup.py``).

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
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_module", "lazy_names"]


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


def lazy_names(package: str, where: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """PEP 562's ``__getattr__`` and ``__dir__`` for ``package``: each name of ``where`` imported from its module on first use.

    ``where`` maps a name to the module that defines it; a name mapped to ``f"{package}.{name}"`` is that
    submodule itself. The name is then stored in the package, so the next read costs nothing.

    Example:
        >>> getattr_, dir_ = lazy_names("mine", {"dumps": "json"})
        >>> getattr_("dumps")([1])
        '[1]'
    """

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        imported = importlib.import_module(module)
        value = imported if module == f"{package}.{name}" else getattr(imported, name)
        namespace = sys.modules.get(package)
        if namespace is not None:
            setattr(namespace, name, value)
        return value

    def __dir__() -> list[str]:
        namespace = sys.modules.get(package)
        return sorted({*(vars(namespace) if namespace is not None else ()), *where})

    return __getattr__, __dir__
