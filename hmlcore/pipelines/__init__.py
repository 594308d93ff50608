"""Pipelines: the steps (``@hml.op``), the DAGs they form (``@hml.pipeline``), and running them.

It imports :mod:`hmlcore.model` and :mod:`hmlcore.storage`, never the deploy, CLI or app layers: what it
needs of the app (its settings, data store and models) :class:`HmlPipelineApp` reads through the
:class:`~hmlcore.pipelines.dag.PipelineHost` Protocol when it is made. kfp is imported only where a pipeline
is compiled or deployed, so importing this package does not import it.

- :mod:`~hmlcore.pipelines.ops`: :func:`op`, :class:`HmlOp`, :class:`HmlTask`; :mod:`~hmlcore.pipelines.context`:
  :class:`OpContext`; :mod:`~hmlcore.pipelines.values`: values on a step's command line, as Kubeflow passes them.
- :mod:`~hmlcore.pipelines.dag`: :func:`pipeline`, :class:`HmlPipeline`, :class:`HmlPipelineApp` (``app.pipelines``).
- :mod:`~hmlcore.pipelines.compiler`: the Kubeflow Pipelines v2 spec, its tasks built by :mod:`~hmlcore.pipelines.tasks`
  and configured through :class:`~hmlcore.pipelines.kfp_task.KfpTask`; :mod:`~hmlcore.pipelines.dry_run`: the spec's
  cache key, without kfp; :mod:`~hmlcore.pipelines.kfp_deploy`: upload and schedule on Kubeflow
  (the API through :mod:`~hmlcore.pipelines.kfp_client`).
- :mod:`~hmlcore.pipelines.runner`: ``run-all``, every step in a process of its own; the spec read as Kubeflow's
  launcher reads it (:mod:`~hmlcore.pipelines.launcher`), the run kept in :mod:`~hmlcore.pipelines.run_folder`, a
  loop's steps side by side in child processes (:mod:`~hmlcore.pipelines.children`).
- :mod:`~hmlcore.pipelines.cache`: the step cache (a step's output reused while its inputs, code and settings are unchanged).
"""

from __future__ import annotations

from hmlcore.pipelines.context import OpContext
from hmlcore.pipelines.dag import HmlPipeline, HmlPipelineApp, deploy_op, pipeline
from hmlcore.pipelines.ops import HmlOp, HmlTask, op

__all__ = ["HmlOp", "HmlPipeline", "HmlPipelineApp", "HmlTask", "OpContext", "deploy_op", "op", "pipeline"]
