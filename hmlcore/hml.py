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
from hmlcore.deploy.k8s import HmlInferenceDeployment
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
from hmlcore.model.container import ModelContainer
from hmlcore.model.promotion import PromotionRule
from hmlcore.model.registry import ModelRegistry
from hmlcore.pipelines.dag import HmlPipeline, HmlPipelineApp, deploy_op, pipeline
from hmlcore.pipelines.ops import HmlOp, HmlTask, OpContext, collected, op, parallel_for
from hmlcore.pipelines.training import save_training_shards
from hmlcore.serving.inference import HmlInferenceApp, deploy_inference, inference
from hmlcore.serving.monitoring import enable_monitoring
from hmlcore.training import train_distributed

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
    "collected",
    "deploy_inference",
    "deploy_op",
    "enable_monitoring",
    "inference",
    "op",
    "parallel_for",
    "pipeline",
    "save_training_shards",
    "train_distributed",
]
