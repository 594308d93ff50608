"""Prometheus metrics of the inference API, correct under gunicorn's several workers.

Multiprocess mode: ``prometheus_client`` keeps each worker's counters, histograms and gauges in files under
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums them, so any worker answers with the same totals. The
folder must be in the environment before ``prometheus_client`` is first imported, which is why nothing
here imports it at module level and why :func:`gunicorn_hooks` (called by the server before it forks its
workers) creates a fresh folder when none is set, removes it when the server stops and forgets a dead
worker's live figures. Without the variable (the development server: one process) the metrics live in
memory.

Drift is counted the same way: each worker adds the change of its drift window (see
:class:`~hmlcore.serving.drift_window.DriftWindow`) to ``hml_drift_window_bin_rows``, a gauge per feature
and training bin summed over the live workers (``livesum``). The drift figures (PSI, shares, status) and
the model's version are computed from those sums when Prometheus scrapes (:func:`drift_families`), so
they are the same whichever worker answers.

Example:
    >>> metrics = ServingMetrics(model="crashed")
    >>> metrics.observe_request("/predict", "GET", 200, 0.004)
    >>> b'hml_http_requests_total{method="GET",route="/predict",status="200"} 1.0' in metrics.render()[0]
    True
"""

from __future__ import annotations

import bisect
import glob
import logging
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hmlcore.serving.drift_report import STATUSES

if TYPE_CHECKING:
    from hmlcore.model.container import ModelContainer
    from hmlcore.serving.drift import DriftProfile
    from hmlcore.serving.drift_report import DriftReport

