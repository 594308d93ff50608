"""The inference API: ``app.inference`` (:class:`HmlInferenceApp`), a Flask app built around the models.

``@hml.inference(app.inference)`` functions run once before serving: they load models and may add
their own routes on ``inference_app.flask``. Then the built-in JSON routes are added wherever the
user has not taken the same URL and method:

- ``GET /predict?feature=value...`` and ``POST /predict`` (one object or a list of objects);
- ``GET /healthz`` (alive), ``GET /readyz`` (503 until every registered model is loaded),
  ``GET /model`` (name, version, features, metrics).

Bad input gets a JSON 4xx ``{"error": ..., "details": [...]}``; an exception in user code gets a 500
with a request id (the traceback goes to the log, not to the client). This module never imports kfp.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hmlcore.errors import ConfigError, FeatureError, HmlError

if TYPE_CHECKING:
    import numpy as np
    from flask import Flask

    from hmlcore.app import HmlApp
    from hmlcore.model import ModelContainer

__all__ = ["HmlInferenceApp", "Predictor", "default_predictor", "deploy_inference", "inference"]

log = logging.getLogger("hmlcore.inference")

#: turns an encoded feature matrix into one JSON-able prediction per row
Predictor = Callable[["ModelContainer", "np.ndarray"], list[dict[str, Any]]]


def default_predictor(container: ModelContainer, features: np.ndarray) -> list[dict[str, Any]]:
    """One ``{"probability": p}`` per row: the probability of the positive class."""
    return [{"probability": float(p)} for p in container.predict_proba(features)]


class ApiError(HmlError):
    """An error answered to the client with ``status`` and a JSON body."""

    def __init__(self, status: int, message: str, details: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.details = details or []


class HmlInferenceApp:
    """The inference side of an app (``app.inference``).

    Attributes:
        max_batch: the most rows one request may ask for (413 beyond it).
        max_body_bytes: the largest request body accepted (413 beyond it).
    """

    def __init__(self, app: HmlApp) -> None:
        self.app = app
        self.init_functions: list[Callable[[HmlInferenceApp], Any]] = []
        self.deploy_configurators: list[Callable[[Any], Any]] = []
        self.max_batch = 10_000
        self.max_body_bytes = 16 * 1024 * 1024
        self._flask: Flask | None = None
        self.observers: list[Any] = []
        self._predictor: Predictor = default_predictor
        self._model_name: str | None = None
        self._ready = False

    @property
    def flask(self) -> Flask:
        """The Flask application (created on first use)."""
        if self._flask is None:
            import flask

            self._flask = flask.Flask(self.app.package_entrypoint)
            self._flask.config["MAX_CONTENT_LENGTH"] = self.max_body_bytes
            self._flask.json.sort_keys = False  # type: ignore[attr-defined]
        return self._flask

    def get_model(self, name: str) -> ModelContainer:
        """The registered model container ``name``."""
        return self.app.get_model(name)

    def set_predictor(self, predictor: Predictor, *, model: str | None = None) -> None:
        """Use ``predictor`` to turn encoded features into predictions for ``/predict``.

        Args:
            predictor: ``(container, features) -> [dict per row]``.
            model: the registered model ``/predict`` serves (default: the only one registered).
        """
        if not callable(predictor):
            raise ConfigError(f"predictor must be callable, got {type(predictor).__name__}")
        if model is not None:
            self.get_model(model)
        self._predictor = predictor
        self._model_name = model

    @property
    def model(self) -> ModelContainer:
        """The model ``/predict`` serves."""
        if self._model_name:
            return self.get_model(self._model_name)
        if len(self.app.models) != 1:
            raise ConfigError(
                f"{len(self.app.models)} models are registered: name the one /predict serves with set_predictor(..., model=NAME)"
            )
        return next(iter(self.app.models.values()))

    def observe(self, observer: Any) -> Any:
        """Tell ``observer`` about every prediction request (monitoring builds on this).

        ``observer.on_predict(container, records, features, predictions)`` runs after each successful
        prediction and ``observer.on_invalid(container, details)`` after each request refused for its
        features; either method may be absent. An observer's failure is logged, never answered.
        """
        self.observers.append(observer)
        return observer

    def _notify(self, event: str, *args: Any) -> None:
        for observer in self.observers:
            handler = getattr(observer, event, None)
            if handler is None:
                continue
            try:
                handler(*args)
            except Exception:  # noqa: BLE001 - monitoring must never break serving
                log.exception("observer %r failed on %s", observer, event)

    # ----------------------------------------------------------------- the app
    def create_app(self) -> Flask:
        """Run the ``@hml.inference`` functions once, add the built-in routes, return the Flask app."""
        flask_app = self.flask
        if self._ready:
            return flask_app
        for init in self.init_functions:
            init(self)
        self._add_builtin_routes(flask_app)
        self._add_error_handlers(flask_app)
        self._ready = True
        return flask_app

    def _taken(self, flask_app: Flask, rule: str, method: str) -> bool:
        return any(r.rule == rule and method in (r.methods or ()) for r in flask_app.url_map.iter_rules())

    def _add_builtin_routes(self, flask_app: Flask) -> None:
        routes: list[tuple[str, str, Callable[[], Any]]] = [
            ("/predict", "GET", self._predict_get),
            ("/predict", "POST", self._predict_post),
            ("/healthz", "GET", lambda: {"status": "ok"}),
            ("/readyz", "GET", self._readyz),
            ("/model", "GET", self._model_info),
        ]
        for rule, method, view in routes:
            if not self._taken(flask_app, rule, method):
                endpoint = f"hml_{rule.strip('/').replace('/', '_')}_{method.lower()}"
                flask_app.add_url_rule(rule, endpoint, view, methods=[method])

    def _add_error_handlers(self, flask_app: Flask) -> None:
        from werkzeug.exceptions import HTTPException

        def api_error(error: ApiError) -> Any:
            return {"error": str(error), "details": error.details}, error.status

        def http_error(error: HTTPException) -> Any:
            return {"error": error.description or error.name, "details": []}, error.code or 500

        def unexpected(error: Exception) -> Any:
            request_id = uuid.uuid4().hex[:12]
            log.exception("request %s failed", request_id)
            return {"error": "internal error", "request_id": request_id, "details": []}, 500

        flask_app.register_error_handler(ApiError, api_error)
        flask_app.register_error_handler(HTTPException, http_error)
        flask_app.register_error_handler(Exception, unexpected)

    # ----------------------------------------------------------------- views
    def _predict_get(self) -> Any:
        import flask

        return self._predict([flask.request.args.to_dict()])

    def _predict_post(self) -> Any:
        import flask

        body = flask.request.get_json(silent=True)
        if body is None:
            raise ApiError(400, "the body must be JSON: an object of features or a list of them")
        if isinstance(body, dict):
            body = [body]
        if not isinstance(body, list):
            raise ApiError(422, f"the body must be an object or a list of objects, not a {type(body).__name__}")
        return self._predict(body)

    def _predict(self, records: list[Any]) -> Any:
        if not records:
            raise ApiError(422, "the batch is empty")
        if len(records) > self.max_batch:
            raise ApiError(413, f"the batch has {len(records)} rows; at most {self.max_batch} are accepted")
        container = self.model
        if container.model is None:
            raise ApiError(503, f"model {container.name} is not loaded yet")
        try:
            features = container.encode(records)
        except FeatureError as exc:
            self._notify("on_invalid", container, exc.details)
            raise ApiError(422, str(exc), exc.details) from exc
        predictions = self._predictor(container, features)
        self._notify("on_predict", container, records, features, predictions)
        return {"model": {"name": container.name, "version": container.version}, "predictions": predictions}

    def _readyz(self) -> Any:
        waiting = [name for name, c in self.app.models.items() if c.model is None]
        if waiting:
            return {"status": "loading", "waiting_for": waiting}, 503
        return {"status": "ready"}

    def _model_info(self) -> Any:
        container = self.model
        return {
            "name": container.name,
            "version": container.version,
            "reference": container.reference_uri,
            "target": container.target,
            "features_numeric": container.features_numeric,
            "features_categorical": container.features_categorical,
            "categories": container.encoder.categories,
            "metrics": container.metrics,
        }


def inference(inference_app: HmlInferenceApp) -> Callable[[Callable[[HmlInferenceApp], Any]], Callable[[HmlInferenceApp], Any]]:
    """Run the decorated function once before serving, with the :class:`HmlInferenceApp`."""
    if not isinstance(inference_app, HmlInferenceApp):
        raise ConfigError(f"@hml.inference takes app.inference, got {type(inference_app).__name__}")

    def decorate(func: Callable[[HmlInferenceApp], Any]) -> Callable[[HmlInferenceApp], Any]:
        inference_app.init_functions.append(func)
        return func

    return decorate


def deploy_inference(inference_app: HmlInferenceApp) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register the decorated function to configure the Kubernetes deployment of the inference API."""
    if not isinstance(inference_app, HmlInferenceApp):
        raise ConfigError(f"@hml.deploy_inference takes app.inference, got {type(inference_app).__name__}")

    def decorate(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        inference_app.deploy_configurators.append(func)
        return func

    return decorate
