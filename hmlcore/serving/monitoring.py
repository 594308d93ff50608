"""Monitoring in the serving process: ``GET /metrics`` (Prometheus) and ``GET /drift`` (JSON).

Call :func:`enable_monitoring` from the package's ``@hml.inference`` function::

    @hml.inference(app.inference)
    def load_model(inference_app):
        inference_app.get_model("crashed").load()
        enable_monitoring(inference_app, thresholds=shared.DRIFT_THRESHOLDS)

It registers a :class:`Monitor` as an observer of every prediction and refused request, counts every
request and its latency as it is answered (in the multiprocess store shared by the workers, so a worker
killed right after loses no counted request), and adds the two routes. Predictions, refusals and drift
rows are buffered and counted in batches, at most ``flush_seconds`` later.

**Several workers.** Each gunicorn worker keeps the slot codes of its last ``window`` predicted rows
(:class:`~hmlcore.serving.drift_window.DriftWindow`) in a small file of its own in the multiprocess folder
(:func:`~hmlcore.serving.drift_window.window_path`; ``PROMETHEUS_MULTIPROC_DIR``, see :mod:`hmlcore.serving.metrics`).
``/drift`` and the drift gauges of
``/metrics`` sum the windows of every live worker before computing the figures, so every worker answers
with the same drift, over up to ``window x workers`` recent rows. A dead worker's file is removed by
the server's ``child_exit`` hook, or skipped and removed by the next reader. Writing a window is a few
array assignments in a memory-mapped file: no lock between workers and no system call per request.
With one process (the development server) the window stays in memory.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from hmlcore._lazy import lazy_module
from hmlcore.errors import ConfigError, HmlError
from hmlcore.serving.drift import DriftProfile, DriftReport, DriftThresholds
from hmlcore.serving.drift_window import DriftWindow, read_windows, window_files, window_path
from hmlcore.serving.inference import ApiError, HmlInferenceApp, routed
from hmlcore.storage.config import env_int

if TYPE_CHECKING:
    import numpy as np
    from flask import Flask, Response

    from hmlcore.model.container import ModelContainer
    from hmlcore.serving.metrics import ServingMetrics
else:
    np = lazy_module("numpy")

__all__ = ["DEFAULT_WINDOW", "Monitor", "enable_monitoring", "find_monitor"]

log = logging.getLogger("hmlcore.monitoring")

#: rows each worker's drift window keeps unless ``window=`` or ``HML_DRIFT_WINDOW`` says otherwise
DEFAULT_WINDOW = 1000


class _Served(NamedTuple):
    """A served batch, buffered until :meth:`Monitor.flush` counts it."""

    container: ModelContainer
    records: Sequence[Mapping[str, Any]]
    features: np.ndarray
    predictions: Any


class _Refused(NamedTuple):
    """A refused request's details, buffered until :meth:`Monitor.flush` counts them."""

    details: Sequence[Mapping[str, Any]]


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
        thresholds: when drift is a warning or an alert (see :class:`~hmlcore.serving.drift.DriftThresholds`).
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
        window = env_int("HML_DRIFT_WINDOW", DEFAULT_WINDOW)
    monitor = Monitor(inference_app, window=window, thresholds=thresholds, model=model)
    inference_app.observe(monitor)
    monitor.install(inference_app.flask)
    return monitor


def find_monitor(inference_app: HmlInferenceApp) -> Monitor | None:
    """The :class:`Monitor` enabled on ``inference_app``, if any."""
    return next((o for o in inference_app.observers if isinstance(o, Monitor)), None)


