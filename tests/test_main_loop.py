"""The run-prod worker's main loop serves whole requests itself and never waits for a client.

These drive :class:`~hmlcore.serving._gunicorn.HmlWorker` in this process, on real sockets over
127.0.0.1: the test plays the worker's main loop (it calls what the poller would call), so it can check
that a call returns while the client is still silent, or is not reading its answer.
"""

from __future__ import annotations

import json
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

from hmlcore import hml
from hmlcore.serving._client_socket import ClientSocket, ReadTimeout
from hmlcore.serving._framing import Refused, frame
from hmlcore.serving._gunicorn import HmlWorker
from hmlcore.serving.server import _builtin_route

#: an answer far larger than the socket buffers the test leaves the server
LARGE = 4 * 1024 * 1024
#: the worker's write deadline
BODY_TIMEOUT = 3.0
#: the worker's read deadlines (headers and body) and the linger of a closed connection
HEADER_TIMEOUT = 0.5


def large_answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = b"ok" if environ["PATH_INFO"] == "/small" else b"x" * LARGE
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def worker() -> Iterator[HmlWorker]:
    """A worker of two pool threads whose main loop the test plays; it serves :func:`large_answer`."""
    cfg = Config()
    cfg.set("threads", 2)
    settings = {
        "inline_route": staticmethod(lambda method, path: path != "/pool"),
        "body_timeout": BODY_TIMEOUT,
        "header_timeout": HEADER_TIMEOUT,
        "linger": HEADER_TIMEOUT,
    }
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
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def _client(listener: socket.socket) -> socket.socket:
    return socket.create_connection(listener.getsockname(), timeout=60)


def _accept(worker: HmlWorker, listener: socket.socket) -> Any:
    """The worker accepts the next connection (its server side with a small send buffer); return it."""
    before = set(worker.waiting)
    _returns_at_once(lambda: worker.accept(listener))
    (conn,) = set(worker.waiting) - before
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    return conn


