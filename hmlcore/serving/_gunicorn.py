"""The gunicorn parts of ``inference run-prod``: a threaded worker slow clients cannot stall, and a draining stop.

:class:`HmlWorker` is gunicorn's ``gthread`` worker with these changes:

- **read and write deadlines**: a request's headers must arrive within ``header_timeout`` seconds and its
  body within ``body_timeout`` seconds, whatever the pace (a client sending one byte a second is cut off
  too); the client gets a JSON 408 and the connection is closed. A client that does not take its answer
  within ``body_timeout`` seconds is cut off too. So a slow client holds one thread for a bounded time
  while the other threads keep serving;
- **JSON errors**: what gunicorn answers before the app sees the request (414 request line too long,
  431 headers too large, 400 malformed) has a JSON body like every answer of the API;
- **draining**: while the server drains, every answer closes its connection, so clients reconnect
  (to another pod, once ``/readyz`` has taken this one out of the balancer);
- **whole requests served by the main loop**: a request to one of hmlcore's routes (``inline_route``)
  whose line, headers and body have all arrived (what a one-row prediction is, nearly always) is served
  at once by the worker's main loop, in the thread that found it readable. A request still arriving goes
  to a pool thread, which reads the rest under the read deadlines, and so does a request to a route of
  the app's own, which may wait on other services. One thread running Python at a time is what the GIL allows anyway:
  handing every request to a pool thread costs a future, a wake-up pipe, two poller calls and a
  GIL hand-over at every socket call, which on a one-row prediction costs as much as the request
  itself. The main loop never waits for a client: it reads only what has arrived, and the part of an
  answer the client does not take at once is sent by a pool thread (within ``body_timeout``);
- **no thread for a silent connection**: a new connection that has sent nothing waits in the poller,
  not in a thread, and is closed if it stays silent ``header_timeout`` seconds;
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

import errno
import json
import mmap
import re
import selectors
import socket
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger, SafeAtoms
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.exceptions import RequestTimeout

from hmlcore.serving.server import size_native_pools

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

    def __init__(self, sock: Any, *, send_timeout: float | None = None) -> None:
        self._sock = sock
        #: seconds a blocking send may take: a client that does not take its answer is cut off
        self.send_timeout = send_timeout
        self._timeout: float | None = sock.gettimeout()
        self.deadline: float | None = None
        self.phase = "request"
        #: set while the worker's main loop serves a request: reads and writes never wait
        self.inline = False
        #: what the client did not take at once while ``inline``, for a pool thread to send
        self.unsent = bytearray()

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
        if not self.inline:  # inline reads and writes never wait, whatever the mode: set it once, at the end
            self._sock.settimeout(timeout)

    def setblocking(self, flag: bool) -> None:
        self.settimeout(None if flag else 0.0)

    def end_inline(self) -> None:
        """Leave ``inline`` mode: the socket takes the timeout gunicorn last set (if gunicorn has not closed it)."""
        self.inline = False
        try:
            self._sock.settimeout(self._timeout)
        except OSError:
            pass  # closed after a failed answer: nothing to set

    def gettimeout(self) -> float | None:
        return self._timeout

    def peek(self, size: int) -> bytes | None:
        """Up to ``size`` bytes that have arrived, left unread; ``None`` if nothing has (``b""``: the client closed or reset)."""
        try:
            return self._sock.recv(size, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # type: ignore[no-any-return]
        except BlockingIOError:
            return None
        except OSError:
            return b""  # reset: reading the request will say so, and the connection is closed

    def sendall(self, data: bytes, *flags: int) -> None:
        if not self.inline:
            if self.send_timeout is None or self._timeout is not None:
                self._sock.sendall(data, *flags)
                return
            self._sock.settimeout(self.send_timeout)
            try:
                self._sock.sendall(data, *flags)
            except TimeoutError:
                raise BrokenPipeError(errno.EPIPE, f"the client did not take its answer in {self.send_timeout:g}s") from None
            finally:
                self._sock.settimeout(self._timeout)
            return
        view = memoryview(data)
        while view and not self.unsent:
            try:
                view = view[self._sock.send(view, socket.MSG_DONTWAIT) :]
            except BlockingIOError:
                break
        self.unsent += view

    def recv(self, size: int, *flags: int) -> bytes:
        if self.inline:
            try:
                return self._sock.recv(size, socket.MSG_DONTWAIT)  # type: ignore[no-any-return]
            except BlockingIOError:
                raise ReadTimeout(f"the request {self.phase} did not arrive in time") from None
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
    #: answers on one connection before it is closed, so that clients reconnect to the least busy worker
    keepalive_requests: int = 100
    #: the most of a request the main loop looks at to see whether it has all arrived
    peek_bytes: int = 65536
    #: ``(method, path) -> bool``: whether the main loop may serve that route (hmlcore's own, quick ones);
    #: the app's other routes are served by the pool threads, many at once, whatever they wait for
    inline_route: Callable[[str, str], bool] | None = None
    #: threads OpenMP and BLAS use in this worker: set in every thread, once forked (see ``limit_threads``)
    native_threads: int = 1

    def init_process(self) -> None:
        size_native_pools(self.native_threads)  # the main loop's thread (OpenMP's setting is per thread)
        super().init_process()

    def get_thread_pool(self) -> futures.ThreadPoolExecutor:
        return futures.ThreadPoolExecutor(max_workers=self.cfg.threads, initializer=size_native_pools, initargs=(self.native_threads,))

    def enqueue_req(self, conn: Any) -> None:
        # this runs in the main loop: what goes wrong in choosing must not end the worker (a pool thread copes)
        inline = False
        try:
            if not isinstance(conn.sock, _DeadlineSocket):
                conn.sock = _DeadlineSocket(conn.sock, send_timeout=self.body_timeout)
            arrived = conn.sock.peek(self.peek_bytes) if not conn.parser or not conn.parser.unreader.buf.getvalue() else None
            if arrived is None and not conn.initialized and not conn.data_ready and self.alive:
                self._wait_in_poller(conn)
                return
            inline = arrived is not None and self._inline(arrived)
        except Exception:
            self.log.exception("could not look at a request in the main loop; a thread serves it")
        if inline:
            self._serve_inline(conn)  # gunicorn's handle() answers every error itself
        else:
            super().enqueue_req(conn)  # a pool thread reads the rest under the read deadlines

    def _inline(self, arrived: bytes) -> bool:
        """Whether the request that ``arrived`` holds is whole and for a route the main loop serves."""
        if not arrived:
            return True  # the client closed: nothing to wait for
        target = _whole_request(arrived)
        return target is not None and self.inline_route is not None and self.inline_route(*target)

    def _wait_in_poller(self, conn: Any) -> None:
        """Keep a connection that has sent nothing yet in the poller (no thread), closed if silent ``header_timeout`` seconds."""
        conn.timeout = time.monotonic() + self.header_timeout
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def _serve_inline(self, conn: Any) -> None:
        """Serve the request that has wholly arrived on ``conn`` here, in the main loop, without waiting for the client."""
        sock = conn.sock
        conn.data_ready = True
        sock.inline = True
        try:
            keep_alive = self.handle(conn)
        finally:
            sock.end_inline()
        if sock.unsent:
            done = self.tpool.submit(self._send_unsent, conn, keep_alive)
            done.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))
            return
        done = futures.Future()
        done.set_result(keep_alive)
        self.finish_request(conn, done)

    def _send_unsent(self, conn: Any, keep_alive: Any) -> Any:
        """Send, in a pool thread, the part of an answer the client did not take at once (within ``body_timeout``)."""
        sock = conn.sock
        data, sock.unsent = bytes(sock.unsent), bytearray()
        try:
            sock.setblocking(True)
            sock.sendall(data)  # within the socket's send_timeout (body_timeout), however the client paces it
        except OSError:
            return False
        return keep_alive

    def handle(self, conn: Any) -> Any:
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


_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d{1,12})[ \t]*$", re.IGNORECASE | re.MULTILINE)
_TRANSFER_ENCODING = re.compile(rb"^transfer-encoding:", re.IGNORECASE | re.MULTILINE)


def _whole_request(data: bytes) -> tuple[str, str] | None:
    """The method and path of the request ``data`` (what has arrived) holds, if line, headers and body are all in.

    ``None`` for a request still arriving, and for one this does not read simply (a chunked body, an
    unusual length, an absolute or %-encoded target): a pool thread reads those.

    Example:
        >>> _whole_request(b"GET /predict?age=3 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        ('GET', '/predict')
        >>> _whole_request(b"POST /predict HTTP/1.1\\r\\nContent-Length: 10\\r\\n\\r\\n{}") is None
        True
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end].replace(b"\r\n", b"\n")
    if _TRANSFER_ENCODING.search(head):
        return None
    lengths = _CONTENT_LENGTH.findall(head)
    if len(lengths) > 1 or (not lengths and b"content-length" in head.lower()):
        return None
    if len(data) < end + 4 + (int(lengths[0]) if lengths else 0):
        return None
    line = head.split(b"\n", 1)[0].split(b" ")
    if len(line) != 3 or not line[1].startswith(b"/") or b"%" in line[1]:
        return None
    return line[0].decode("latin-1"), line[1].split(b"?", 1)[0].decode("latin-1")


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
