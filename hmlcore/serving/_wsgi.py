"""WSGI middleware of the inference API: the body limit, for chunked bodies too.

Werkzeug refuses a ``Content-Length`` over ``MAX_CONTENT_LENGTH`` with a 413, but a chunked body (no
length announced) is only read up to the limit and the rest ignored, so a too large body would be cut
and its prefix processed. :func:`limit_chunked_body` reads a chunked body itself, up to one byte past
the limit: over it the client gets a JSON 413; within it the app gets the body with its length.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["limit_chunked_body"]

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def limit_chunked_body(wsgi_app: WsgiApp, *, max_bytes: int) -> WsgiApp:
    """``wsgi_app`` behind a check that a chunked request body holds at most ``max_bytes`` bytes (else 413, JSON).

    Example:
        >>> def echo(environ, start_response):
        ...     start_response("200 OK", [])
        ...     return [environ["wsgi.input"].read()]
        >>> app = limit_chunked_body(echo, max_bytes=3)
        >>> environ = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(b"abcd")}
        >>> b"".join(app(environ, lambda status, headers: print(status)))
        413 REQUEST ENTITY TOO LARGE
        b'{"error": "the request body is over 3 bytes", "details": []}'
    """

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("CONTENT_LENGTH") or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return wsgi_app(environ, start_response)
        stream = environ["wsgi.input"]
        parts, size = [], 0
        while size <= max_bytes:
            part = stream.read(max_bytes + 1 - size)
            if not part:
                break
            parts.append(part)
            size += len(part)
        if size > max_bytes:
            body = json.dumps({"error": f"the request body is over {max_bytes} bytes", "details": []}).encode()
            start_response("413 REQUEST ENTITY TOO LARGE", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        environ["wsgi.input"] = io.BytesIO(b"".join(parts))
        environ["CONTENT_LENGTH"] = str(size)
        return wsgi_app(environ, start_response)

    return app
