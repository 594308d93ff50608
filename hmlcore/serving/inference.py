"""The inference API: ``app.inference`` (:class:`HmlInferenceApp`), a Flask app built around the models.

``@hml.inference(app.inference)`` functions run once before serving: they load models and may add
their own routes on ``inference_app.flask``. Then the built-in JSON routes are added wherever the
user has not taken the same URL and method (the user's routes and error handlers win):

- ``GET /predict?feature=value...`` and ``POST /predict`` (one object or a list of objects);
- ``POST /v1/models/<name>:predict`` with ``{"instances": [...]}`` and ``GET /v1/models/<name>``
  (the KServe v1 protocol, so the image also runs as a KServe custom predictor);
- ``POST /explain`` (like ``POST /predict``) and ``POST /v1/models/<name>:explain``: each raw feature's
  contribution to each prediction (:mod:`hmlcore.model.explain`; 501 for a model that cannot be explained);
- ``GET /healthz`` (alive), ``GET /readyz`` (503 until every registered model is loaded and answers a
  smoke prediction on a typical training row, see :mod:`hmlcore.serving.reload`),
  ``GET /model`` (name, version, kind, target and its classes, features, metrics: no paths or URLs),
  ``GET /openapi.json``.

Bad input gets a JSON 4xx ``{"error": ..., "details": [...]}``: 400 for a body that is not JSON, 413 for
a body over :attr:`HmlInferenceApp.max_body_bytes` (chunked or not) or a batch over :attr:`HmlInferenceApp.max_batch`,
422 for a missing feature, a value of the wrong type or an unseen category (details name the feature
and the type expected). An exception in user code gets a 500 with a request id; the traceback goes to
the log, never to the client (:mod:`hmlcore.serving.json_api`). This module never imports kfp.

Every worker watches the models' pointers in the lake and swaps in a newly published version once it
has passed every check (``HML_RELOAD_INTERVAL`` seconds between looks, 0 = off; see :mod:`hmlcore.serving.reload`).

Example:
    >>> from hmlcore import hml
    >>> app = hml.HmlApp(name="demo")
    >>> @hml.inference(app.inference)
    ... def start(inference_app):
    ...     inference_app.flask.add_url_rule("/hello", "hello", lambda: {"hello": "world"})
    >>> app.inference.create_app().test_client().get("/hello").json
    {'hello': 'world'}
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from hmlcore import _env
from hmlcore.errors import ConfigError, FeatureError
from hmlcore.model.lookup import find_model
from hmlcore.serving._wsgi import limit_chunked_body
from hmlcore.serving.json_api import ApiError, add_error_handlers, json_body, records_body
from hmlcore.serving.openapi import feature_schemas, openapi_document, prediction_schema
from hmlcore.serving.reload import ModelWatcher, reload_interval, smoke_failure

if TYPE_CHECKING:
    import numpy as np
    from flask import Flask

    from hmlcore.model.container import ModelContainer

__all__ = ["HmlInferenceApp", "Predictor", "default_predictor", "deploy_inference", "inference", "routed"]

log = logging.getLogger("hmlcore.inference")

#: turns an encoded feature matrix into one JSON-able prediction per row
Predictor = Callable[["ModelContainer", "np.ndarray"], list[dict[str, Any]]]


def default_predictor(container: ModelContainer, features: np.ndarray) -> list[dict[str, Any]]:
    """One answer per row in the shape of the model's kind (see :meth:`ModelContainer.predict`)."""
    return container.predict(features)


def routed(flask_app: Flask) -> set[tuple[str, str]]:
    """Every ``(rule, method)`` ``flask_app`` already answers; built-in routes are added only where it does not."""
    return {(r.rule, m) for r in flask_app.url_map.iter_rules() for m in r.methods or ()}


