"""JSON in and out of the inference API: request bodies parsed, every error answered as ``{"error", "details"}``.

A body that is not JSON gets a 400, one that is not records a 422; :class:`ApiError` answers with its own
status; an HTTP error keeps its status; any other exception gets a 500 naming a request id, its traceback
going to the log, never to the client.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

from hmlcore.errors import HmlError

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["ApiError", "add_error_handlers", "json_body", "records_body"]

log = logging.getLogger("hmlcore.inference")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ApiError(HmlError):
    """Raised to answer the client with ``status`` and ``{"error": message, "details": details}``."""

    def __init__(self, status: int, message: str, details: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.details = details or []


def add_error_handlers(flask_app: Flask) -> None:
    """Answer every error as JSON where ``flask_app`` has no handler of its own: an :class:`ApiError`, an HTTP error, a 500."""
    from werkzeug.exceptions import HTTPException

    def api_error(error: ApiError) -> Any:
        return {"error": str(error), "details": error.details}, error.status

    def http_error(error: HTTPException) -> Any:
        headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
        return {"error": error.description or error.name, "details": []}, error.code or 500, headers

    def unexpected(error: Exception) -> Any:
        import flask

        given = flask.request.headers.get("X-Request-ID", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        log.exception("request %s (%s %s) failed", request_id, flask.request.method, flask.request.path)
        body = {"error": f"internal error; the server log has request {request_id}", "request_id": request_id, "details": []}
        return body, 500, {"X-Request-ID": request_id}

    own = flask_app.error_handler_spec.get(None, {}).get(None, {})
    for kind, handler in ((ApiError, api_error), (HTTPException, http_error), (Exception, unexpected)):
        if kind not in own:
            flask_app.register_error_handler(kind, handler)


def json_body() -> Any:
    """The request's body parsed as JSON, whatever its content type; 400 if it is not JSON."""
    import flask

    data = flask.request.get_data(cache=False)
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        message = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise ApiError(400, f"the body is not valid JSON: {message}") from None


def records_body() -> list[Any]:
    """The body of ``POST /predict`` or ``/explain``: one object of features or a list of them."""
    body = json_body()
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list):
        raise ApiError(422, f"the body must be an object of features or a list of them, not {_json_type(body)}")
    return body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_type(value: Any) -> str:
    names = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}
    return names.get(type(value), type(value).__name__)
