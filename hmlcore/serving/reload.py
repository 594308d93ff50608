"""Serve only models that can predict, and pick up newly published ones without a restart.

:func:`smoke_failure` predicts one row built from the model's training metadata (:func:`smoke_record`:
the median of each numeric feature, the most common category of each categorical one) through the same
encoder and predictor ``/predict`` uses; ``/readyz`` stays 503 while it fails.

:class:`ModelWatcher` polls each served model's pointer (``models/<project>/<name>/current.json``) every
``HML_RELOAD_INTERVAL`` seconds (:data:`RELOAD_INTERVAL_ENV`; default 30, ``0`` turns it off). When the
pointer's content changes it loads the new version into a fresh container (pointer and reference in the
lake, signature, digests, safe format: see :meth:`ModelContainer.load`), smoke-tests it, and only then
puts it in place of the old one with one dictionary assignment, so a request sees either the old or the
new model, never a mix. A version that fails any check is refused and logged once; the old one keeps
serving. Each process polls on its own thread, started by the first request the process serves, so
every gunicorn worker (forked after the models were loaded) watches for itself. With
``HML_MODEL_REFERENCE`` set, the served version is pinned and nothing is watched.

Example:
    >>> from hmlcore.model import ModelContainer
    >>> container = ModelContainer("m", "p", ["x"], ["c"], "y")
    >>> container.distributions = {
    ...     "numeric": {"x": {"count": 3, "quantiles": {"p50": 2.0}}},
    ...     "categorical": {"c": {"counts": {"a": 1, "b": 4}}},
    ... }
    >>> smoke_record(container)
    {'x': 2.0, 'c': 'b'}
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from hmlcore import _env
from hmlcore.errors import HmlError
from hmlcore.storage.lake import sha256_bytes

if TYPE_CHECKING:
    import numpy as np

    from hmlcore.model.container import ModelContainer

__all__ = ["DEFAULT_RELOAD_INTERVAL", "RELOAD_INTERVAL_ENV", "ModelWatcher", "reload_interval", "smoke_failure", "smoke_record"]

log = logging.getLogger("hmlcore.reload")

#: the environment variable with the seconds between two looks at the pointers (0: no hot reload)
RELOAD_INTERVAL_ENV = _env.RELOAD_INTERVAL.name
DEFAULT_RELOAD_INTERVAL = _env.RELOAD_INTERVAL.default


def reload_interval() -> int:
    """``HML_RELOAD_INTERVAL`` (seconds, 0 = off), else :data:`DEFAULT_RELOAD_INTERVAL`; 0 when ``HML_MODEL_REFERENCE`` pins a version.

    Raises:
        ConfigError: ``HML_RELOAD_INTERVAL`` is not a whole number of at least 0.
    """
    interval = _env.RELOAD_INTERVAL.get()
    return 0 if _env.MODEL_REFERENCE.get() else interval


def smoke_record(container: ModelContainer) -> dict[str, Any]:
    """A typical row of the training data: each numeric feature's median, each categorical one's most common value.

    Features the metadata does not describe get ``0.0`` (numeric) or their first known category.
    """
    numeric = container.distributions.get("numeric", {})
    categorical = container.distributions.get("categorical", {})
    record: dict[str, Any] = {}
    for feature in container.features_numeric:
        summary = numeric.get(feature) or {}
        record[feature] = (summary.get("quantiles") or {}).get("p50", summary.get("mean", 0.0))
    for feature in container.features_categorical:
        counts = (categorical.get(feature) or {}).get("counts") or {}
        known = container.encoder.categories.get(feature) or []
        record[feature] = max(counts, key=counts.__getitem__) if counts else (known[0] if known else None)
    return record


def smoke_failure(container: ModelContainer, predictor: Callable[[ModelContainer, np.ndarray], list[dict[str, Any]]]) -> str | None:
    """Why ``container`` cannot answer a prediction for :func:`smoke_record`, or None if it can.

    The row goes through ``container.encode`` and ``predictor`` as a request's would; the answer must be
    one JSON object of finite numbers and plain values.
    """
    if container.model is None:
        return "no model is loaded"
    record = smoke_record(container)
    try:
        answer = predictor(container, container.encode([record]))
        if not isinstance(answer, list) or len(answer) != 1 or not isinstance(answer[0], dict):
            return f"the predictor answered {type(answer).__name__} {str(answer)[:200]}, not one object for the one row"
        json.dumps(answer, allow_nan=False)
    except ValueError as exc:
        return f"the prediction for {record} is not valid JSON: {exc}"
    except Exception as exc:  # noqa: BLE001 - whatever fails here would fail every request
        return f"predicting {record} fails: {type(exc).__name__}: {exc}"
    return None


class ModelWatcher:
    """Polls the pointers of the served models and swaps in verified new versions (see the module doc).

    Args:
        models: the served models by name (``app.inference.models``); a verified new version replaces its entry.
        interval: seconds between two polls.
        smoke: why a container cannot serve, or None if it can (:func:`smoke_failure` with the app's predictor).
    """

    def __init__(
        self, models: MutableMapping[str, ModelContainer], *, interval: float, smoke: Callable[[ModelContainer], str | None]
    ) -> None:
        self.models = models
        self.interval = interval
        self.smoke = smoke
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._seen: dict[str, str] = {}
        self._errors: dict[str, str] = {}

    def ensure_started(self) -> None:
        """Start this process's polling thread unless it runs (cheap: called on every request)."""
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            self._pid = pid
            self._seen, self._errors = {}, {}  # a forked worker starts afresh
            threading.Thread(target=self._poll_forever, args=(pid,), name="hml-model-reload", daemon=True).start()

    def _poll_forever(self, pid: int) -> None:
        while os.getpid() == pid:  # at once first: a worker forked late may hold an older version than the lake's
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must never die; the old model keeps serving
                log.exception("checking for new model versions failed")
            time.sleep(self.interval)

    def check(self) -> list[str]:
        """Look at every watched pointer once; return the names of the models swapped for a new version."""
        swapped = []
        for name, container in list(self.models.items()):
            if container.model is not None and container.reference is None:
                continue  # bound in code, not loaded from the lake
            if self._check_one(name, container):
                swapped.append(name)
        return swapped

    def _check_one(self, name: str, container: ModelContainer) -> bool:
        try:
            pointer = container.lake.read_bytes(container.current_path)
        except FileNotFoundError:
            return False
        except Exception as exc:  # noqa: BLE001 - any storage failure: try again at the next poll
            self._log_once(name, f"model {name}: its pointer cannot be read, the served version stays: {type(exc).__name__}: {exc}")
            return False
        digest = sha256_bytes(pointer)
        if self._seen.get(name) == digest:
            return False
        self._seen[name] = digest
        try:
            named = json.loads(pointer).get("reference")
        except (ValueError, AttributeError):
            named = None
        if container.model is not None and named == container.reference_uri:
            return False  # the version this process serves already
        candidate = copy.copy(container)
        try:
            candidate.load()
        except HmlError as exc:
            self._refuse(name, container, f"it cannot be loaded: {exc}")
            return False
        failure = self.smoke(candidate)
        if failure:
            self._refuse(name, container, f"its smoke prediction fails: {failure}")
            return False
        self.models[name] = candidate  # one assignment: each request sees the old or the new container
        self._errors.pop(name, None)
        log.warning("model %s: now serving version %s (was %s)", name, candidate.version, container.version or "none")
        return True

    def _refuse(self, name: str, container: ModelContainer, reason: str) -> None:
        log.error("model %s: a newly published version is refused, version %s keeps serving: %s", name, container.version or "none", reason)

    def _log_once(self, name: str, message: str) -> None:
        if self._errors.get(name) != message:
            self._errors[name] = message
            log.warning("%s", message)
