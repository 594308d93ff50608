"""Monitoring in the serving process: ``GET /metrics`` (Prometheus) and ``GET /drift`` (JSON).

Call :func:`enable_monitoring` from the package's ``@hml.inference`` function::

    @hml.inference(app.inference)
    def load_model(inference_app):
        inference_app.get_model("crashed").load()
        enable_monitoring(inference_app, thresholds=shared.DRIFT_THRESHOLDS)

It registers a :class:`Monitor` as an observer of every prediction and refused request and adds the two
routes. Every request, its latency, each prediction and refusal are counted as they are answered, in the
multiprocess store shared by the workers (see :mod:`hmlcore.serving.metrics`), so a worker killed right
after loses no counted request.

**Drift over several workers.** Each gunicorn worker keeps the slot codes of its last ``window`` predicted
rows (:class:`~hmlcore.serving.drift_window.DriftWindow`) and adds each change of their counts per training
bin to a Prometheus gauge summed over the live workers. ``/drift`` and the drift gauges of ``/metrics``
compute the figures from those sums, so every worker answers with the same drift, over up to
``window x workers`` recent rows. A dead worker's window is forgotten by the server's ``child_exit`` hook.
With one process (the development server) the gauges stay in memory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hmlcore import _env
from hmlcore.errors import ConfigError, HmlError
from hmlcore.serving.drift import DriftProfile
from hmlcore.serving.drift_report import DriftReport, DriftThresholds
from hmlcore.serving.drift_window import DriftWindow
from hmlcore.serving.inference import ApiError, HmlInferenceApp, routed

if TYPE_CHECKING:
    import numpy as np
    from flask import Flask, Response

    from hmlcore.model.container import ModelContainer
    from hmlcore.serving.metrics import ServingMetrics

__all__ = ["DEFAULT_WINDOW", "Monitor", "enable_monitoring", "find_monitor"]

log = logging.getLogger("hmlcore.monitoring")

#: rows each worker's drift window keeps unless ``window=`` or ``HML_DRIFT_WINDOW`` says otherwise
DEFAULT_WINDOW = 1000


def enable_monitoring(
    inference_app: HmlInferenceApp,
    *,
    window: int | None = None,
    thresholds: Mapping[str, Any] | DriftThresholds | None = None,
    model: str | None = None,
) -> Monitor:
    """Serve ``/metrics`` and ``/drift`` and watch every prediction; return the :class:`Monitor`.

    Args:
        inference_app: ``app.inference``, as the ``@hml.inference`` function receives it.
        window: rows each worker's drift window keeps (default ``HML_DRIFT_WINDOW``, else 1000).
        thresholds: when drift is a warning or an alert (see :class:`~hmlcore.serving.drift_report.DriftThresholds`).
        model: the registered model to watch (default: the one ``/predict`` serves).

    Raises:
        ConfigError: a bad window size or threshold.

    Example:
        >>> from hmlcore import hml
        >>> app = hml.HmlApp(name="demo")
        >>> monitor = enable_monitoring(app.inference, window=500, thresholds={"psi": (0.2, 0.3)})
        >>> monitor.window_size
        500
    """
    existing = find_monitor(inference_app)
    if existing is not None:
        return existing
    if window is None:
        window = _env.DRIFT_WINDOW.get() or DEFAULT_WINDOW
    monitor = Monitor(inference_app, window=window, thresholds=thresholds, model=model)
    inference_app.observe(monitor)
    monitor.install(inference_app.flask)
    return monitor


def find_monitor(inference_app: HmlInferenceApp) -> Monitor | None:
    """The :class:`Monitor` enabled on ``inference_app``, if any."""
    return next((o for o in inference_app.observers if isinstance(o, Monitor)), None)


class Monitor:
    """Watches one inference API: its requests, predictions, refusals and the drift of its inputs.

    Created by :func:`enable_monitoring`. The metrics and the drift window are made on first use in each
    process, after gunicorn forks.
    """

    def __init__(
        self,
        inference_app: HmlInferenceApp,
        *,
        window: int,
        thresholds: Mapping[str, Any] | DriftThresholds | None = None,
        model: str | None = None,
    ) -> None:
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ConfigError(f"the drift window must be a whole number of rows >= 1, got {window!r}")
        self.inference_app = inference_app
        self.window_size = window
        self.thresholds = DriftThresholds.from_mapping(thresholds)
        self.model_name = model
        self._lock = threading.Lock()
        self._metrics: ServingMetrics | None = None
        self._profile: tuple[Any, DriftProfile] | None = None
        self._window: tuple[DriftWindow, str] | None = None

    @property
    def container(self) -> ModelContainer:
        """The model watched."""
        return self.inference_app.get_model(self.model_name) if self.model_name else self.inference_app.model

    @property
    def metrics(self) -> ServingMetrics:
        """This process's metrics (created on first use)."""
        if self._metrics is None or self._metrics.pid != os.getpid():
            with self._lock:
                if self._metrics is None or self._metrics.pid != os.getpid():
                    from hmlcore.serving.metrics import ServingMetrics, score_buckets  # prometheus_client: only once enabled

                    container = self.container
                    self._metrics = ServingMetrics(model=container.name, buckets=score_buckets(container))
        return self._metrics

    def profile(self, container: ModelContainer | None = None) -> DriftProfile:
        """The drift profile of the served model version (rebuilt when the version changes)."""
        container = container or self.container
        key = (id(container), container.version, id(container.distributions))
        if self._profile is None or self._profile[0] != key:
            self._profile = (key, DriftProfile.from_container(container))
        return self._profile[1]

    # ----------------------------------------------------------------- observer
    def on_predict(self, container: ModelContainer, records: Sequence[Mapping[str, Any]], features: np.ndarray, predictions: Any) -> None:
        """Count a served batch's predictions and add its rows to this worker's drift window."""
        metrics = self.metrics
        metrics.observe_predictions(predictions)
        if self.model_name and container is not self.container:
            return
        try:
            profile = self.profile(container)
        except HmlError:
            return  # no training distributions: nothing to compare with (``/drift`` says why)
        codes = profile.codes_from_request(features, records, container.defaults, categories=container.encoder.categories)
        version = _version(container)
        with self._lock:
            if self._window is None or self._window[0].profile is not profile or self._window[0].pid != os.getpid():
                if self._window is not None and self._window[0].pid == os.getpid():  # another model version: forget its rows
                    old, old_version = self._window
                    metrics.observe_window(old.profile, old_version, [(s, -c) for s, c in enumerate(old.counts().tolist()) if c], 0)
                self._window = (DriftWindow(profile, size=self.window_size), version)
                metrics.start_window()
            window = self._window[0]
            metrics.observe_window(profile, version, window.add(codes), window.rows)

    def on_invalid(self, container: ModelContainer, details: Sequence[Mapping[str, Any]]) -> None:
        """Count a refused request under each feature it was refused for."""
        self.metrics.observe_invalid(details)

    # ----------------------------------------------------------------- drift
    def report(self, families: list[Any] | None = None) -> tuple[DriftReport, int]:
        """The drift over the recent rows of every live worker, and how many workers' windows it covers.

        Args:
            families: the metric families to read the windows' counts from (default: read them now).

        Raises:
            ConfigError: the model holds no training distributions.
        """
        container = self.container
        profile = self.profile(container)
        counts, workers = self.metrics.window_counts(profile, _version(container), families)
        return profile.evaluate(counts, thresholds=self.thresholds), workers

    def _drift_families(self, families: list[Any]) -> list[Any]:
        from hmlcore.serving.metrics import drift_families  # prometheus_client: only once enabled

        try:
            report: DriftReport | None = self.report(families)[0]
        except HmlError:
            report = None
        return drift_families(self.metrics.model, _version(self.container), report)

    # ----------------------------------------------------------------- flask
    def install(self, flask_app: Flask) -> None:
        """Add ``/metrics``, ``/drift`` and the request counting hooks to ``flask_app``."""
        import flask

        def started() -> None:
            flask.g.hml_started = time.perf_counter()

        def finished(response: Response) -> Response:
            begun = flask.g.pop("hml_started", None)
            if begun is not None:
                rule = flask.request.url_rule
                route = rule.rule if rule else "(unmatched)"
                self.metrics.observe_request(route, flask.request.method, response.status_code, time.perf_counter() - begun)
            return response

        flask_app.before_request(started)
        flask_app.after_request(finished)
        for rule, view in (("/metrics", self._metrics_view), ("/drift", self._drift_view)):
            if (rule, "GET") in routed(flask_app):
                log.warning("GET %s is already routed: monitoring leaves it alone", rule)
                continue
            flask_app.add_url_rule(rule, f"hml_{rule.strip('/')}", view, methods=["GET"])

    def _metrics_view(self) -> Any:
        import flask

        body, content_type = self.metrics.render(self._drift_families)
        return flask.Response(body, content_type=content_type)

    def _drift_view(self) -> Any:
        import flask

        container = self.container
        try:
            report, workers = self.report()
        except HmlError as exc:
            raise ApiError(503, f"no drift for model {container.name}: {exc}") from exc
        detail = flask.request.args.get("detail", "").lower() in ("1", "true", "yes")
        return {
            "model": {"name": container.name, "version": container.version},
            "window": {"size_per_worker": self.window_size, "workers": workers, "rows": report.rows},
            **report.to_dict(detail=detail),
        }


def _version(container: ModelContainer) -> str:
    return container.version or "unpublished"
