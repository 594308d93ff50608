"""The warm interpreter (hmlcore._warm) against callers that differ from an interactive shell, and against bad clients.

Each test runs a small script the way a console script runs (``python probe.py pipelines probe run-all``): it
hands itself to a warm server exactly as :meth:`hmlcore.app.HmlApp.start` does, and otherwise does what the
test asks through ``PROBE_*`` variables, so a server starts in a second or two with no package to bake. Every
server and child lives in the test's own ``HML_CACHE_DIR`` and is killed by the fixture, also when the test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._warm import alive, server_up, stop_warm_processes, wait_for, warm_env
from tests.conftest import run, start_process, stop_group

PROBE = """
import os
import signal
import sys
import threading
import time

from hmlcore._warm import run_warm

code = run_warm(package="probe")
if code is not None:
    raise SystemExit(code)
print(f"pid {os.getpid()} ignores SIGHUP: {signal.getsignal(signal.SIGHUP) == signal.SIG_IGN}", flush=True)
gate = os.environ.get("PROBE_WAIT_FOR")
if gate:
    while not os.path.exists(gate):
        time.sleep(0.05)
print("done", flush=True)
"""


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str]]]:
    """The probe's command line and environment (warm on, a cache of the test's); kills its warm processes afterwards."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    cache = tmp_path / "cache"
    yield [sys.executable, str(script), "pipelines", "probe", "run-all"], warm_env(cache)
    stop_warm_processes(str(cache))