__all__ = [
    "MULTIPROC_ENV",
    "ServingMetrics",
    "SettledFilesCollector",
    "drift_families",
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
#: the predicted scores' counts per bucket and sums, shown as the histogram ``hml_prediction_score``
_SCORE_BUCKETS, _SCORE_SUMS = "hml_prediction_score_buckets", "hml_prediction_score_sums"


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
    """Forget what a dead worker ``pid`` kept live: its live gauges, its drift window among them (its counts stay in the totals)."""
    folder = folder or multiprocess_dir()
    if folder:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, folder)


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
    """The counters, histograms and drift window gauges of one inference API.

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before ``prometheus_client`` was imported) they
    are kept in the shared folder; otherwise in a registry of their own.

    Args:
        model: the model's name, a label of the prediction and drift metrics.
        buckets: the upper bounds of the predicted numbers' histogram (default: probabilities, 0.1 to 1.0;
            :func:`score_buckets` gives a model's own).
    """

    def __init__(self, *, model: str, buckets: Sequence[float] = SCORE_BUCKETS) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
        from prometheus_client.utils import floatToGoString

        self.model = model
        #: the process the metrics were made in (a forked child makes its own)
        self.pid = os.getpid()
        self.multiprocess = values.ValueClass is not values.MutexValue and multiprocess_dir() is not None
        self.registry = None if self.multiprocess else CollectorRegistry()
        reg = self.registry
        self.requests = Counter("hml_http_requests", "HTTP requests answered", ["route", "method", "status"], registry=reg)
        self.latency = Histogram(
            "hml_http_request_duration_seconds", "Time to answer a request", ["route", "method"], buckets=LATENCY_BUCKETS, registry=reg
        )
        self.predictions = Counter("hml_predictions", "Predictions by output and class", ["model", "output", "value"], registry=reg)
        # the predicted numbers' histogram, counted per bucket so that a batch costs one increment per bucket
        # (a Histogram observes one value at a time); :meth:`render` shows them as the histogram hml_prediction_score
        self.score_bounds = [float(b) for b in buckets] + ([] if float(buckets[-1]) == math.inf else [math.inf])
        self._score_les = [floatToGoString(b) for b in self.score_bounds]
        self.score_buckets = Counter(_SCORE_BUCKETS, "Predicted scores by bucket", ["model", "output", "le"], registry=reg)
        self.score_sums = Gauge(_SCORE_SUMS, "Sum of the predicted scores", ["model", "output"], multiprocess_mode="sum", registry=reg)
        self.invalid = Counter("hml_validation_failures", "Request features refused, by feature", ["model", "feature"], registry=reg)

        def live(name: str, documentation: str, labels: list[str]) -> Gauge:  # summed over the live workers; a dead one's forgotten
            return Gauge(name, documentation, labels, multiprocess_mode="livesum", registry=reg)

        self.window_rows = live("hml_drift_window_rows", "Rows in the drift windows of the live workers", ["model"])
        self.window_workers = live("hml_drift_window_workers", "Workers whose drift windows are summed", ["model"])
        self.window_bins = live(
            "hml_drift_window_bin_rows",
            "Rows of the live workers' drift windows in each training bin or category",
            ["model", "version", "feature", "bin"],
        )
        self._children: dict[tuple, Any] = {}
        self._classes: dict[str, set[str]] = {}

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
        for output, first in predictions[0].items():  # the outputs and their types, as the first row has them
            if isinstance(first, float):
                self._observe_scores(output, [v for p in predictions if isinstance(v := p.get(output), float)])
            elif isinstance(first, (bool, int, str)):
                counts = Counter([p.get(output) for p in predictions]) if len(predictions) > 1 else {first: 1}
                for value, count in counts.items():  # counted in C, then one increment per class
                    self._child(self.predictions, self.model, output, self._class_label(output, _class_text(value))).inc(count)
            elif isinstance(first, Mapping):
                for key in list(first)[:MAX_CLASSES]:
                    column = [v for p in predictions if isinstance(v := (p.get(output) or {}).get(key), float)]
                    self._observe_scores(f"{output}.{key}", column)

    def _observe_scores(self, output: str, values: list[float]) -> None:
        """Add ``values`` (NaN left out) to the histogram of ``output``: one increment per bucket."""
        values = [v for v in values if v == v]
        if not values:
            return
        if len(values) <= 8:  # most requests: one row; numpy would cost more than it saves
            per_bucket = list(Counter(bisect.bisect_left(self.score_bounds, v) for v in values).items())
        else:
            counts = np.bincount(np.searchsorted(self.score_bounds, values, side="left"), minlength=len(self.score_bounds))
            per_bucket = [(int(i), int(counts[i])) for i in np.flatnonzero(counts)]
        for bucket, count in per_bucket:
            self._child(self.score_buckets, self.model, output, self._score_les[bucket]).inc(count)
        self._child(self.score_sums, self.model, output).inc(math.fsum(values))

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

    def observe_window(self, profile: DriftProfile, version: str, changes: Iterable[tuple[int, int]], rows: int) -> None:
        """Add the ``(slot, change)`` pairs of this worker's drift window to the gauges; it now holds ``rows`` rows."""
        for slot, change in changes:
            self._child(self.window_bins, self.model, version, *profile.slot_labels[slot]).inc(change)
        self._child(self.window_rows, self.model).set(rows)

    def start_window(self) -> None:
        """Count this worker among those with a drift window."""
        self._child(self.window_workers, self.model).set(1)

    def families(self, *, pattern: str = "*.db") -> list[Any]:
        """The metric families: of every worker (their files matching ``pattern``, merged) or of this process."""
        if self.registry is not None:
            return list(self.registry.collect())
        return list(SettledFilesCollector(multiprocess_dir() or "", pattern=pattern).collect())

    def window_counts(self, profile: DriftProfile, version: str, families: Iterable[Any] | None = None) -> tuple[np.ndarray, int]:
        """The slot counts of ``version``'s windows summed over the live workers, and how many workers have a window."""
        slots = {labels: slot for slot, labels in enumerate(profile.slot_labels)}
        counts, workers = np.zeros(profile.slots, dtype=np.int64), 0
        for family in self.families(pattern="gauge_livesum_*.db") if families is None else families:
            for sample in family.samples if family.name in ("hml_drift_window_bin_rows", "hml_drift_window_workers") else ():
                labels = sample.labels
                if labels["model"] != self.model:
                    continue
                if family.name == "hml_drift_window_workers":
                    workers += int(sample.value)
                elif labels["version"] == version and (slot := slots.get((labels["feature"], labels["bin"]))) is not None:
                    counts[slot] += int(sample.value)
        return counts, workers

    def render(self, more: Callable[[list[Any]], Iterable[Any]] | None = None) -> tuple[bytes, str]:
        """The metrics in Prometheus text format, and its content type; ``more`` adds families computed from them."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        families = self.families()
        shown = [f for f in families if f.name not in (_SCORE_BUCKETS, _SCORE_SUMS)] + [self._score_histogram(families)]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(shown + (list(more(families)) if more else [])))
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def _score_histogram(self, families: list[Any]) -> Any:
        """The histogram ``hml_prediction_score``, from the counts per bucket and the sums."""
        from prometheus_client.metrics_core import Metric

        per_bucket: dict[tuple[str, str], dict[str, float]] = {}
        sums: dict[tuple[str, str], float] = {}
        for family in families:
            for sample in family.samples if family.name in (_SCORE_BUCKETS, _SCORE_SUMS) else ():
                key = (sample.labels["model"], sample.labels["output"])
                if family.name == _SCORE_SUMS:
                    sums[key] = sample.value
                elif sample.name.endswith("_total"):
                    per_bucket.setdefault(key, {})[sample.labels["le"]] = sample.value
        histogram = Metric("hml_prediction_score", "Predicted scores by output", "histogram")
        for (model, output), counts in sorted(per_bucket.items()):
            labels, total = {"model": model, "output": output}, 0.0
            for le in self._score_les:
                total += counts.get(le, 0.0)
                histogram.add_sample("hml_prediction_score_bucket", {**labels, "le": le}, total)
            histogram.add_sample("hml_prediction_score_count", labels, total)
            histogram.add_sample("hml_prediction_score_sum", labels, sums.get((model, output), 0.0))
        return histogram


class _Families:
    """Metric families already collected, for :func:`prometheus_client.generate_latest`."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