class HmlInferenceApp:
    """The inference side of an app (``app.inference``).

    Args:
        name: the project's name (the OpenAPI document's title).
        import_name: the package's name, Flask's ``import_name``.
        models: the registered models by name, shared with the app: the API serves what it holds, and a
            newly published version replaces its entry (:mod:`hmlcore.serving.reload`).

    Attributes:
        max_batch: the most rows one request may send (413 beyond it); ``HML_MAX_BATCH`` overrides it.
        max_body_bytes: the largest request body accepted (413 beyond it); ``HML_MAX_BODY_BYTES`` overrides it.
        observers: what :meth:`observe` registered.
    """

    def __init__(self, *, name: str, import_name: str, models: MutableMapping[str, ModelContainer]) -> None:
        self.name = name
        self.import_name = import_name
        self.models = models
        self.init_functions: list[Callable[[HmlInferenceApp], Any]] = []
        self.deploy_configurators: list[Callable[[Any], Any]] = []
        self.max_batch = 10_000
        self.max_body_bytes = 16 * 1024 * 1024
        self.observers: list[Any] = []
        self._flask: Flask | None = None
        self._predictors: dict[str, Predictor] = {}
        self._answer_schemas: dict[str, dict[str, Any]] = {}
        self._model_name: str | None = None
        self._builtins: set[tuple[str, str]] = set()
        self._ready = False
        self._smoke: dict[str, tuple[tuple[int, int], str | None]] = {}

    @property
    def flask(self) -> Flask:
        """The Flask application (created on first use); add your own routes to it."""
        if self._flask is None:
            import flask

            self._flask = flask.Flask(self.import_name)
            self._flask.json.sort_keys = False  # type: ignore[attr-defined]
        return self._flask

    def get_model(self, name: str) -> ModelContainer:
        """The registered model container ``name``."""
        return find_model(self.models, name)

    def set_predictor(self, predictor: Predictor, *, model: str | None = None, schema: dict[str, Any] | None = None) -> None:
        """Use ``predictor`` to turn encoded features into predictions for ``/predict``.

        Args:
            predictor: ``(container, features) -> [dict per row]``.
            model: the registered model ``/predict`` serves (default: the only one registered).
            schema: the JSON schema of one answer, for the OpenAPI document, if ``predictor`` reshapes
                the answer of :meth:`ModelContainer.predict` (whose schema fits the model's kind).

        Example:
            >>> from hmlcore import hml
            >>> app = hml.HmlApp(name="demo")
            >>> app.inference.set_predictor(lambda container, features: [{"p": 0.5}] * len(features))
        """
        if not callable(predictor):
            raise ConfigError(f"predictor must be callable, got {type(predictor).__name__}")
        if model is not None:
            self.get_model(model)
        if schema is not None and not isinstance(schema, dict):
            raise ConfigError(f"schema must be a JSON schema (a dict), got {type(schema).__name__}")
        self._predictors[model or ""] = predictor
        if schema is None:
            self._answer_schemas.pop(model or "", None)
        else:
            self._answer_schemas[model or ""] = schema
        if model is not None:
            self._model_name = model

    def answer_schema(self, container: ModelContainer) -> dict[str, Any]:
        """The JSON schema of one answer about ``container``: the one given to :meth:`set_predictor`, else the kind's."""
        found = self._answer_schemas.get(container.name) or self._answer_schemas.get("")
        return found or prediction_schema(container)

    def _predictor(self, container: ModelContainer) -> Predictor:
        found = self._predictors.get(container.name) or self._predictors.get("")
        return found or default_predictor

    @property
    def model(self) -> ModelContainer:
        """The model ``/predict`` serves."""
        if self._model_name:
            return self.get_model(self._model_name)
        if len(self.models) != 1:
            raise ConfigError(f"{len(self.models)} models are registered: name the one /predict serves with set_predictor(..., model=NAME)")
        return next(iter(self.models.values()))

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
        self.max_batch = _env.MAX_BATCH.get() or self.max_batch
        self.max_body_bytes = _env.MAX_BODY_BYTES.get() or self.max_body_bytes
        for init in self.init_functions:
            init(self)
        flask_app.config["MAX_CONTENT_LENGTH"] = self.max_body_bytes
        flask_app.wsgi_app = limit_chunked_body(flask_app.wsgi_app, max_bytes=self.max_body_bytes)  # type: ignore[method-assign,assignment]
        self._add_builtin_routes(flask_app)
        add_error_handlers(flask_app)
        interval = reload_interval()
        if interval:
            watcher = ModelWatcher(
                self.models, interval=interval, smoke=lambda container: smoke_failure(container, self._predictor(container))
            )
            flask_app.before_request(watcher.ensure_started)
        self._ready = True
        return flask_app

    def _add_builtin_routes(self, flask_app: Flask) -> None:
        routes: list[tuple[str, str, Callable[..., Any]]] = [
            ("/predict", "GET", self._predict_get),
            ("/predict", "POST", self._predict_post),
            ("/v1/models/<name>:predict", "POST", self._kserve_predict),
            ("/v1/models/<name>", "GET", self._kserve_model),
            ("/explain", "POST", self._explain_post),
            ("/v1/models/<name>:explain", "POST", self._kserve_explain),
            ("/healthz", "GET", lambda: {"status": "ok"}),
            ("/readyz", "GET", self._readyz),
            ("/model", "GET", self._model_info),
            ("/openapi.json", "GET", self._openapi),
        ]
        taken = routed(flask_app)
        for rule, method, view in routes:
            if (rule, method) in taken:
                log.info("%s %s is the app's own; the built-in one is left out", method, rule)
                continue
            endpoint = "hml_" + re.sub(r"\W+", "_", rule).strip("_") + "_" + method.lower()
            flask_app.add_url_rule(rule, endpoint, view, methods=[method])
            self._builtins.add((rule, method))

    # ----------------------------------------------------------------- views
    def _predict_get(self) -> Any:
        import flask

        try:
            record = flask.request.args.to_dict()
        except UnicodeDecodeError as exc:  # a raw byte some servers pass through (gunicorn before 26)
            raise ApiError(400, f"the query string is not UTF-8 (byte {exc.object[exc.start]:#04x} at {exc.start})") from None
        return self._predict([record], self.model)

    def _predict_post(self) -> Any:
        return self._predict(records_body(), self.model)

    def _kserve_predict(self, name: str) -> Any:
        container = self._container(name)
        return self._predict(self._kserve_instances(container), container)

    def _explain_post(self) -> Any:
        return self._explain(records_body(), self.model)

    def _kserve_explain(self, name: str) -> Any:
        container = self._container(name)
        return self._explain(self._kserve_instances(container), container)

    def _explain(self, records: list[Any], container: ModelContainer) -> Any:
        from hmlcore.model.explain import ExplanationError, explain  # numpy: only /explain needs it

        features = self._encoded(records, container)
        try:
            answer = explain(container, features)
        except ExplanationError as exc:
            raise ApiError(501, str(exc)) from exc
        return {"model": {"name": container.name, "version": container.version}, **answer}

    def _kserve_instances(self, container: ModelContainer) -> list[Any]:
        body = json_body()
        if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
            raise ApiError(422, 'the body must be {"instances": [...]}, a list of objects of features (or of lists in feature order)')
        features = container.features
        instances = []
        for i, instance in enumerate(body["instances"]):
            if isinstance(instance, list):
                if len(instance) != len(features):
                    raise ApiError(
                        422,
                        f"instance {i} has {len(instance)} values; the model takes {len(features)}: {', '.join(features)}",
                        [{"index": i, "feature": None, "message": f"expected {len(features)} values, got {len(instance)}"}],
                    )
                instance = dict(zip(features, instance, strict=True))
            instances.append(instance)
        return instances

    def _kserve_model(self, name: str) -> Any:
        container = self._container(name)
        return {"name": container.name, "version": container.version, "ready": container.model is not None}

    def _container(self, name: str) -> ModelContainer:
        container = self.models.get(name)
        if container is None:
            raise ApiError(404, f"no model {name!r}; this server has {', '.join(sorted(self.models)) or 'none'}")
        return container

    def _predict(self, records: list[Any], container: ModelContainer) -> Any:
        features = self._encoded(records, container)
        predictions = self._predictor(container)(container, features)
        self._notify("on_predict", container, records, features, predictions)
        return {"model": {"name": container.name, "version": container.version}, "predictions": predictions}

    def _encoded(self, records: list[Any], container: ModelContainer) -> np.ndarray:
        if not records:
            raise ApiError(422, "the batch is empty: send at least one record")
        if len(records) > self.max_batch:
            raise ApiError(413, f"the batch has {len(records)} records; at most {self.max_batch} are accepted")
        if container.model is None:
            raise ApiError(503, f"model {container.name} is not loaded yet")
        try:
            features = container.encode(records)
        except FeatureError as exc:
            self._notify("on_invalid", container, exc.details)
            raise ApiError(422, str(exc), exc.details) from exc
        return features

    def _readyz(self) -> Any:
        waiting = [name for name, c in self.models.items() if c.model is None]
        if waiting:
            return {"status": "loading", "waiting_for": waiting}, 503
        failing = {name: reason for name, c in self.models.items() if (reason := self.smoke_failure(c))}
        if failing:
            return {"status": "failing", "failing": failing}, 503
        return {"status": "ready"}

    def smoke_failure(self, container: ModelContainer) -> str | None:
        """Why ``container`` cannot answer a typical request (see :func:`hmlcore.serving.reload.smoke_failure`), or None.

        Checked once per loaded model; a failure is logged once.
        """
        key = (id(container), id(container.model))
        known = self._smoke.get(container.name)
        if known is not None and known[0] == key:
            return known[1]
        failure = smoke_failure(container, self._predictor(container))
        if failure:
            log.error("model %s version %s cannot serve: %s", container.name, container.version or "unpublished", failure)
        self._smoke[container.name] = (key, failure)
        return failure

    def _model_info(self) -> Any:
        container = self.model
        return {
            "name": container.name,
            "version": container.version,
            "target": container.target,
            "kind": container.kind,
            "classes": container.classes,
            **({"threshold": container.threshold} if container.kind == "binary" else {}),
            "target_distribution": container.target_distribution,
            "features": feature_schemas(container),
            "features_numeric": container.features_numeric,
            "features_categorical": container.features_categorical,
            "categories": container.encoder.categories,
            "unknown_category": container.encoder.unknown,
            "metrics": container.metrics,
        }

    def _openapi(self) -> Any:
        return openapi_document(self, builtins=self._builtins)


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