def warm_server(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the probe once (it starts a server at its exit) and wait for the server: its pid and socket."""
    first = run(command, cwd=Path(command[1]).parent, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    pid_file = server_up(env)
    return int(pid_file.read_text()), str(pid_file.with_suffix(".sock"))


def start_probe(command: list[str], env: dict[str, str], **options) -> tuple[subprocess.Popen, str]:
    """Start the probe in a session of its own; returns it and its first line (read once the command runs)."""
    caller = start_process(
        command, cwd=Path(command[1]).parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options
    )
    assert caller.stdout is not None
    return caller, caller.stdout.readline()


def test_a_signal_the_caller_ignores_as_under_nohup_is_ignored_by_the_warm_command_too(probe, tmp_path: Path):
    """``nohup run-all &`` survives the terminal's hang-up in its own interpreter; it must in a warm one too."""
    command, env = probe
    warm_server(command, env)
    gate = tmp_path / "gate"

    def ignore_hangups() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    caller, first = start_probe(command, {**env, "PROBE_WAIT_FOR": str(gate)}, preexec_fn=ignore_hangups)
    assert "ignores SIGHUP: True" in first, first  # the command sees the disposition a fresh interpreter would have
    caller.send_signal(signal.SIGHUP)  # the terminal closes
    time.sleep(1)
    gate.touch()
    out, err = caller.communicate(timeout=60)
    assert "running in a warm interpreter" in err
    assert caller.returncode == 0, err
    assert out == "done\n"
    stop_group(caller)


def connect_with_header(sock: str, length: int) -> socket.socket:
    """A connection to the server that has sent what a client sends first: the request's length and fds 0-2."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(sock)
    socket.send_fds(connection, [struct.pack("!I", length)], [0, 1, 2])
    return connection


def test_a_request_too_deeply_nested_is_refused_and_the_server_serves_on(probe):
    command, env = probe
    server, sock = warm_server(command, env)
    body = b"[" * 100_000 + b"]" * 100_000  # json.loads raises RecursionError, not ValueError
    with connect_with_header(sock, len(body)) as hostile:
        hostile.sendall(body)
        assert hostile.recv(100) == b""  # refused: closed unanswered
    assert alive(server)
    after = run(command, cwd=Path(command[1]).parent, env=env, timeout=120)
    assert after.returncode == 0 and "running in a warm interpreter" in after.stderr, after.stderr


@pytest.mark.slow
def test_a_client_that_sends_its_request_slowly_holds_up_no_other_and_is_cut_off(probe):
    """A client that sends a byte now and then (a stopped or hostile one) must not keep the server from the others."""
    command, env = probe
    server, sock = warm_server(command, env)
    trickler = connect_with_header(sock, 1000)
    outcome: list[str] = []

    def trickle() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                trickler.send(b" ")
            except OSError:
                outcome.append("cut off")
                return
            time.sleep(0.5)
        outcome.append("sent all it wanted")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        after = run(command, cwd=Path(command[1]).parent, env=env, timeout=180)
        assert outcome == [], "the run was served only once the slow client had finished"
        assert after.returncode == 0 and "running in a warm interpreter" in after.stderr, after.stderr
        thread.join(timeout=90)
        assert outcome == ["cut off"]
        assert alive(server)
    finally:
        trickler.close()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_command_whose_server_is_stopped_is_ended_not_left_running_unseen(probe, tmp_path: Path, how: signal.Signals):
    """Stopping the server (SIGTERM) or killing it must not leave the command running on with nobody to see it end."""
    command, env = probe
    server, _sock = warm_server(command, env)
    caller, first = start_probe(command, {**env, "PROBE_WAIT_FOR": str(tmp_path / "never")})
    child = int(first.split()[1])
    assert child != caller.pid and alive(child), first
    os.kill(server, how)
    _out, err = caller.communicate(timeout=60)
    assert caller.returncode == 1
    assert "the warm interpreter stopped before the command ended" in err
    wait_for(lambda: not alive(child), "the command's end", timeout=30)


IMPOSTOR = """
import os, pwd, socket, sys
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
nobody = pwd.getpwnam("nobody")
os.setgid(nobody.pw_gid)
os.setuid(nobody.pw_uid)
listener.listen()  # the credentials a client sees are those of the process that listens
print("listening", flush=True)
connection, _ = listener.accept()
received = b""
while chunk := connection.recv(1 << 16):
    received += chunk
print(f"received {len(received)} bytes", flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to listen as another user")
def test_a_socket_another_user_listens_on_is_never_sent_the_environment(probe, tmp_path: Path):
    """Whatever put it there (a cache folder under a folder another user controls), a server of another user is not used."""
    command, env = probe
    server, sock = warm_server(command, env)
    os.kill(server, signal.SIGKILL)
    wait_for(lambda: not alive(server), "the server's end")
    os.unlink(sock)
    (tmp_path / "impostor.py").write_text(IMPOSTOR)
    impostor = start_process([sys.executable, str(tmp_path / "impostor.py"), sock], stdout=subprocess.PIPE, text=True)
    assert impostor.stdout is not None and impostor.stdout.readline() == "listening\n"
    after = run(command, cwd=Path(command[1]).parent, env={**env, "SECRET_TOKEN": "s3cr3t"}, timeout=60)
    assert after.returncode == 0 and after.stdout.endswith("done\n"), after.stderr
    assert "running in a warm interpreter" not in after.stderr
    assert impostor.stdout.readline() == "received 0 bytes\n"
    stop_group(impostor)


def test_a_cache_folder_given_relative_to_the_working_folder_gets_a_server(probe, tmp_path: Path):
    """``HML_CACHE_DIR=cache`` (relative, as the compiled specs take it) must not make every run start a server that fails."""
    command, env = probe
    env = {**env, "HML_CACHE_DIR": "cache"}  # the fixture's cache folder, seen from tmp_path
    first = run(command, cwd=tmp_path, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    wait_for(lambda: list((tmp_path / "cache" / "warm").glob("*.sock")), "the warm server's socket")
    after = run(command, cwd=tmp_path, env=env, timeout=120)
    assert after.returncode == 0 and "running in a warm interpreter" in after.stderr, after.stderr


def state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2]


def test_ctrl_z_stops_the_warm_command_with_its_caller_and_fg_goes_on(probe, tmp_path: Path):
    """Ctrl-Z (SIGTSTP to the caller) pauses a fresh run; a warm command must not go on training, printing to the terminal."""
    command, env = probe
    warm_server(command, env)
    gate = tmp_path / "gate"
    caller, first = start_probe(command, {**env, "PROBE_WAIT_FOR": str(gate)})
    child = int(first.split()[1])
    caller.send_signal(signal.SIGTSTP)
    wait_for(lambda: state(caller.pid) == "T" and state(child) == "T", "the caller and the command stopped", timeout=30)
    caller.send_signal(signal.SIGCONT)  # fg
    wait_for(lambda: state(caller.pid) != "T" and state(child) != "T", "the caller and the command going on", timeout=30)
    gate.touch()
    out, err = caller.communicate(timeout=60)
    assert caller.returncode == 0 and out == "done\n", err


@pytest.mark.parametrize("variable", ["SKLEARN_ASSUME_FINITE", "PANDAS_COPY_ON_WRITE", "SCIPY_ARRAY_API", "MPLBACKEND"])
def test_a_variable_a_library_reads_when_imported_gives_another_server(variable: str):
    """scikit-learn reads ``SKLEARN_ASSUME_FINITE`` once, at import: a server that imported it without it cannot serve."""
    from hmlcore._warm.place import environment_key

    path = ["", *sys.path[1:]]
    assert environment_key({variable: "1"}, path) != environment_key({}, path)


def test_a_run_from_a_removed_working_folder_runs_as_a_fresh_one_does(probe, tmp_path: Path):
    command, env = probe
    warm_server(command, env)
    gone = tmp_path / "gone"
    gone.mkdir()
    shell = f'cd "{gone}" && rmdir "{gone}" && exec "$@"'
    after = run(["bash", "-c", shell, "removed", *command], cwd=tmp_path, env=env, timeout=120)
    assert after.returncode == 0 and after.stdout.endswith("done\n"), after.stderr
