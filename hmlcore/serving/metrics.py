"""Prometheus metrics of the inference API, correct under gunicorn's several workers.

Multiprocess mode: ``prometheus_client`` keeps each worker's counters and histograms in files under
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums them, so any worker answers with the same totals. The
folder must be in the environment before ``prometheus_client`` is first imported, which is why nothing
here imports it at module level and why :func:`gunicorn_hooks` (called by the server before it forks its
workers) creates a fresh folder when none is set, removes it when the server stops and forgets a dead
worker's live figures. Without the variable (the development server: one process) the metrics live in
memory.

Drift and the model's version are not counted but computed when Prometheus scrapes, by
:class:`MonitorCollector`, from the windows every worker shares (see :mod:`hmlcore.serving.monitoring`), so they
are the same whichever worker answers.

Example:
    >>> metrics = ServingMetrics(model="crashed")
    >>> metrics.observe_request("/predict", "GET", 200, 0.004)
    >>> b'hml_http_requests_total{method="GET",route="/predict",status="200"} 1.0' in metrics.render()[0]
    True
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hmlcore.serving.drift import STATUSES
from hmlcore.serving.drift_window import window_path

if TYPE_CHECKING:
    from hmlcore.model.container import ModelContainer
    from hmlcore.serving.drift import DriftReport

__all__ = [
    "MULTIPROC_ENV",
    "MonitorCollector",
    "ServingMetrics",
    "SettledFilesCollector",
    "gunicorn_hooks",
    "mark_worker_dead",
    "multiprocess_dir",
    "score_buckets",
]

log = logging.getLogger("hmlcore.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
#: distinct values of one prediction output counted as classes; the rest count as "other"
MAX_CLASSES = 20


def score_buckets(container: ModelContainer) -> tuple[float, ...]:
    """The histogram buckets of ``container``'s predicted numbers.

    Probabilities (classifiers) fall in :data:`SCORE_BUCKETS`; a regression model's values in the bins
    of its training target's histogram (its minimum to its maximum), so the buckets fit the target's
    unit and range, whatever it is.

    Example:
        >>> from hmlcore.model import ModelContainer
        >>> score_buckets(ModelContainer("m", "p", ["x"], [], "y"))[-1]
        1.0
    """
    if container.kind != "regression":
        return SCORE_BUCKETS
    edges = (container.target_distribution.get("histogram") or {}).get("edges") or []
    bounds = sorted({float(f"{e:.6g}") for e in edges if isinstance(e, (int, float)) and np.isfinite(e)})
    return tuple(bounds) or SCORE_BUCKETS


def multiprocess_dir() -> str | None:
    """The multiprocess folder of this process (``PROMETHEUS_MULTIPROC_DIR``), if any."""
    return os.environ.get(MULTIPROC_ENV) or None


def mark_worker_dead(pid: int, folder: str | None = None) -> None:
    """Forget what a dead worker ``pid`` kept live: its live gauges and its drift window (its counts stay in the totals)."""
    folder = folder or multiprocess_dir()
    if not folder:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, folder)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(window_path(folder, pid))


def gunicorn_hooks() -> dict[str, Callable[..., None]]:
    """Prepare multiprocess metrics for a server about to fork; return gunicorn server hooks.

    Uses ``PROMETHEUS_MULTIPROC_DIR`` if set (it must be empty at start, e.g. a fresh ``emptyDir``),
    else creates a temporary folder, sets the variable for the workers and removes the folder on exit.

    Example:
        >>> hooks = gunicorn_hooks()  # doctest: +SKIP
        >>> sorted(hooks)  # doctest: +SKIP
        ['child_exit', 'on_exit']
    """
    import sys

    folder = multiprocess_dir()
    created = folder is None
    if folder is None:
        folder = tempfile.mkdtemp(prefix="hml-metrics-")
        os.environ[MULTIPROC_ENV] = folder
    else:
        os.makedirs(folder, exist_ok=True)
    values = sys.modules.get("prometheus_client.values")
    if values is not None and values.ValueClass is values.MutexValue:
        log.warning("prometheus_client was imported before %s was set: each worker will count on its own", MULTIPROC_ENV)
    owner = os.getpid()

    def child_exit(server: Any, worker: Any) -> None:
        mark_worker_dead(worker.pid, folder)

    def on_exit(server: Any) -> None:
        if created and os.getpid() == owner:
            shutil.rmtree(folder, ignore_errors=True)

    return {"child_exit": child_exit, "on_exit": on_exit}


class ServingMetrics:
    """The counters and histograms of one inference API.

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before ``prometheus_client`` was imported) they
    are kept in the shared folder; otherwise in a registry of their own.

    Args:
        model: the model's name, a label of the prediction metrics.
        buckets: the upper bounds of the predicted numbers' histogram (default: probabilities, 0.1 to 1.0;
            :func:`score_buckets` gives a model's own).
    """

    def __init__(self, *, model: str, buckets: Sequence[float] = SCORE_BUCKETS) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, values

        self.model = model
        self.multiprocess = values.ValueClass is not values.MutexValue and multiprocess_dir() is not None
        self.registry = None if self.multiprocess else CollectorRegistry()
        self.collectors: list[Any] = []
        reg = self.registry
        self.requests = Counter("hml_http_requests", "HTTP requests answered", ["route", "method", "status"], registry=reg)
        self.latency = Histogram(
            "hml_http_request_duration_seconds", "Time to answer a request", ["route", "method"], buckets=LATENCY_BUCKETS, registry=reg
        )
        self.predictions = Counter("hml_predictions", "Predictions by output and class", ["model", "output", "value"], registry=reg)
        self.scores = Histogram(
            "hml_prediction_score", "Predicted scores by output", ["model", "output"], buckets=tuple(buckets), registry=reg
        )
        #: the upper bounds of :attr:`scores`' buckets as the Histogram keeps them (+Inf last)
        self._score_bounds = np.array([float(b) for b in buckets] + ([] if float(buckets[-1]) == np.inf else [np.inf]))
        self.invalid = Counter("hml_validation_failures", "Request features refused, by feature", ["model", "feature"], registry=reg)
        self._children: dict[tuple, Any] = {}
        self._classes: dict[str, set[str]] = {}

    def add_collector(self, collector: Any) -> None:
        """Add figures computed at scrape time (such as :class:`MonitorCollector`) to :meth:`render`."""
        self.collectors.append(collector)
        if self.registry is not None:
            self.registry.register(collector)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self._child(self.requests, route, method, str(status)).inc()
        self._child(self.latency, route, method).observe(seconds)

    def observe_predictions(self, predictions: Sequence[Mapping[str, Any]]) -> None:
        """Count the classes (bool, int, str outputs) and score histograms (float outputs) of a batch.

        An output that is an object of numbers (a multiclass model's ``probabilities``) gets one
        histogram per key, as output ``<output>.<key>`` (the first :data:`MAX_CLASSES` keys).
        """
        if not predictions or not isinstance(predictions[0], Mapping):
            return
        if len(predictions) <= 8:  # most requests: one row; numpy would cost more than it saves
            for prediction in predictions:
                for output, value in prediction.items():
                    if isinstance(value, float):
                        if value == value:  # not NaN
                            self._child(self.scores, self.model, output).observe(value)
                    elif isinstance(value, (bool, int, str)):
                        self._child(self.predictions, self.model, output, self._class_label(output, _class_text(value))).inc()
                    elif isinstance(value, Mapping):
                        for key, score in list(value.items())[:MAX_CLASSES]:
                            if isinstance(score, float) and score == score:
                                self._child(self.scores, self.model, f"{output}.{key}").observe(score)
            return
        for output, first in predictions[0].items():
            if isinstance(first, Mapping):
                for key in list(first)[:MAX_CLASSES]:
                    column = (p.get(output) or {} for p in predictions)
                    scores = np.fromiter((c.get(key, np.nan) for c in column), dtype=np.float64, count=len(predictions))
                    _observe_many(self._child(self.scores, self.model, f"{output}.{key}"), self._score_bounds, scores[~np.isnan(scores)])
                continue
            if isinstance(first, float):
                scores = np.fromiter((p.get(output, np.nan) for p in predictions), dtype=np.float64, count=len(predictions))
                _observe_many(self._child(self.scores, self.model, output), self._score_bounds, scores[~np.isnan(scores)])
            elif isinstance(first, (bool, int, str)):
                by_text: Counter[str] = Counter()
                for value, count in Counter([p.get(output) for p in predictions]).items():  # counted in C, then named
                    by_text[_class_text(value)] += count
                for text, count in by_text.items():
                    self._child(self.predictions, self.model, output, self._class_label(output, text)).inc(count)

    def _class_label(self, output: str, value: str) -> str:
        seen = self._classes.setdefault(output, set())
        if value in seen:
            return value
        if len(seen) >= MAX_CLASSES:
            return "other"
        seen.add(value)
        return value

    def observe_invalid(self, details: Sequence[Mapping[str, Any]]) -> None:
        """Count one refusal per feature named in a 422's details."""
        for feature in {str(d.get("feature") or "(record)") for d in details}:
            self._child(self.invalid, self.model, feature).inc()

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus text format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.registry is not None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        registry.register(SettledFilesCollector(multiprocess_dir() or ""))
        for collector in self.collectors:
            registry.register(collector)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class SettledFilesCollector:
    """The workers' metrics files merged, leaving out a file another worker is creating at this instant.

    prometheus_client creates a worker's file empty and only then sizes it: its own collector fails on a file
    caught in between (``struct.error``), and ``/metrics`` would answer 500. Such a file holds no sample yet,
    so it is skipped; it is read on the next scrape.
    """

    #: a file's header (the used length and padding) that prometheus_client writes when it sizes the file
    HEADER_BYTES = 8

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def collect(self) -> Any:
        from prometheus_client.multiprocess import MultiProcessCollector

        return MultiProcessCollector.merge(_settled_files(self.folder, min_bytes=self.HEADER_BYTES), accumulate=True)


def _settled_files(folder: str, *, min_bytes: int) -> list[str]:
    """The ``*.db`` files in ``folder`` of at least ``min_bytes`` (sorted; a file gone meanwhile is left out)."""
    files = []
    for path in sorted(glob.glob(os.path.join(folder, "*.db"))):
        try:
            if os.path.getsize(path) >= min_bytes:
                files.append(path)
        except OSError:
            continue
    return files


def _class_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _observe_many(child: Any, bounds: np.ndarray, values: np.ndarray) -> None:
    """``child.observe`` for every value, with one increment per bucket instead of one per value.

    prometheus_client has no public call that observes many values at once, and one ``observe`` per row
    costs 8-17 µs against well under 0.1 µs here (1000 rows, single and multiprocess), so this one place adds
    the counts to the child's bucket and sum values itself; if they are not there (another version), it
    observes one by one. A test holds the result equal to one ``observe`` per value.
    """
    buckets, total = getattr(child, "_buckets", None), getattr(child, "_sum", None)  # no public batch observe
    if buckets is None or total is None or len(buckets) != len(bounds):
        for value in values.tolist():
            child.observe(value)
        return
    if len(values) == 0:
        return
    per_bucket = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    total.inc(float(values.sum()))
    for bucket, count in zip(buckets, per_bucket.tolist(), strict=True):
        if count:
            bucket.inc(count)


class MonitorCollector:
    """Computes the drift gauges and the model info at scrape time.

    Args:
        model: the model's name.
        state: returns ``(version, report, workers)``: the served version, the drift over the shared
            windows (``None`` if it cannot be computed) and how many workers' windows it covers.
    """

    def __init__(self, *, model: str, state: Callable[[], tuple[str | None, DriftReport | None, int]]) -> None:
        self.model = model
        self.state = state

    def collect(self) -> Iterator[Any]:
        """Yield the metric families (called by the registry on each scrape)."""
        from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

        version, report, workers = self.state()
        info = InfoMetricFamily("hml_model", "The model being served")
        info.add_metric([], {"model": self.model, "version": version or "unpublished"})
        yield info
        if report is None:
            return
        rows = GaugeMetricFamily("hml_drift_window_rows", "Rows in the drift windows of the live workers", labels=["model"])
        rows.add_metric([self.model], report.rows)
        yield rows
        live = GaugeMetricFamily("hml_drift_window_workers", "Workers whose drift windows are summed", labels=["model"])
        live.add_metric([self.model], workers)
        yield live
        families = {
            "psi": GaugeMetricFamily("hml_drift_psi", "Population stability index against training", labels=["model", "feature"]),
            "out_of_range": GaugeMetricFamily(
                "hml_drift_out_of_range_ratio", "Share of values outside the training range", labels=["model", "feature"]
            ),
            "unseen": GaugeMetricFamily("hml_drift_unseen_ratio", "Share of categories unseen in training", labels=["model", "feature"]),
            "missing": GaugeMetricFamily("hml_drift_missing_ratio", "Share of missing values", labels=["model", "feature"]),
        }
        status = GaugeMetricFamily(
            "hml_drift_status", "Drift status: -1 pending (too few rows), 0 ok, 1 warn, 2 alert", labels=["model", "feature"]
        )
        for name, feature in report.features.items():
            for check, family in families.items():
                value = getattr(feature, check)
                if value is not None:
                    family.add_metric([self.model, name], value)
            status.add_metric([self.model, name], STATUSES.index(feature.status) - 1)
        yield from families.values()
        yield status
