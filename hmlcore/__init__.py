"""hmlcore: the thin library behind every package the hml-template bakes.

It supplies the app (:class:`HmlApp`), the pipeline op factory for Kubeflow Pipelines v2, the model
container, the Flask inference bootstrap and the click CLI. Most code uses the ``hml`` namespace::

    from hmlcore import hml

    app = hml.HmlApp(name="car-crashes", package_entrypoint="crashed")
"""

from __future__ import annotations

__version__ = "0.1.0"

from hmlcore import hml  # noqa: E402
from hmlcore.app import HmlApp  # noqa: E402
from hmlcore.errors import ConfigError, DeployError, FeatureError, HmlError, ModelKindError, ModelLoadError, PipelineError  # noqa: E402
from hmlcore.model.container import ModelContainer  # noqa: E402

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