class SettledFilesCollector:
    """The workers' metrics files merged, leaving out a file another worker is creating at this instant.

    prometheus_client creates a worker's file empty and only then sizes it: its own collector fails on a file
    caught in between (``struct.error``), and ``/metrics`` would answer 500. Such a file holds no sample yet,
    so it is skipped; it is read on the next scrape.

    Args:
        folder: the multiprocess folder.
        pattern: the files to merge (``gauge_livesum_*.db``: only the gauges summed over live workers).
    """

    #: a file's header (the used length and padding) that prometheus_client writes when it sizes the file
    HEADER_BYTES = 8

    def __init__(self, folder: str, *, pattern: str = "*.db") -> None:
        self.folder, self.pattern = folder, pattern

    def collect(self) -> Any:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = []
        for path in sorted(glob.glob(os.path.join(glob.escape(self.folder), self.pattern))):
            try:
                if os.path.getsize(path) >= self.HEADER_BYTES:
                    files.append(path)
            except OSError:
                continue  # gone meanwhile
        return MultiProcessCollector.merge(files, accumulate=True)


def _class_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def drift_families(model: str, version: str, report: DriftReport | None) -> list[Any]:
    """The model's info and its drift figures (none if ``report`` is None) as metric families."""
    from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

    info = InfoMetricFamily("hml_model", "The model being served")
    info.add_metric([], {"model": model, "version": version})
    if report is None:
        return [info]
    labels = ["model", "feature"]
    families = {
        "psi": GaugeMetricFamily("hml_drift_psi", "Population stability index against training", labels=labels),
        "out_of_range": GaugeMetricFamily("hml_drift_out_of_range_ratio", "Share of values outside the training range", labels=labels),
        "unseen": GaugeMetricFamily("hml_drift_unseen_ratio", "Share of categories unseen in training", labels=labels),
        "missing": GaugeMetricFamily("hml_drift_missing_ratio", "Share of missing values", labels=labels),
    }
    status = GaugeMetricFamily("hml_drift_status", "Drift status: -1 pending (too few rows), 0 ok, 1 warn, 2 alert", labels=labels)
    for name, feature in report.features.items():
        for check, family in families.items():
            value = getattr(feature, check)
            if value is not None:
                family.add_metric([model, name], value)
        status.add_metric([model, name], STATUSES.index(feature.status) - 1)
    return [info, *families.values(), status]
