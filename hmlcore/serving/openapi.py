"""The OpenAPI document of the inference API, generated from the served model's training metadata.

Each feature becomes a schema: numeric features are numbers (``null`` means missing), with the range,
mean and median seen in training in the description and an ``x-hml-training`` extension; categorical
features are strings whose ``enum`` is the categories seen in training (when unseen categories are
refused) and whose description lists them. Features with a declared default are optional. Each
prediction's schema fits the model's kind: a binary model's label and probability, a multiclass
model's label and the probability of each class (by name), a regression model's number. The document
describes only the built-in routes still served by hmlcore (a route the model author replaced is
left out: its schema is the author's to write).

Example:
    >>> from hmlcore.model import ModelContainer
    >>> c = ModelContainer("m", "p", ["age"], ["sex"], "y")
    >>> c.encoder.categories = {"sex": ["f", "m"]}
    >>> feature_schemas(c)["sex"]["enum"]
    ['f', 'm', None]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from hmlcore._version import __version__

if TYPE_CHECKING:
    from hmlcore.model.container import ModelContainer

__all__ = ["DocumentedApi", "feature_schemas", "openapi_document", "prediction_schema"]


class DocumentedApi(Protocol):
    """What the document describes of the API (:class:`~hmlcore.serving.inference.HmlInferenceApp` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def models(self) -> Mapping[str, ModelContainer]: ...
    @property
    def model(self) -> ModelContainer: ...
    @property
    def max_batch(self) -> int: ...
    def answer_schema(self, container: ModelContainer) -> dict[str, Any]: ...


_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def feature_schemas(container: ModelContainer) -> dict[str, dict[str, Any]]:
    """One JSON schema per feature of ``container``, from what training saw."""
    stats = container.distributions.get("numeric", {}) if isinstance(container.distributions, dict) else {}
    schemas: dict[str, dict[str, Any]] = {}
    for feature in container.features_numeric:
        schema: dict[str, Any] = {"type": "number", "nullable": True}
        seen = stats.get(feature) or {}
        if "min" in seen and "max" in seen:
            median = (seen.get("quantiles") or {}).get("p50", seen["min"])
            schema["description"] = (
                f"A number; training saw {_num(seen['min'])} to {_num(seen['max'])} (median {_num(median)}). null: missing."
            )
            schema["example"] = median
            schema["x-hml-training"] = {k: seen[k] for k in ("min", "max", "mean", "std", "count", "missing") if k in seen}
        else:
            schema["description"] = "A number. null: missing."
        schemas[feature] = schema
    unknown = container.encoder.unknown
    for feature in container.features_categorical:
        known = list(container.encoder.categories.get(feature, []))
        schema = {"type": "string", "nullable": True}
        if unknown == "error" and known:
            schema["enum"] = [*known, None]  # OpenAPI 3.0: a nullable enum lists null
            schema["description"] = f"One of the categories seen in training: {', '.join(known)}. null: missing."
        else:
            schema["description"] = f"Categories seen in training: {', '.join(known) or 'none'}; any other is treated as missing."
        if known:
            schema["example"] = known[0]
        schemas[feature] = schema
    for feature, value in container.defaults.items():
        schemas[feature]["default"] = value
    return schemas


def prediction_schema(container: ModelContainer) -> dict[str, Any]:
    """The JSON schema of one prediction of ``container``'s model, shaped by its kind (see ``ModelContainer.predict``)."""
    target = container.target
    if container.kind == "regression":
        seen = container.target_distribution
        value: dict[str, Any] = {"type": "number", "description": f"The predicted {target}."}
        if "min" in seen and "max" in seen:
            value["description"] += f" Training saw {_num(seen['min'])} to {_num(seen['max'])} (mean {_num(seen.get('mean'))})."
        return {"type": "object", "properties": {target: value}, "required": [target]}
    classes = container.classes
    shown = ", ".join(map(str, classes)) or "the classes seen in training"
    label: dict[str, Any] = {"description": f"The predicted class: one of {shown}."}
    if classes:
        label["type"] = {bool: "boolean", int: "integer"}.get(type(classes[0]), "string")
        label["enum"] = list(classes)
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    if container.kind == "binary":
        positive = f" ({classes[1]!s})" if len(classes) == 2 else ""
        label["description"] += f" The positive class{positive} when its probability is at least {container.threshold:g}."
        properties = {target: label, "probability": {**probability, "description": f"The probability of the positive class{positive}."}}
        return {"type": "object", "properties": properties, "required": [target, "probability"]}
    names = container.target_info.class_names
    probabilities = {
        "type": "object",
        "description": "The probability of each class, by name; they sum to 1. The label is the most probable class.",
        "properties": {name: probability for name in names},
        "required": names,
    }
    return {"type": "object", "properties": {target: label, "probabilities": probabilities}, "required": [target, "probabilities"]}


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def openapi_document(inference_app: DocumentedApi, *, builtins: set[tuple[str, str]]) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``inference_app``'s built-in routes in ``builtins`` (``(rule, method)`` pairs)."""
    container = inference_app.model
    features = feature_schemas(container)
    required = [f for f in container.features if f not in container.defaults]
    record = {"type": "object", "properties": features, "required": required, "additionalProperties": True}
    errors = {
        "400": _response("The body is not JSON.", _ERROR_REF),
        "413": _response("The body or the batch is too large.", _ERROR_REF),
        "422": _response("A feature is missing or holds a value the model cannot take; details name it.", _ERROR_REF),
        "503": _response("The model is not loaded yet.", _ERROR_REF),
    }
    prediction = {
        "type": "object",
        "properties": {
            "model": {"$ref": "#/components/schemas/ModelVersion"},
            "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
        },
        "required": ["model", "predictions"],
    }
    batch = {"type": "array", "items": {"$ref": "#/components/schemas/Record"}, "minItems": 1, "maxItems": inference_app.max_batch}
    paths: dict[str, dict[str, Any]] = {}

    def add(rule: str, method: str, path: str, operation: dict[str, Any]) -> None:
        if (rule, method) in builtins:
            paths.setdefault(path, {})[method.lower()] = operation

    add(
        "/predict",
        "GET",
        "/predict",
        {
            "summary": "Predict one record given as query parameters",
            "operationId": "predict_get",
            "parameters": [{"name": f, "in": "query", "required": f in required, "schema": _query_schema(s)} for f, s in features.items()],
            "responses": {"200": _response("The prediction.", prediction), **errors},
        },
    )
    add(
        "/predict",
        "POST",
        "/predict",
        {
            "summary": "Predict one record (an object) or a batch (a list of objects)",
            "operationId": "predict_post",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/Record"}, batch]}}},
            },
            "responses": {"200": _response("One prediction per record, in order.", prediction), **errors},
        },
    )
    add(
        "/v1/models/<name>:predict",
        "POST",
        "/v1/models/{name}:predict",
        {
            "summary": "Predict a batch, KServe v1 protocol",
            "operationId": "kserve_predict",
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": sorted(inference_app.models)}}
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "properties": {"instances": batch}, "required": ["instances"]},
                    }
                },
            },
            "responses": {
                "200": _response("One prediction per instance, in order.", prediction),
                "404": _response("No such model.", _ERROR_REF),
                **errors,
            },
        },
    )
    explained = {
        "type": "object",
        "properties": {
            "model": {"$ref": "#/components/schemas/ModelVersion"},
            "output": {"type": "string", "enum": ["log_odds", "class_log_odds", "value"]},
            "explanations": {"type": "array", "items": {"$ref": "#/components/schemas/Explanation"}},
        },
        "required": ["model", "output", "explanations"],
    }
    unexplainable = {"501": _response("The model cannot be explained (only XGBoost models can).", _ERROR_REF)}
    add(
        "/explain",
        "POST",
        "/explain",
        {
            "summary": "Each raw feature's contribution to the prediction of one record or a batch",
            "operationId": "explain_post",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/Record"}, batch]}}},
            },
            "responses": {"200": _response("One explanation per record, in order.", explained), **errors, **unexplainable},
        },
    )
    add(
        "/v1/models/<name>:explain",
        "POST",
        "/v1/models/{name}:explain",
        {
            "summary": "Explain a batch, KServe v1 protocol",
            "operationId": "kserve_explain",
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": sorted(inference_app.models)}}
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object", "properties": {"instances": batch}, "required": ["instances"]}}
                },
            },
            "responses": {
                "200": _response("One explanation per instance, in order.", explained),
                "404": _response("No such model.", _ERROR_REF),
                **errors,
                **unexplainable,
            },
        },
    )
    status = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}
    add("/healthz", "GET", "/healthz", {"summary": "The server is alive", "responses": {"200": _response("Alive.", status)}})
    add(
        "/readyz",
        "GET",
        "/readyz",
        {
            "summary": "Every registered model is loaded",
            "responses": {"200": _response("Ready.", status), "503": _response("A model is still loading.", status)},
        },
    )
    add(
        "/model",
        "GET",
        "/model",
        {
            "summary": "The served model: version, kind, classes, features, metrics",
            "responses": {"200": _response("The model.", {"type": "object"})},
        },
    )
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"{inference_app.name} inference API",
            "version": str(container.version or "unpublished"),
            "description": f"Predictions of {container.target!r} from the {container.kind} model {container.name!r}"
            + (f" (classes: {', '.join(map(str, container.classes))})" if container.classes else "")
            + f"; served by hmlcore {__version__}.",
            "x-hml-kind": container.kind,
            "x-hml-classes": container.classes,
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Record": record,
                "Prediction": inference_app.answer_schema(container),
                "ModelVersion": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "version": {"type": "string", "nullable": True}},
                    "required": ["name", "version"],
                },
                "Explanation": {
                    "type": "object",
                    "description": (
                        "Each raw feature's contribution to the model's raw output (log-odds, per class for a multiclass model, "
                        "or the value for a regressor); contributions plus bias add up to margin."
                    ),
                    "properties": {
                        "contributions": {"type": "object", "additionalProperties": True},
                        "bias": {"oneOf": [{"type": "number"}, {"type": "object", "additionalProperties": {"type": "number"}}]},
                        "margin": {"oneOf": [{"type": "number"}, {"type": "object", "additionalProperties": {"type": "number"}}]},
                    },
                    "required": ["contributions", "bias", "margin"],
                },
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {"type": "string"},
                        "details": {"type": "array", "items": {"type": "object"}},
                        "request_id": {"type": "string"},
                    },
                    "required": ["error", "details"],
                },
            }
        },
    }


def _query_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A feature's schema as a query parameter: a query string cannot say null."""
    out = {k: v for k, v in schema.items() if k != "nullable"}
    if "enum" in out:
        out["enum"] = [v for v in out["enum"] if v is not None]
    return out


def _response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
