"""The client socket :class:`~hmlcore.serving._gunicorn.HmlWorker` hands gunicorn, and its JSON error answers.

gunicorn's parser reads a request from the socket; :class:`ClientSocket` gives it what the worker's main loop
has already gathered, so neither the main loop nor a pool thread ever waits for a client to send.
"""

from __future__ import annotations

import errno
import json
from typing import Any

from werkzeug.exceptions import RequestTimeout

__all__ = ["CONTINUE", "ClientSocket", "JsonErrorSocket", "ReadTimeout", "json_response"]


class ReadTimeout(RequestTimeout):
    """Raised when a client has not sent its request headers or body in time: answered 408."""


#: gunicorn's answer to ``Expect: 100-continue``
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ClientSocket:
    """A client socket that never waits for the client to send: gunicorn's parser reads what the main loop gathered.

    The socket stays non-blocking whatever gunicorn sets. ``pending`` holds what has arrived and the parser
    has not read; reads take from it, and past it, only what has arrived (nothing: the request is cut
    short, :class:`ReadTimeout`). Writes in the main loop (``inline``) never wait either: what the client
    does not take at once is kept in ``unsent`` for a pool thread. A pool thread's writes wait at most
    ``send_timeout`` seconds (then the client is cut off).
    """

    def __init__(self, sock: Any, *, send_timeout: float) -> None:
        self._sock = sock
        self.send_timeout = send_timeout
        self._timeout: float | None = None
        #: bytes that have arrived and that gunicorn's parser has not read yet
        self.pending = bytearray()
        #: set while the worker's main loop serves a request: writes never wait
        self.inline = False
        #: what the client did not take at once while ``inline``, for a pool thread to send
        self.unsent = bytearray()
        #: the main loop answered ``Expect: 100-continue`` already (gunicorn's own answer is left out)
        self.continued = False
        self._shut = False
        sock.setblocking(False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout  # recorded for gunicorn; the socket itself never blocks on a read

    def setblocking(self, flag: bool) -> None:
        self.settimeout(None if flag else 0.0)

    def gettimeout(self) -> float | None:
        return self._timeout

    def receive(self, size: int) -> bytes | None:
        """What has arrived, up to ``size`` bytes, into nothing (``None`` if nothing has; ``b""`` if the client closed or reset)."""
        try:
            return self._sock.recv(size)  # type: ignore[no-any-return]
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def recv(self, size: int, *flags: int) -> bytes:
        if self._shut:
            return b""  # gunicorn's close_graceful: the main loop waits for the client's FIN, not a thread
        if self.pending:
            data = bytes(self.pending[:size])
            del self.pending[:size]
            return data
        try:
            return self._sock.recv(size)  # type: ignore[no-any-return]
        except BlockingIOError:
            raise ReadTimeout("the request did not arrive whole") from None

    def shutdown(self, how: int) -> None:
        self._shut = True
        self._sock.shutdown(how)

    def send(self, data: bytes, *flags: int) -> int:
        if self.continued and bytes(data) == CONTINUE:
            return len(data)
        self.sendall(data)
        return len(data)

    def sendall(self, data: bytes, *flags: int) -> None:
        if not self.inline:
            self._sock.settimeout(self.send_timeout)
            try:
                self._sock.sendall(data)
            except TimeoutError:
                raise BrokenPipeError(errno.EPIPE, f"the client did not take its answer in {self.send_timeout:g}s") from None
            finally:
                self._sock.settimeout(0.0)
            return
        view = memoryview(data)
        while view and not self.unsent:
            try:
                view = view[self._sock.send(view) :]
            except BlockingIOError:
                break
        self.unsent += view


class JsonErrorSocket:
    """Stands in for the client socket while gunicorn writes an error page: writes the same status as JSON.

    A client error's message is the error gunicorn found (the request line is too long, ...); a server
    error's says only where to look, as the app's own 500s do.
    """

    def __init__(self, sock: Any, message: str) -> None:
        self._sock = sock
        self._message = message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def sendall(self, data: bytes) -> None:
        status = data.split(b"\r\n", 1)[0].split(b" ", 1)[1].decode("latin-1")
        message = "internal error; the server log has the details" if status.startswith("5") else self._message
        self._sock.sendall(json_response(status, message))


def json_response(status: str, message: str) -> bytes:
    """A complete HTTP/1.1 response with ``{"error": message, "details": []}`` that closes the connection."""
    body = json.dumps({"error": message, "details": []}).encode()
    head = f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body
