"""run-prod against slow, hostile and unlucky clients: gunicorn for real, on 127.0.0.1.

Slow clients hold a thread for a bounded time while others are served; every error has a JSON body, also
those gunicorn answers before the app; SIGTERM drains (``/readyz`` 503 first) without resetting a request;
a worker killed by SIGKILL loses no counted request; the access log holds no query values.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ._serving import RECORD, publish_model
from .test_server import kill_group, start, stop

pytestmark = pytest.mark.slow  # every test here starts a server or compiles with kfp

#: the most a probe may wait for an answer on this busy 2-core machine; the slow clients hold on longer
PROBE_BOUND = 8.0
HEADER_TIMEOUT = 15
MAX_BODY = 100_000


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lake")
    publish_model(path)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, lake: Path) -> Iterator[tuple[str, Path]]:
    """One worker of four threads, short read deadlines and a small body limit; yields the base URL and its folder.

    The server's stdout (the access log) goes to ``stdout.log`` in that folder.
    """
    tmp_path = tmp_path_factory.mktemp("served")
    env = {"HML_MAX_BODY_BYTES": str(MAX_BODY), "HML_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "HML_BODY_TIMEOUT": str(HEADER_TIMEOUT)}
    server, base, _ = start(
        tmp_path, lake, "run-prod", "--workers", "1", "--threads", "4", "--drain", "0", env=env, stdout=tmp_path / "stdout.log"
    )
    try:
        yield base, tmp_path
    finally:
        stop(server)


def _address(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    """Read one HTTP response (status and JSON body) from ``sock`` until the server closes it."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), head
    return int(head.split()[1]), json.loads(body)