class Monitor:
    """Watches one inference API: its requests, predictions, refusals and the drift of its inputs.

    Created by :func:`enable_monitoring`. Per-process state (the metrics, this worker's window) is made on
    first use in each process, after gunicorn forks.
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
        #: what is buffered is counted when this many rows (or requests) wait, or after ``flush_seconds``
        self.flush_rows = 64
        self.flush_seconds = 1.0
        self._lock = threading.Lock()
        self._profile: tuple[Any, DriftProfile] | None = None
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._metrics: ServingMetrics | None = None
        self._window: DriftWindow | None = None
        self._pending: list[_Served | _Refused] = []
        self._pending_units = 0
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    # ----------------------------------------------------------------- per-process state
    @property
    def container(self) -> ModelContainer:
        """The model watched."""
        return self.inference_app.get_model(self.model_name) if self.model_name else self.inference_app.model

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._reset()

    @property
    def metrics(self) -> ServingMetrics:
        """This process's metrics (created on first use, after the fork)."""
        self._check_fork()
        if self._metrics is None:
            with self._lock:
                if self._metrics is None:
                    from hmlcore.serving.metrics import (  # prometheus_client and numpy: only once enabled
                        MonitorCollector,
                        ServingMetrics,
                        score_buckets,
                    )

                    container = self.container
                    metrics = ServingMetrics(model=container.name, buckets=score_buckets(container))
                    metrics.add_collector(MonitorCollector(model=metrics.model, state=self._scrape_state))
                    self._metrics = metrics
        return self._metrics

    def profile(self, container: ModelContainer | None = None) -> DriftProfile:
        """The drift profile of the served model version (rebuilt when the version changes)."""
        container = container or self.container
        key = (id(container), container.version, id(container.distributions))
        if self._profile is None or self._profile[0] != key:
            self._profile = (key, DriftProfile.from_container(container))
        return self._profile[1]

    def _folder(self) -> str | None:
        from hmlcore.serving.metrics import multiprocess_dir  # prometheus_client and numpy: only once enabled

        return multiprocess_dir()

    def _own_window(self, profile: DriftProfile) -> DriftWindow:
        self._check_fork()
        window = self._window
        if window is None or window.profile is not profile:
            with self._lock:
                if self._window is None or self._window.profile is not profile:
                    if self._window is not None:
                        self._window.close()
                    folder = self._folder()
                    path = window_path(folder, os.getpid()) if folder else None
                    self._window = DriftWindow(profile, size=self.window_size, path=path)
                window = self._window
        return window

    # ----------------------------------------------------------------- observer
    def on_predict(self, container: ModelContainer, records: Sequence[Mapping[str, Any]], features: np.ndarray, predictions: Any) -> None:
        """Buffer a served batch: its predictions are counted and its rows added to the drift window on :meth:`flush`."""
        self._push(_Served(container, records, features, predictions), len(records))

    def on_invalid(self, container: ModelContainer, details: Sequence[Mapping[str, Any]]) -> None:
        """Buffer a refused request, to count under each feature it was refused for."""
        self._push(_Refused(details), 1)

    # ----------------------------------------------------------------- buffering
    def _push(self, item: _Served | _Refused, units: int) -> None:
        """Buffer ``item``: a request pays for an append; the counting runs in batches (numpy, warm caches)."""
        self._check_fork()
        with self._pending_lock:
            self._pending.append(item)
            self._pending_units += units
            full = self._pending_units >= self.flush_rows
        if full:
            self._flush_quietly()
        elif self._flusher is None:
            self._start_flusher()

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_forever, args=(os.getpid(),), name="hml-monitoring", daemon=True)
                self._flusher.start()
                atexit.register(self._flush_quietly)

    def _flush_forever(self, pid: int) -> None:
        while os.getpid() == pid:
            time.sleep(self.flush_seconds)
            self._flush_quietly()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - monitoring must never break serving
            log.exception("monitoring could not count what it buffered")

    def flush(self) -> None:
        """Count what this process has buffered: predictions, refusals, drift window rows (requests are counted as they are answered)."""
        self._check_fork()
        with self._flush_lock:
            with self._pending_lock:
                items, self._pending, self._pending_units = self._pending, [], 0
            if not items:
                return
            metrics = self.metrics
            batches: dict[int, list[_Served]] = {}
            for item in items:
                if isinstance(item, _Refused):
                    metrics.observe_invalid(item.details)
                else:
                    batches.setdefault(id(item.container), []).append(item)
            for batch in batches.values():
                container = batch[0].container
                records = [r for item in batch for r in item.records]
                metrics.observe_predictions([p for item in batch for p in item.predictions])
                if self.model_name and container is not self.container:
                    continue
                try:
                    profile = self.profile(container)
                except HmlError:
                    continue  # no training distributions: nothing to compare with (``/drift`` says why)
                features = np.concatenate([item.features for item in batch]) if len(batch) > 1 else batch[0].features
                self._own_window(profile).add(
                    profile.codes_from_request(features, records, container.defaults, categories=container.encoder.categories)
                )

    # ----------------------------------------------------------------- drift
    def window_counts(self, profile: DriftProfile) -> tuple[np.ndarray, int]:
        """The slot counts summed over every live worker's window, and how many windows were summed."""
        folder = self._folder()
        if folder is None:
            self._check_fork()
            window = self._window
            if window is None or window.profile is not profile:
                return np.zeros(profile.slots, dtype=np.int64), 0
            return window.counts(), 1
        paths = []
        for pid, path in window_files(folder).items():
            if _alive(pid):
                paths.append(path)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        return read_windows(paths, profile)

    def report(self) -> tuple[DriftReport, int]:
        """The drift over the recent rows of every live worker, and how many workers' windows it covers.

        Raises:
            ConfigError: the model holds no training distributions.
        """
        profile = self.profile()
        counts, workers = self.window_counts(profile)
        return profile.evaluate(counts, thresholds=self.thresholds), workers

    def _scrape_state(self) -> tuple[str | None, DriftReport | None, int]:
        container = self.container
        try:
            report, workers = self.report()
        except HmlError:
            return container.version, None, 0
        return container.version, report, workers

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
                # counted now, in the shared store: a worker killed a moment later loses no counted request
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

        self.flush()
        body, content_type = self.metrics.render()
        return flask.Response(body, content_type=content_type)

    def _drift_view(self) -> Any:
        import flask

        container = self.container
        self.flush()
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


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
