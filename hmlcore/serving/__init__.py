"""Serving: the prediction API, its server and its monitoring. Nothing here imports kfp.

It imports :mod:`hmlcore.model` and :mod:`hmlcore.storage`, never the pipelines, deploy or CLI layers.

- :mod:`~hmlcore.serving.inference`: :class:`HmlInferenceApp` (``app.inference``), the Flask API;
  :mod:`~hmlcore.serving.json_api`: JSON request bodies and JSON errors; :mod:`~hmlcore.serving.openapi`: its OpenAPI
  document; :mod:`~hmlcore.serving._wsgi`: request-body limits.
- :mod:`~hmlcore.serving.server`: Flask's development server and gunicorn (:mod:`~hmlcore.serving._gunicorn`,
  :mod:`~hmlcore.serving.native_threads`: OpenMP and BLAS around the fork);
  :mod:`~hmlcore.serving.reload`: smoke prediction and hot reload of a newly published model.
- :mod:`~hmlcore.serving.monitoring` (:func:`enable_monitoring`): ``/metrics`` and ``/drift``, built on
  :mod:`~hmlcore.serving.metrics` (Prometheus), :mod:`~hmlcore.serving.drift` (judged in :mod:`~hmlcore.serving.drift_report`) and
  :mod:`~hmlcore.serving.drift_window`; :mod:`~hmlcore.serving.report`: the offline drift report.
"""

from __future__ import annotations

from hmlcore.serving.inference import HmlInferenceApp, deploy_inference
from hmlcore.serving.monitoring import enable_monitoring, find_monitor

__all__ = ["HmlInferenceApp", "deploy_inference", "enable_monitoring", "find_monitor"]
