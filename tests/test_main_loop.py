"""The run-prod worker's main loop serves whole requests itself and never waits for a client.

These drive :class:`~hmlcore.serving._gunicorn.HmlWorker` in this process, on real sockets over
127.0.0.1: the test plays the worker's main loop (it calls what the poller would call), so it can check
that a call returns while the client is still silent, or is not reading its answer.
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.workers.gthread import TConn

from hmlcore import hml
from hmlcore.serving._gunicorn import HmlWorker, ReadTimeout, _DeadlineSocket, _whole_request
from hmlcore.serving.server import _builtin_route

#: an answer far larger than the socket buffers the test leaves the server
LARGE = 4 * 1024 * 1024
#: the worker's read and write deadline
BODY_TIMEOUT = 3.0


def large_answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = b"x" * LARGE
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def worker() -> Iterator[HmlWorker]:
    """A worker of two pool threads whose main loop the test plays; it serves :func:`large_answer` on every route."""
    cfg = Config()
    cfg.set("threads", 2)
    settings = {"inline_route": staticmethod(lambda method, path: path != "/pool"), "body_timeout": BODY_TIMEOUT}
    cls = type("TestWorker", (HmlWorker,), settings)
    made = cls(age=1, ppid=os.getppid(), sockets=[], app=None, timeout=30, cfg=cfg, log=Logger(cfg))
    made.wsgi = large_answer
    made.tpool = made.get_thread_pool()
    made.poller = selectors.DefaultSelector()
    made.method_queue.init()
    made.poller.register(made.method_queue.fileno(), selectors.EVENT_READ, made.method_queue.run_callbacks)
    try:
        yield made
    finally:
        made.tpool.shutdown(wait=False)
        made.poller.close()
        made.method_queue.close()
        made.tmp.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected (client, server) pair on 127.0.0.1; the server side has a small send buffer."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=60)
        server, _ = listener.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def _connection(worker: HmlWorker, server: socket.socket) -> Any:
    worker.nr_conns += 1
    return TConn(worker.cfg, server, server.getpeername(), server.getsockname())


def _read_answer(client: socket.socket) -> tuple[bytes, bytes]:
    """The head and body of one answer with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += client.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1])
    while len(body) < length:
        chunk = client.recv(1 << 20)
        assert chunk, "the server closed before the whole answer"
        body += chunk
    return head, body


def _returns_at_once(call: Callable[[], None]) -> None:
    """Fail (rather than hang) if ``call`` waits for the client: it must return within 10 s on a busy machine."""
    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(timeout=10)
    assert not caller.is_alive(), "the main loop waited for the client"


def _run_callbacks(worker: HmlWorker, until: Callable[[], bool]) -> None:
    """Play the main loop: dispatch the poller's events until ``until()`` (at most 60 s)."""
    deadline = time.monotonic() + 60
    while not until():
        assert time.monotonic() < deadline, "the main loop never got there"
        worker.wait_for_and_dispatch_events(timeout=0.1)


def test_an_answer_the_client_does_not_read_is_finished_by_a_pool_thread(worker: HmlWorker, pair):
    client, server = pair
    conn = _connection(worker, server)
    client.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)  # the request has arrived whole
    _returns_at_once(lambda: worker.enqueue_req(conn))  # the client reads nothing yet: the main loop must not wait for it
    head, body = _read_answer(client)
    assert head.startswith(b"HTTP/1.1 200") and body == b"x" * LARGE
    _run_callbacks(worker, lambda: conn in worker.keepalived_conns)  # then kept alive, as any answered connection
    client.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
    _run_callbacks(worker, lambda: conn not in worker.keepalived_conns)
    assert _read_answer(client)[1] == b"x" * LARGE  # the next request on it is served too


def test_a_connection_that_sends_nothing_waits_in_the_poller_not_in_a_thread(worker: HmlWorker, pair):
    client, server = pair
    conn = _connection(worker, server)
    _returns_at_once(lambda: worker.enqueue_req(conn))
    assert conn in worker.pending_conns
    client.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
    _run_callbacks(worker, lambda: conn not in worker.pending_conns)  # readable: served
    assert _read_answer(client)[1] == b"x" * LARGE


def test_a_connection_the_client_resets_is_closed_and_the_main_loop_goes_on(worker: HmlWorker, pair):
    client, server = pair
    conn = _connection(worker, server)
    client.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
    _returns_at_once(lambda: worker.enqueue_req(conn))
    assert _read_answer(client)[1] == b"x" * LARGE
    _run_callbacks(worker, lambda: conn in worker.keepalived_conns)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset, as wrk's connections get at the end of a run
    time.sleep(0.2)
    _run_callbacks(worker, lambda: worker.nr_conns == 0)  # the poller sees it readable: closed, and no exception here


