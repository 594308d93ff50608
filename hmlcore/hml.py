"""The ``hml.`` namespace of the original Hyper Model, for ``from hmlcore import hml``.

Example:
    >>> from hmlcore import hml
    >>> app = hml.HmlApp(name="car-crashes", package_entrypoint="crashed")
    >>> @hml.op()
    ... def create_training(ctx: hml.OpContext) -> str:
    ...     return "training"
"""

from __future__ import annotations

import typing

from hmlcore._lazy import lazy_names as _lazy_names
from hmlcore.errors import (
    ConfigError,
    DataSourceError,
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

if typing.TYPE_CHECKING:  # the names as type checkers and IDEs see them; at run time, read on first use (_WHERE)
    from hmlcore.app import HmlApp
    from hmlcore.deploy.k8s import HmlInferenceDeployment
    from hmlcore.model.container import ModelContainer
    from hmlcore.model.promotion import PromotionRule
    from hmlcore.model.registry import ModelRegistry
    from hmlcore.pipelines.context import OpContext
    from hmlcore.pipelines.dag import HmlPipeline, HmlPipelineApp, deploy_op, pipeline
    from hmlcore.pipelines.ops import HmlOp, HmlTask, collected, op, parallel_for
    from hmlcore.pipelines.training import save_training_shards
    from hmlcore.serving.inference import HmlInferenceApp, deploy_inference, inference
    from hmlcore.serving.monitoring import enable_monitoring
    from hmlcore.storage.sources import SourceRows, locate_source, read_rows
    from hmlcore.training import train_distributed

#: where each name is defined: ``hml.<name>`` imports that module when it is first read (PEP 562)
_WHERE = {
    "HmlApp": "hmlcore.app",
    "HmlInferenceDeployment": "hmlcore.deploy.k8s",
    "ModelContainer": "hmlcore.model.container",
    "PromotionRule": "hmlcore.model.promotion",
    "ModelRegistry": "hmlcore.model.registry",
    "HmlPipeline": "hmlcore.pipelines.dag",
    "HmlPipelineApp": "hmlcore.pipelines.dag",
    "deploy_op": "hmlcore.pipelines.dag",
    "pipeline": "hmlcore.pipelines.dag",
    "HmlOp": "hmlcore.pipelines.ops",
    "HmlTask": "hmlcore.pipelines.ops",
    "OpContext": "hmlcore.pipelines.context",
    "collected": "hmlcore.pipelines.ops",
    "op": "hmlcore.pipelines.ops",
    "parallel_for": "hmlcore.pipelines.ops",
    "save_training_shards": "hmlcore.pipelines.training",
    "HmlInferenceApp": "hmlcore.serving.inference",
    "deploy_inference": "hmlcore.serving.inference",
    "inference": "hmlcore.serving.inference",
    "enable_monitoring": "hmlcore.serving.monitoring",
    "SourceRows": "hmlcore.storage.sources",
    "locate_source": "hmlcore.storage.sources",
    "read_rows": "hmlcore.storage.sources",
    "train_distributed": "hmlcore.training",
}

if not typing.TYPE_CHECKING:  # hidden from type checkers, which would accept any name through it
    __getattr__, __dir__ = _lazy_names(__name__, _WHERE)

__all__ = [
    "ConfigError",
    "DataSourceError",
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
    "SourceRows",
    "StorageError",
    "WarehouseError",
    "collected",
    "deploy_inference",
    "deploy_op",
    "enable_monitoring",
    "inference",
    "locate_source",
    "op",
    "parallel_for",
    "pipeline",
    "read_rows",
    "save_training_shards",
    "train_distributed",
]
