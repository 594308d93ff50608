"""Serving for real: gunicorn (workers, access log, graceful SIGTERM, no control socket) and the dev server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from hmlcore.errors import ConfigError
from hmlcore.serving.server import (
    NATIVE_THREAD_VARIABLES,
    available_cores,
    default_workers,
    gunicorn_options,
    limit_threads,
    run_prod,
    size_native_pools,
)

from ._serving import APP_SCRIPT, RECORD, publish_model, serving_app
from .conftest import free_port, start_process, wait_ready


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lake")
    publish_model(path)
    return path


def start(
    tmp_path: Path, lake: Path, *command: str, env: dict[str, str] | None = None, stdout: Path | None = None, script: str = APP_SCRIPT
) -> tuple[subprocess.Popen, str, Path]:
    """Run the test app's CLI (``script``) with ``command`` on a free 127.0.0.1 port, HOME in ``tmp_path``; wait until ready.

    The server runs in a process group of its own, so :func:`stop` ends its workers too. Its stdout goes to
    the file ``stdout`` if given (read it while the server runs), else to a pipe :func:`stop` reads.
    """
    script_file = tmp_path / "serve_app.py"
    script_file.write_text(script)
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    environ = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1", **(env or {})}
    environ.pop("XDG_RUNTIME_DIR", None)
    with open(stdout if stdout else os.devnull, "w") as log:
        server = start_process(
            [sys.executable, str(script_file), str(lake), "inference", *command, "--host", "127.0.0.1", "--port", str(port)],
            env=environ,
            stdout=log if stdout else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", server)
    except AssertionError:
        kill_group(server)
        raise
    return server, base, home


def kill_group(server: subprocess.Popen) -> None:
    """SIGKILL the server's whole process group (the master and its workers)."""
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop(server: subprocess.Popen, *, timeout: float = 60) -> tuple[str, str]:
    """SIGTERM the server and return its output; SIGKILL its process group if it has not stopped within ``timeout``."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        return server.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(server)
        return server.communicate()
    finally:
        kill_group(server)  # any worker left behind


@pytest.mark.slow
def test_run_prod_serves_with_workers_logs_access_and_stops_gracefully(tmp_path: Path, lake: Path):
    server, base, home = start(tmp_path, lake, "run-prod", "--workers", "2", "--timeout", "10", "--drain", "0")
    try:
        got = requests.get(f"{base}/predict", params=RECORD, timeout=30)
        assert got.status_code == 200 and got.json()["model"]["version"] == "run-1"
        posted = requests.post(f"{base}/predict", json=[RECORD] * 50, timeout=30)
        assert len(posted.json()["predictions"]) == 50
        assert requests.post(f"{base}/predict", data="{oops", timeout=30).status_code == 400
        # SIGTERM while a request is in flight: that request still gets its answer
        answers: list[requests.Response] = []
        slow = threading.Thread(target=lambda: answers.append(requests.get(f"{base}/slow", params={"seconds": "1.5"}, timeout=20)))
        slow.start()
        time.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        slow.join(timeout=20)
    finally:
        stdout, stderr = stop(server)
    assert server.returncode == 0, stderr
    assert [a.status_code for a in answers] == [200]
    assert stderr.count("Booting worker") == 2
    assert '"GET /predict HTTP/1.1" 200' in stdout and '"POST /predict HTTP/1.1" 200' in stdout  # the access log, on stdout
    assert "speed=" not in stdout and "highway" not in stdout  # ... without the query's feature values
    assert "ms" in stdout.splitlines()[0]
    assert not (home / ".gunicorn").exists()  # no control socket under $HOME


@pytest.mark.slow
def test_run_dev_serves(tmp_path: Path, lake: Path):
    server, base, _ = start(tmp_path, lake, "run-dev", "--no-reload")
    try:
        got = requests.post(f"{base}/v1/models/risk:predict", json={"instances": [RECORD]}, timeout=30)
        assert got.status_code == 200 and len(got.json()["predictions"]) == 1
    finally:
        stop(server)


@pytest.mark.slow
def test_run_dev_reloads_when_the_code_changes(tmp_path: Path, lake: Path):
    server, base, _ = start(tmp_path, lake, "run-dev")  # --reload is the default
    try:
        assert requests.get(f"{base}/added", timeout=30).status_code == 404
        script = tmp_path / "serve_app.py"
        script.write_text(script.read_text().replace('    @inference_app.flask.get("/slow")', ADDED_ROUTE))
        # the reloader restarts the server on the same socket: while the new one loads the app, a request is
        # accepted but not answered (or refused, or cut), so every failure is one more poll until the deadline
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/added", timeout=10).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        assert requests.get(f"{base}/added", timeout=30).json() == {"added": True}
    finally:
        stop(server)
    assert server.returncode == 0


ADDED_ROUTE = """    @inference_app.flask.get("/added")
    def added():
        return {"added": True}

    @inference_app.flask.get("/slow")"""


def test_a_model_that_cannot_load_stops_run_prod_with_one_line(tmp_path: Path):
    app = serving_app(tmp_path / "empty-lake")
    result = CliRunner().invoke(app.cli(), ["inference", "run-prod", "--port", str(free_port()), "--host", "127.0.0.1"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: no published model 'risk'")


def test_gunicorn_options_preload_and_disable_the_control_socket():
    options = gunicorn_options(host="::", port=8080, workers=3, timeout=12, name="crashed")
    assert options["bind"] == "[::]:8080"
    assert options["workers"] == 3 and options["preload_app"] is True
    assert options["control_socket_disable"] is True
    assert options["graceful_timeout"] == options["timeout"] == 12
    assert options["accesslog"] == "-"
    with pytest.raises(ConfigError, match="at least 1, got 0"):
        gunicorn_options(host="127.0.0.1", port=1, workers=0)


@pytest.mark.parametrize(("value", "expected"), [("3", 3), (None, None), ("", None)])
def test_default_workers_reads_hml_workers(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int | None):
    if value is None:
        monkeypatch.delenv("HML_WORKERS", raising=False)
    else:
        monkeypatch.setenv("HML_WORKERS", value)
    workers = default_workers()
    assert workers == expected if expected else 1 <= workers <= (os.cpu_count() or 1)


@pytest.mark.parametrize(
    ("value", "message"),
    [("two", "HML_WORKERS='two' is not a whole number of at least 1"), ("0", "HML_WORKERS='0' is not a whole number of at least 1")],
)
def test_a_bad_hml_workers_names_the_value(monkeypatch: pytest.MonkeyPatch, value: str, message: str):
    monkeypatch.setenv("HML_WORKERS", value)
    with pytest.raises(ConfigError, match=message):
        default_workers()


def test_limit_threads_keeps_the_master_on_one_thread_and_gives_the_workers_their_share(monkeypatch: pytest.MonkeyPatch):
    from threadpoolctl import threadpool_info

    for name in NATIVE_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    try:
        assert limit_threads(workers=64) == 1
        assert all(os.environ[name] == "1" for name in NATIVE_THREAD_VARIABLES)  # libraries loaded from now on
        assert {pool["num_threads"] for pool in threadpool_info()} <= {1}  # those already loaded
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert limit_threads(workers=1) == 3  # what the user set is each worker's share
    finally:
        size_native_pools(available_cores())


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"drain": -1}, "drain must be at least 0 seconds, got -1"),
        ({"header_timeout": 0}, "header_timeout must be more than 0 seconds, got 0"),
        ({"body_timeout": -2.5}, "body_timeout must be more than 0 seconds, got -2.5"),
        ({"threads": 0}, "threads must be at least 1, got 0"),
    ],
)
def test_bad_run_prod_settings_are_refused_before_serving(tmp_path: Path, option: dict, message: str):
    flask_app = serving_app(tmp_path / "lake", load=False).inference.create_app()
    with pytest.raises(ConfigError, match=message):
        run_prod(flask_app, host="127.0.0.1", port=free_port(), workers=1, **option)
