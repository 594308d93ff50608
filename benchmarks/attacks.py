"""Probe latency of ``inference run-prod`` while cheap hostile clients attack it, against the quiet baseline.

Trains a small XGBoost model with hmlcore, serves it with ``run-prod`` (default settings: as many workers
as ``--workers``, 4 threads each) on 127.0.0.1, and runs a probe: a new client every ``--pause`` seconds,
each opening a connection and asking ``GET /predict?...`` once. The probe runs alone (the baseline), then
during each attack in turn:

- ``slowloris``: 50 connections, each sending one more header line a second, never ending its headers;
- ``silent``: 1,000 connections that send nothing;
- ``non-closing``: 40 clients, each asking once a second on a new connection with ``Connection: close``,
  reading the answer and never closing its side (the server waits for a FIN that does not come);
- ``non-reading``: 20 connections that send 20 requests each for the OpenAPI document and read nothing;
- ``slow-body``: 2,500 connections, each sending a byte of its body every 2 s (more than gevent's
  1,000 connections per worker: it has no body deadline).

It prints, per phase, the probe's answers, failures (no answer within 10 s) and p50/p99 latency in ms.
Figures depend on the machine and on what else runs on it: they are printed, not asserted.

    python benchmarks/attacks.py --workers 2
    python benchmarks/attacks.py --workers 2 --worker-class gevent   # gunicorn's gevent worker, same app (needs gevent)
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: the app: ``python app.py LAKE [gevent WORKERS PORT | inference run-prod ...]``
APP_SCRIPT = """
import sys

from hmlcore import hml

app = hml.HmlApp(name="attacked", package_entrypoint="attacked")
app.register_model("risk", hml.ModelContainer("risk", "demo", ["age", "speed"], ["sex", "road"], "hurt", lake=sys.argv[1]))


@hml.inference(app.inference)
def start(inference_app):
    inference_app.get_model("risk").load()
    hml.enable_monitoring(inference_app)


