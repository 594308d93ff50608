"""The gunicorn worker of ``inference run-prod``: a threaded worker slow clients cannot stall.

:class:`HmlWorker` is gunicorn's ``gthread`` worker (gunicorn 25.2 and later) whose main loop never waits for a
client, nor lets a pool thread wait for one:

- **whole requests only**: every connection waits in the poller, holding no thread, while its request
  arrives; the main loop reads what has arrived (never more) and looks only at the framing
  (:mod:`hmlcore.serving._framing`) until line, headers and body are all in, whatever the target's
  encoding, however many segments, chunked or not. Then gunicorn's parser reads that request from
  memory: a request to one of hmlcore's routes (``inline_route``: quick, and waiting on nothing) is served
  at once by the main loop, one to a route of the app's own by a pool thread, which may wait on other
  services. Handing every request to a thread would cost a future, a wake-up pipe, two poller calls and
  a GIL hand-over, as much as a one-row prediction; one thread runs Python at a time anyway;
- **read and write deadlines**: a request's headers must arrive within ``header_timeout`` seconds and its
  body within ``body_timeout`` more, whatever the pace (one byte a second is cut off too): then a JSON 408
  that says ``Connection: close``. A connection that stays silent ``header_timeout`` seconds (a kept-alive
  one: gunicorn's ``keepalive``) is closed. An answer the client does not take at once is finished by a
  pool thread within ``body_timeout`` seconds; a request that waited ``queue_timeout`` seconds for a
  thread is answered 503;
- **limits at the door**: headers over ``max_header_bytes`` get a JSON 431, a body over
  ``max_body_bytes`` (announced, or chunked so far) a JSON 413, before any of it is gathered;
- **closing never waits**: the FIN is sent at once and the socket closed when the client's FIN comes (or
  ``linger`` seconds later), in the poller, where gunicorn would wait up to 2 s in the main loop;
- **cheap connections**: a waiting connection costs a socket and its bytes. A worker keeps
  ``worker_connections`` open (thousands) and never stops accepting: past the limit it sheds the oldest
  waiting connection, never the new client;
- **JSON errors**: what gunicorn answers before the app sees the request (414 request line too long,
  431 headers too large, 400 malformed) has a JSON body like every answer of the API;
- **draining**: while the server drains, every answer closes its connection, so clients reconnect
  (to another pod, once ``/readyz`` has taken this one out of the balancer); a stopping worker serves
  the connections the kernel had already accepted for it, instead of leaving them to be reset;
- **rebalancing**: every ``keepalive_requests``-th answer on a connection closes it (as nginx's
  ``keepalive_requests`` does). A kept-alive connection stays with the worker that accepted it, and a
  burst of new connections can all land on one worker while another idles; the client's reconnection is
  accepted by whichever worker is least busy (an idle worker wakes first);
- **native threads sized after the fork**: OpenMP and BLAS get ``native_threads`` in every thread of the
  worker (the master kept them to one: see :func:`hmlcore.serving.native_threads.limit_threads`).

The client socket it hands gunicorn is :mod:`hmlcore.serving._client_socket`; the draining stop that sets
``drain_flag`` is :mod:`hmlcore.serving._draining`; the access log is :mod:`hmlcore.serving._access_log`.

Imported by :func:`hmlcore.serving.server.run_prod` only.
"""

from __future__ import annotations

import errno
import io
import resource
import selectors
import socket
import sys
import time
from collections.abc import Callable
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.http.errors import LimitRequestLine
from gunicorn.workers.gthread import TConn, ThreadWorker

from hmlcore.serving._client_socket import CONTINUE, ClientSocket, JsonErrorSocket, ReadTimeout, json_response
from hmlcore.serving._draining import DrainFlag
from hmlcore.serving._framing import Refused, frame
from hmlcore.serving.native_threads import size_native_pools

__all__ = ["HmlWorker"]


class HmlWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker with the changes the module's docstring lists.

    The settings come from class attributes that :func:`hmlcore.serving.server.run_prod` sets on a subclass.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    drain_flag: DrainFlag | None = None
    #: answers on one connection before it is closed, so that clients reconnect to the least busy worker
    keepalive_requests: int = 100
    #: ``(method, path) -> bool``: whether the main loop may serve that route (hmlcore's own, quick ones);
    #: the app's other routes are served by the pool threads, many at once, whatever they wait for
    inline_route: Callable[[str, str], bool] | None = None
    #: threads OpenMP and BLAS use in this worker: set in every thread, once forked (see ``limit_threads``)
    native_threads: int = 1
    #: the largest request body gathered (the app's limit): a larger one is answered 413 at once
    max_body_bytes: int = 16 * 1024 * 1024
    #: the largest request line and headers gathered: larger ones are answered 431
    max_header_bytes: int = 64 * 1024
    #: the most bytes of requests still arriving a worker holds; past it, the oldest waiting connection is shed
    max_buffered_bytes: int = 256 * 1024 * 1024
    #: seconds a whole request may wait for a pool thread before it is answered 503
    queue_timeout: float = 10.0
    #: seconds a closed connection waits for the client's FIN (gunicorn's ``close_graceful``), in the poller
    linger: float = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: connections waiting in the poller for (the rest of) a request, oldest first
        self.waiting: dict[Any, None] = {}
        #: connections closed on this side, waiting for the client's FIN until their deadline
        self.closing: dict[Any, float] = {}
        #: bytes of the requests still arriving on the waiting connections
        self.buffered = 0
        #: the most connections kept open at once (``worker_connections``); then the oldest waiting is shed
        self.max_connections = self.cfg.worker_connections
        self.worker_connections = sys.maxsize  # gunicorn never stops accepting: a new client is never the one shed

    def init_process(self) -> None:
        size_native_pools(self.native_threads)  # the main loop's thread (OpenMP's setting is per thread)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.max_connections = max(1, min(self.max_connections, max(hard, soft) - 64))
        super().init_process()

    def get_thread_pool(self) -> futures.ThreadPoolExecutor:
        return futures.ThreadPoolExecutor(max_workers=self.cfg.threads, initializer=size_native_pools, initargs=(self.native_threads,))

    # -- the main loop: connections wait in the poller until a whole request has arrived

    def accept(self, listener: Any) -> bool:  # type: ignore[override]
        """Accept one connection and wait for its request in the poller; ``False`` when none was waiting."""
        try:
            sock, address = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self.log.warning("out of file descriptors with %d connections: shedding the oldest", self.nr_conns)
                self._shed()
                return True
            if exc.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return False
            raise
        self.nr_conns += 1
        if len(self.waiting) + len(self.closing) >= self.max_connections:
            self._shed()
        conn = TConn(self.cfg, sock, address, listener.getsockname())
        conn.sock = ClientSocket(sock, send_timeout=self.body_timeout)
        conn.phase = "headers"
        self._wait(conn, self.header_timeout)  # silent: closed at the header deadline
        return True

    def _wait(self, conn: Any, seconds: float) -> None:
        conn.timeout = time.monotonic() + seconds
        conn.buffered = len(conn.sock.pending)
        self.buffered += conn.buffered
        self.waiting[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))

    def _unwait(self, conn: Any) -> None:
        del self.waiting[conn]
        self.buffered -= conn.buffered
        self.poller.unregister(conn.sock)

    def _readable(self, conn: Any, _sock: Any) -> None:
        if conn not in self.waiting:
            return  # closed or shed earlier in the same round of events
        try:
            self._arrived(conn)
        except Exception:  # the main loop must go on whatever one connection does
            self.log.exception("could not read a request in the main loop; closing its connection")
            if conn in self.waiting:
                self._unwait(conn)
                self._close(conn)

    def _arrived(self, conn: Any) -> None:
        data = conn.sock.receive(65536)
        if data is None:
            return
        if not data:  # the client closed or reset: nothing to answer
            self._unwait(conn)
            self._close(conn)
            return
        if conn.phase == "idle":  # the first byte of a kept-alive connection's next request
            conn.phase = "headers"
            conn.timeout = time.monotonic() + self.header_timeout
        conn.sock.pending += data
        conn.buffered += len(data)
        self.buffered += len(data)
        while self.buffered > self.max_buffered_bytes:  # the oldest requests still arriving make room
            oldest = next((other for other in self.waiting if other.buffered and other is not conn), None)
            if oldest is None:
                break
            self._unwait(oldest)
            self._close(oldest)
        self._examine(conn)

    def _examine(self, conn: Any) -> None:
        """Serve the request on ``conn`` if it has wholly arrived; else keep waiting (under its deadline)."""
        sock = conn.sock
        try:
            framing = frame(sock.pending, max_header_bytes=self.max_header_bytes, max_body_bytes=self.max_body_bytes)
        except Refused as exc:
            self._unwait(conn)
            self._refuse(conn, exc.status, str(exc))
            return
        if framing.length is None:
            if framing.phase == "body" and conn.phase == "headers":
                conn.phase = "body"
                conn.timeout = time.monotonic() + self.body_timeout
                if framing.expects_continue and not sock.continued:
                    sock.continued = True
                    sock.inline = True
                    sock.sendall(CONTINUE)  # a few bytes on a fresh connection: the kernel takes them
                    sock.inline = False
            return
        self._unwait(conn)
        conn.data_ready = True
        if framing.route is not None and self.inline_route is not None and self.inline_route(*framing.route):
            self._serve_inline(conn)
        else:
            queued = time.monotonic()
            done = self.tpool.submit(self._serve_in_thread, conn, queued)
            done.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    def _reexamine(self, conn: Any) -> None:
        if conn in self.waiting:
            self._examine(conn)

    def _refuse(self, conn: Any, status: str, message: str) -> None:
        """Answer ``status`` (JSON, ``Connection: close``) without waiting for the client, and close."""
        self.log.warning("refused a request from %s: %s", (conn.client or ("",))[0], message)
        conn.sock.inline = True
        try:
            conn.sock.sendall(json_response(status, message))  # what the client does not take at once is dropped
        except OSError:
            pass  # the client has gone
        self._close_gracefully(conn)

    def murder_pending(self) -> None:
        """Close the connections past their deadline: 408 to a request cut short, nothing to an idle one."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [conn for conn in self.waiting if conn.timeout <= now]:
            self._unwait(conn)
            if conn.sock.pending or conn.phase == "body":
                self._refuse(conn, "408 Request Timeout", f"the request {conn.phase} did not arrive in time")
            else:
                self._close(conn)
        for conn in [conn for conn, deadline in self.closing.items() if deadline <= now]:
            self._closed(conn)

    def _shed(self) -> None:
        """Close the oldest connection closing, else the oldest waiting: room for a new client."""
        if self.closing:
            self._closed(next(iter(self.closing)))
        elif self.waiting:
            oldest = next(iter(self.waiting))
            self._unwait(oldest)
            self._close(oldest)

    # -- serving: in the main loop (hmlcore's routes) or in a pool thread (the app's own)

    def _serve_inline(self, conn: Any) -> None:
        """Serve the whole request on ``conn`` here, in the main loop, without waiting for the client."""
        sock = conn.sock
        sock.inline = True
        try:
            keep_alive = self.handle(conn)
        finally:
            sock.inline = False
        if sock.unsent:
            done = self.tpool.submit(self._send_unsent, conn, keep_alive)
            done.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))
            return
        done = futures.Future()
        done.set_result(keep_alive)
        self.finish_request(conn, done)

    def _serve_in_thread(self, conn: Any, queued: float) -> Any:
        """Serve the whole request on ``conn`` in a pool thread; 503 if it waited for one over ``queue_timeout`` seconds."""
        if time.monotonic() - queued > self.queue_timeout:
            try:
                conn.sock.sendall(json_response("503 Service Unavailable", "the server is too busy; try again"))
            except OSError:
                pass
            return False
        return self.handle(conn)

    def _send_unsent(self, conn: Any, keep_alive: Any) -> Any:
        """Send, in a pool thread, the part of an answer the client did not take at once (within ``body_timeout``)."""
        sock = conn.sock
        data, sock.unsent = bytes(sock.unsent), bytearray()
        try:
            sock.sendall(data)  # within the socket's send_timeout (body_timeout), however the client paces it
        except OSError:
            return False
        return keep_alive

    def finish_request(self, conn: Any, fs: Any) -> None:
        try:
            keep_alive = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keep_alive = False
        if not keep_alive or conn.parser is None:
            self._close_gracefully(conn)
            return
        # what gunicorn's parser read past the request (a pipelined request) is looked at again
        sock = conn.sock
        sock.pending[:0] = conn.parser.unreader.buf.getvalue()
        conn.parser.unreader.buf = io.BytesIO()
        sock.continued = False
        if sock.pending:
            conn.phase = "headers"
            self._wait(conn, self.header_timeout)
            self.method_queue.defer(self._reexamine, conn)  # after the other connections' turn, not recursively
        else:
            conn.phase = "idle"
            self._wait(conn, self.cfg.keepalive if self.alive else min(self.cfg.keepalive, self.linger))

    # -- closing: never waits in the main loop

    def _close(self, conn: Any) -> None:
        """Close at once (the client has gone, or is shed)."""
        self.nr_conns -= 1
        util.close(conn.sock)

    def _close_gracefully(self, conn: Any) -> None:
        """Send FIN now; the socket is closed once the client's FIN arrives, or ``linger`` seconds from now (in the poller)."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._drain_closing, conn))
        except (OSError, ValueError, KeyError):
            self._close(conn)
            return
        self.closing[conn] = time.monotonic() + self.linger
        conn.drained = 0

    def _drain_closing(self, conn: Any, _sock: Any) -> None:
        if conn not in self.closing:
            return  # closed or shed earlier in the same round of events
        data = conn.sock.receive(65536)
        if data is None:
            return
        conn.drained += len(data)
        if not data or conn.drained > 65536:
            self._closed(conn)

    def _closed(self, conn: Any) -> None:
        del self.closing[conn]
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        self._close(conn)

    def set_accept_enabled(self, enabled: bool) -> None:
        if enabled or self.alive or not self._accepting:
            super().set_accept_enabled(enabled)
            return
        # stopping: what the kernel has accepted for this worker is served (with Connection: close), not reset
        super().set_accept_enabled(False)
        for listener in self.sockets:
            while self.accept(listener):
                pass
            listener.close()
        deadline = time.monotonic() + self.linger
        for conn in self.waiting:
            if not conn.sock.pending:  # idle or silent: a request already on its way has a little while
                conn.timeout = min(conn.timeout, deadline)

    # -- gunicorn's request handling, with hmlcore's rules

    def handle_request(self, req: Any, conn: Any) -> bool:
        if self.drain_flag:
            self.max_keepalived = 0  # every answer closes its connection: clients reconnect elsewhere
        if req.req_number % self.keepalive_requests == 0:
            req.must_close = True  # the client reconnects, to whichever worker is least busy
        return bool(super().handle_request(req, conn))

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if isinstance(exc, LimitRequestLine):  # gunicorn before 26 answers it 400
            self.log.warning("refused a request from %s: %s", (addr or ("",))[0], exc)
            try:
                client.sendall(json_response("414 URI Too Long", str(exc)))
            except OSError:
                pass
            return
        if isinstance(exc, ReadTimeout):
            self.log.warning("closed a connection from %s: %s", (addr or ("",))[0], exc.description)
            try:
                client.sendall(json_response("408 Request Timeout", str(exc.description)))
            except OSError:
                pass
            return
        super().handle_error(req, JsonErrorSocket(client, str(exc)), addr, exc)
