"""hmlcore: the thin library behind every package the hml-template bakes.

It supplies the app (:class:`HmlApp`), the pipeline op factory for Kubeflow Pipelines v2, the model
container, the Flask inference bootstrap and the click CLI. Most code uses the ``hml`` namespace::

    from hmlcore import hml

    app = hml.HmlApp(name="car-crashes", package_entrypoint="crashed")
"""

from __future__ import annotations

from hmlcore import hml
from hmlcore._version import __version__
from hmlcore.app import HmlApp
from hmlcore.errors import ConfigError, DeployError, FeatureError, HmlError, ModelKindError, ModelLoadError, PipelineError
from hmlcore.model import ModelContainer

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