if sys.argv[2] == "gevent":  # gunicorn's own gevent worker, with run-prod's other settings
    from gunicorn.app.base import BaseApplication

    from hmlcore.serving.server import gunicorn_options, limit_threads

    workers, port = int(sys.argv[3]), int(sys.argv[4])
    limit_threads(workers)
    flask_app = app.inference.create_app()
    options = {**gunicorn_options(host="127.0.0.1", port=port, workers=workers), "worker_class": "gevent", "worker_connections": 1000}

    class Application(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return flask_app

    Application().run()
else:
    app.start(sys.argv[2:])
"""
QUERY = "age=40&speed=90&sex=m&road=highway"


def train(lake: Path) -> None:
    import numpy as np
    import pandas as pd
    from xgboost import XGBClassifier

    from hmlcore import hml

    rng = np.random.default_rng(0)
    rows = 600
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, rows),
            "speed": rng.uniform(10, 160, rows).round(1),
            "sex": rng.choice(["f", "m"], rows),
            "road": rng.choice(["city", "highway", "rural"], rows),
        }
    )
    frame["hurt"] = (frame["speed"] / 40 + rng.normal(0, 0.7, rows) > 2).astype(int)
    container = hml.ModelContainer("risk", "demo", ["age", "speed"], ["sex", "road"], "hurt", lake=str(lake))
    container.analyze_distributions(frame)
    features, target = container.build_training_matrix(frame)
    container.bind_model(XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(features, target))
    container.publish(run_id="run-1", git_commit="bench")


def probe(port: int, seconds: float, pause: float) -> tuple[list[float], int]:
    """A new client every ``pause`` seconds for ``seconds``: latencies (ms) of the answers, and the failures."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def one() -> None:
        begun = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(f"GET /predict?{QUERY} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                raise OSError(data[:40])
            with lock:
                latencies.append((time.monotonic() - begun) * 1000)
        except OSError:
            with lock:
                failures[0] += 1

    threads = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        thread = threading.Thread(target=one, daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(pause)
    for thread in threads:
        thread.join(timeout=15)
    return latencies, failures[0]


class Attack:
    """Runs ``body`` in threads until stopped; closes every socket it opened."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stopped = threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []

    def connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            return None
        self.sockets.append(sock)
        return sock

    def connections(self) -> Iterator[socket.socket]:
        """New connections, one at a time, until the attack stops (a refused connect is tried again shortly)."""
        while not self.stopped.is_set():
            sock = self.connect()
            if sock is None:
                time.sleep(0.2)
                continue
            yield sock

    def run(self, count: int, body: Callable[[], None]) -> None:
        for _ in range(count):
            self.threads.append(threading.Thread(target=body, daemon=True))
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=15)
        for sock in self.sockets:
            sock.close()


def slowloris(attack: Attack) -> None:
    def body() -> None:
        for sock in attack.connections():
            try:
                sock.sendall(b"GET /predict HTTP/1.1\r\nHost: x\r\n")
                for line in range(10_000):
                    if attack.stopped.wait(1):
                        return
                    sock.sendall(b"X-Slow-%d: 1\r\n" % line)
            except OSError:
                continue  # cut off: start again

    attack.run(50, body)


def silent(attack: Attack) -> None:
    def body() -> None:
        held: list[socket.socket] = []
        while not attack.stopped.is_set():
            held = [sock for sock in held if _open(sock)]
            while len(held) < 100 and not attack.stopped.is_set():
                sock = attack.connect()
                if sock is None:
                    break
                held.append(sock)
            attack.stopped.wait(0.5)

    attack.run(10, body)


def _open(sock: socket.socket) -> bool:
    """Whether the server still holds ``sock`` open (it has not closed or reset it)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def non_closing(attack: Attack) -> None:
    def body() -> None:
        for sock in attack.connections():
            try:
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                sock.recv(65536)  # the answer; the socket stays open, no FIN
            except OSError:
                pass
            attack.stopped.wait(1)

    attack.run(40, body)


def non_reading(attack: Attack) -> None:
    def body() -> None:
        sock = attack.connect()
        if sock is None:
            return
        try:
            sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
        except OSError:
            pass
        attack.stopped.wait()

    attack.run(20, body)


def slow_body(attack: Attack) -> None:
    def body() -> None:
        held: list[socket.socket] = []
        while not attack.stopped.is_set():
            for sock in list(held):
                try:
                    sock.sendall(b" ")
                except OSError:
                    held.remove(sock)
            while len(held) < 100 and not attack.stopped.is_set():
                sock = attack.connect()
                if sock is None:
                    break
                try:
                    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[")
                except OSError:
                    continue
                held.append(sock)
            attack.stopped.wait(2)

    attack.run(25, body)


ATTACKS = {
    "slowloris": slowloris,
    "silent": silent,
    "non-closing": non_closing,
    "non-reading": non_reading,
    "slow-body": slow_body,
}


def serve(work: Path, worker_class: str, workers: int, port: int) -> subprocess.Popen:
    script = work / "app.py"
    script.write_text(APP_SCRIPT)
    env = {**os.environ, "HOME": str(work), "HML_HEADER_TIMEOUT": "10", "HML_BODY_TIMEOUT": "30"}
    if worker_class == "gevent":
        command = [sys.executable, str(script), str(work / "lake"), "gevent", str(workers), str(port)]
    else:
        command = [sys.executable, str(script), str(work / "lake"), "inference", "run-prod", "--workers", str(workers)]
        command += ["--host", "127.0.0.1", "--port", str(port)]
    log = open(work / "server.log", "w")  # noqa: SIM115 - the server's for as long as it runs
    server = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return server
        except OSError:
            time.sleep(0.3)
    os.killpg(server.pid, signal.SIGKILL)
    raise SystemExit(f"the server was not ready; see {work / 'server.log'}")


def throughput(port: int, work: Path) -> None:
    """Print wrk's req/s and p99 for one row, GET and POST, at concurrency 1, 8 and 32 (best of two 3 s runs)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from serve import wrk

    body = '{"age": 40, "speed": 90, "sex": "m", "road": "highway"}'
    for name, url, data in [("GET 1 row", f"/predict?{QUERY}", None), ("POST 1 row", "/predict", body)]:
        for concurrency in (1, 8, 32):
            runs = [wrk(f"http://127.0.0.1:{port}{url}", concurrency=concurrency, duration=3, body=data, work=work) for _ in range(2)]
            best = max(runs, key=lambda got: got["rps"])
            figures = f"{best['rps']:>9.0f} req/s  p99 {best['p99']:>7.2f} ms  failed {best['failed']}"
            print(f"{name:<11} c={concurrency:<3} {figures}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--seconds", type=float, default=10, help="probe seconds per phase")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between two probe clients")
    parser.add_argument("--worker-class", choices=["run-prod", "gevent"], default="run-prod", help="what serves the app")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma-separated: {', '.join(ATTACKS)}")
    parser.add_argument("--throughput", action="store_true", help="first, wrk's req/s for GET and POST one row at concurrency 1, 8, 32")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hml-attacks-") as folder:
        work = Path(folder)
        train(work / "lake")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = serve(work, args.worker_class, args.workers, port)
        try:
            if args.throughput:
                throughput(port, work)
            print(f"{args.worker_class}, {args.workers} worker(s); probe: a new client every {args.pause}s for {args.seconds}s")
            print(f"{'phase':<12} {'answers':>8} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}")
            for name in ["quiet", *[a.strip() for a in args.attacks.split(",") if a.strip()]]:
                attack = Attack(port)
                if name != "quiet":
                    ATTACKS[name](attack)
                    time.sleep(3)  # the attack is under way
                latencies, failed = probe(port, args.seconds, args.pause)
                attack.stop()
                ordered = sorted(latencies) or [float("nan")]
                p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
                print(f"{name:<12} {len(latencies):>8} {failed:>7} {statistics.median(ordered):>8.1f} {p99:>8.1f}", flush=True)
                time.sleep(2)  # the server closes what the attack left
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
