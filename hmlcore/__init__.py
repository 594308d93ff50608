"""hmlcore: the thin library behind every package the hml-template bakes.

It supplies the app (:class:`HmlApp`), the pipeline op factory for Kubeflow Pipelines v2, the model
container, the Flask inference bootstrap and the click CLI. Most code uses the ``hml`` namespace::

    from hmlcore import hml

    app = hml.HmlApp(name="car-crashes", package_entrypoint="crashed")
"""

from __future__ import annotations

import typing

from hmlcore._lazy import lazy_names as _lazy_names
from hmlcore._version import __version__
from hmlcore.errors import ConfigError, DeployError, FeatureError, HmlError, ModelKindError, ModelLoadError, PipelineError

if typing.TYPE_CHECKING:  # the names as type checkers and IDEs see them; at run time, read on first use (_WHERE)
    from hmlcore import hml
    from hmlcore.app import HmlApp
    from hmlcore.model import ModelContainer

#: where each name is defined: importing ``hmlcore`` (or any layer, like ``hmlcore.storage``) loads no layer until
#: one of these is first read (PEP 562)
_WHERE = {"hml": "hmlcore.hml", "HmlApp": "hmlcore.app", "ModelContainer": "hmlcore.model"}

if not typing.TYPE_CHECKING:  # hidden from type checkers, which would accept any name through it
    __getattr__, __dir__ = _lazy_names(__name__, _WHERE)

__all__ = [
    "ConfigError",
    "DeployError",
    "FeatureError",
    "HmlApp",
    "HmlError",
    "ModelContainer",
    "ModelKindError",
    "ModelLoadError",
    "PipelineError",
    "__version__",
    "hml",
]