def test_a_request_still_arriving_or_for_another_route_goes_to_a_pool_thread(worker: HmlWorker, pair):
    client, server = pair
    conn = _connection(worker, server)
    client.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n")  # the headers' end has not come yet
    time.sleep(0.2)
    _returns_at_once(lambda: worker.enqueue_req(conn))  # a pool thread waits for the rest, not the main loop
    time.sleep(0.5)
    client.sendall(b"\r\n")
    assert _read_answer(client)[0].startswith(b"HTTP/1.1 200")


def test_a_client_that_does_not_take_its_answer_is_cut_off_at_the_deadline(worker: HmlWorker, pair):
    client, server = pair
    conn = _connection(worker, server)
    client.sendall(b"GET /pool HTTP/1.1\r\nHost: x\r\n\r\n")  # a route of the app's own: a pool thread sends
    _returns_at_once(lambda: worker.enqueue_req(conn))
    _run_callbacks(worker, lambda: worker.nr_conns == 0)  # the thread gave up on the client and closed
    received = b""
    while chunk := client.recv(1 << 20):
        received += chunk
    assert received.startswith(b"HTTP/1.1 200") and len(received) < LARGE  # cut off, not waited for


def test_the_main_loop_reads_only_what_has_arrived(pair):
    client, server = pair
    sock = _DeadlineSocket(server)
    assert sock.peek(100) is None
    client.sendall(b"GET / HTTP/1.1\r\n")
    deadline = time.monotonic() + 60
    while sock.peek(100) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sock.peek(100) == b"GET / HTTP/1.1\r\n" and sock.peek(100) == b"GET / HTTP/1.1\r\n"  # peeking leaves it
    sock.inline = True
    assert sock.recv(100) == b"GET / HTTP/1.1\r\n"
    with pytest.raises(ReadTimeout, match="did not arrive in time"):
        sock.recv(100)  # nothing more has arrived: refused at once, never waited for
    sent = threading.Event()

    def send() -> None:
        sock.sendall(b"y" * LARGE)
        sent.set()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(timeout=30)
    assert sent.is_set() and 0 < len(sock.unsent) < LARGE  # what the client did not take is kept, not waited for
    client.shutdown(socket.SHUT_WR)
    assert sock.peek(100) == b""  # the client closed
    sock.setblocking(False)
    sock.settimeout(3.0)
    assert server.gettimeout() is None  # inline, the mode gunicorn sets is only noted...
    sock.end_inline()
    assert server.gettimeout() == 3.0 and sock.gettimeout() == 3.0  # ...and set once, on the way out


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"GET /predict?age=3 HTTP/1.1\r\nHost: x\r\n\r\n", ("GET", "/predict")),
        (b"POST /predict HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}", ("POST", "/predict")),
        (b'POST /predict HTTP/1.1\r\nContent-Length: 10\r\n\r\n{"a": 1', None),  # the body is still arriving
        (b"GET /predict HTTP/1.1\r\nHost: x\r\n", None),  # the headers are
        (b"POST /predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", None),
        (b"POST /predict HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", None),
        (b"POST /predict HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}", None),
        (b"GET http://x/predict HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"GET /pre%64ict HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"NOT A REQUEST\r\n\r\n", None),
    ],
    ids=["get", "post", "body-arriving", "headers-arriving", "chunked", "two-lengths", "signed-length", "absolute", "encoded", "garbage"],
)
def test_whole_request_serves_inline_only_what_it_reads_simply(data: bytes, expected: tuple[str, str] | None):
    assert _whole_request(data) == expected


def test_only_hmlcores_own_routes_are_served_by_the_main_loop(tmp_path):
    app = hml.HmlApp(name="routes", package_entrypoint="routes")

    @hml.inference(app.inference)
    def start(inference_app: hml.HmlInferenceApp) -> None:
        inference_app.flask.add_url_rule("/lookup", "lookup", lambda: {"waits": "on a feature store"})

    builtin = _builtin_route(app.inference.create_app())
    assert builtin("GET", "/predict") and builtin("POST", "/predict") and builtin("GET", "/readyz")
    assert builtin("POST", "/v1/models/risk:predict")
    assert builtin("GET", "/nowhere") and builtin("DELETE", "/predict")  # answered at once: 404, 405
    assert not builtin("GET", "/lookup")  # the app's own route: a pool thread, as many at once as there are threads