class SlowClient(threading.Thread):
    """Sends a request one piece every second (its headers, or its body) until the server answers or closes."""

    def __init__(self, base: str, *, part: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(_address(base), timeout=60)
        self.part = part
        self.closed_at: float | None = None
        self.answer: tuple[int, dict] | None = None

    def run(self) -> None:
        if self.part == "headers":
            first, drip = b"GET /predict HTTP/1.1\r\nHost: x\r\n", (b"X-Slow-%d: 1\r\n" % i for i in range(600))
        else:
            first = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 600\r\n\r\n"
            drip = (b" " for _ in range(600))
        try:
            self.sock.sendall(first)
            for piece in drip:
                time.sleep(1)
                self.sock.sendall(piece)
        except OSError:
            pass  # the server closed the connection: what it answered is read below
        try:
            self.answer = _read_response(self.sock)
        except OSError:
            pass
        finally:
            self.closed_at = time.monotonic()
            self.sock.close()


def test_slow_header_and_slow_body_clients_do_not_stall_the_others(served: tuple[str, Path]):
    base, _ = served
    slow = [SlowClient(base, part="headers"), SlowClient(base, part="body")]
    for client in slow:
        client.start()
    time.sleep(2)  # both are in the middle of their requests now
    answered = []
    for _ in range(3):
        begun = time.monotonic()
        got = requests.get(f"{base}/predict", params=RECORD, timeout=60)
        assert got.status_code == 200
        answered.append((time.monotonic() - begun, time.monotonic()))
        time.sleep(0.3)
    for client in slow:
        client.join(timeout=HEADER_TIMEOUT + 60)
    # every probe answer came quickly, and while both slow clients still held their connections
    assert max(took for took, _ in answered) < PROBE_BOUND, answered
    assert all(client.closed_at is not None and client.closed_at > answered[-1][1] for client in slow)
    # then the read deadlines cut both: a JSON 408, not a worker held forever
    for client in slow:
        assert client.answer is not None and client.answer[0] == 408, client.answer
        assert "did not arrive in time" in client.answer[1]["error"]


def test_kept_alive_connections_outnumbering_the_threads_are_served_in_turn(served: tuple[str, Path]):
    """The main loop serves kept-alive clients in turn, however many there are.

    Ten clients on four threads, each sending 25 requests on one connection: every client has had its
    first answer before any has had its last (no four clients are served to the end while six wait).
    """
    base, _ = served
    host, port = _address(base)
    answers: dict[int, list[tuple[int, int, float]]] = {}
    ready = threading.Barrier(10, timeout=60)

    def client(number: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        got = answers.setdefault(number, [])
        try:
            connection.connect()
            ready.wait()
            for _ in range(25):
                connection.request("POST", "/predict", body=json.dumps(RECORD), headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                assert 0 <= json.loads(response.read())["predictions"][0]["probability"] <= 1
                got.append((response.status, id(connection.sock), time.monotonic()))
        finally:
            connection.close()

    clients = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(10)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=PROBE_BOUND * 25)
    assert sorted(answers) == list(range(10))
    for got in answers.values():
        assert [status for status, _, _ in got] == [200] * 25
        assert len({sock for _, sock, _ in got}) == 1  # one connection from the first answer to the last
    assert max(got[0][2] for got in answers.values()) < min(got[-1][2] for got in answers.values())


def test_connections_that_send_nothing_hold_no_thread(served: tuple[str, Path]):
    """Twelve silent connections (three times the worker's threads) wait in the poller, not in threads.

    A probe is answered at once, where gunicorn's gthread would first give each silent connection a thread
    for 5 s; then the server closes each silent one once its header deadline has passed.
    """
    base, _ = served
    silent = [socket.create_connection(_address(base), timeout=60) for _ in range(12)]
    try:
        time.sleep(1)  # all twelve have been accepted
        begun = time.monotonic()
        assert requests.get(f"{base}/predict", params=RECORD, timeout=60).status_code == 200
        assert time.monotonic() - begun < PROBE_BOUND
        for sock in silent:
            assert sock.recv(1) == b""  # closed by the server, well before the socket's 60 s timeout
    finally:
        for sock in silent:
            sock.close()


def test_every_hundredth_answer_on_a_connection_closes_it_so_clients_rebalance(served: tuple[str, Path]):
    """A kept-alive connection stays with one worker; closing it now and then lets the client reconnect to the least busy one."""
    base, _ = served
    connection = http.client.HTTPConnection(*_address(base), timeout=60)
    closing = []
    try:
        for _ in range(101):
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            closing.append(response.getheader("Connection", "").lower() == "close")
    finally:
        connection.close()
    assert [n + 1 for n, close in enumerate(closing) if close] == [100]


def test_an_oversized_chunked_body_gets_a_json_413_and_a_fitting_one_is_served(served: tuple[str, Path]):
    base, _ = served
    record = json.dumps(RECORD).encode()

    def chunks(total: int) -> Iterator[bytes]:
        yield b"[" + record
        sent = len(record) + 1
        while sent < total:
            yield b"," + record
            sent += len(record) + 1
        yield b"]"

    too_large = requests.post(f"{base}/predict", data=chunks(3 * MAX_BODY), timeout=60, headers={"Content-Type": "application/json"})
    assert too_large.status_code == 413 and too_large.headers["Content-Type"] == "application/json"
    assert too_large.json()["error"] == f"the request body is over {MAX_BODY} bytes"
    fitting = requests.post(f"{base}/predict", data=chunks(MAX_BODY // 2), timeout=60)
    assert fitting.status_code == 200 and len(fitting.json()["predictions"]) > 100


def _raw(base: str, request: bytes) -> tuple[int, dict]:
    with socket.create_connection(_address(base), timeout=60) as sock:
        sock.sendall(request)
        return _read_response(sock)


def test_every_error_status_has_a_json_body(served: tuple[str, Path]):
    base, _ = served
    answers = {
        404: requests.get(f"{base}/nowhere", timeout=60),
        405: requests.delete(f"{base}/predict", timeout=60),
        413: requests.post(f"{base}/predict", data=b"[" + b" " * MAX_BODY + b"]", timeout=60),
        500: requests.get(f"{base}/boom", timeout=60),
    }
    for status, answer in answers.items():
        assert answer.status_code == status and answer.headers["Content-Type"] == "application/json", (status, answer.text)
        assert answer.json()["error"] and "Traceback" not in answer.text
    assert "a bug in the user's code" not in answers[500].text
    # gunicorn answers these before the app sees the request
    status, body = _raw(base, b"GET /predict?" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414 and "too large" in body["error"].lower()
    status, body = _raw(base, b"GET /predict HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n")
    assert status == 431 and body["error"]
    status, body = _raw(base, b"GET /predict HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(150)) + b"\r\n")
    assert status == 431 and body["error"]
    status, body = _raw(base, b"NOT A REQUEST\r\n\r\n")
    assert status == 400 and body["error"]


def test_the_model_route_names_no_path(served: tuple[str, Path], lake: Path):
    base, _ = served
    info = requests.get(f"{base}/model", timeout=60)
    assert info.json()["name"] == "risk" and info.json()["version"] == "run-1"
    assert str(lake) not in info.text and "reference.json" not in info.text


def test_sigterm_drains_readyz_first_and_resets_no_accepted_request(tmp_path: Path, lake: Path):
    log = tmp_path / "stdout.log"  # a file: a pipe nobody reads would fill with the access log and block the server
    server, base, _ = start(tmp_path, lake, "run-prod", "--workers", "2", "--threads", "2", "--drain", "4", stdout=log)
    balanced = threading.Event()  # set once the "balancer" saw /readyz 503: clients stop sending here
    results: list[tuple[float, str]] = []
    lock = threading.Lock()

    def client() -> None:
        with requests.Session() as session:
            while not balanced.is_set():
                try:
                    answer = session.get(f"{base}/predict", params=RECORD, timeout=60)
                    outcome = str(answer.status_code)
                except requests.RequestException as exc:
                    outcome = type(exc).__name__
                with lock:
                    results.append((time.monotonic(), outcome))

    def balancer() -> None:
        while not balanced.is_set():
            try:
                if requests.get(f"{base}/readyz", timeout=60).status_code == 503:
                    balanced.set()
            except requests.RequestException:
                balanced.set()
            time.sleep(0.1)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)] + [threading.Thread(target=balancer, daemon=True)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        terminated = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert balanced.wait(timeout=60), "/readyz never answered 503"
        for thread in threads:
            thread.join(timeout=120)
        server.wait(timeout=120)  # it stops by itself once the drain is over
        _, stderr = stop(server)
    finally:
        balanced.set()
        kill_group(server)
    assert server.returncode == 0, stderr
    outcomes = [outcome for _, outcome in results]
    assert outcomes and set(outcomes) == {"200"}, {o: outcomes.count(o) for o in set(outcomes)}
    assert any(at > terminated for at, _ in results)  # still served after SIGTERM, during the drain
    assert "SIGTERM: /readyz answers 503" in stderr


def _workers(master: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                    children.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return children


def _counted(base: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=60).text
    line = re.search(r'^hml_http_requests_total\{method="GET",route="/predict",status="200"\} (\S+)$', text, re.M)
    return float(line.group(1)) if line else 0.0


def test_a_killed_worker_loses_no_counted_request(tmp_path: Path, lake: Path):
    server, base, _ = start(tmp_path, lake, "run-prod", "--workers", "2", "--threads", "2", "--drain", "0", stdout=tmp_path / "stdout.log")
    done = threading.Event()
    answered = [0]
    failed = [0]
    lock = threading.Lock()

    def client() -> None:
        with requests.Session() as session:
            while not done.is_set():
                try:
                    ok = session.get(f"{base}/predict", params=RECORD, timeout=60).status_code == 200
                except requests.RequestException:
                    ok = False
                with lock:
                    answered[0] += ok
                    failed[0] += not ok

    threads = [threading.Thread(target=client, daemon=True) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        for _ in range(2):
            time.sleep(1.5)
            os.kill(_workers(server.pid)[0], signal.SIGKILL)
        time.sleep(1.5)
        done.set()
        for thread in threads:
            thread.join(timeout=120)
        deadline = time.monotonic() + 60
        while len(_workers(server.pid)) < 2 and time.monotonic() < deadline:  # gunicorn has replaced the killed ones
            time.sleep(0.2)
        counted = _counted(base)
    finally:
        done.set()
        stop(server)
    assert answered[0] > 20
    assert answered[0] <= counted <= answered[0] + failed[0], (answered, failed, counted)


def test_clients_that_reset_their_kept_alive_connections_end_no_worker(tmp_path: Path, lake: Path):
    """wrk and impatient clients reset connections (RST, not FIN): the worker closes them and serves on."""
    server, base, _ = start(tmp_path, lake, "run-prod", "--workers", "1", "--drain", "0", stdout=tmp_path / "stdout.log")
    try:
        workers = _workers(server.pid)
        for _ in range(20):
            connection = http.client.HTTPConnection(*_address(base), timeout=60)
            connection.request("GET", "/readyz")
            assert connection.getresponse().read() and connection.sock is not None
            connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()  # a reset while the server keeps the connection alive
        time.sleep(1)
        assert requests.get(f"{base}/predict", params=RECORD, timeout=60).status_code == 200
        assert _workers(server.pid) == workers  # the same worker, never restarted
    finally:
        _, errors = stop(server)
    assert "Traceback" not in errors and "exited with code" not in errors, errors


def _mutated(rng: random.Random, request: bytes) -> bytes:
    """``request`` cut short, with a byte flipped, a hostile length or target, chunked, or with garbage after it."""
    data = bytearray(request)
    how = rng.randrange(6)
    if how == 0:
        del data[rng.randrange(len(data)) :]
    elif how == 1:
        data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == 2:
        data = bytearray(request.replace(b"Content-Length: 2", b"Content-Length: %d" % rng.choice([0, 1, 5, 99999999999, -1])))
    elif how == 3:
        data = bytearray(request.replace(b"Host: x", b"Transfer-Encoding: chunked"))
    elif how == 4:
        target = rng.choice([b"/%zz", b"http://a/predict", b"/v1/models/risk:predict", b"//", b"/\xff\xfe", b"*"])
        data = bytearray(request.replace(b"/predict", target))
    else:
        data += bytes(rng.randrange(256) for _ in range(rng.randrange(50)))
    return bytes(data)


def test_mutated_dripped_and_reset_requests_end_no_worker(tmp_path: Path, lake: Path):
    """Four clients for 10 s: valid and mutated requests, whole or dripped, ended by a reset, a half-close or a close.

    No worker ends, nothing answers 5xx or logs a traceback, and the server still answers afterwards.
    """
    env = {"HML_HEADER_TIMEOUT": "2", "HML_BODY_TIMEOUT": "2"}
    log = tmp_path / "stdout.log"
    server, base, _ = start(tmp_path, lake, "run-prod", "--workers", "2", "--drain", "0", env=env, stdout=log)
    query = "&".join(f"{k}={v}" for k, v in RECORD.items()).encode()
    valid = [
        b"GET /predict?" + query + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    end = time.monotonic() + 10
    sent = [0]

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < end:
            try:
                with socket.create_connection(_address(base), timeout=10) as sock:
                    data = b"".join(rng.choice([_mutated(rng, rng.choice(valid)), rng.choice(valid)]) for _ in range(rng.randrange(1, 4)))
                    step = rng.choice([len(data), 7, 40])
                    for start_at in range(0, len(data), step):
                        sock.sendall(data[start_at : start_at + step])
                    ending = rng.random()
                    if ending < 0.3:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        continue  # closed with a reset on leaving the block
                    if ending < 0.45:
                        sock.shutdown(socket.SHUT_WR)
                    try:
                        sock.recv(1 << 20)
                    except TimeoutError:
                        pass
                    sent[0] += 1
            except OSError:
                continue  # the server closed first: what it did is checked below

    try:
        deadline = time.monotonic() + 60
        while len(_workers(server.pid)) < 2 and time.monotonic() < deadline:  # the first answered /readyz; the second may still boot
            time.sleep(0.2)
        workers = _workers(server.pid)
        assert len(workers) == 2
        clients = [threading.Thread(target=client, args=(seed,), daemon=True) for seed in range(4)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=120)
        assert sent[0] > 20
        assert requests.get(f"{base}/predict", params=RECORD, timeout=60).status_code == 200
        assert _workers(server.pid) == workers  # the same workers: none ended
    finally:
        _, errors = stop(server)
    assert "Traceback" not in errors and "exited with code" not in errors, errors[-3000:]
    assert not re.search(r'" 5\d\d ', log.read_text())


def test_the_access_log_holds_no_query_values_unless_asked(served: tuple[str, Path], tmp_path: Path, lake: Path):
    base, folder = served
    assert requests.get(f"{base}/predict", params={**RECORD, "sex": "secret-value"}, timeout=60).status_code == 422
    log = folder / "stdout.log"
    deadline = time.monotonic() + 30
    while '"GET /predict HTTP/1.1" 422' not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert '"GET /predict HTTP/1.1" 422' in log.read_text()
    assert "secret-value" not in log.read_text() and "speed=" not in log.read_text()
    server, other, _ = start(tmp_path, lake, "run-prod", "--workers", "1", "--drain", "0", "--log-query")
    try:
        assert requests.get(f"{other}/predict", params={**RECORD, "sex": "logged-value"}, timeout=60).status_code == 422
    finally:
        with_query, _ = stop(server)
    assert "sex=logged-value" in with_query


# -- the attacker's suite: each of these stalled service before (issue: five ways cheap clients held a worker)


def _probe(base: str, times: int = 3) -> list[float]:
    """Seconds each of ``times`` new clients waited for a prediction (a failure raises)."""
    took = []
    for _ in range(times):
        begun = time.monotonic()
        assert requests.get(f"{base}/predict", params=RECORD, timeout=60).status_code == 200
        took.append(time.monotonic() - begun)
    return took


def test_clients_that_never_close_their_side_do_not_hold_the_main_loop(served: tuple[str, Path]):
    """Each answer that closes its connection waits for the client's FIN; 20 clients that never send it cost nothing.

    Before, the main loop waited up to 2 s for each: 40 such closes held the only worker for over a minute.
    """
    base, _ = served
    held = []
    try:
        for _ in range(2):
            for _ in range(20):
                sock = socket.create_connection(_address(base), timeout=60)
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                held.append(sock)
        assert max(_probe(base)) < PROBE_BOUND
        for sock in held:
            head = _read_head(sock)
            assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
    finally:
        for sock in held:
            sock.close()


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.partition(b"\r\n\r\n")[0]


class Dripper(threading.Thread):
    """Sends ``first`` at once, then one byte of ``rest`` a second, until the server answers or closes."""

    def __init__(self, base: str, first: bytes, rest: bytes) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(_address(base), timeout=60)
        self.first, self.rest = first, rest
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            self.sock.sendall(self.first)
            for byte in self.rest:
                if self.stopped.wait(1):
                    return
                self.sock.sendall(bytes([byte]))
        except OSError:
            pass


def _shapes() -> dict[str, tuple[bytes, bytes]]:
    """The requests that went to a pool thread before they had arrived: (what is sent at once, what follows)."""
    record = json.dumps(RECORD).encode()
    large = b"[" + b",".join([record] * 1500) + b"]"  # over 64 KiB
    post = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    chunked = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    return {
        "%-encoded target": (b"GET /predict?age=40&speed=90&sex=m&road=high%77ay HTTP/1.1\r\n", b"Host: x\r\n\r\n"),
        "body in a later segment": (post % len(record), record),
        "chunked": (chunked, b"%x\r\n%s\r\n0\r\n\r\n" % (len(record), record)),
        "over 64 KiB": (post % len(large) + large[:-40], large[-40:]),
        "app route": (b"GET /slow?seconds=0 HTTP/1.1\r\n", b"Host: x\r\n\r\n"),
    }


def test_slow_requests_of_every_shape_hold_no_thread(served: tuple[str, Path]):
    """Two slow clients of each shape (ten, on four threads) while the same requests, sent whole, are answered.

    Before, each went to a pool thread that waited for the rest of it: ten held all four threads.
    """
    base, _ = served
    shapes = _shapes()
    slow = [Dripper(base, first, rest) for first, rest in shapes.values() for _ in range(2)]
    try:
        for client in slow:
            client.start()
        time.sleep(2)  # all ten are in the middle of their requests
        for name, (first, rest) in shapes.items():
            with socket.create_connection(_address(base), timeout=PROBE_BOUND) as sock:
                sock.sendall(first)
                time.sleep(0.1)  # the rest in a later segment
                sock.sendall(rest + b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                try:
                    answer = _read_all(sock)
                except TimeoutError:
                    pytest.fail(f"{name}: no answer in {PROBE_BOUND}s while slow clients of its shape were sending")
            assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1 200") == 2, (name, answer[:300])
    finally:
        for client in slow:
            client.stopped.set()
            client.sock.close()


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(1 << 20):
        data += chunk
    return data


def test_hundreds_of_silent_connections_do_not_lock_out_a_new_client(served: tuple[str, Path]):
    """600 connections that send nothing on one worker; new clients are still answered at once.

    Before, a worker took 100 connections; the others waited in the kernel's queue until silent ones timed out.
    """
    base, _ = served
    silent = []
    try:
        for _ in range(600):
            silent.append(socket.create_connection(_address(base), timeout=60))
        time.sleep(1)
        assert max(_probe(base)) < PROBE_BOUND
    finally:
        for sock in silent:
            sock.close()


def test_pipelined_continued_and_http10_requests_are_answered(served: tuple[str, Path]):
    base, _ = served
    query = "&".join(f"{k}={v}" for k, v in RECORD.items()).encode()
    with socket.create_connection(_address(base), timeout=60) as sock:
        sock.sendall(b"".join(b"GET /predict?%s&n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (query, n) for n in range(7)))
        sock.sendall(b"GET /model HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = _read_all(sock)
    assert answers.count(b"HTTP/1.1 200") == 8 and answers.count(b'"predictions"') == 7 and answers.rstrip().endswith(b"}")
    assert answers.rfind(b'"predictions"') < answers.find(b'"version"', answers.rfind(b"HTTP/1.1 200"))  # in order
    body = json.dumps(RECORD).encode()
    with socket.create_connection(_address(base), timeout=60) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # the client may now send its body
        sock.sendall(body)
        head = _read_head(sock)
    assert head.startswith(b"HTTP/1.1 200")
    with socket.create_connection(_address(base), timeout=60) as sock:
        sock.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
        answer = _read_all(sock)  # HTTP/1.0: answered, then closed
    assert answer.startswith(b"HTTP/1.0 200")


def test_a_408_and_a_413_announce_that_they_close(served: tuple[str, Path]):
    base, _ = served
    with socket.create_connection(_address(base), timeout=60) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n[" % (MAX_BODY + 1))
        head, _, body = _read_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
    assert json.loads(body)["error"] == f"the request body is over {MAX_BODY} bytes"
    with socket.create_connection(_address(base), timeout=60) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n[")
        head, _, body = _read_all(sock).partition(b"\r\n\r\n")  # after the body deadline
    assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower()
    assert json.loads(body)["error"] == "the request body did not arrive in time"


def test_the_end_of_a_drain_resets_no_client(tmp_path: Path, lake: Path):
    """Eight clients asking on a new connection each time, as fast as they can, through a drain and a stop: answered or refused."""
    server, base, _ = start(tmp_path, lake, "run-prod", "--workers", "2", "--drain", "2", stdout=tmp_path / "stdout.log")
    outcomes: list[str] = []
    lock = threading.Lock()
    request = b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    def client() -> None:
        while True:
            try:
                with socket.create_connection(_address(base), timeout=60) as sock:
                    sock.sendall(request)
                    answer = _read_all(sock)
                outcome = answer.split(b" ", 2)[1].decode() if answer else "closed unanswered"
            except ConnectionRefusedError:
                return  # the server has stopped listening
            except OSError as exc:
                outcome = type(exc).__name__
            with lock:
                outcomes.append(outcome)

    clients = [threading.Thread(target=client, daemon=True) for _ in range(8)]
    try:
        for thread in clients:
            thread.start()
        time.sleep(1)
        server.send_signal(signal.SIGTERM)
        for thread in clients:
            thread.join(timeout=120)
        server.wait(timeout=120)
    finally:
        stop(server)
    counts = {outcome: outcomes.count(outcome) for outcome in set(outcomes)}
    # before, every client's last connection was reset (8); what reaches the listener in the microseconds
    # between a stopping worker's last accept and its close is reset by the kernel: once in a few runs
    assert counts.pop("ConnectionResetError", 0) <= 1, counts
    assert set(counts) <= {"200", "503"} and counts.get("503"), counts  # 503: /readyz while draining