def _read_answer(client: socket.socket) -> tuple[bytes, bytes]:
    """The head and body of one answer with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        assert chunk, "the server closed before answering"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1])
    while len(body) < length:
        chunk = client.recv(1 << 20)
        assert chunk, "the server closed before the whole answer"
        body += chunk
    return head, body


def _returns_at_once(call: Callable[[], Any]) -> None:
    """Fail (rather than hang) if ``call`` waits for the client: it must return within 10 s on a busy machine."""
    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(timeout=10)
    assert not caller.is_alive(), "the main loop waited for the client"


def _run_callbacks(worker: HmlWorker, until: Callable[[], bool]) -> None:
    """Play the main loop: dispatch the poller's events and the deadlines until ``until()`` (at most 60 s).

    Each round must return at once: the main loop never waits for a client.
    """
    deadline = time.monotonic() + 60
    while not until():
        assert time.monotonic() < deadline, "the main loop never got there"
        _returns_at_once(lambda: worker.wait_for_and_dispatch_events(timeout=0.1))
        worker.murder_pending()


def test_an_answer_the_client_does_not_read_is_finished_by_a_pool_thread(worker: HmlWorker, listener):
    client = _client(listener)
    conn = _accept(worker, listener)
    client.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
    _run_callbacks(worker, lambda: conn not in worker.waiting)  # served in the main loop; the client reads nothing yet
    head, body = _read_answer(client)
    assert head.startswith(b"HTTP/1.1 200") and body == b"x" * LARGE
    _run_callbacks(worker, lambda: conn in worker.waiting)  # then kept alive, as any answered connection
    client.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
    _run_callbacks(worker, lambda: conn not in worker.waiting)
    assert _read_answer(client)[1] == b"x" * LARGE  # the next request on it is served too


def test_a_request_arriving_in_pieces_is_gathered_in_the_poller_and_only_whole_reaches_a_thread(worker: HmlWorker, listener):
    """A %-encoded target, its headers and then its body in later segments, chunked: no thread until it is whole."""
    client = _client(listener)
    conn = _accept(worker, listener)
    pieces = [b"POST /pool?speed_band=55%2B HTTP/1.1\r\n", b"Transfer-Encoding: chunked\r\n\r\n", b'7\r\n{"a"', b":1}\r\n", b"0\r\n\r\n"]
    for piece in pieces[:-1]:
        client.sendall(piece)
        time.sleep(0.05)
        _run_callbacks(worker, lambda piece=piece: bool(conn.sock.pending.endswith(piece)))
        assert conn in worker.waiting and worker.tpool._work_queue.empty()  # still in the poller: no thread taken
    client.sendall(pieces[-1])
    _run_callbacks(worker, lambda: conn not in worker.waiting)
    assert _read_answer(client)[0].startswith(b"HTTP/1.1 200")


def test_a_connection_the_client_resets_is_closed_and_the_main_loop_goes_on(worker: HmlWorker, listener):
    client = _client(listener)
    conn = _accept(worker, listener)
    client.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
    _run_callbacks(worker, lambda: conn not in worker.waiting)
    assert _read_answer(client)[1] == b"x" * LARGE
    _run_callbacks(worker, lambda: conn in worker.waiting)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset, as wrk's connections get at the end of a run
    _run_callbacks(worker, lambda: worker.nr_conns == 0)  # the poller sees it readable: closed, and no exception here


def test_a_client_that_does_not_take_its_answer_is_cut_off_at_the_deadline(worker: HmlWorker, listener):
    client = _client(listener)
    _accept(worker, listener)
    client.sendall(b"GET /pool HTTP/1.1\r\nHost: x\r\n\r\n")  # a route of the app's own: a pool thread sends
    _run_callbacks(worker, lambda: worker.nr_conns == 0)  # the thread gave up on the client and closed
    received = b""
    while chunk := client.recv(1 << 20):
        received += chunk
    assert received.startswith(b"HTTP/1.1 200") and len(received) < LARGE  # cut off, not waited for


def test_closing_waits_for_the_clients_fin_in_the_poller_not_in_the_main_loop(worker: HmlWorker, listener):
    client = _client(listener)
    conn = _accept(worker, listener)
    client.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    _run_callbacks(worker, lambda: conn in worker.closing)  # answered, FIN sent; the client does not close its side
    head, _ = _read_answer(client)
    assert b"connection: close" in head.lower() and client.recv(1) == b""
    _run_callbacks(worker, lambda: worker.nr_conns == 0)  # closed after the linger, never having waited


def test_a_request_cut_short_gets_a_408_that_closes_and_a_silent_connection_is_closed(worker: HmlWorker, listener):
    silent, slow = _client(listener), _client(listener)
    _accept(worker, listener)
    _accept(worker, listener)
    slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
    _run_callbacks(worker, lambda: worker.nr_conns == 0)  # the deadlines (HEADER_TIMEOUT) passed
    head, body = _read_answer(slow)
    assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower()
    assert json.loads(body)["error"] == "the request body did not arrive in time"
    assert silent.recv(100) == b""  # nothing to answer: closed


def test_over_the_limit_the_oldest_waiting_connection_is_shed_never_the_new_one(worker: HmlWorker, listener):
    worker.max_connections = 3
    oldest, *others = [_client(listener) for _ in range(3)]
    for _ in range(3):
        _accept(worker, listener)
    newest = _client(listener)
    conn = _accept(worker, listener)
    assert oldest.recv(1) == b""  # shed
    newest.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
    _run_callbacks(worker, lambda: conn not in worker.waiting)
    assert _read_answer(newest)[0].startswith(b"HTTP/1.1 200")
    assert all(conn.sock.fileno() >= 0 for conn in worker.waiting)


def test_over_the_memory_budget_the_oldest_request_still_arriving_is_shed(worker: HmlWorker, listener):
    worker.max_buffered_bytes, worker.header_timeout = 100, 60
    oldest, newest = _client(listener), _client(listener)
    _accept(worker, listener)
    conn = _accept(worker, listener)
    start = b"GET /small HTTP/1.1\r\nX-Pad: " + b"p" * 40  # 68 bytes, and more to come
    oldest.sendall(start)
    _run_callbacks(worker, lambda: worker.buffered == len(start))
    newest.sendall(start)
    _run_callbacks(worker, lambda: len(worker.waiting) == 1)
    assert oldest.recv(1) == b""  # shed to make room
    newest.sendall(b"\r\n\r\n")
    _run_callbacks(worker, lambda: conn not in worker.waiting)
    assert _read_answer(newest)[1] == b"ok"


def test_a_request_waiting_too_long_for_a_thread_gets_a_503(worker: HmlWorker, listener):
    worker.queue_timeout = 0.0
    client = _client(listener)
    _accept(worker, listener)
    time.sleep(0.01)
    client.sendall(b"GET /pool HTTP/1.1\r\nHost: x\r\n\r\n")
    _run_callbacks(worker, lambda: worker.nr_conns == 0)
    head, body = _read_answer(client)
    assert head.startswith(b"HTTP/1.1 503") and json.loads(body)["error"] == "the server is too busy; try again"


def test_the_client_socket_reads_only_what_has_arrived_and_writes_inline_without_waiting(listener):
    client = _client(listener)
    server, _ = listener.accept()
    sock = ClientSocket(server, send_timeout=BODY_TIMEOUT)
    assert sock.receive(100) is None  # nothing yet
    sock.pending += b"GET / HTTP/1.1\r\n"
    assert sock.recv(100) == b"GET / HTTP/1.1\r\n"
    with pytest.raises(ReadTimeout, match="did not arrive whole"):
        sock.recv(100)  # nothing more has arrived: refused at once, never waited for
    sock.inline = True
    sent = threading.Event()

    def send() -> None:
        sock.sendall(b"y" * LARGE)
        sent.set()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(timeout=30)
    assert sent.is_set() and 0 < len(sock.unsent) < LARGE  # what the client did not take is kept, not waited for
    client.shutdown(socket.SHUT_WR)
    assert sock.receive(100) == b""  # the client closed
    sock.settimeout(3.0)
    assert server.gettimeout() == 0.0 and sock.gettimeout() == 3.0  # what gunicorn sets is only noted
    server.close()
    client.close()


LIMITS = {"max_header_bytes": 100, "max_body_bytes": 50}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"GET /predict?age=3 HTTP/1.1\r\nHost: x\r\n\r\n", (40, ("GET", "/predict"))),
        (b"POST /predict HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}GET", (47, ("POST", "/predict"))),
        (b'POST /predict HTTP/1.1\r\nContent-Length: 10\r\n\r\n{"a": 1', (None, ("POST", "/predict"))),  # the body is arriving
        (b"GET /predict HTTP/1.1\r\nHost: x\r\n", (None, None)),  # the headers are
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\nGET", (60, ("POST", "/p"))),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", (None, ("POST", "/p"))),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-T: 1\r\n\r\n", (68, ("POST", "/p"))),
        (b"GET /pre%64ict?a=%2B HTTP/1.1\r\nHost: x\r\n\r\n", (42, ("GET", "/predict"))),
        # framings gunicorn refuses (400) are handed to it at once, whole
        (b"POST /p HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", (60, ("POST", "/p"))),
        (b"POST /p HTTP/1.1\r\nContent-Length: +2\r\n\r\n", (40, ("POST", "/p"))),
        (b"POST /p HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", (67, ("POST", "/p"))),
        (b"GET http://x/predict HTTP/1.1\r\nHost: x\r\n\r\n", (42, None)),
        (b"GET / HTTP/1.1\nHost: x\n\n", (24, None)),
    ],
    ids=[
        "get",
        "post",
        "body-arriving",
        "headers-arriving",
        "chunked",
        "chunks-arriving",
        "trailers",
        "encoded",
        "two-lengths",
        "signed-length",
        "length-and-chunked",
        "absolute",
        "bare-newlines",
    ],
)
def test_frame_says_where_the_first_request_ends(data: bytes, expected: tuple[int | None, tuple[str, str] | None]):
    framing = frame(data, **LIMITS)
    assert (framing.length, framing.route) == expected


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 200, "431"),
        (b"POST /p HTTP/1.1\r\nContent-Length: 51\r\n\r\n", "413"),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n" + b"x" * 32 + b"\r\n20\r\n", "413"),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n", "400"),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n", "400"),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2" + b";" * 2000, "400"),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}}\r\n", "400"),
    ],
    ids=["headers", "length", "chunked", "negative-chunk", "prefixed-chunk", "long-chunk-line", "unterminated-chunk"],
)
def test_frame_refuses_what_is_over_the_limits_or_no_chunk_size(data: bytes, status: str):
    with pytest.raises(Refused) as refused:
        frame(data, **LIMITS)
    assert refused.value.status.startswith(status)


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
