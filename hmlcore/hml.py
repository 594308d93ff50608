"""The ``hml.`` namespace of the original Hyper Model, for ``from hmlcore import hml``.

Example:
    >>> from hmlcore import hml
    >>> app = hml.HmlApp(name="car-crashes", package_entrypoint="crashed")
    >>> @hml.op()
    ... def create_training(ctx: hml.OpContext) -> str:
    ...     return "training"
"""

from __future__ import annotations

from hmlcore.app import HmlApp
from hmlcore.errors import (
    ConfigError,
    DeployError,
    FeatureError,
    HmlError,
    ModelKindError,
    ModelLoadError,
    PipelineError,
    RegistryError,
    StorageError,
    WarehouseError,
)
from hmlcore.inference import HmlInferenceApp, deploy_inference, inference
from hmlcore.k8s import HmlInferenceDeployment
from hmlcore.model import ModelContainer
from hmlcore.monitoring import enable_monitoring
from hmlcore.ops import HmlOp, HmlTask, OpContext, op
from hmlcore.pipelines import HmlPipeline, HmlPipelineApp, deploy_op, pipeline
from hmlcore.promotion import PromotionRule
from hmlcore.registry import ModelRegistry

__all__ = [
    "ConfigError",
    "DeployError",
    "FeatureError",
    "HmlApp",
    "HmlError",
    "HmlInferenceApp",
    "HmlInferenceDeployment",
    "HmlOp",
    "HmlPipeline",
    "HmlPipelineApp",
    "HmlTask",
    "ModelContainer",
    "ModelKindError",
    "ModelLoadError",
    "ModelRegistry",
    "OpContext",
    "PipelineError",
    "PromotionRule",
    "RegistryError",
    "StorageError",
    "WarehouseError",
    "deploy_inference",
    "deploy_op",
    "enable_monitoring",
    "inference",
    "op",
    "pipeline",
]
