"""The gunicorn parts of ``inference run-prod``: a threaded worker slow clients cannot stall, and a draining stop.

:class:`HmlWorker` is gunicorn's ``gthread`` worker with these changes:

- **read deadlines**: a request's headers must arrive within ``header_timeout`` seconds and its body within
  ``body_timeout`` seconds, whatever the pace (a client sending one byte a second is cut off too); the
  client gets a JSON 408 and the connection is closed, so a slow client holds one thread for a bounded
  time while the other threads keep serving;
- **JSON errors**: what gunicorn answers before the app sees the request (414 request line too long,
  431 headers too large, 400 malformed) has a JSON body like every answer of the API;
- **draining**: while the server drains, every answer closes its connection, so clients reconnect
  (to another pod, once ``/readyz`` has taken this one out of the balancer);
- **keep-alive in the thread**: after answering on a kept-alive connection, the thread waits a moment
  (``keepalive_linger``) for that client's next request and serves it at once, as long as no other
  connection is waiting for a thread. gthread otherwise hands every kept-alive connection back to its
  main loop between requests (a future, a wake-up pipe and two poller calls per request), which costs
  as much as the request itself on a one-row prediction;
- **rebalancing**: every ``keepalive_requests``-th answer on a connection closes it (as nginx's
  ``keepalive_requests`` does). A kept-alive connection stays with the worker that accepted it, and a
  burst of new connections can all land on one worker while another idles; the client's reconnection is
  accepted by whichever worker is least busy (an idle worker wakes first).

:class:`DrainingArbiter` stops in two steps on SIGTERM: first ``/readyz`` answers 503 (see
:func:`readiness_gate`) while everything else is still served for ``drain`` seconds, then gunicorn's
graceful stop (a second SIGTERM skips the rest of the drain; SIGINT and SIGQUIT stop at once).

Imported by :func:`hmlcore.serving.server.run_prod` only.
"""

from __future__ import annotations

import json
import mmap
import select
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger, SafeAtoms
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.exceptions import RequestTimeout

__all__ = ["AccessLogger", "DrainFlag", "DrainingArbiter", "HmlWorker", "ReadTimeout", "readiness_gate"]


class DrainFlag:
    """One byte of memory shared by the gunicorn master and the workers it forks: set while the server drains."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, 1)

    def set(self) -> None:
        """Mark the server as draining (every process sees it at once)."""
        self._memory[0] = 1

    def __bool__(self) -> bool:
        return self._memory[0] == 1


class ReadTimeout(RequestTimeout):
    """Raised when a client has not sent its request headers or body in time: answered 408."""


class _DeadlineSocket:
    """A client socket whose reads fail with :class:`ReadTimeout` once ``deadline`` (monotonic seconds) has passed."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._timeout: float | None = sock.gettimeout()
        self.deadline: float | None = None
        self.phase = "request"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def arm(self, seconds: float | None, phase: str) -> None:
        """Reads must be done ``seconds`` from now (``None``: no deadline)."""
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.phase = phase

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._sock.settimeout(timeout)

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0
        self._sock.setblocking(flag)

    def gettimeout(self) -> float | None:
        return self._timeout

    def recv(self, size: int, *flags: int) -> bytes:
        if self.deadline is None or self._timeout == 0.0:
            return self._sock.recv(size, *flags)  # type: ignore[no-any-return]
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout(f"the request {self.phase} did not arrive in time")
        timed = remaining if self._timeout is None else min(remaining, self._timeout)
        self._sock.settimeout(timed)
        try:
            return self._sock.recv(size, *flags)  # type: ignore[no-any-return]
        except TimeoutError:
            if timed == remaining:
                raise ReadTimeout(f"the request {self.phase} did not arrive in time") from None
            raise
        finally:
            self._sock.settimeout(self._timeout)


class _JsonErrorSocket:
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


class HmlWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker with the changes the module's docstring lists.

    The settings come from class attributes that :func:`hmlcore.serving.server.run_prod` sets on a subclass.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    drain_flag: DrainFlag | None = None
    #: seconds a thread waits for the next request on the connection it has just answered
    keepalive_linger: float = 0.002
    #: answers on one connection before it is closed, so that clients reconnect to the least busy worker
    keepalive_requests: int = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting = 0  # connections handed to the thread pool that no thread has taken yet
        self._waiting_lock = threading.Lock()

    def enqueue_req(self, conn: Any) -> None:
        if not isinstance(conn.sock, _DeadlineSocket):
            conn.sock = _DeadlineSocket(conn.sock)
        with self._waiting_lock:
            self._waiting += 1
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        with self._waiting_lock:
            self._waiting -= 1
        keep_alive = self._handle_one(conn)
        while keep_alive is True and self._next_request_arrives(conn):
            keep_alive = self._handle_one(conn)
        return keep_alive

    def _next_request_arrives(self, conn: Any) -> bool:
        """Whether this thread should serve the connection's next request itself: it came soon, and nobody waits."""
        if not self.alive or self.drain_flag or self._waiting > 0:
            return False
        poller = select.poll()
        poller.register(conn.sock.fileno(), select.POLLIN)
        return bool(poller.poll(self.keepalive_linger * 1000))

    def _handle_one(self, conn: Any) -> Any:
        sock = conn.sock if isinstance(conn.sock, _DeadlineSocket) else None
        if sock is not None:
            sock.arm(self.header_timeout, "headers")
        try:
            return super().handle(conn)
        finally:
            if sock is not None:
                sock.arm(None, "request")  # closing and keep-alive are gunicorn's to bound

    def handle_request(self, req: Any, conn: Any) -> bool:
        sock = conn.sock if isinstance(conn.sock, _DeadlineSocket) else None
        if sock is not None:
            sock.arm(self.body_timeout, "body")
        if self.drain_flag:
            self.max_keepalived = 0  # every answer closes its connection: clients reconnect elsewhere
        if req.req_number % self.keepalive_requests == 0:
            req.must_close = True  # the client reconnects, to whichever worker is least busy
        keep_alive = super().handle_request(req, conn)
        if sock is None:
            return bool(keep_alive)
        expired = sock.expired()
        sock.arm(None, "body")  # gunicorn bounds the drain of an unread body itself
        return bool(keep_alive) and not expired

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if isinstance(exc, ReadTimeout):
            self.log.warning("closed a connection from %s: %s", (addr or ("",))[0], exc.description)
            try:
                client.sendall(json_response("408 Request Timeout", str(exc.description)))
            except OSError:
                pass
            return
        super().handle_error(req, _JsonErrorSocket(client, str(exc)), addr, exc)


class AccessLogger(Logger):
    """gunicorn's logger, with an access line built from the atoms the server's formats use.

    gunicorn builds ~40 atoms per request (every request and response header, every environ entry, a
    formatted date); :data:`hmlcore.serving.server.ACCESS_LOG_FORMAT` and its ``--log-query`` twin use eight.
    Values are escaped as gunicorn escapes them (:class:`gunicorn.glogging.SafeAtoms`), and an atom the
    format names but this logger does not build is written as ``-``.
    """

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        status = resp.status
        method, protocol = environ.get("REQUEST_METHOD", "-"), environ.get("SERVER_PROTOCOL", "-")
        atoms = {
            "h": environ.get("REMOTE_ADDR", "-"),
            "m": method,
            "U": environ.get("PATH_INFO", "-"),
            "r": f"{method} {environ.get('RAW_URI', '-')} {protocol}",
            "H": protocol,
            "s": status.split(None, 1)[0] if isinstance(status, str) else status,
            "B": getattr(resp, "sent", None),
            "M": request_time.seconds * 1000 + request_time.microseconds // 1000,
            "a": environ.get("HTTP_USER_AGENT", "-"),
        }
        try:
            self.access_log.info(self.cfg.access_log_format, SafeAtoms(atoms))
        except Exception:
            self.exception("could not write an access log line")


class DrainingArbiter(Arbiter):
    """gunicorn's arbiter that, on the first SIGTERM, sets ``drain_flag`` and keeps serving ``drain`` seconds before stopping."""

    drain: float = 0.0
    drain_flag: DrainFlag | None = None

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self._drain_until: float | None = None

    def handle_term(self) -> None:
        if self._drain_until is None and self.drain > 0 and self.drain_flag is not None:
            self.drain_flag.set()
            self._drain_until = time.monotonic() + self.drain
            self.log.info("SIGTERM: /readyz answers 503; serving %gs more, then stopping", self.drain)
            return
        raise StopIteration

    def manage_workers(self) -> None:
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            self.log.info("drained: stopping")
            raise StopIteration
        super().manage_workers()


def readiness_gate(wsgi_app: Callable[..., Iterable[bytes]], flag: DrainFlag, path: str = "/readyz") -> Callable[..., Iterable[bytes]]:
    """``wsgi_app``, except that ``GET path`` answers 503 ``{"status": "draining"}`` once ``flag`` is set."""
    body = json.dumps({"status": "draining"}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if flag and environ.get("PATH_INFO") == path:
            start_response("503 SERVICE UNAVAILABLE", headers)
            return [body]
        return wsgi_app(environ, start_response)

    return app
